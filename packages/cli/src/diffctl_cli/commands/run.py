"""``diffctl run``, ``train``, ``sample``, ``eval`` and ``compare``: runs end to end.

Heavy imports (torch, the run machinery, matplotlib) happen inside the commands, so
``diffctl --help`` stays light.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Run config YAML.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override a config field: section.field=value (repeatable).")]


def _resolve(config: Path | None, overrides: list[str], **choices):
    """The resolved run config: embedded default or --config, then flags, then --set."""
    from diffctl.runs.config import apply_overrides, default_config_data, load_yaml, resolve

    data = load_yaml(config) if config else default_config_data()
    for section in ("dataset", "denoiser", "scheduler", "sampler"):
        name = choices.get(section)
        if name:
            data[section] = {"name": name}
    if choices.get("metrics"):
        data.setdefault("eval", {})["metrics"] = list(choices["metrics"])
    elif choices.get("dataset") and not config:
        data.setdefault("eval", {}).pop("metrics", None)  # pick the new dataset's defaults
    if choices.get("seed") is not None:
        data["seed"] = choices["seed"]
    if choices.get("steps") is not None:
        data.setdefault("sample", {})["num_steps"] = choices["steps"]
    return resolve(apply_overrides(data, overrides))


def _progress():
    """A rich progress bar fed by the trainer's step events."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/"
                        "{task.total} steps"), TextColumn("loss {task.fields[loss]:.4f}"),
                        TextColumn("{task.fields[rate]:.0f} it/s"), TimeRemainingColumn(),
                        console=err_console, transient=False)
    task = progress.add_task("train", total=1, loss=float("nan"), rate=0.0)

    def on_step(event) -> None:
        progress.update(task, total=event.total_steps, completed=event.step, loss=event.loss,
                        rate=event.steps_per_second)

    return progress, on_step


def _print_report(report: dict) -> None:
    ev = report.get("eval")
    train = report["train"]
    console.print(f"[bold]run[/] {report['run']}  device {train['device']}  "
                  f"params {train['parameters']:,}  epochs {train['epoch']}  "
                  f"steps {train['step']}  train {train['train_seconds']:.1f} s")
    if not ev:
        return
    table = Table(title=f"metrics on {ev['num_samples']} samples "
                  f"(sampling {ev['sample_seconds']:.1f} s)")
    for col in ("metric", "value", "floor mean", "floor p95", "value / floor mean"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for name, value in ev["metrics"].items():
        floor = ev["floors"].get(name)
        if floor:
            # a ratio only means something for floors well above zero; unbiased estimators
            # (MMD^2, KID) centre on zero: compare those with the p95 column instead
            ratio = f"{value / floor['mean']:.2f}" if floor["mean"] > 0 else "-"
            table.add_row(name, f"{value:.4g}", f"{floor['mean']:.4g}", f"{floor['p95']:.4g}",
                          ratio)
        else:
            table.add_row(name, f"{value:.4g}", "", "", "")
    console.print(table)


def run(
    config: ConfigOpt = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name.")] = None,
    denoiser: Annotated[str | None, typer.Option(help="Denoiser name.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Noise schedule name.")] = None,
    sampler: Annotated[str | None, typer.Option(help="Sampler name.")] = None,
    metric: Annotated[list[str] | None, typer.Option(help="Metric (repeatable).")] = None,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default runs/<time>-...).")]
    = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory.")]
    = None,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
) -> None:
    """Train, sample and evaluate one run (default: two-moons, residual-mlp, linear, ddim)."""
    _run_or_train(config, dataset, denoiser, scheduler, sampler, metric, set_, out, seed,
                  steps, resume, plots, evaluate=True)


def train(
    config: ConfigOpt = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset name.")] = None,
    denoiser: Annotated[str | None, typer.Option(help="Denoiser name.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="Noise schedule name.")] = None,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Run directory.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory.")]
    = None,
) -> None:
    """Train only: checkpoints and metrics.jsonl, no final sampling."""
    _run_or_train(config, dataset, denoiser, scheduler, None, None, set_, out, seed, None,
                  resume, True, evaluate=False)


