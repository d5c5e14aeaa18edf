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


def _metrics_table(title: str, values: dict, floors: dict) -> Table:
    """Each value next to its real-vs-real floor (mean, p95) and their ratio: to the mean,
    or for estimators centred on zero (unbiased MMD^2, KID) to the p95 (DESIGN.md)."""
    table = Table(title=title)
    for col in ("metric", "value", "floor mean", "floor p95", "value / floor"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for name, value in values.items():
        floor = floors.get(name)
        if floor:
            if floor.get("zero_centred"):
                ratio = f"{value / floor['p95']:.2f} x p95" if floor["p95"] > 0 else "-"
            else:
                ratio = f"{value / floor['mean']:.2f}" if floor["mean"] > 0 else "-"
            table.add_row(name, f"{value:.4g}", f"{floor['mean']:.4g}", f"{floor['p95']:.4g}",
                          ratio)
        else:
            table.add_row(name, f"{value:.4g}", "", "", "")
    return table


def _print_report(report: dict) -> None:
    ev = report.get("eval")
    train = report["train"]
    console.print(f"[bold]run[/] {report['run']}  device {train['device']}  "
                  f"params {train['parameters']:,}  epochs {train['epoch']}  "
                  f"steps {train['step']}  train {train['train_seconds']:.1f} s")
    if not ev:
        return
    table = _metrics_table(f"metrics on {ev['num_samples']} samples "
                           f"(sampling {ev['sample_seconds']:.1f} s)", ev["metrics"],
                           ev["floors"])
    rec = ev.get("reconstruction")
    if rec:
        for name, value in rec["metrics"].items():
            table.add_row(f"{name} (x0 from t={rec['t']})", f"{value:.4g}", "", "", "")
    console.print(table)
    metadata = {**ev.get("metric_metadata", {}), **(rec or {}).get("metric_metadata", {})}
    for name, md in metadata.items():
        console.print(f"{name}: {_describe_metadata(md)}", highlight=False)


def _describe_metadata(md: dict) -> str:
    """One line of an image metric's metadata: extractor, weights, counts, resize, device."""
    parts = []
    if md.get("feature_extractor"):
        sha = md.get("weights_sha256")
        parts.append(md["feature_extractor"] + (f" (weights sha256 {sha[:12]})" if sha else ""))
    if md.get("num_generated") is not None:
        real = md.get("num_real")
        parts.append(f"{md['num_generated']} generated" + (f" vs {real} real" if real else ""))
    for key in ("resize", "reference", "device"):
        if md.get(key):
            parts.append(f"{key} {md[key]}")
    return ", ".join(parts) or "-"


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
        if progress.live.is_started:  # stopping a bar that never started prints a blank line
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
        help="Images: keep one region of held-out images (left, right, top, bottom, or "
        "center: keep the border) and fill the rest; reports PSNR of the filled region and "
        "SSIM (default 100 images).")] = None,
    set_: SetOpt = None,
    device: Annotated[str | None, typer.Option(
        help="auto, cpu, cuda or mps (default: the run's train.device).")] = None,
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

    cfg, components, model = load_run_model(run_dir, checkpoint=checkpoint, device=device)
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
        n = num_samples or min(n, 100)  # held-out images to fill
        _inpaint(run_dir, cfg, components, model, n, k, seed, inpaint, name, registry)
        return
    labels = torch.full((n,), label, dtype=torch.long) if label is not None else None
    traj = Trajectory(frames=10) if progressive else None  # x_T .. x_0, 10 states
    samples = generate(components, model, n, k, seed, sample_batch_size(cfg, components),
                       traj, labels=labels)
    path = run_dir / f"samples-{name}-{k}.npy"
    np.save(path, samples.numpy())
    console.print(f"wrote {path} ({n} samples, {name}, {k} steps)")
    if cfg.eval.metrics:
        from diffctl.runs.run import heldout_inputs, metric_options_on

        options = metric_options_on(cfg, registry, next(model.parameters()).device)
        real = components.dataset.reference(n, seed + 1)
        values = metric_values(registry, cfg.eval.metrics, samples, real, options,
                               heldout_inputs(cfg, components, model))
        floor_values = _floors(cfg, registry, cfg.eval.metrics, n, options) \
            if cfg.eval.floor_draws else {}
        console.print(_metrics_table(f"metrics on {n} samples ({name}, {k} steps)", values,
                                     floor_values))
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
        console.print(f"progression: {out} ({xs.shape[1]} samples x {xs.shape[0]} states, x_T "
                      "to x_0)")


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
    """Fill the unknown region of ``n`` held-out images (in batches), score the result with
    the registered ``psnr`` (on the filled region) and ``ssim`` (whole images, whose known
    part is exact), and write a grid of masked | filled | original rows."""
    import torch

    from diffctl.runs.run import (
        class_labels,
        metric_options_on,
        metric_values,
        sample_batch_size,
    )
    from diffctl.samplers.base import Inpaint
    from diffctl.samplers.noise import initial_noise
    from diffctl_cli.image_plots import save_png, tile

    shape = tuple(components.dataset.sample_shape)
    mask = inpaint_mask(kind, shape)
    test = components.dataset.test_tensor()[:n]
    test_labels = getattr(components.dataset, "test_labels", lambda: None)()
    device = next(model.parameters()).device
    batch = sample_batch_size(cfg, components)
    filled = []
    for start in range(0, len(test), batch):
        ref = test[start:start + batch]
        x_T, gen = initial_noise((len(ref), *shape), seed, offset=start, device=device)
        cond = class_labels(model, start, len(ref), device, test_labels)
        filled.append(components.sampler.sample(
            model, components.scheduler, x_T, k, cond=cond, generator=gen,
            inpaint=Inpaint(mask.to(device), ref.to(device))).cpu())
    out = torch.cat(filled)
    rows, cols = torch.nonzero(mask[0, 0] == 0, as_tuple=True)  # the unknown rectangle
    box = (..., slice(int(rows.min()), int(rows.max()) + 1),
           slice(int(cols.min()), int(cols.max()) + 1))
    options = metric_options_on(cfg, registry, device)
    region = metric_values(registry, ["psnr"], out[box], test[box], options)
    whole = metric_values(registry, ["ssim"], out, test, options)
    masked = test * mask + (1 - mask) * -1.0
    grid = torch.stack([masked[:10], out[:10], test[:10]], dim=1).reshape(-1, *shape)
    path = run_dir / f"inpaint-{kind}-{name}-{k}.png"
    save_png(tile(grid.numpy(), 3), path)  # one row per image: masked, filled, original
    report = {"known": kind, "sampler": name, "steps": k, "images": len(test),
              "psnr_filled_region": region["psnr"], "ssim_whole_image": whole["ssim"]}
    path.with_suffix(".json").write_text(json.dumps(report, indent=1))
    console.print(f"inpainted {len(test)} held-out images ({kind} known, {name}, {k} steps): "
                  f"PSNR of the filled region {region['psnr']:.2f} dB, SSIM of the whole "
                  f"images {whole['ssim']:.4f}; grid: {path}")


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
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 1,
    floors: Annotated[bool, typer.Option(help="Also compute each sample metric's "
                                         "real-vs-real floor at this sample size.")] = True,
    device: Annotated[str | None, typer.Option(
        help="auto, cpu, cuda or mps (default: the run's train.device).")] = None,
) -> None:
    """Evaluate saved checkpoints in parallel and plot metric against epoch."""
    import time

    from diffctl.errors import UsageError
    from diffctl.registry import get_registry
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
    if not names:
        raise UsageError(f"no checkpoints to evaluate in {ckdir}")
    metrics = list(metric or cfg.eval.metrics)
    if not metrics:
        raise UsageError("no metrics to evaluate: pass --metric or set eval.metrics")
    registry = get_registry()
    for name in metrics:
        registry.get("metric", name)  # an unknown name fails now, not in a worker
    n = num_samples or cfg.sample.num_samples
    if n < 2:
        raise UsageError(f"--num-samples must be at least 2, got {n}")
    started = time.perf_counter()
    results = sweep(run_dir, names, metrics, n, steps, seed, workers, device, threads)
    seconds = time.perf_counter() - started
    if floors:
        from diffctl.runs.run import metric_options_on
        from diffctl.training.trainer import pick_device

        options = metric_options_on(cfg, registry, pick_device(device or cfg.train.device))
        floor_values = _floors(cfg, registry, metrics, n, options)
    else:
        floor_values = {}
    (run_dir / "eval").mkdir(exist_ok=True)
    with open(run_dir / "eval" / "checkpoints.jsonl", "w") as fh:
        for r in results:
            fh.write(json.dumps(r) + "\n")
    if floor_values:
        (run_dir / "eval" / "floors.json").write_text(json.dumps(
            {"num_samples": n, "floors": floor_values}, indent=1))
    table = Table(title=f"{len(results)} checkpoints, {workers} worker(s), {n} samples, "
                  f"{seconds:.1f} s")
    for col in ("checkpoint", "epoch", *metrics):
        table.add_column(col, justify="left" if col == "checkpoint" else "right")
    for r in results:
        table.add_row(r["checkpoint"], str(r["epoch"]),
                      *(f"{r[m]:.4g}" if m in r else "" for m in metrics))
    for stat in ("mean", "p95"):
        if any(m in floor_values for m in metrics):
            table.add_row(f"floor {stat}", "",
                          *(f"{floor_values[m][stat]:.4g}" if m in floor_values else ""
                            for m in metrics))
    console.print(table)
    from diffctl_cli.plots import plot_metric_curves

    plot_metric_curves([{k: v for k, v in r.items() if k != "seconds"} for r in results],
                       run_dir / "eval" / "metric_vs_epoch.png", floors=floor_values)


def _floors(cfg, registry, metrics: list[str], n: int, options: dict) -> dict:
    """Real-vs-real floors of the sample metrics among ``metrics`` at ``n`` samples with the
    metric ``options`` the values were computed with (the run's ``eval.floor_draws`` draws,
    at least 5)."""
    from diffctl.runs.run import metric_floors

    dataset = registry.create("dataset", cfg.dataset.name, cfg.dataset.options())
    draws = cfg.eval.floor_draws or 5
    return metric_floors(registry, metrics, options, dataset, n, draws, cfg.seed + 100)


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    metric: Annotated[list[str] | None, typer.Option(help="Metrics to compare.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for the comparison plot.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Side-by-side table: final values, best value and epoch, convergence, stability."""
    from diffctl.runs.compare import compare_runs, load_history

    result = compare_runs(runs, metric)  # better = higher or lower per registered metric
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
