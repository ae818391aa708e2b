"""`build_pipeline`: the pipeline config, the SFT and GRPO configs it names, and their paths."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qmd_ft.backend import resolve_name
from qmd_ft.config import Config, load_config, split_overrides
from qmd_ft.errors import UserError
from qmd_ft.pipeline.stages import TRAINING_STAGES, Pipeline
from qmd_ft.progress import ProgressFn
from qmd_ft.publish.destination import open_registry


def check_serving(cfg: Config, source: Path) -> None:
    """Before any training: a serving eval needs its GGUF type exported, and exported first."""
    if not cfg.serving.enabled:
        return
    quant, stages = cfg.serving.quant, cfg.pipeline.stages
    if quant not in cfg.export.quants:
        raise UserError(
            f"{source}: serving.quant {quant} is not among export.quants {cfg.export.quants}"
        )
    if "eval" in stages and ("gguf" not in stages or stages.index("gguf") > stages.index("eval")):
        raise UserError(
            f"{source}: serving.enabled scores the exported GGUF, so pipeline.stages must run "
            "gguf before eval"
        )


def build_pipeline(
    config: Path,
    overrides: list[str] | None,
    backend: str,
    *,
    publish: bool = True,
    registry: Path | None = None,
    device: str | None = None,
    max_steps: int | None = None,
    base_model: str | None = None,
    log: Callable[[str], None] = print,
    on_progress: ProgressFn | None = None,
) -> Pipeline:
    """Load the pipeline config and the SFT/GRPO configs it names; wire their paths.

    `overrides` (--set) apply to all three configs, as every command's --set does to its
    config; `sft:KEY=VALUE` / `grpo:KEY=VALUE` to that stage's config only. The pipeline's own
    wiring (data dir, stage outputs, the SFT model GRPO starts from) wins over them, and
    `base_model` (the CLI's --model) replaces model.base in both stage configs. `publish`
    False (`--no-publish`): every stage runs, nothing is uploaded.
    """
    split = split_overrides(overrides, TRAINING_STAGES)
    cfg = load_config(config, split.common)
    out = Path(cfg.pipeline.out)
    data_dir = str(out / "data")
    base = [f"model.base={base_model}"] if base_model else []
    sft_cfg = load_config(
        cfg.pipeline.sft_config,
        [*split.of("sft"), f"dataset.name={data_dir}", f"model.output={out / 'sft'}", *base],
        stage="sft",
    )
    grpo_cfg = load_config(
        cfg.pipeline.grpo_config,
        [
            *split.of("grpo"),
            f"dataset.name={data_dir}",
            f"model.output={out / 'grpo'}",
            f"model.sft={out / 'sft'}",
            f"model.base={sft_cfg.model.base}",
        ],
        stage="grpo",
    )
    check_serving(cfg, config)
    return Pipeline(
        cfg,
        sft_cfg,
        grpo_cfg,
        resolve_name(backend),
        out,
        open_registry(cfg.publish, registry),
        publish=publish,
        device=device,
        max_steps=max_steps,
        log=log,
        on_progress=on_progress,
    )
