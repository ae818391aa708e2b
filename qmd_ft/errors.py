"""The one exception type that means "the user's input is wrong", and one-line forms of the
environment's errors (a file we cannot write, a server we cannot reach).

The CLI turns a UserError into a single line on stderr and exit code 1; anything else is a bug and
keeps its traceback (shown with `--debug`), except the OS and network errors described here,
which say what the user must fix and would only bury it under a traceback.
"""

from __future__ import annotations

import errno
import re
from urllib.parse import urlsplit


class UserError(Exception):
    """Bad input, bad config or a missing prerequisite, described in one line."""


# (top-level module, class name) of the connection and timeout errors of the HTTP clients our
# dependencies use. Matched by name through the MRO, so none of them needs to be importable here
# (huggingface_hub may ship httpx or its fork httpx2, datasets uses requests).
_TRANSPORT_ERRORS = {
    ("httpx", "TransportError"),
    ("httpx2", "TransportError"),
    ("httpcore", "NetworkError"),
    ("httpcore", "TimeoutException"),
    ("httpcore2", "NetworkError"),
    ("httpcore2", "TimeoutException"),
    ("requests", "ConnectionError"),
    ("requests", "Timeout"),
    ("huggingface_hub", "OfflineModeIsEnabled"),
}


def os_error_line(e: OSError) -> str | None:
    """`PATH: strerror` for an OSError about a named file, None when it names none.

    A full disk (or quota) is the user's to fix whatever file it hit, so it always gets its
    line, with what to do next: writes go to a temp name first, so no output is left cut.
    """
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    if e.filename is None and not full:
        return None
    where = "" if e.filename is None else f"{e.filename}: "
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}: "
    if full:
        return f"{where}no space left on device: free some space, then run the same command again"
    return f"{where}{e.strerror or e}"


DISK_FULL_TEXT = ("No space left on device", "StorageFull", "Disk quota exceeded")
"""How libraries that wrap the OS error (torch's writer, safetensors' Rust side) word it."""


def disk_full_line(e: BaseException) -> str | None:
    """The disk-full line for an error caused by a full disk somewhere in its chain, or None."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            return os_error_line(cur)
        if any(text in str(cur) for text in DISK_FULL_TEXT):
            return "no space left on device: free some space, then run the same command again"
        cur = cur.__cause__ or cur.__context__
    return None


OOM_TEXT = ("out of memory", "can't allocate memory", "Cannot allocate memory")


def out_of_memory_line(e: BaseException) -> str | None:
    """The line for running out of (GPU or host) memory: the batch is too big for the machine."""
    oom = isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError"
    if not oom and not any(text in str(e) for text in OOM_TEXT):
        return None
    return (
        "out of memory: lower training.batch_size (or eval.batch_size, max_length) with --set, "
        "then run again (train: --resume continues from the last checkpoint)"
    )


def is_transport_error(e: BaseException) -> bool:
    """True for an HTTP client's connection or timeout error (no response came back)."""
    return any(
        (cls.__module__.split(".")[0], cls.__name__) in _TRANSPORT_ERRORS for cls in type(e).__mro__
    )


def transport_failure(e: BaseException) -> tuple[str | None, str]:
    """(scheme://host the request went to, or None when unknown; the reason, in one line)."""
    url = None
    try:
        request = e.request  # type: ignore[attr-defined]  # httpx raises RuntimeError if unset
    except (AttributeError, RuntimeError):
        request = None
    raw = getattr(request, "url", None)
    if raw:
        parts = urlsplit(str(raw))
        url = f"{parts.scheme}://{parts.netloc}" if parts.netloc else str(raw)
    text = str(e).strip()
    reason = re.sub(r"^\[Errno [-\d]+\]\s*", "", text.splitlines()[0]) if text else ""
    return url, reason or type(e).__name__
