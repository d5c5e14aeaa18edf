"""``diffctl analyze STUDY``: call :func:`diffctl.study.analyze`, print the summary table and
draw the figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from diffctl_cli.console import make_console

console = make_console()


def analyze(
    study: Annotated[Path, typer.Argument(help="Study folder (diffctl study sizes --out).")],
    mse: Annotated[bool, typer.Option("--mse", help="MSE to the teacher per timestep bin "
                                      "and size (heatmap, CSV, JSON).")] = False,
    denoising: Annotated[bool, typer.Option("--denoising", help="Denoising figure: rows "
                                            "teacher and students, columns x_T to x_0.")
                         ] = False,
    time: Annotated[bool, typer.Option("--time", help="Sampling latency, training time, "
                                       "prediction error against the timestep.")] = False,
    trajectory: Annotated[bool, typer.Option("--trajectory", help="Distance of every "
                                             "student's sampling path from the teacher's.")
                          ] = False,
    all_: Annotated[bool, typer.Option("--all", help="All of the above (the default when "
                                       "none is given).")] = False,
    num_samples: Annotated[int, typer.Option(help="Held-out examples (MSE) and samples "
                                             "(trajectories).")] = 256,
    batch_size: Annotated[int, typer.Option(help="Batch of every model call and of the "
                                            "latency measurement.")] = 64,
    steps: Annotated[int | None, typer.Option(help="Sampler steps (default: the teacher's).")
                     ] = None,
    bins: Annotated[int, typer.Option(help="Timestep bins of the MSE heatmap.")] = 10,
    full_mse: Annotated[bool, typer.Option("--full-mse", help="MSE at every timestep (T "
                                           "bins, implies --mse; every size, as --mse).")
                        ] = False,
    repeats: Annotated[int, typer.Option(help="Timed repeats of the latency (median).")] = 5,
    metric: Annotated[str | None, typer.Option(help="Quality metric of the summary "
                                               "(default fid, else the first sample "
                                               "metric).")] = None,
    cpu: Annotated[bool, typer.Option("--cpu", help="Run every model on the CPU.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Print every part's numbers.")
                       ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    plots: Annotated[bool, typer.Option(help="Write PNG figures.")] = True,
) -> None:
    """Analyse a size study: students against their teacher, per size, distilled and from
    data; numbers in STUDY/analysis/*.json, figures next to them."""
    from diffctl.study.analysis import PARTS
    from diffctl.study.analysis import analyze as run_analysis
    from diffctl_cli.progress import Reporter

    mse = mse or full_mse
    chosen = [p for p, on in zip(PARTS, (mse, denoising, time, trajectory), strict=True) if on]
    parts = list(PARTS) if all_ or not chosen else chosen
    reporters: dict[str, Reporter] = {}

    def on_progress(label: str, done: int, total: int) -> None:
        if label not in reporters:
            reporters[label] = Reporter(label, "batches")
        reporters[label].update(done, total)

    try:
        result = run_analysis(study, parts, num_samples=num_samples, batch_size=batch_size,
                              steps=steps, bins=None if full_mse else bins,
                              repeats=repeats, metric=metric,
                              device="cpu" if cpu else "auto",
                              on_progress=on_progress if verbose else None)
    finally:
        for reporter in reporters.values():
            reporter.close()
    if as_json:
        print(json.dumps({"parts": result.parts, "summary": result.summary}, indent=1))
    else:
        console.print(summary_table(result))
        if verbose:
            _print_details(result)
    written = [result.folder / n for n in sorted(p.name for p in result.folder.iterdir())
               if n.endswith((".json", ".csv", ".npz"))]
    if plots:
        written += _plots(result)
    if not as_json:
        console.print(f"analysis ({', '.join(result.parts)}) in {result.folder}: "
                      + ", ".join(p.name for p in written), highlight=False)


def _plots(result) -> list[Path]:
    from diffctl_cli import study_plots as sp

    folder, out = result.folder, []
    if result.errors:
        out.append(sp.plot_mse_heatmap(result.errors, folder / "mse_heatmap.png"))
    if result.denoising:
        out.append(sp.plot_denoising(result.denoising, folder / "denoising.png"))
    if result.timing:
        out.append(sp.plot_time(result.timing, result.models, result.errors,
                                folder / "time.png"))
    if result.trajectory:
        out.append(sp.plot_trajectory(result.trajectory, folder / "trajectory.png"))
    if any(r["value"] is not None for r in result.quality["models"].values()):
        out.append(sp.plot_efficiency(result.quality, folder / "efficiency.png"))
    return out


def summary_table(result):
    """One row per size: params, latency, the quality metric distilled and from data with
    its floor, MSE to the teacher, test-loss, final-sample distance, training time."""
    from rich.table import Table

    from diffctl_cli.tables import fmt

    metric = result.quality.get("metric", "quality")
    table = Table(title=f"size study {result.folder.parent} ({metric}; d = distilled, "
                        "f = from data)")
    cols = ("size", "params", "ms/sample", f"{metric} d", f"{metric} f", "floor",
            "MSE→teacher d", "MSE→teacher f", "test-loss d", "test-loss f", "final dist d",
            "final dist f", "train s d", "train s f", "distil helps")
    for col in cols:
        table.add_column(col, justify="right")
    for row in result.summary:
        if row.get("mode") == "teacher":
            table.add_row(f"teacher {fmt(row['size'])}", fmt(row["params"]),
                          fmt(row["latency_ms"]), fmt(row["value_teacher"]), "",
                          fmt(row["floor"]), "", "", fmt(row["test_loss_teacher"]), "", "", "",
                          fmt(row["train_seconds_teacher"]), "", "")
            continue
        helps = {True: "yes", False: "no", None: ""}[row["distillation_helps"]]
        if row["distillation_helps"] is None and row.get("value_distilled") is not None \
                and row.get("value_from_data") is not None:
            helps = "within noise"
        table.add_row(fmt(row["size"]), fmt(row["params"]), fmt(row["latency_ms"]),
                      fmt(row["value_distilled"]), fmt(row["value_from_data"]),
                      fmt(row["floor"]), fmt(row["mse_to_teacher_distilled"]),
                      fmt(row["mse_to_teacher_from_data"]), fmt(row["test_loss_distilled"]),
                      fmt(row["test_loss_from_data"]), fmt(row["final_distance_distilled"]),
                      fmt(row["final_distance_from_data"]),
                      fmt(row["train_seconds_distilled"]),
                      fmt(row["train_seconds_from_data"]), helps)
    return table


def _print_details(result) -> None:
    from diffctl_cli.tables import fmt

    if result.errors:
        for name, values in result.errors["to_teacher"].items():
            console.print(f"MSE to teacher {name}: " + " ".join(fmt(v) for v in values),
                          highlight=False)
    if result.timing:
        for name, entry in result.timing["models"].items():
            console.print(f"latency {name}: {entry['ms_per_sample']:.3f} ms/sample "
                          f"(runs {', '.join(f'{s:.3f}' for s in entry['seconds'])} s)",
                          highlight=False)
    if result.trajectory:
        for name, entry in result.trajectory["models"].items():
            final = entry["final"]
            console.print(f"trajectory {name}: final distance mean {final['mean']:.4g}, "
                          f"median {final['median']:.4g} (unrelated samples "
                          f"{result.trajectory['reference']['mean']:.4g})", highlight=False)
    for name, row in result.quality["models"].items():
        console.print(f"quality {name}: {fmt(row['value'])} excess {fmt(row['excess'])} "
                      f"per Mparam {fmt(row['quality_per_mparam'])}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze)
