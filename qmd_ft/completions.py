"""Saved completions to score without a model: `{"query", "completion"}` JSONL (`qmd-ft score`)."""

from __future__ import annotations

import json
from pathlib import Path

from qmd_ft.errors import UserError


def read_completions(path: Path) -> list[tuple[str, str]]:
    """`{"query", "completion"}` lines; any bad line, or no line at all, is a one-line error.

    Lines are split on bytes and decoded one by one, so an encoding error names its line.
    """
    pairs = []
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror})") from e
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if n == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}:{n}: not valid UTF-8 (byte {e.start + 1} of the line)") from e
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: invalid JSON: {e.msg}") from e
        except RecursionError as e:
            raise UserError(f"{path}:{n}: JSON nested too deeply") from e
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{n}: expected a JSON object")
        for key in ("query", "completion"):
            if key not in obj:
                raise UserError(f"{path}:{n}: missing key '{key}'")
            if not isinstance(obj[key], str):
                raise UserError(f"{path}:{n}: '{key}' must be a string")
        pairs.append((obj["query"], obj["completion"]))
    if not pairs:
        raise UserError(f"{path}: no completions to score (no non-blank line)")
    return pairs
