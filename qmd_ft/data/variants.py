"""`/only:lex|vec|hyde` examples derived from full ones.

QMD lets a caller ask for one expansion type (`query /only:lex`); the model learns that from
examples whose answer holds just that type's lines from the full expansion.
"""

from __future__ import annotations

from collections.abc import Iterable

from qmd_ft.data.schema import Example
from qmd_ft.prompt import ONLY_TYPES


def only_variants(example: Example, types: Iterable[str] = ONLY_TYPES) -> list[Example]:
    """One example per requested type the full example has lines of; none for only-mode."""
    if example.only_mode is not None:
        return []
    out = []
    for kind in types:
        lines = tuple((k, t) for k, t in example.lines if k == kind)
        if lines:
            out.append(Example(query=f"{example.query} /only:{kind}", lines=lines))
    return out
