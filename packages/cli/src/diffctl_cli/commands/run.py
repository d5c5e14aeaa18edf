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
    """Training progress fed by the trainer's step events: a rich bar on a terminal, started at
    the first step (so an error before training prints nothing else), and a plain line every
    10% of the steps when stderr is a file or a pipe (logs of long runs)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/"
                        "{task.total} steps"), TextColumn("loss {task.fields[loss]:.4f}"),
                        TextColumn("{task.fields[rate]:.1f} it/s"), TimeRemainingColumn(),
                        console=err_console, transient=False)
    task = progress.add_task("train", total=1, loss=float("nan"), rate=0.0)
    logged: set[int] = set()

    def on_step(event) -> None:
        if not err_console.is_terminal:
            tenth = 10 * event.step // max(event.total_steps, 1)
            if tenth not in logged:
                logged.add(tenth)
                err_console.print(f"train {event.step}/{event.total_steps} steps  loss "
                                  f"{event.loss:.4f}  {event.steps_per_second:.1f} it/s",
                                  highlight=False)
            return
        if not progress.live.is_started:
            progress.start()
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
    rec = ev.get("reconstruction")
    if rec:
        for name, value in rec["metrics"].items():
            table.add_row(f"{name} (x0 from t={rec['t']})", f"{value:.4g}", "", "", "")
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
    from diffctl.training.distributed import dist_info

    if resume is not None:
        if not (resume / "config.yaml").is_file():
            raise UsageError(f"no run to resume at {resume} (config.yaml missing)")
        cfg = resolve(load_yaml(resume / "config.yaml"))
        out = resume
    else:
        cfg = _resolve(config, set_ or [], dataset=dataset, denoiser=denoiser,
                       scheduler=scheduler, sampler=sampler, metrics=metric, seed=seed,
                       steps=steps)
        if out is None and dist_info().enabled:
            raise UsageError("under torchrun pass --out, so that every process uses the same "
                             "run directory")
        out = out or default_run_dir(cfg)
    if not dist_info().is_main:  # torchrun: rank 0 reports, plots and shows progress
        run_experiment(cfg, out, resume=resume is not None, evaluate=evaluate)
        return
    progress, on_step = _progress()
    try:
        report = run_experiment(cfg, out, resume=resume is not None, on_step=on_step,
                                evaluate=evaluate)
    finally:
        progress.stop()
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
    grid: Annotated[bool, typer.Option("--grid", help="Images: write a PNG grid (one row "
                                       "per class for class-conditional runs).")] = False,
    progressive: Annotated[bool, typer.Option(
        "--progressive", help="Images: write the 10x10 denoising-progression grid.")] = False,
    label: Annotated[int | None, typer.Option(help="Class label for every sample "
                                              "(class-conditional runs).")] = None,
    inpaint: Annotated[str | None, typer.Option(
        help="Images: fill a masked region of held-out images (left, right, top, bottom, "
        "center) and report PSNR of the filled region.")] = None,
    set_: SetOpt = None,
) -> None:
    """Draw samples from a trained run with any sampler; writes samples-<sampler>-<steps>.npy."""
    import numpy as np
    import torch

    from diffctl.errors import UsageError
    from diffctl.registry import get_registry
    from diffctl.runs.config import apply_overrides
    from diffctl.runs.run import (
        fit_denoiser_to_data,
        generate,
        load_run_model,
        metric_values,
        num_classes,
        sample_batch_size,
    )
    from diffctl.samplers.base import Trajectory

    cfg, components, model = load_run_model(run_dir, checkpoint=checkpoint)
    registry = get_registry()
    if sampler or set_:
        data = {"name": sampler or cfg.sampler.name}
        if not sampler:
            data |= cfg.sampler.options()
        section = apply_overrides({"sampler": data}, [s for s in (set_ or [])
                                                      if s.startswith("sampler.")])
        options = {k: v for k, v in section["sampler"].items() if k != "name"}
        components.sampler = registry.create("sampler", section["sampler"]["name"], options)
        fit_denoiser_to_data({"num_classes": num_classes(model)}, cfg.denoiser.name,
                             components.dataset, cfg.dataset.name,
                             float(getattr(components.sampler.config, "guidance_scale", 1.0)))
    images = len(components.dataset.sample_shape) == 3
    if (grid or progressive or inpaint) and not images:
        raise UsageError("--grid, --progressive and --inpaint are for image runs")
    k_classes = num_classes(model)
    if label is not None and not (k_classes and 0 <= label < k_classes):
        raise UsageError(f"--label needs a class-conditional run and a label in "
                         f"[0, {k_classes or 0}); got {label}")
    name = sampler or cfg.sampler.name
    n = num_samples or cfg.sample.num_samples
    k = steps or cfg.sample.num_steps
    if inpaint:
        _inpaint(run_dir, cfg, components, model, n, k, seed, inpaint, name, registry)
        return
    labels = torch.full((n,), label, dtype=torch.long) if label is not None else None
    traj = Trajectory(every=max(1, k // 10)) if progressive else None
    samples = generate(components, model, n, k, seed, sample_batch_size(cfg, components),
                       traj, labels=labels)
    path = run_dir / f"samples-{name}-{k}.npy"
    np.save(path, samples.numpy())
    console.print(f"wrote {path} ({n} samples, {name}, {k} steps)")
    if cfg.eval.metrics:
        real = components.dataset.reference(n, seed + 1)
        values = metric_values(registry, cfg.eval.metrics, samples, real,
                               cfg.eval.metric_options)
        console.print_json(json.dumps(values))
    if samples.ndim == 2 and samples.shape[1] == 2:
        from diffctl_cli.plots import plot_scatter

        real = components.dataset.reference(n, seed + 1).numpy()
        plot_scatter(samples.numpy(), real, path.with_suffix(".png"), f"{name}, {k} steps")
    if grid:
        from diffctl_cli.image_plots import class_grid, sample_grid

        if k_classes and label is None:
            out = class_grid(samples.numpy(), np.arange(n) % k_classes, k_classes,
                             path.with_suffix(".png"))
        else:
            out = sample_grid(samples.numpy(), path.with_suffix(".png"))
        console.print(f"grid: {out}")
    if traj is not None:
        from diffctl_cli.image_plots import progression_grid

        xs = np.stack([x[:10].numpy() for x in traj.xs])
        out = progression_grid(xs, path.with_name(f"progression-{name}-{k}.png"))
        console.print(f"progression: {out} ({xs.shape[1]} samples x {xs.shape[0]} steps)")


def inpaint_mask(kind: str, shape: tuple[int, ...]):
    """A (1, 1, H, W) mask, 1 where pixels are known: ``left`` keeps the left half, etc."""
    import torch

    from diffctl.errors import UsageError

    _, h, w = shape
    mask = torch.zeros(1, 1, h, w)
    regions = {"left": (slice(None), slice(0, w // 2)), "right": (slice(None), slice(w // 2, w)),
               "top": (slice(0, h // 2), slice(None)), "bottom": (slice(h // 2, h), slice(None))}
    if kind == "center":
        mask[:] = 1
        mask[..., h // 4:h - h // 4, w // 4:w - w // 4] = 0
    elif kind in regions:
        mask[(..., *regions[kind])] = 1
    else:
        raise UsageError(f"unknown --inpaint region {kind!r}; choose left, right, top, bottom "
                         "or center")
    return mask


def _inpaint(run_dir, cfg, components, model, n, k, seed, kind, name, registry) -> None:
    """Fill the unknown region of held-out images; grid of masked | filled | original."""
    import numpy as np
    import torch

    from diffctl.runs.run import class_labels
    from diffctl.samplers.base import Inpaint
    from diffctl.samplers.noise import initial_noise
    from diffctl_cli.image_plots import save_png, tile

    shape = tuple(components.dataset.sample_shape)
    mask = inpaint_mask(kind, shape)
    test = components.dataset.test_tensor()[:n]
    test_labels = getattr(components.dataset, "test_labels", lambda: None)()
    device = next(model.parameters()).device
    x_T, gen = initial_noise((len(test), *shape), seed, device=device)
    cond = class_labels(model, 0, len(test), device,
                        test_labels[:len(test)] if test_labels is not None else None)
    out = components.sampler.sample(model, components.scheduler, x_T, k, cond=cond,
                                    generator=gen, inpaint=Inpaint(mask, test.to(device))).cpu()
    unknown = (1 - mask).expand_as(test).bool()
    mse = float(((out - test)[unknown] ** 2).mean())
    psnr = 10 * np.log10(4.0 / max(mse, 1e-12))  # images span [-1, 1]: peak-to-peak 2
    masked = test * mask + (1 - mask) * -1.0
    rows = torch.stack([masked[:10], out[:10], test[:10]], dim=1).reshape(-1, *shape)
    path = run_dir / f"inpaint-{kind}-{name}-{k}.png"
    save_png(tile(rows.numpy(), 3), path)  # one row per image: masked, filled, original
    console.print(f"inpainted {len(test)} held-out images ({kind} known, {name}, {k} steps): "
                  f"PSNR of the filled region {psnr:.2f} dB; grid: {path}")


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
