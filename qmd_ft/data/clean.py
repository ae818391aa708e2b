"""`qmd-ft data clean`: find (and optionally fix) expansions that misread a technical term.

Every input row ends in exactly one outcome, so nothing is lost without a word: kept as is,
fixed (its misread lines removed, the rest still a valid example), or dropped with the reason
(invalid to begin with, or nothing valid left once the misread lines are gone).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qmd_ft.data.reader import Problem, Row, read_examples
from qmd_ft.data.schema import Example, SchemaError, parse_record
from qmd_ft.data.term_senses import TermSense, misreadings

DROP_INVALID = "invalid line"
DROP_NOTHING_LEFT = "misread term, nothing valid left"


@dataclass
class CleanResult:
    """Findings to report and, per row, what `--fix` does with it."""

    findings: list[Problem] = field(default_factory=list)
    records: list[dict[str, str]] = field(default_factory=list)
    dropped: list[Problem] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    drop_reasons: Counter[str] = field(default_factory=Counter)

    def drop(self, path: str, line: int, reason: str, detail: str) -> None:
        """Record a dropped row; `reason` is the summary's key, `detail` says what exactly."""
        self.dropped.append(Problem(path, line, f"dropped: {reason} ({detail})"))
        self.outcomes["dropped"] += 1
        self.drop_reasons[reason] += 1


def _without(example: Example, positions: set[int]) -> Example:
    """The example minus the lines at `positions`; SchemaError when that is not valid."""
    kept = [[kind, text] for i, (kind, text) in enumerate(example.lines) if i not in positions]
    return parse_record({"input": example.query, "output": kept})


def _clean_row(row: Row, senses: list[TermSense], result: CleanResult) -> None:
    found = misreadings(row.example, senses)
    for m in found:
        result.findings.append(Problem(row.path, row.line, str(m)))
    if not found:
        result.outcomes["kept"] += 1
        result.records.append(row.example.to_record())
        return
    try:
        fixed = _without(row.example, {m.position for m in found})
    except SchemaError as e:
        result.drop(row.path, row.line, DROP_NOTHING_LEFT, str(e))
        return
    result.outcomes["fixed"] += 1
    result.records.append(fixed.to_record())


def clean(
    paths: list[Path], senses: list[TermSense], on_item: Callable[[], None] | None = None
) -> CleanResult:
    """Check every row of every file; `on_item` is called once per row or invalid line."""
    result = CleanResult()
    for path in paths:
        for item in read_examples(path):
            if isinstance(item, Row):
                _clean_row(item, senses, result)
            elif item.severity == "error":
                result.findings.append(item)
                result.drop(item.path, item.line, DROP_INVALID, item.message)
            else:
                continue  # BOM / CRLF notes: the row itself is read and checked
            if on_item is not None:
                on_item()
    return result
