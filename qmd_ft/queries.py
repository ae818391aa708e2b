"""Eval query files: one query per line, `# Heading` lines name the category that follows.

The format is QMD's `evals/queries.txt`; comments that are not headings (a `#` line followed by
another `#` line or a blank) are just comments.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qmd_ft.errors import UserError


@dataclass(frozen=True)
class Query:
    """One eval query, its category heading (or "uncategorized") and its line number."""

    text: str
    category: str
    line: int


def read_queries(path: str | Path) -> list[Query]:
    """All queries in file order; the last `# heading` before a query is its category."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"{p}: cannot read queries file ({e.strerror})") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"{p}:{line}: not valid UTF-8") from e
    queries: list[Query] = []
    first_seen: dict[str, int] = {}
    category = "uncategorized"
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            category = line.lstrip("#").strip() or category
            continue
        query = " ".join(line.split())
        if query in first_seen:
            # Results and the gate pair scores by query text: a repeat would count twice.
            raise UserError(f"{p}:{n}: query {query!r} repeats line {first_seen[query]}")
        first_seen[query] = n
        queries.append(Query(text=query, category=category, line=n))
    if not queries:
        raise UserError(f"{p}: no queries (one per line; '#' lines are headings)")
    return queries
