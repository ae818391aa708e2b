"""Tables more than one command prints: the release gate's verdict and the pipeline stages."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from qmd_ft.cli.common import console, err_console
from qmd_ft.gate import Verdict, shown

if TYPE_CHECKING:
    from qmd_ft.pipeline import StageResult


def print_gate(verdict: Verdict) -> None:
    """Per-query rubric wins and losses, every rule with its numbers, then the decision."""
    if verdict.per_query:
        table = Table(title="candidate vs baseline (points = reward x 100)")
        for col in ("query", "candidate", "baseline", "delta"):
            table.add_column(col, overflow="fold")
        for row in verdict.per_query:
            if row.delta:
                style = "green" if row.delta > 0 else "red"
                table.add_row(
                    row.query,
                    str(row.candidate),
                    str(row.baseline),
                    f"[{style}]{row.delta:+.2f}[/{style}]",
                )
        console.print(table)
    console.print(gate_table(verdict))
    if verdict.deployed:
        console.print(f"[green]gate: {verdict.headline()}[/green]; nothing new to publish")
    elif verdict.passed:
        console.print("[green]gate: PASS[/green]")
    else:
        console.print("[red]gate: FAIL[/red] — " + "; ".join(verdict.reasons), markup=True)


def gate_table(verdict: Verdict) -> Table:
    """One row per rule (and per reported metric): the numbers the decision used."""
    table = Table(title=f"release gate (baseline: {verdict.baseline_source})")
    for col in ("rule", "metric", "candidate", "baseline", "delta [CI]", "requirement", "result"):
        table.add_column(col, overflow="fold")
    for rule in verdict.rules:
        rows = [(rule.metric, rule.numbers, rule.requirement, rule.status, rule.reason)]
        rows += [(m, n, "(reported)", "", "") for m, n in rule.reported.items()]
        for metric, n, requirement, status, reason in rows:
            nums = shown(metric, n) if n is not None else ("-", "-", "-")
            style = {"pass": "green", "fail": "red"}.get(status, "yellow")
            result = f"[{style}]{status}[/{style}]" if status else ""
            if reason and status != "fail":
                result += f" ({reason})"
            table.add_row(rule.name, metric, *nums, requirement, result)
    return table


def stage_line(result: StageResult) -> None:
    """One stderr line per finished (or skipped) pipeline stage, as it happens."""
    tag = "skipped (unchanged)" if result.skipped else f"{result.seconds:.1f}s"
    err_console.print(f"[bold]{result.name}[/bold]: {result.key} ({tag})", soft_wrap=True)


def stages_table(stages: list[StageResult], title: str) -> Table:
    """The stages a pipeline ran: time, key number and artifact of each."""
    table = Table(title=title)
    for col in ("stage", "time", "key number", "artifact"):
        table.add_column(col, overflow="fold")
    for s in stages:
        table.add_row(
            s.name, "skipped" if s.skipped else f"{s.seconds:.1f}s", s.key, s.artifact or ""
        )
    return table
