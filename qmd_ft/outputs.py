"""Output paths, checked before any work: a command must not generate, merge or train for
minutes and only then fail on an output it cannot write (a file where a directory goes, a
directory where a file goes, or a parent that is a file).
"""

from __future__ import annotations

from pathlib import Path

from qmd_ft.errors import UserError


def _check_parents(path: Path) -> None:
    """The nearest existing ancestor must be a directory, or nothing can be created below it."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{path}: {parent} is a file, not a directory")
            return


def check_output_dir(path: Path) -> Path:
    """A directory to create or write into; a one-line error when it exists as a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory; give a directory to write into")
    _check_parents(path)
    return path


def check_output_file(path: Path) -> Path:
    """A file to write (or replace); a one-line error when it is an existing directory."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a file path to write")
    _check_parents(path)
    return path
