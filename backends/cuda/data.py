"""Reading the prepared dataset (`qmd-ft data prepare` output) into trainer-ready rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qmd_ft.data.prepare import INFO_FILE, TRAIN_FILE
from qmd_ft.errors import UserError


def read_split(data_dir: Path, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Records of one split file (`train.jsonl`/`val.jsonl`), at most `limit` of them.

    A missing val file is an empty split; a missing train file is an error that says how to
    make one, since nothing can train without it.
    """
    path = data_dir / name
    if not path.is_file():
        if name == TRAIN_FILE:
            raise UserError(
                f"{path}: not found; prepare the data first: qmd-ft data prepare --out {data_dir}"
            )
        return []
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if name == TRAIN_FILE and not rows:
        raise UserError(f"{path}: no training examples")
    return rows[:limit] if limit else rows


def data_hash(data_dir: Path) -> str | None:
    """The prepared dataset's identity (`inputs_sha256` of dataset_info.json), for manifests."""
    path = data_dir / INFO_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8")).get("inputs_sha256")
