"""`qmd-ft train [sft|grpo|all]`: one config, any backend."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.backend import TrainRequest, get_backend, resolve_name
from qmd_ft.cli.common import console, not_available, plain
from qmd_ft.config import dump_config, load_config


class Stage(StrEnum):
    """Which training stage(s) to run."""

    sft = "sft"
    grpo = "grpo"
    all = "all"


def train(
    stage: Annotated[Stage, typer.Argument(help="sft, grpo, or all (SFT then GRPO).")] = Stage.all,
    config: Annotated[Path, typer.Option(help="YAML config.")] = Path("configs/sft.yaml"),
    backend: Annotated[str, typer.Option(help="auto, cuda or mlx.")] = "auto",
    device: Annotated[str | None, typer.Option(help="cpu or cuda (cuda backend).")] = None,
    model: Annotated[str | None, typer.Option(help="Overrides model.base.")] = None,
    output: Annotated[Path | None, typer.Option(help="Overrides model.output.")] = None,
    max_steps: Annotated[int | None, typer.Option(min=1)] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key.path=value")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan only.")] = False,
    gpus: Annotated[int, typer.Option(min=1, help="GPUs (accelerate DDP).")] = 1,
    hf_jobs: Annotated[bool, typer.Option("--hf-jobs", help="Run on HF Jobs.")] = False,
    flavor: Annotated[str, typer.Option()] = "a10g-large",
    timeout: Annotated[str, typer.Option()] = "2h",
) -> None:
    """Fine-tune: SFT (LoRA or full), then GRPO on the merged SFT weights.

    Example: qmd-ft train sft --config configs/sft.yaml --backend cuda --device cpu --max-steps 5
    """
    overrides = list(set_ or [])
    if model:
        overrides.append(f"model.base={model}")
    if output:
        overrides.append(f"model.output={output}")
    cfg = load_config(config, overrides)
    name = resolve_name(backend)
    if dry_run:
        plain(dump_config(cfg).rstrip())
        console.print(
            f"plan: {stage.value} on backend {name} (device {device or 'auto'}), "
            f"data {cfg.dataset.name}, output {cfg.model.output}"
            + (f", max {max_steps} steps" if max_steps else "")
        )
        return
    if hf_jobs:
        not_available("train --hf-jobs", 8)
    impl = get_backend(name)
    req = TrainRequest(
        config=cfg,
        data_dir=Path(cfg.dataset.name),
        output_dir=Path(cfg.model.output),
        device=device,
        max_steps=max_steps,
        resume=resume,
    )
    if stage in (Stage.sft, Stage.all):
        console.print(f"SFT done: {impl.sft(req)}")
    if stage in (Stage.grpo, Stage.all):
        console.print(f"GRPO done: {impl.grpo(req)}")
