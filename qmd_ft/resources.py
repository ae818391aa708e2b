"""Where the project's defaults live, in a checkout and in an installed wheel.

The repo keeps `configs/`, `evals/` and `data/` at its top level; the wheel ships the same files
as `qmd_ft/_defaults/...` (pyproject's package-dir mapping). Commands name defaults by their
repo-relative path (`configs/demo/pipeline.yaml`, `evals/queries.txt`, `data/*.jsonl`), so one
rule serves both: where the working directory has that folder (`configs/`, `evals/`, `data/`),
it is the user's and is read as it is (a file missing from it stays an error); where it has no
such folder, the path is read from the copy that came with qmd-ft. That is what lets
`pip install .` followed by `qmd-ft demo` work from any directory, without ever mixing a user's
project with the shipped defaults.
"""

from __future__ import annotations

import glob
from importlib.resources import files
from pathlib import Path

DEFAULT_DIRS = ("configs", "evals", "data")
"""The repo folders whose files ship inside the package."""


def defaults_root() -> Path:
    """The folder holding `configs/`, `evals/` and `data/`: the wheel's copy, else the checkout."""
    shipped = Path(str(files("qmd_ft"))) / "_defaults"
    if shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parent.parent


def _shipped(path: Path) -> bool:
    """A default path whose folder the working directory does not have."""
    return (
        not path.is_absolute()
        and bool(path.parts)
        and path.parts[0] in DEFAULT_DIRS
        and not Path(path.parts[0]).exists()
    )


def locate(path: str | Path) -> Path:
    """`path` itself, or the shipped copy where its default folder is absent here."""
    p = Path(path)
    if not _shipped(p):
        return p
    shipped = defaults_root() / p
    return shipped if shipped.exists() else p


def locate_glob(pattern: str) -> str:
    """The glob itself, or over the shipped copy where its default folder is absent here."""
    if not _shipped(Path(pattern)):
        return pattern
    shipped = str(defaults_root() / pattern)
    return shipped if glob.glob(shipped, recursive=True) else pattern
