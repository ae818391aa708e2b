"""`qmd-ft pipeline`: the release checklist end to end, resumable stage by stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import console, err_console, plain
from qmd_ft.cli.progress import progress_bars
from qmd_ft.cli.render import gate_table
from qmd_ft.cli.render import stage_line as _stage_line
from qmd_ft.cli.render import stages_table as _table
from qmd_ft.pipeline import StageResult, build_pipeline, gate_refused


def pipeline(
    config: Annotated[Path, typer.Option(help="Pipeline config.")] = Path("configs/pipeline.yaml"),
    backend: Annotated[str, typer.Option(help="auto, cuda or mlx.")] = "auto",
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    model: Annotated[str | None, typer.Option(help="Overrides model.base of both stages.")] = None,
    registry: Annotated[
        Path | None, typer.Option(help="Local registry instead of the Hub.")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(min=1)] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="key.path=value for every config; sft:key.path=value or grpo:key.path=value "
            "for one stage's config.",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Everything but uploads.")] = False,
) -> None:
    """QMD's release checklist end to end, resumable stage by stage.

    Exits 1 when the gate refuses the release (nothing is published), so CI can tell.

    Example: qmd-ft pipeline --config configs/pipeline.yaml --backend cuda --dry-run
    """
    pipe = build_pipeline(
        config,
        set_,
        backend,
        dry_run=dry_run,
        registry=registry,
        device=device,
        max_steps=max_steps,
        base_model=model,
        log=plain,
    )
    done: list[StageResult] = []

    def on_stage(result: StageResult) -> None:
        done.append(result)
        _stage_line(result)

    with progress_bars() as on_progress:
        pipe.on_progress = on_progress
        pipe.run(pipe.cfg.pipeline.stages, on_stage)
    console.print(_table(done, f"pipeline ({pipe.backend}) → {pipe.out}"))
    if pipe.verdict is not None:
        console.print(gate_table(pipe.verdict))
    if gate_refused(done):
        err_console.print("error: the gate refused the release; nothing was published")
        raise typer.Exit(1)
