"""Reading the prepared dataset (`qmd-ft data prepare` output) into trainer-ready rows.

Both backends read splits through `qmd_ft.data.prepared`, so a damaged split stops either one
with the same `FILE:LINE: reason`; this module keeps the names the cuda stages import.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qmd_ft.data.prepared import SFT_KEYS, data_hash
from qmd_ft.data.prepared import read_split as _read_split

__all__ = ["data_hash", "read_split"]


def read_split(
    data_dir: Path, name: str, limit: int | None = None, require: Sequence[str] = SFT_KEYS
) -> list[dict[str, Any]]:
    """Records of one split file (`train.jsonl`/`val.jsonl`), at most `limit` of them.

    A missing val file is an empty split; a missing train file, a bad line or a row without
    the `require`d keys is a one-line UserError (see `qmd_ft.data.prepared.read_split`).
    """
    return _read_split(data_dir, name, limit, require)
