"""`qmd-ft pipeline`: the release checklist from the command line (`qmd_ft.pipeline` runs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import console, err_console, plain
from qmd_ft.cli.options import BackendOpt, ConfigOpt, DeviceOpt, DryRunOpt, StageSetOpt
from qmd_ft.cli.progress import progress_bars
from qmd_ft.cli.render import gate_table
from qmd_ft.cli.render import stage_line as _stage_line
from qmd_ft.cli.render import stages_table as _table
from qmd_ft.pipeline import Pipeline, StageResult, build_pipeline, gate_refused
from qmd_ft.train.plan import Planned, describe


def pipeline(
    config: ConfigOpt = Path("configs/pipeline.yaml"),
    backend: BackendOpt = "auto",
    device: DeviceOpt = None,
    model: Annotated[str | None, typer.Option(help="Overrides model.base of both stages.")] = None,
    registry: Annotated[
        Path | None, typer.Option(help="Local registry instead of the Hub.")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Cap both training stages.")] = None,
    set_: StageSetOpt = None,
    dry_run: DryRunOpt = False,
    no_publish: Annotated[
        bool, typer.Option("--no-publish", help="Run every stage, upload nothing.")
    ] = False,
) -> None:
    """QMD's release checklist end to end, resumable stage by stage.

    Exits 1 when the gate refuses the release (nothing is published), so CI can tell.
    --dry-run prints what a run would do (after the same checks) and runs nothing.

    Example: qmd-ft pipeline --config configs/pipeline.yaml --backend cuda --dry-run
    """
    pipe = build_pipeline(
        config or Path("configs/pipeline.yaml"),
        set_,
        backend,
        publish=not no_publish,
        registry=registry,
        device=device,
        max_steps=max_steps,
        base_model=model,
        log=plain,
    )
    if dry_run:
        _print_plan(pipe, device, max_steps)
        return
    done: list[StageResult] = []

    def on_stage(result: StageResult) -> None:
        done.append(result)
        _stage_line(result)

    with progress_bars() as on_progress:
        pipe.report_progress(on_progress)
        pipe.run(pipe.cfg.pipeline.stages, on_stage)
    console.print(_table(done, f"pipeline ({pipe.backend}) → {pipe.out}"))
    if pipe.verdict is not None:
        console.print(gate_table(pipe.verdict))
    if gate_refused(done):
        err_console.print("error: the gate refused the release; nothing was published")
        raise typer.Exit(1)


def _print_plan(pipe: Pipeline, device: str | None, max_steps: int | None) -> None:
    """`--dry-run`'s output: the resolved configs' key facts, then each stage's fate."""
    stages = pipe.cfg.pipeline.stages
    planned = pipe.plan(stages)
    pipe.check(planned)
    cfg = pipe.cfg
    plain(f"pipeline ({pipe.backend}) -> {pipe.out} (state: {pipe.store.path})")
    for name in ("sft", "grpo"):
        source = getattr(cfg.pipeline, f"{name}_config")
        line = describe(
            Planned(name, pipe.stage_config(name), Path(source)), pipe.backend, device, max_steps
        )
        plain(f"  {line} [{source}]")
    if cfg.serving.enabled:
        gated = f"the {cfg.serving.quant} GGUF, {cfg.serving.samples} samples/query"
    else:
        gated = "the merged model, greedy"
    retrieval = f", retrieval on {cfg.eval.retrieval_dir}" if pipe.evals.with_retrieval else ""
    plain(f"  eval: {cfg.eval.queries}; the gate scores {gated}{retrieval}")
    unverified = "" if cfg.export.verify else " (unverified)"
    plain(f"  export: GGUF {', '.join(cfg.export.quants)}{unverified}")
    where = getattr(pipe.registry, "root", None) or "the Hugging Face Hub"
    plain(f"  publish: {cfg.publish.repo}, GGUF to {cfg.publish.resolved_gguf_repo}, on {where}")
    console.print("plan:")
    for p in planned:
        where = f" -> {p.output}" if p.output else ""
        plain(f"  {p.name}: {p.note}{where}")