def _run_or_train(config, dataset, denoiser, scheduler, sampler, metric, set_, out, seed,
                  steps, resume, plots, evaluate: bool) -> None:
    from diffctl.errors import UsageError
    from diffctl.runs.config import load_yaml, resolve
    from diffctl.runs.run import default_run_dir, run_experiment

    if resume is not None:
        if not (resume / "config.yaml").is_file():
            raise UsageError(f"no run to resume at {resume} (config.yaml missing)")
        cfg = resolve(load_yaml(resume / "config.yaml"))
        out = resume
    else:
        cfg = _resolve(config, set_ or [], dataset=dataset, denoiser=denoiser,
                       scheduler=scheduler, sampler=sampler, metrics=metric, seed=seed,
                       steps=steps)
        out = out or default_run_dir(cfg)
    progress, on_step = _progress()
    with progress:
        report = run_experiment(cfg, out, resume=resume is not None, on_step=on_step,
                                evaluate=evaluate)
    _print_report(report)
    if plots:
        from diffctl_cli.plots import plot_run

        written = plot_run(out)
        console.print("plots: " + ", ".join(p.name for p in written))


def sample(
    run_dir: Annotated[Path, typer.Option("--run", help="Run directory.")],
    sampler: Annotated[str | None, typer.Option(help="Sampler (default: the run's).")] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps.")] = None,
    num_samples: Annotated[int | None, typer.Option(help="How many samples.")] = None,
    checkpoint: Annotated[str, typer.Option(help="last, best or a checkpoint folder.")]
    = "last",
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 1,
    set_: SetOpt = None,
) -> None:
    """Draw samples from a trained run with any sampler; writes samples-<sampler>-<steps>.npy."""
    import numpy as np

    from diffctl.registry import get_registry
    from diffctl.runs.config import apply_overrides
    from diffctl.runs.run import generate, load_run_model, metric_values

    cfg, components, model = load_run_model(run_dir, checkpoint=checkpoint)
    registry = get_registry()
    if sampler or set_:
        data = {"name": sampler or cfg.sampler.name}
        if not sampler:
            data |= cfg.sampler.options()
        section = apply_overrides({"sampler": data}, [s for s in (set_ or [])
                                                      if s.startswith("sampler.")])
        components.sampler = registry.create("sampler", section["sampler"]["name"],
                                             {k: v for k, v in section["sampler"].items()
                                              if k != "name"})
    name = sampler or cfg.sampler.name
    n = num_samples or cfg.sample.num_samples
    k = steps or cfg.sample.num_steps
    samples = generate(components, model, n, k, seed, cfg.sample.batch_size)
    path = run_dir / f"samples-{name}-{k}.npy"
    np.save(path, samples.numpy())
    console.print(f"wrote {path} ({n} samples, {name}, {k} steps)")
    if cfg.eval.metrics:
        real = components.dataset.reference(n, seed + 1)
        values = metric_values(registry, cfg.eval.metrics, samples, real)
        console.print_json(json.dumps(values))
    if samples.ndim == 2 and samples.shape[1] == 2:
        from diffctl_cli.plots import plot_scatter

        real = components.dataset.reference(n, seed + 1).numpy()
        plot_scatter(samples.numpy(), real, path.with_suffix(".png"), f"{name}, {k} steps")


