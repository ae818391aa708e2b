"""`qmd-ft score`: the rubric on saved completions, no model needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from qmd_ft import reward
from qmd_ft.cli.common import console, plain, print_json
from qmd_ft.cli.options import JsonOpt
from qmd_ft.completions import read_completions
from qmd_ft.evaluation import load_results, rescore


def _table(rows: list[tuple[str, reward.ScoreResult]], title: str) -> Table:
    table = Table(title=title)
    for col in ("query", "fmt", "div", "hyde", "qual", "ent", "think", "total", "%", "rating"):
        table.add_column(col, overflow="fold")
    for query, r in rows:
        table.add_row(
            query,
            *(str(v) for v in (r.format, r.diversity, r.hyde, r.quality, r.entity)),
            str(r.think_bonus),
            f"{r.total}/{r.max_possible}",
            f"{r.percentage:.1f}",
            r.rating,
        )
    return table


def score(
    file: Annotated[Path | None, typer.Argument(help="JSONL of {query, completion}.")] = None,
    json_: JsonOpt = False,
    results: Annotated[Path | None, typer.Option(help="Re-score an eval results file.")] = None,
    selftest: Annotated[bool, typer.Option(help="Print the rubric's worked examples.")] = False,
) -> None:
    """Score completions with rubric v1 (the GRPO reward and the eval score).

    --json prints one object per line of FILE, or the re-scored document with --results.

    Example: qmd-ft score completions.jsonl --json
    """
    given = [name for name, v in (("FILE", file), ("--results", results)) if v is not None]
    if selftest:
        given.append("--selftest")
    if len(given) > 1:  # scoring one and silently ignoring the other would mislead
        raise typer.BadParameter(f"{' and '.join(given)} given: choose one")
    if selftest:
        for query, note, r in reward.selftest_rows():
            plain(
                f"{note}\n  query: {query}\n  → {r.total}/{r.max_possible} "
                f"({r.percentage:.1f}%, {r.rating}); reward {r.reward:.3f}"
            )
            for d in r.deductions:
                plain(f"    - {d}")
        return
    if results is not None:
        doc = rescore(load_results(results))
        if json_:
            print_json(doc.to_json())
            return
        rows = [(r.query, reward.score(r.query, r.completion)) for r in doc.results]
        console.print(_table(rows, f"{results}: re-scored with rubric {reward.RUBRIC_VERSION}"))
        s, info = doc.need_summary(), doc.rescored
        assert info is not None  # rescore records it
        console.print(
            f"{s.n} completion(s), mean reward {s.mean_reward:.4f}; "
            f"{info.rows_changed} row(s) changed vs the saved scores (rubric "
            f"{info.from_rubric})"
        )
        return
    if file is None:
        raise typer.BadParameter("give FILE.jsonl, --results RESULTS.json or --selftest")
    scored = [(q, reward.score(q, c)) for q, c in read_completions(file)]
    if json_:
        for _, r in scored:
            typer.echo(json.dumps(r.sub_scores(), ensure_ascii=False))
        return
    console.print(_table(scored, f"{file}: rubric {reward.RUBRIC_VERSION}"))
    if scored:
        mean = sum(r.reward for _, r in scored) / len(scored)
        console.print(f"{len(scored)} completion(s), mean reward {mean:.3f}")
