"""Rewrite QMD's slash-less only-mode rows (`query only: lex`) to rubric v1's `/only:` form.

QMD's `qmd_expansion_handcrafted_only.jsonl` spells only-mode as `x only: lex`; rubric v1 reads
only ` /only:lex`, so those rows would train the model to answer an ordinary query with one
type and be scored for the missing ones. `data validate` refuses them with a hint; this module
is the one documented fix, and it never writes over its input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmd_ft.data.reader import Problem, read_examples
from qmd_ft.data.schema import Example, slashless_only


@dataclass
class Migration:
    """The migrated examples, how many queries were rewritten, and what stayed invalid."""

    examples: list[Example] = field(default_factory=list)
    rewritten: int = 0
    problems: list[Problem] = field(default_factory=list)


def migrate_only(paths: list[Path]) -> Migration:
    """Every row of `paths`, with `x only: T` queries turned into `x /only:T`."""
    result = Migration()

    def rewrite(obj: Any) -> Any:
        if not isinstance(obj, dict):
            return obj
        key = "input" if "input" in obj else "query"
        query = obj.get(key)
        if not isinstance(query, str) or (found := slashless_only(query.strip())) is None:
            return obj
        result.rewritten += 1
        base, kind = found
        return obj | {key: f"{base} /only:{kind}"}

    for path in paths:
        for item in read_examples(path, rewrite):
            if isinstance(item, Problem):
                if item.severity == "error":
                    result.problems.append(item)
            else:
                result.examples.append(item.example)
    return result
