"""Reading JSONL examples defensively: every problem becomes a `FILE:LINE: reason`.

Hostile input (huge lines, NUL bytes, non-UTF-8, BOM, CRLF) must give a clear report, never
a traceback, and never silently lose a row.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmd_ft.data.schema import Example, SchemaError, parse_record
from qmd_ft.errors import UserError

MAX_LINE_BYTES = 1 << 20  # one example is a few hundred bytes; 1 MiB is surely not data
DEFAULT_GLOB = "data/*.jsonl"


@dataclass(frozen=True)
class Problem:
    """One finding about one line of one file."""

    path: str
    line: int
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        """`FILE:LINE: message`; `FILE: message` for the whole file (line 0)."""
        tag = "warning: " if self.severity == "warning" else ""
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {tag}{self.message}"


@dataclass(frozen=True)
class Row:
    """A line that parsed into a valid example, with where it came from."""

    path: str
    line: int
    example: Example

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def resolve_paths(paths: list[str] | None, default_glob: str = DEFAULT_GLOB) -> list[Path]:
    """Files named or globbed, sorted and de-duplicated; an empty match is a user error."""
    patterns = paths or [default_glob]
    found: list[Path] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(pattern))
            if not matches:
                raise UserError(f"{pattern}: no files match")
            found.extend(matches)
        else:
            p = Path(pattern)
            if p.is_dir():
                in_dir = sorted(p.glob("*.jsonl"))
                if not in_dir:  # else a typo'd data dir would read as "0 rows, all fine"
                    raise UserError(f"no .jsonl files in {pattern}")
                found.extend(in_dir)
            elif p.is_file():
                found.append(p)
            else:
                raise UserError(f"{pattern}: no such file")
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]


def _decode(raw: bytes, path: str, n: int) -> tuple[str | None, list[Problem]]:
    problems: list[Problem] = []
    if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
        problems.append(Problem(path, n, "UTF-8 byte-order mark (accepted)", "warning"))
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if len(raw) > MAX_LINE_BYTES:
        size = f"{len(raw) / 1e6:.1f} MB"
        problems.append(Problem(path, n, f"line is {size}, over the 1 MiB limit for one example"))
        return None, problems
    nul = raw.find(b"\x00")
    if nul >= 0:
        problems.append(Problem(path, n, f"NUL byte at column {nul + 1}"))
        return None, problems
    try:
        return raw.decode("utf-8"), problems
    except UnicodeDecodeError as e:
        problems.append(Problem(path, n, f"not valid UTF-8 (byte {e.start + 1} of the line)"))
        return None, problems


def read_examples(
    path: Path, rewrite: Callable[[Any], Any] | None = None
) -> Iterator[Row | Problem]:
    """Yield a Row per valid line and a Problem per finding, in file order.

    Blank lines are skipped (they carry nothing); CRLF endings are reported once per file.
    `rewrite` sees each decoded JSON value before the schema does (migrations use it).
    """
    name = str(path)
    crlf_reported = False
    try:
        f = path.open("rb")
    except OSError as e:
        yield Problem(name, 0, f"cannot read: {e.strerror}")
        return
    with f:
        for n, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\n")
            if raw.endswith(b"\r") and not crlf_reported:
                crlf_reported = True
                yield Problem(name, n, "CRLF line endings (accepted)", "warning")
            text, problems = _decode(raw, name, n)
            yield from problems
            if text is None or not text.strip():
                continue
            try:
                obj = json.loads(text)
                row = Row(name, n, parse_record(rewrite(obj) if rewrite else obj))
            except json.JSONDecodeError as e:
                yield Problem(name, n, f"invalid JSON: {e.msg} (column {e.colno})")
            except SchemaError as e:
                yield Problem(name, n, str(e))
            except RecursionError:  # `[[[[…]]]]` thousands deep: the decoder itself overflows
                yield Problem(name, n, "JSON nested too deeply")
            else:
                yield row
