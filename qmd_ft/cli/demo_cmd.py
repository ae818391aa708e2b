"""`qmd-ft demo`: the whole job on the tiny model, offline, with before/after tables."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from qmd_ft.cli.common import console, plain, print_json
from qmd_ft.cli.options import BackendOpt, JsonOpt, StageSetOpt
from qmd_ft.cli.progress import progress_bars
from qmd_ft.cli.render import gate_table, stage_line, stages_table


def demo(
    backend: BackendOpt = "auto",
    out: Annotated[Path, typer.Option(help="Where everything goes.")] = Path("outputs/demo"),
    json_: JsonOpt = False,
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Cap both training stages (a quick smoke run).")
    ] = None,
    set_: StageSetOpt = None,
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
            on_stage=stage_line,
            max_steps=max_steps,
            on_progress=on_progress,
            overrides=set_,
        )
    if json_:
        print_json(report.to_dict())
        return
    console.print(stages_table(report.stages, "demo pipeline"))
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
