"""Progress of long operations: a rich bar on a terminal, a plain line every 10% otherwise.

The library reports progress through callbacks (``on_step(StepEvent)`` while training,
``on_progress(done, total)`` while sampling or evaluating, ``on_stage(stage, done, total)``
for floors and feature extraction); :class:`Reporter` turns them into output on stderr. A bar
starts at the first report, so an error before any work prints nothing but the error. Bars
that are live at the same time (sampling, then floors, with feature extraction inside them)
share one rich display, one line each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from diffctl_cli.console import make_console

err_console = make_console(stderr=True)

#: The unit each stage of ``on_stage`` counts.
STAGE_UNITS = {"floors": "draws", "features": "images"}


class _Display:
    """The one live rich display of this process and how many reporters use it."""

    progress: Progress | None = None
    users = 0

    @classmethod
    def acquire(cls, console: Console) -> Progress:
        if cls.progress is None:
            cls.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(),
                TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
                TextColumn("{task.fields[extra]}"), TimeRemainingColumn(),
                console=console, transient=False)
            cls.progress.start()
        cls.users += 1
        return cls.progress

    @classmethod
    def release(cls) -> None:
        cls.users -= 1
        if cls.users <= 0 and cls.progress is not None:
            cls.progress.stop()
            cls.progress, cls.users = None, 0


class Reporter:
    """One task's progress: ``update(done, total, **fields)``; ``close()`` ends the bar.
    ``extra`` formats the fields (``"loss {loss:.4f}"``) after the count."""

    def __init__(self, label: str, unit: str, extra: str = "",
                 console: Console = err_console):
        self.label, self.unit, self.extra, self.console = label, unit, extra, console
        self._logged: set[int] = set()
        self._last = -1
        self._progress: Progress | None = None
        self._task: Any = None

    def update(self, done: int, total: int, **fields: Any) -> None:
        total = max(int(total), 1)
        text = self.extra.format(**fields) if self.extra and fields else ""
        if not self.console.is_terminal:
            if done < self._last:  # a new round of the same task (the next image set)
                self._logged.clear()
            self._last = done
            tenth = 10 * done // total
            if tenth not in self._logged:
                self._logged.add(tenth)
                self.console.print(f"{self.label} {done}/{total} {self.unit}  {text}".rstrip(),
                                   highlight=False)
            return
        if self._progress is None:
            self._progress = _Display.acquire(self.console)
            self._task = self._progress.add_task(self.label, total=total, unit=self.unit,
                                                 extra=text)
        self._progress.update(self._task, total=total, completed=done, extra=text)

    def close(self) -> None:
        if self._progress is not None:
            self._progress = None
            _Display.release()


@contextmanager
def reporting(label: str, unit: str = "steps") -> Iterator[Callable[[int, int], None]]:
    """``with reporting("sample") as on_progress:`` gives the callback and ends the bar."""
    reporter = Reporter(label, unit)
    try:
        yield reporter.update
    finally:
        reporter.close()


@contextmanager
def stages() -> Iterator[Callable[[str, int, int], None]]:
    """``with stages() as on_stage:``: a bar per stage (``floors``, ``features``, ...) that
    reports, made at its first report."""
    reporters: dict[str, Reporter] = {}

    def on_stage(stage: str, done: int, total: int) -> None:
        if stage not in reporters:
            reporters[stage] = Reporter(stage, STAGE_UNITS.get(stage, "steps"))
        reporters[stage].update(done, total)

    try:
        yield on_stage
    finally:
        for reporter in reporters.values():
            reporter.close()


@contextmanager
def sampling(label: str = "sample") -> Iterator[tuple[Callable[[int, int], None],
                                                      Callable[[str, int, int], None]]]:
    """``with sampling() as (on_progress, on_stage):``: sampler steps, then floors and
    feature extraction."""
    with reporting(label) as on_progress, stages() as on_stage:
        yield on_progress, on_stage


@contextmanager
def training_progress() -> Iterator[Callable[[Any], None]]:
    """The ``on_step`` callback of training: steps, loss and rate."""
    reporter = Reporter("train", "steps", "loss {loss:.4f}  {rate:.1f} it/s")
    try:
        yield lambda event: reporter.update(event.step, event.total_steps, loss=event.loss,
                                            rate=event.steps_per_second)
    finally:
        reporter.close()
