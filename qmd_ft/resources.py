"""Where the project's defaults live, in a checkout and in an installed wheel.

The repo keeps `configs/`, `evals/` and `data/` at its top level; the wheel ships the same files
as `qmd_ft/_defaults/...` (pyproject's package-dir mapping). Commands name defaults by their
repo-relative path (`configs/demo/pipeline.yaml`, `evals/queries.txt`, `data/*.jsonl`), so one
rule serves both: a file the user has under that path wins; a default path that is missing from
the working directory is read from the copy that came with qmd-ft. That is what lets
`pip install .` followed by `qmd-ft demo` work from any directory.
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


def _is_default(path: Path) -> bool:
    return not path.is_absolute() and bool(path.parts) and path.parts[0] in DEFAULT_DIRS


def locate(path: str | Path) -> Path:
    """`path` itself when it exists (or is not a default path); else the shipped copy, if any."""
    p = Path(path)
    if p.exists() or not _is_default(p):
        return p
    shipped = defaults_root() / p
    return shipped if shipped.exists() else p


def locate_glob(pattern: str) -> str:
    """A glob over the working directory when it matches there, else over the shipped copy."""
    if glob.glob(pattern, recursive=True) or not _is_default(Path(pattern)):
        return pattern
    shipped = str(defaults_root() / pattern)
    return shipped if glob.glob(shipped, recursive=True) else pattern
