"""`qmd-ft data clean`: expansions that misread a technical term."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import console, plain
from qmd_ft.cli.data.report import InputPaths, counts
from qmd_ft.cli.progress import progress_bars
from qmd_ft.data.clean import clean
from qmd_ft.data.reader import resolve_paths
from qmd_ft.data.term_senses import load_senses
from qmd_ft.data.writer import check_new_output, write_jsonl
from qmd_ft.errors import UserError
from qmd_ft.progress import counter


def clean_cmd(
    paths: InputPaths,
    fix: Annotated[
        bool, typer.Option("--fix", help="Write kept and corrected rows to -o (never in place).")
    ] = False,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output JSONL for --fix.")] = None,
    terms: Annotated[
        Path | None, typer.Option("--terms", help="Extra term senses (YAML, same shape).")
    ] = None,
) -> None:
    """Flag expansions that misread a technical term (gem → gemstone); exit 1 on findings.

    A term counts as technical when the query's other words say so ("ruby gem install").
    --fix drops the misread lines (or the row, when what is left is not a valid example).

    Example: qmd-ft data clean data/*.jsonl --fix -o data/cleaned.jsonl
    """
    if fix and out is None:
        raise UserError("--fix needs -o OUT: clean never rewrites its input")
    if out is not None and not fix:
        raise UserError("-o is only written with --fix")
    files = resolve_paths(paths)
    if out is not None:
        check_new_output(out, files)
    senses = load_senses(terms)
    total = sum(f.read_bytes().count(b"\n") for f in files)
    with progress_bars() as on_progress:
        advance = counter(on_progress, "cleaning", total)
        result = clean(files, senses, on_item=lambda: advance(1))
    for p in result.findings:
        plain(str(p))
    n = sum(result.outcomes.values())
    dropped = result.outcomes["dropped"]
    why = f" ({counts(result.drop_reasons)})" if dropped else ""
    summary = (
        f"{n} row(s) in {len(files)} file(s), {len(result.findings)} finding(s): "
        f"{result.outcomes['kept']} kept, {result.outcomes['fixed']} fixed, {dropped} dropped{why}"
    )
    if out is not None:
        write_jsonl(out, result.records)
        for p in result.dropped:
            plain(str(p))
        console.print(f"{summary} → {len(result.records)} row(s) in {out}", soft_wrap=True)
        return
    style = "red" if result.findings else "green"
    console.print(f"{summary} (with --fix)", style=style, markup=False, soft_wrap=True)
    if result.findings:
        raise typer.Exit(1)
