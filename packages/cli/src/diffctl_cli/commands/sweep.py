"""``diffctl sweep``: parse a grid, call :class:`diffctl.runs.sweep.Sweep`, print a line per
point and a table at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffctl_cli.console import make_console

console = make_console()


def sweep(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Base run config YAML "
                                                "(default: the embedded default).")] = None,
    grid: Annotated[list[str] | None, typer.Option(
        help="A swept field and its values: section.field=v1,v2 (repeatable; the sweep is "
        "every combination).")] = None,
    grid_file: Annotated[Path | None, typer.Option(
        help="YAML mapping of swept fields to lists of values (with or instead of --grid).")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a field of every point: section.field=value (repeatable).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Sweep folder (one run directory per "
                                             "point). Running the same sweep again there "
                                             "continues it.")] = None,
    resume: Annotated[Path | None, typer.Option(
        help="Continue the sweep in this folder (finished points are skipped).")] = None,
    workers: Annotated[int, typer.Option(help="Points trained in parallel processes.")] = 1,
    threads: Annotated[int | None, typer.Option(
        help="Torch threads per worker (default: cores // workers).")] = None,
) -> None:
    """Train a grid of runs that differ in some config fields, each a normal run directory
    under --out; a killed sweep continues where it stopped."""
    from diffctl.errors import UsageError
    from diffctl.runs.config import load_yaml
    from diffctl.runs.sweep import Sweep, parse_grid

    if resume is not None:
        given = [n for n, v in (("--config", config), ("--grid", grid),
                                ("--grid-file", grid_file), ("--set", set_), ("--out", out))
                 if v]
        if given:
            raise UsageError(f"--resume continues a sweep as it was created; it does not take "
                             f"{', '.join(given)} (only --workers and --threads)")
        the_sweep = Sweep.open(resume)
    else:
        if out is None:
            raise UsageError("--out names the sweep folder (or pass --resume FOLDER)")
        values = parse_grid(grid or [])
        if grid_file is not None:
            for key, listed in load_yaml(grid_file).items():
                if key in values:
                    raise UsageError(f"{key} is swept by --grid and by {grid_file}")
                values[key] = listed if isinstance(listed, list) else [listed]
        base = load_yaml(config) if config is not None else None
        the_sweep = Sweep.create(base, out, grid=values, overrides=set_ or [])
    run_and_report(the_sweep, workers, threads)


def run_and_report(the_sweep, workers: int, threads: int | None, runner=None) -> None:
    """Run a sweep (through ``runner``, default ``the_sweep.run``) with a line per point,
    then the table; exit 1 when a point failed."""
    runner = runner or the_sweep.run
    results = runner(workers=workers, threads=threads, on_point=point_line)
    console.print(results_table(the_sweep, results))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        console.print(f"{len(failed)} of {len(results)} points failed; run the same command "
                      "again to retry them", highlight=False)
        raise typer.Exit(1)


def point_line(result) -> None:
    """One line as a point starts, finishes, is skipped or fails."""
    from diffctl_cli.tables import fmt

    if result.status == "started":
        console.print(f"start   {result.name}", highlight=False)
        return
    if result.status == "failed":
        console.print(f"failed  {result.name}: {result.error}", highlight=False)
        return
    if result.status == "skipped":
        console.print(f"skip    {result.name} (finished before)", highlight=False)
        return
    train = result.train or {}
    shown = ", ".join(f"{k} {fmt(v)}" for k, v in list(result.metrics.items())[:3])
    stop = f"; {train['stop_reason']}" if train.get("stop_reason") else ""
    console.print(f"{result.status:<8}{result.name}: {train.get('epoch')} epochs, batch "
                  f"{train.get('batch_size')}, {fmt(train.get('train_seconds'))} s training, "
                  f"{result.seconds:.1f} s in all; {shown}{stop}", highlight=False)


def results_table(the_sweep, results):
    """Every point's swept values and final metrics (from its metrics.json)."""
    from rich.table import Table

    from diffctl_cli.tables import fmt

    reports = the_sweep.reports()
    status = {r.name: r.status for r in results}
    keys = list(dict.fromkeys(k for p in the_sweep.points for k in p.values))
    metrics = list(dict.fromkeys(m for rep in reports.values() if rep
                                 for m in rep["eval"]["metrics"]))
    table = Table(title=f"sweep {the_sweep.path}")
    for col in ("point", *keys, "status", "params", "train s", *metrics):
        table.add_column(col, justify="left" if col == "point" else "right")
    for p in the_sweep.points:
        rep = reports[p.name] or {}
        train, values = rep.get("train") or {}, (rep.get("eval") or {}).get("metrics") or {}
        table.add_row(p.name, *[fmt(_short(p.values.get(k))) for k in keys],
                      status.get(p.name, "-"), fmt(train.get("parameters")),
                      fmt(train.get("train_seconds")), *[fmt(values.get(m)) for m in metrics])
    return table


def _short(value):
    """A swept value as a table cell: a whole section reads "set" (e.g. distill), null "-"."""
    if isinstance(value, dict):
        return "set"
    return "-" if value is None else value


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
