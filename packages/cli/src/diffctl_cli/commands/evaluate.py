"""``diffctl eval``: evaluate a run's checkpoints (:meth:`diffctl.runs.Run.evaluate`), print
the table, plot metric against epoch. A checkpoint that fails is listed and the command
exits 1 after evaluating the others."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from diffctl_cli.console import make_console

console = make_console()


def evaluate(
    run_dir: Annotated[Path, typer.Option("--run", help="Run directory.")],
    checkpoints: Annotated[str, typer.Option(help="all, last, best or comma-separated names.")]
    = "all",
    workers: Annotated[int, typer.Option(help="Parallel worker processes.")] = 1,
    threads: Annotated[int | None, typer.Option(
        help="Torch/BLAS threads per worker (default: cores // workers).")] = None,
    metric: Annotated[list[str] | None, typer.Option(help="Metric (default: the run's).")]
    = None,
    num_samples: Annotated[int | None, typer.Option(
        help="Samples per checkpoint (default: the run's sample.num_samples).")] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps.")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Run seed of the sampling and reference streams (default: the run's).")] = None,
    floors: Annotated[bool, typer.Option(help="Also compute each sample metric's "
                                         "real-vs-real floor at this sample size.")] = True,
    device: Annotated[str | None, typer.Option(
        help="auto, cpu, cuda or mps (default: the run's train.device).")] = None,
    devices: Annotated[str | None, typer.Option(
        help="Comma-separated devices (cuda:0,cuda:1); checkpoints are assigned round-robin, "
        "so --workers N spreads over them.")] = None,
    generated: Annotated[Path | None, typer.Option(
        help="Score this folder of PNG images (e.g. from 'sample --png-dir' or another tool) "
        "instead of the run's checkpoints.")] = None,
) -> None:
    """Evaluate saved checkpoints in parallel; writes eval/<time>-<settings>/ (never over an
    earlier evaluation) with the rows, floors and a metric-vs-epoch plot."""
    from diffctl.runs import Run
    from diffctl_cli.progress import reporting

    run = Run.open(run_dir)
    if generated is not None:
        from diffctl_cli.tables import metrics_table

        result = run.evaluate_images(generated, metrics=metric, seed=seed, floors=floors,
                                     device=device)
        console.print(metrics_table(f"{generated}: {result['num_samples']} images",
                                    result["metrics"], result["floors"]))
        return
    with reporting("eval", "checkpoints") as on_progress:
        result = run.evaluate(checkpoints=checkpoints, metrics=metric, num_samples=num_samples,
                              steps=steps, seed=seed, workers=workers, threads=threads,
                              device=device, floors=floors, on_progress=on_progress,
                              devices=[d.strip() for d in devices.split(",") if d.strip()]
                              if devices else None)
    metrics = result.metrics
    table = Table(title=f"{len(result.rows)} checkpoints, {result.workers} worker(s), "
                  f"{result.num_samples} samples, {result.seconds:.1f} s")
    for col in ("checkpoint", "epoch", *metrics):
        table.add_column(col, justify="left" if col == "checkpoint" else "right")
    for r in result.rows:
        table.add_row(r["checkpoint"], str(r["epoch"]),
                      *(f"{r[m]:.4g}" if m in r else "" for m in metrics))
    for stat in ("mean", "p95"):
        if any(m in result.floors for m in metrics):
            table.add_row(f"floor {stat}", "",
                          *(f"{result.floors[m][stat]:.4g}" if m in result.floors else ""
                            for m in metrics))
    console.print(table)
    if result.rows:
        from diffctl_cli.plots import plot_metric_curves

        plot_metric_curves([{k: v for k, v in r.items() if k != "seconds"} for r in result.rows],
                           result.folder / "metric_vs_epoch.png", floors=result.floors)
    console.print(f"results: {result.folder}")
    if result.failures:
        for failure in result.failures:
            console.print(f"[red]failed[/] {failure['checkpoint']}: {failure['error']}",
                          highlight=False)
        console.print(f"{len(result.failures)} of {len(result.failures) + len(result.rows)} "
                      "checkpoints could not be evaluated")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
