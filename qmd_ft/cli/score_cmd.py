"""`qmd-ft score`: the rubric on saved completions, no model needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from qmd_ft import reward
from qmd_ft.cli.common import console, plain, print_json
from qmd_ft.errors import UserError
from qmd_ft.evaluation import load_results, rescore


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    """`{"query", "completion"}` lines; any bad line, or no line at all, is a one-line error.

    Lines are split on bytes and decoded one by one, so an encoding error names its line.
    """
    pairs = []
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from e
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if n == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}:{n}: not valid UTF-8 (byte {e.start + 1} of the line)") from e
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: invalid JSON: {e.msg}") from e
        except RecursionError as e:
            raise UserError(f"{path}:{n}: JSON nested too deeply") from e
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{n}: expected a JSON object")
        for key in ("query", "completion"):
            if key not in obj:
                raise UserError(f"{path}:{n}: missing key '{key}'")
            if not isinstance(obj[key], str):
                raise UserError(f"{path}:{n}: '{key}' must be a string")
        pairs.append((obj["query"], obj["completion"]))
    if not pairs:
        raise UserError(f"{path}: no completions to score (no non-blank line)")
    return pairs


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
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    results: Annotated[Path | None, typer.Option(help="Re-score an eval results file.")] = None,
    selftest: Annotated[bool, typer.Option(help="Print the rubric's worked examples.")] = False,
) -> None:
    """Score completions with rubric v1 (the GRPO reward and the eval score).

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
    scored = [(q, reward.score(q, c)) for q, c in _read_pairs(file)]
    if json_:
        for _, r in scored:
            typer.echo(json.dumps(r.sub_scores(), ensure_ascii=False))
        return
    console.print(_table(scored, f"{file}: rubric {reward.RUBRIC_VERSION}"))
    if scored:
        mean = sum(r.reward for _, r in scored) / len(scored)
        console.print(f"{len(scored)} completion(s), mean reward {mean:.3f}")
