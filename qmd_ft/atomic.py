"""Files that appear whole or not at all: write to a temp name beside the target, then rename.

A kill or a full disk mid-write then leaves the previous file (or none) under the final name,
never a truncated one that a later run would trust (a cut `pipeline_state.json`, a split file
with half its rows). The temp file lives in the target's folder so the rename stays on one
filesystem, which is what makes `os.replace` atomic.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open a temp file beside `path`; on a clean exit it is synced and renamed onto `path`.

    On any error (ENOSPC included) the temp file is removed and `path` is left as it was.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, **({} if binary else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        try:
            os.replace(tmp, path)
        except OSError as e:  # name the file the user asked for, not the temp one
            raise type(e)(e.errno, e.strerror, str(path)) from e
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """`path.write_text(text)`, but never leaving a partly written file under `path`."""
    with atomic_open(path) as f:
        f.write(text)
