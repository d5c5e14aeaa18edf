"""``diffctl eval``: evaluate a run's checkpoints (:meth:`diffctl.runs.Run.evaluate`), print
the table, plot metric against epoch and draw the samples each checkpoint kept (one picture
each and a strip across epochs). A checkpoint that fails is listed and the command exits 1
after evaluating the others."""

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
    keep_samples: Annotated[int | None, typer.Option(
        help="Samples of each checkpoint kept and drawn (default 16 images or 1000 points; "
        "0: none).")] = None,
) -> None:
    """Evaluate saved checkpoints in parallel; writes eval/<time>-<settings>/ (never over an
    earlier evaluation) with the rows, floors, a metric-vs-epoch plot and a picture of each
    checkpoint's samples (<checkpoint>.png, strip.png)."""
    from diffctl.runs import Run
    from diffctl_cli.progress import reporting, stages

    run = Run.open(run_dir)
    if generated is not None:
        from diffctl_cli.tables import metrics_table

        with stages() as on_stage:
            result = run.evaluate_images(generated, metrics=metric, seed=seed, floors=floors,
                                         device=device, on_stage=on_stage)
        console.print(metrics_table(f"{generated}: {result['num_samples']} images",
                                    result["metrics"], result["floors"]))
        return
    with reporting("eval", "checkpoints") as on_progress, stages() as on_stage:
        result = run.evaluate(checkpoints=checkpoints, metrics=metric, num_samples=num_samples,
                              steps=steps, seed=seed, workers=workers, threads=threads,
                              device=device, floors=floors, keep_samples=keep_samples,
                              on_progress=on_progress, on_stage=on_stage,
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
        from diffctl.runs import directory as files
        from diffctl_cli.plots import plot_metric_curves

        plot_metric_curves([{k: v for k, v in r.items() if k != "seconds"} for r in result.rows],
                           result.folder / files.EVAL_PLOT, floors=result.floors)
    if result.samples:
        console.print(f"samples: {_draw_samples(result)}")
    console.print(f"results: {result.folder}")
    if result.failures:
        for failure in result.failures:
            console.print(f"[red]failed[/] {failure['checkpoint']}: {failure['error']}",
                          highlight=False)
        console.print(f"{len(result.failures)} of {len(result.failures) + len(result.rows)} "
                      "checkpoints could not be evaluated")
        raise typer.Exit(1)


def _draw_samples(result) -> str:
    """``<checkpoint>.png`` for every checkpoint that kept samples, and ``strip.png``."""
    import numpy as np

    from diffctl.runs import directory as files
    from diffctl_cli.sample_plots import plot_checkpoint_samples, plot_sample_strip

    real = np.load(result.real) if result.real is not None else None
    epochs = {r["checkpoint"]: r["epoch"] for r in result.rows}
    items = []
    for name, path in sorted(result.samples.items(), key=lambda kv: epochs.get(kv[0], 0)):
        samples = np.load(path)
        label = f"epoch {epochs[name]}" if name in epochs else name
        plot_checkpoint_samples(samples, real, files.eval_picture_path(result.folder, name),
                                f"{name} ({label}), {len(samples)} samples")
        items.append((label, samples))
    kind = "images" if items[0][1].ndim == 4 else "points"
    plot_sample_strip(items, real, result.folder / files.EVAL_STRIP,
                      f"the first {len(items[0][1])} {kind} of each checkpoint, same x_T")
    return f"{len(items)} checkpoint pictures and {files.EVAL_STRIP} in {result.folder}"


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
