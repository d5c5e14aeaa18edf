"""``diffctl compare``: print and plot :func:`diffctl.runs.comparison`'s data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from diffctl_cli.console import make_console

console = make_console()


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    metric: Annotated[list[str] | None, typer.Option(help="Metrics to compare.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the comparison plot.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Side by side: final value against its floor, rank, best checkpoint, convergence and
    stability of each metric; a run that lacks a metric says so."""
    from diffctl.errors import UsageError
    from diffctl.runs import compare as compare_runs
    from diffctl_cli.tables import fmt

    if out is not None and out.exists() and not out.is_dir():  # refused before any work
        raise UsageError(f"--out {out} exists and is not a directory")
    result = compare_runs(runs, metric)
    if as_json:
        print(json.dumps(result, indent=1))
        return
    rank = {m: {run: i + 1 for i, group in enumerate(groups) for run in group}
            for m, groups in result["ranking"].items()}
    table = Table(title="run comparison (rank: by distance from the real-vs-real floor)")
    for col in ("run", "metric", "final", "floor", "excess", "rank", "best (epoch)",
                "within 10% at", "CV last 5"):
        table.add_column(col, justify="left" if col in ("run", "metric") else "right")
    for run_name, data in result["runs"].items():
        for m in result["metrics"]:
            name = Path(run_name).name
            if m in data["missing"]:
                table.add_row(name, m, "missing", "", "", "", "", "", "")
                continue
            floor = data["floors"].get(m)
            floor_text = ""
            if floor:
                floor_text = fmt(floor["p95"]) + " p95" if floor.get("zero_centred") \
                    else fmt(floor["mean"])
            s = data["summary"].get(m) or {}
            best = f"{fmt(s['best'])} ({s['best_epoch']})" if s else ""
            table.add_row(name, m, fmt(data["final"].get(m)), floor_text,
                          fmt(data["excess"].get(m)), str(rank[m].get(run_name, "")), best,
                          fmt(s.get("epochs_to_within_10pct")), fmt(s.get("cv_last")))
    console.print(table)
    for run_name, data in result["runs"].items():
        console.print(f"{Path(run_name).name}: history from {data['source'] or 'nowhere'}"
                      + (f"; lacks {', '.join(data['missing'])}" if data["missing"] else ""),
                      highlight=False)
    if out is not None:
        from diffctl_cli.plots import plot_comparison

        console.print(f"plot: {plot_comparison(result, out)}")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
