"""`qmd-ft pipeline` and `qmd-ft demo`."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from qmd_ft.cli.common import console, err_console, plain, print_json
from qmd_ft.cli.eval_cmd import gate_table
from qmd_ft.cli.progress import progress_bars
from qmd_ft.pipeline import Pipeline, StageResult, build_pipeline, gate_refused
from qmd_ft.train.plan import Planned, describe


def _stage_line(result: StageResult) -> None:
    tag = "skipped (unchanged)" if result.skipped else f"{result.seconds:.1f}s"
    err_console.print(f"[bold]{result.name}[/bold]: {result.key} ({tag})", soft_wrap=True)


def _table(stages: list[StageResult], title: str) -> Table:
    table = Table(title=title)
    for col in ("stage", "time", "key number", "artifact"):
        table.add_column(col, overflow="fold")
    for s in stages:
        table.add_row(
            s.name, "skipped" if s.skipped else f"{s.seconds:.1f}s", s.key, s.artifact or ""
        )
    return table


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
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan only: run nothing, write nothing.")
    ] = False,
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
        config,
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
        pipe.on_progress = on_progress
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
    retrieval = f", retrieval on {cfg.eval.retrieval_dir}" if pipe.with_retrieval else ""
    plain(f"  eval: {cfg.eval.queries}; the gate scores {gated}{retrieval}")
    unverified = "" if cfg.export.verify else " (unverified)"
    plain(f"  export: GGUF {', '.join(cfg.export.quants)}{unverified}")
    where = getattr(pipe.registry, "root", None) or "the Hugging Face Hub"
    plain(f"  publish: {cfg.publish.repo}, GGUF to {cfg.publish.resolved_gguf_repo}, on {where}")
    console.print("plan:")
    for p in planned:
        where = f" -> {p.output}" if p.output else ""
        plain(f"  {p.name}: {p.note}{where}")


def demo(
    backend: Annotated[str, typer.Option(help="auto, cuda or mlx.")] = "auto",
    out: Annotated[Path, typer.Option(help="Where everything goes.")] = Path("outputs/demo"),
    json_: Annotated[bool, typer.Option("--json", help="End with a JSON summary.")] = False,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Cap both training stages (a quick smoke run).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="key.path=value for the demo's configs (as pipeline --set)."),
    ] = None,
) -> None:
    """Train, gate and export the tiny model offline in minutes: the whole job, small.

    The gate applies the real pipeline's rules, search included: when the tiny model's
    expansions do not help search, the release is refused with the reason and the demo still
    exports and verifies GGUF (exit 0: the demo worked, the gate did its job).

    Example: qmd-ft demo
    """
    from qmd_ft.demo import run_demo

    # With --json, stdout holds the JSON alone: the trainers' own log lines go to stderr.
    quiet = contextlib.redirect_stdout(sys.stderr) if json_ else contextlib.nullcontext()
    with quiet, progress_bars() as on_progress:
        report = run_demo(
            out,
            backend,
            log=plain,
            on_stage=_stage_line,
            max_steps=max_steps,
            on_progress=on_progress,
            overrides=set_,
        )
    if json_:
        print_json(report.to_dict())
        return
    console.print(_table(report.stages, "demo pipeline"))
    table = Table(title="before / after (mean reward on evals/queries.txt)")
    table.add_column("model")
    table.add_column("mean reward")
    table.add_row("untrained tiny Qwen3", f"{report.score_before:.4f}")
    table.add_row("after SFT + GRPO", f"{report.score_after:.4f}")
    console.print(table)
    search = Table(title="search on evals/retrieval/ (QMD's BM25 + vectors + RRF)")
    search.add_column("expansions from")
    for metric in report.retrieval_raw:
        search.add_column(metric)
    for name, row in (
        ("none (raw query)", report.retrieval_raw),
        ("untrained tiny Qwen3", report.retrieval_before),
        ("after SFT + GRPO", report.retrieval_after),
    ):
        search.add_row(name, *(f"{v:.3f}" for v in row.values()))
    console.print(search)
    if report.verdict is not None:
        console.print(gate_table(report.verdict))
    if report.released:
        console.print("[green]released[/green]: the trained model passed every gate rule")
    else:
        reasons = "; ".join(report.verdict.reasons) if report.verdict else "no verdict"
        console.print(f"[red]release refused[/red] by the gate: {reasons}")
    console.print(f"demo finished in {report.seconds:.0f}s; artifacts under {out}/")
