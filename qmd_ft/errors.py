"""The one exception type that means "the user's input is wrong", and one-line forms of the
environment's errors (a file we cannot write, a server we cannot reach).

The CLI turns a UserError into a single line on stderr and exit code 1; anything else is a bug and
keeps its traceback (shown with `--debug`), except the OS and network errors described here,
which say what the user must fix and would only bury it under a traceback.
"""

from __future__ import annotations

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
    """`PATH: strerror` for an OSError about a named file, None when it names none."""
    if e.filename is None:
        return None
    where = str(e.filename) if e.filename2 is None else f"{e.filename} -> {e.filename2}"
    return f"{where}: {e.strerror or e}"


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
