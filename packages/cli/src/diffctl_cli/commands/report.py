"""``diffctl report``: one self-contained HTML page of a run or a study folder, built by
:mod:`diffctl_cli.html_report` from the folder's files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffctl_cli.console import make_console

console = make_console()


def report(
    target: Annotated[Path, typer.Argument(
        help="A run directory, or a study folder (study.json / sweep.json, or any folder "
        "holding run directories).")],
    out: Annotated[Path | None, typer.Option(
        help="The HTML file to write (default <target>/report.html).")] = None,
    plots: Annotated[bool, typer.Option(
        help="Draw each run's plots from its files first (as 'diffctl run' does), so the "
        "page shows them even for runs trained through the library.")] = True,
) -> None:
    """Write one HTML page (config, metrics with floors, every plot inlined, the eval
    folders' tables and pictures) that can be sent as it is."""
    from diffctl.errors import UsageError
    from diffctl.runs.directory import RunDirectory
    from diffctl_cli.html_report import find_runs, write_report

    if not target.is_dir():
        raise UsageError(f"not a folder: {target}")
    runs = [target] if RunDirectory(target).exists() else find_runs(target)
    if plots:
        from diffctl_cli.plots import plot_run

        for run in runs:
            plot_run(run)
    path = write_report(target, out)
    size = path.stat().st_size
    console.print(f"report: {path} ({size / 1e6:.1f} MB, {len(runs)} run"
                  f"{'' if len(runs) == 1 else 's'})")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
