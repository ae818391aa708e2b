"""`qmd-ft data import-hf`: a Hugging Face dataset of queries/expansions into our schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import console, err_console, plain
from qmd_ft.cli.data.report import OutJsonl, counts
from qmd_ft.cli.progress import progress_bars
from qmd_ft.data.import_hf import columns, import_rows, load_rows, resolve_mapping, row_locator
from qmd_ft.data.writer import check_new_output, write_jsonl
from qmd_ft.errors import UserError
from qmd_ft.progress import counter


def import_hf_cmd(
    dataset: Annotated[str, typer.Argument(help="Hub id, saved dataset dir, data dir or file.")],
    out: OutJsonl,
    split: Annotated[str, typer.Option(help="Split to read (hub ids and saved dataset dicts).")] = (
        "train"
    ),
    query_field: Annotated[
        str | None, typer.Option("--query-field", help="Column holding the query.")
    ] = None,
    output_field: Annotated[
        str | None,
        typer.Option("--output-field", help="Column holding the expansion (text or per type)."),
    ] = None,
) -> None:
    """Turn a Hugging Face dataset of queries/expansions into our schema.

    Every row is written or listed with where it is (FILE:LINE for .jsonl, else SOURCE row N)
    and why it was skipped.

    Example: qmd-ft data import-hf user/dataset --split train -o data/imported.jsonl
    """
    source = Path(dataset)
    check_new_output(out, [source] if source.exists() else [])
    rows = load_rows(dataset, split)
    mapping = resolve_mapping(columns(rows), query_field, output_field)
    err_console.print(mapping.describe(), markup=False)
    with progress_bars() as on_progress:
        advance = counter(on_progress, "importing", len(rows))
        result = import_rows(
            rows,
            mapping,
            on_row=lambda: advance(1),
            where=row_locator(dataset, rows),
        )
    for where, reason in result.skipped:
        plain(f"{where}: skipped: {reason}")
    skipped = len(result.skipped)
    why = f" ({counts(result.reasons)})" if skipped else ""
    summary = f"{result.rows} row(s): {len(result.records)} imported, {skipped} skipped{why}"
    if not result.records:
        raise UserError(f"{summary}: nothing to write")
    write_jsonl(out, result.records)
    console.print(f"{summary} → {out}", markup=False, soft_wrap=True)
