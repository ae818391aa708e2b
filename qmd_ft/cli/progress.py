"""Progress bars on stderr for the core's `(what, done, total)` events (qmd_ft.progress)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from qmd_ft.cli.common import err_console
from qmd_ft.progress import ProgressFn


class _Steps:
    """Events as rich bars: a new description completes the previous bar and opens its own."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.what: str | None = None
        self.task: TaskID | None = None
        self.total = 0

    def __call__(self, what: str, done: int, total: int) -> None:
        if what != self.what:
            if self.task is not None:
                self.progress.update(self.task, completed=self.total)
            self.what, self.task = what, self.progress.add_task(what, total=total)
        assert self.task is not None
        self.total = total
        self.progress.update(self.task, completed=done, total=total)


@contextmanager
def progress_bars() -> Iterator[ProgressFn]:
    """A transient progress display on stderr (only results remain on screen), fed by events.

    Off a terminal it is disabled: a transient bar would leave only a blank line there, e.g.
    before an error line.
    """
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
    )
    disabled = not err_console.is_terminal
    with Progress(*columns, console=err_console, transient=True, disable=disabled) as progress:
        yield _Steps(progress)
