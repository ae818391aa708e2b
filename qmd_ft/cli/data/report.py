"""What the data commands share: the PATHS argument and how problems and counts are printed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import console, plain
from qmd_ft.data.reader import DEFAULT_GLOB
from qmd_ft.errors import UserError

_PATHS = "Files, dirs or globs."
Paths = Annotated[list[str] | None, typer.Argument(help=f"{_PATHS} Default: {DEFAULT_GLOB}.")]
"""Input files of a command that reads the training data by default."""
InputPaths = Annotated[list[str], typer.Argument(help=_PATHS)]
OutJsonl = Annotated[
    Path, typer.Option("-o", "--out", help="Output JSONL: a new file, never one of the inputs.")
]


def report(problems: list, rows: int, files: int) -> int:
    """Print every problem, then one summary line; return the number of errors."""
    for p in problems:
        plain(str(p))
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    style = "red" if errors else "green"
    console.print(
        f"[{style}]{files} file(s), {rows} valid row(s): {errors} error(s), "
        f"{warnings} warning(s)[/{style}]"
    )
    return errors


def stop_on(problems: list, message: str) -> None:
    """Print every problem (FILE:LINE: reason) and stop with `message`, before any write."""
    if problems:
        for p in problems:
            plain(str(p))
        raise UserError(message)


def counts(counter: Counter[str]) -> str:
    """`a: 2, b: 1` (most common first), or nothing for an empty counter."""
    return ", ".join(f"{k}: {n}" for k, n in counter.most_common())
