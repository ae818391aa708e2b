"""`qmd-ft data validate`: every problem in every file, including duplicate queries."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qmd_ft.data.reader import Problem, Row, read_examples


@dataclass
class Validation:
    """Valid rows and every problem found, in file order."""

    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def read_all(paths: list[Path]) -> Validation:
    """Read every file; schema problems only (duplicates are a separate check)."""
    result = Validation()
    for path in paths:
        for item in read_examples(path):
            if isinstance(item, Row):
                result.rows.append(item)
            else:
                result.problems.append(item)
    return result


def duplicate_problems(rows: list[Row]) -> list[Problem]:
    """A problem for every row whose query (case-insensitive) appeared before."""
    first: dict[str, Row] = {}
    problems = []
    for row in rows:
        key = row.example.query.casefold()
        if key in first:
            problems.append(
                Problem(row.path, row.line, f"duplicate query (first at {first[key].where})")
            )
        else:
            first[key] = row
    return problems


def empty_file_problems(paths: list[Path], result: Validation) -> list[Problem]:
    """An error for each file that yielded neither a row nor an error: an empty (or blank)
    file is a truncated or wrongly named one more often than an intended one."""
    seen = {r.path for r in result.rows} | {p.path for p in result.errors}
    return [
        Problem(str(p), 0, "no rows (the file is empty or blank)")
        for p in paths
        if str(p) not in seen
    ]


def validate(paths: list[Path]) -> Validation:
    """Schema problems plus duplicates across all the files, and files with no rows."""
    result = read_all(paths)
    result.problems.extend(empty_file_problems(paths, result))
    result.problems.extend(duplicate_problems(result.rows))
    return result
