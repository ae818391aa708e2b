"""Where data commands write: a new JSONL file, never one of their inputs, whole or not at all."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from qmd_ft.atomic import atomic_open
from qmd_ft.errors import UserError
from qmd_ft.outputs import check_output_file


def check_new_output(out: Path, inputs: Sequence[Path]) -> None:
    """OUT is writable and none of the inputs, checked before any work.

    Rewriting an input in place loses it if the run goes wrong, so outputs go to a new file.
    """
    if any(out.resolve() == f.resolve() for f in inputs):
        raise UserError(f"{out}: refusing to overwrite an input file")
    check_output_file(out)


def write_jsonl(out: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write one JSON object per line through a hidden temp file, so OUT is complete or as it
    was: a full disk or a kill never leaves a truncated file (nor a stray `OUT.tmp` that the
    next `data/*` glob would pick up) under a data file's name."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
