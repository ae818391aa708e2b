"""Model references: a Hugging Face hub id (`name`, `owner/name`) or a local path.

Every backend loads both kinds, and a missing local path handed to a loader is read as a hub id
and answered with "Repo id must use alphanumeric chars…", which hides the typo. So the decision
"is this a path?" lives here once, for the backends' loaders and for the checks `train` runs
before any backend is imported.
"""

from __future__ import annotations

from pathlib import Path

from qmd_ft.errors import UserError


def is_local_ref(ref: str | Path) -> bool:
    """True when a model ref names a local path rather than a hub id (`name`, `owner/name`).

    Absolute, `./`, `../` and `~` refs, refs with more than one slash, and anything that exists
    on disk are paths.
    """
    if isinstance(ref, Path):
        return True
    return (
        ref.startswith(("/", "./", "../", "~"))
        or ref in (".", "..")
        or ref.count("/") > 1
        or Path(ref).exists()
    )


def check_local_dir(ref: str, what: str) -> None:
    """A ref written as a path must be an existing directory (a hub id is left to the loader)."""
    if is_local_ref(ref) and not Path(ref).expanduser().is_dir():
        raise UserError(f"{what} {ref}: not found; check the path")
