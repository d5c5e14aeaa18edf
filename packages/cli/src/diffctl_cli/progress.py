"""Progress of long operations: a rich bar on a terminal, a plain line every 10% otherwise.

The library reports progress through callbacks (``on_step(StepEvent)`` while training,
``on_progress(done, total)`` while sampling or evaluating); :class:`Reporter` turns them into
output on stderr. A bar starts at the first report, so an error before any work prints
nothing but the error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from diffctl_cli.console import make_console

err_console = make_console(stderr=True)


class Reporter:
    """One task's progress: ``update(done, total, **fields)``; ``close()`` ends the bar."""

    def __init__(self, label: str, unit: str, extra: str = "",
                 console: Console = err_console):
        self.label, self.unit, self.extra, self.console = label, unit, extra, console
        self._logged: set[int] = set()
        self._progress: Progress | None = None
        self._task: Any = None

    def update(self, done: int, total: int, **fields: Any) -> None:
        total = max(int(total), 1)
        if not self.console.is_terminal:
            tenth = 10 * done // total
            if tenth not in self._logged:
                self._logged.add(tenth)
                text = self.extra.format(**fields) if self.extra and fields else ""
                self.console.print(f"{self.label} {done}/{total} {self.unit}  {text}".rstrip(),
                                   highlight=False)
            return
        if self._progress is None:
            columns = [TextColumn(f"[bold]{self.label}"), BarColumn(),
                       TextColumn("{task.completed}/{task.total} " + self.unit)]
            if self.extra:  # "{loss:.4f}" -> "{task.fields[loss]:.4f}"
                columns.append(TextColumn(re.sub(r"\{(\w+)", r"{task.fields[\1]",
                                                 self.extra)))
            columns.append(TimeRemainingColumn())
            self._progress = Progress(*columns, console=self.console, transient=False)
            self._task = self._progress.add_task(self.label, total=total, **fields)
            self._progress.start()
        self._progress.update(self._task, total=total, completed=done, **fields)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


@contextmanager
def reporting(label: str, unit: str = "steps") -> Iterator[Callable[[int, int], None]]:
    """``with reporting("sample") as on_progress:`` gives the callback and ends the bar."""
    reporter = Reporter(label, unit)
    try:
        yield reporter.update
    finally:
        reporter.close()


@contextmanager
def training_progress() -> Iterator[Callable[[Any], None]]:
    """The ``on_step`` callback of training: steps, loss and rate."""
    reporter = Reporter("train", "steps", "loss {loss:.4f}  {rate:.1f} it/s")
    try:
        yield lambda event: reporter.update(event.step, event.total_steps, loss=event.loss,
                                            rate=event.steps_per_second)
    finally:
        reporter.close()
