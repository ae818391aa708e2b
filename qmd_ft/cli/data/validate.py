"""`qmd-ft data validate`: every line against the schema."""

from __future__ import annotations

import typer

from qmd_ft.cli.data.report import Paths, report
from qmd_ft.data.reader import resolve_paths
from qmd_ft.data.validate import validate


def validate_cmd(paths: Paths = None) -> None:
    """Check every line against the schema; print FILE:LINE: reason; exit 1 on any error.

    Example: qmd-ft data validate data/*.jsonl
    """
    files = resolve_paths(paths)
    result = validate(files)
    if report(result.problems, len(result.rows), len(files)):
        raise typer.Exit(1)
