"""Progress events: how long work tells the CLI how far it is, without knowing about bars.

Core code (eval, GGUF build, the pipeline, publish) reports `(what, done, total)` events; the
CLI turns them into progress bars on stderr. One event shape for everything means a stage that
runs several kinds of work (the pipeline's eval, then its GGUF build) needs one callback.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[str, int, int], None]
"""(what is being done, units done, units in all); a new `what` means the previous one ended."""


def counter(on_progress: ProgressFn | None, what: str, total: int) -> Callable[[int], None]:
    """An `advance(n)` callback that reports `n` more units of `what` to `on_progress`."""
    done = 0
    if on_progress is not None:
        on_progress(what, 0, total)

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(what, done, total)

    return advance
