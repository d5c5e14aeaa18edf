"""The consoles commands print to: a terminal's own width, 200 columns in a pipe or a log file
(rich's default of 80 would cut table cells there)."""

from __future__ import annotations

from rich.console import Console


def make_console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=200)