def evaluate(
    run_dir: Annotated[Path, typer.Option("--run", help="Run directory.")],
    checkpoints: Annotated[str, typer.Option(help="all, last, best or comma-separated names.")]
    = "all",
    workers: Annotated[int, typer.Option(help="Parallel worker processes.")] = 1,
    metric: Annotated[list[str] | None, typer.Option(help="Metric (default: the run's).")]
    = None,
    num_samples: Annotated[int | None, typer.Option(help="Samples per checkpoint.")] = None,
    steps: Annotated[int | None, typer.Option(help="Sampler steps.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 1,
) -> None:
    """Evaluate saved checkpoints in parallel and plot metric against epoch."""
    import time

    from diffctl.errors import UsageError
    from diffctl.runs.config import load_yaml, resolve
    from diffctl.runs.sweep import sweep
    from diffctl.training.checkpoint import list_checkpoints, read_pointer

    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"not a run directory (no config.yaml): {run_dir}")
    cfg = resolve(load_yaml(run_dir / "config.yaml"))
    ckdir = run_dir / "checkpoints"
    if checkpoints == "all":
        names = [p.name for p in list_checkpoints(ckdir)]
    elif checkpoints in ("last", "best"):
        p = read_pointer(ckdir / checkpoints)
        names = [p.name] if p else []
    else:
        names = [c.strip() for c in checkpoints.split(",") if c.strip()]
        missing = [c for c in names if not (ckdir / c / "state.json").exists()]
        if missing:
            raise UsageError(f"no such checkpoint(s) in {ckdir}: {', '.join(missing)}")
    metrics = list(metric or cfg.eval.metrics)
    if not metrics:
        raise UsageError("no metrics to evaluate: pass --metric or set eval.metrics")
    started = time.perf_counter()
    results = sweep(run_dir, names, metrics, num_samples or cfg.eval.during_training_samples,
                    steps, seed, workers)
    seconds = time.perf_counter() - started
    (run_dir / "eval").mkdir(exist_ok=True)
    with open(run_dir / "eval" / "checkpoints.jsonl", "w") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    table = Table(title=f"{len(results)} checkpoints, {workers} worker(s), {seconds:.1f} s")
    for col in ("checkpoint", "epoch", *metrics):
        table.add_column(col)
    for r in results:
        table.add_row(r["checkpoint"], str(r["epoch"]),
                      *(f"{r[m]:.4g}" if m in r else "" for m in metrics))
    console.print(table)
    from diffctl_cli.plots import plot_metric_curves

    plot_metric_curves([{k: v for k, v in r.items() if k != "seconds"} for r in results],
                       run_dir / "eval" / "metric_vs_epoch.png")


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    metric: Annotated[list[str] | None, typer.Option(help="Metrics to compare.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the comparison plot.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Side-by-side table: final values, best value and epoch, convergence, stability."""
    from diffctl.runs.compare import compare_runs, load_history

    result = compare_runs(runs, metric)
    if as_json:
        console.print_json(json.dumps(result))
        return
    table = Table(title="run comparison")
    for col in ("run", "metric", "final", "best", "best epoch", "epochs to 10% of best",
                "CV last 5"):
        table.add_column(col)
    for run_name, data in result.items():
        for m, s in data["summary"].items():
            if s:
                table.add_row(Path(run_name).name, m, f"{s['final']:.4g}", f"{s['best']:.4g}",
                              str(s["best_epoch"]), str(s["epochs_to_within_10pct"]),
                              f"{s['cv_last']:.3f}")
    console.print(table)
    if out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        out.mkdir(parents=True, exist_ok=True)
        names = sorted({m for d in result.values() for m, s in d["summary"].items() if s})
        fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
        for ax, m in zip(axes[0], names, strict=True):
            for run in runs:
                pts = [(r["epoch"], r[m]) for r in load_history(run) if m in r]
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3,
                        label=run.name)
            ax.set_title(m)
            ax.set_xlabel("epoch")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "compare.png", dpi=110)
        console.print(f"plot: {out / 'compare.png'}")


def register(app: typer.Typer) -> None:
    """Add the run commands to the ``diffctl`` app."""
    app.command("run")(run)
    app.command("train")(train)
    app.command("sample")(sample)
    app.command("eval")(evaluate)
    app.command("compare")(compare)
