"""PNG plots of a run, drawn from the files in its run directory (matplotlib, Agg).

Each function reads plain arrays and writes one PNG; ``plot_run`` draws every plot that the
run's files allow. Every figure takes its look from :mod:`diffctl_cli.plot_style`. Imported
only by commands that plot, so start-up stays light.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from diffctl_cli import plot_style as style

plt = style.pyplot()
_save = style.save  # older name, kept for the figure modules that import it
_limits = style.limits


def plot_scatter(samples: np.ndarray, real: np.ndarray, path: Path, title: str = "") -> Path:
    """Generated vs real 2-D points side by side, on the same axes limits."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.3), sharex=True, sharey=True)
    lims = style.limits(samples, real)
    style.points(axes[0], None, real, lims)
    style.points(axes[1], samples, None, lims)
    axes[0].set_title(f"real (n={len(real)})")
    axes[1].set_title(f"generated (n={len(samples)})")
    if title:
        fig.suptitle(title, fontsize=style.TITLE_SIZE)
    return _save(fig, path)


def plot_progression(timesteps: np.ndarray, xs: np.ndarray, path: Path) -> Path:
    """Sampler states from noise (left) to data (right); each panel is the state at the
    timestep in its title (-1: the final sample x_0)."""
    k = len(timesteps)
    fig, axes = plt.subplots(1, k, figsize=(2.2 * k, 2.6), sharex=True, sharey=True)
    axes = np.atleast_1d(axes)
    xlim, ylim = _limits(xs[-1])
    for ax, t, x in zip(axes, timesteps, xs, strict=True):
        style.points(ax, x, size=1)
        ax.set_title("x_0" if int(t) < 0 else f"t={int(t)}", fontsize=style.SMALL)
        ax.set_xlim(xlim[0] - 1, xlim[1] + 1)
        ax.set_ylim(ylim[0] - 1, ylim[1] + 1)
        style.clean(ax)
    fig.suptitle(f"sampling from x_T (left) to x_0 (right), {x.shape[0]} samples",
                 fontsize=style.TITLE_SIZE)
    return _save(fig, path)


def training_stats(train: dict, batch_size: int | None = None) -> str:
    """One line of training-time statistics from a report's ``train`` section."""
    seconds, steps, epochs = train.get("train_seconds"), train.get("step"), train.get("epoch")
    if not seconds or not steps:
        return ""
    parts = [f"{seconds:.1f} s", f"{steps} steps", f"{steps / seconds:.2f} steps/s"]
    if batch_size:
        parts.append(f"{steps * batch_size / seconds:.0f} examples/s")
    if epochs:
        parts.append(f"{seconds / epochs:.1f} s/epoch")
    return "training " + ", ".join(parts)


def plot_losses(losses: list[list[float]], path: Path, stats: str = "") -> Path:
    """Training loss against step (log scale), with training-time statistics in the title."""
    arr = np.asarray(losses, dtype=float)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(arr[:, 0], arr[:, 1], color=style.series_colour(0),
            marker="o" if len(arr) < 20 else None)
    style.x_axis(ax, "step")
    ax.set_ylabel(style.axis_label("loss") + ", log scale")
    ax.set_yscale("log")
    ax.set_title(stats or "training loss", fontsize=style.SMALL + 1)
    return _save(fig, path)


def plot_metric_curves(history: list[dict], path: Path, x: str = "epoch",
                       floors: dict[str, dict] | None = None) -> Path | None:
    """Each recorded metric against epoch (one panel per metric); a metric with a
    real-vs-real floor at the same sample size gets its mean and p95 as dashed lines."""
    skip = {"step", "epoch", "train_seconds", "wall_seconds", "checkpoint"}
    names = sorted({k for rec in history for k in rec if k not in skip
                    and isinstance(rec[k], int | float)})
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        pts = [(r[x], r[name]) for r in history if name in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                color=style.series_colour(0), label=name)
        floor = (floors or {}).get(name)
        if floor:
            style.floor_lines(ax, floor)
            ax.legend()
        style.x_axis(ax, x)
        ax.set_ylabel(name)
        ax.set_title(name)
    return _save(fig, path)


def plot_comparison(result: dict, out: Path) -> Path:
    """``compare.png``: one panel per compared metric (each run's value against epoch, its
    floor dashed) above one panel per run with its final samples over its real sample."""
    from diffctl_cli.sample_plots import run_samples_panel

    out.mkdir(parents=True, exist_ok=True)
    names = [m for m in result["metrics"]
             if any(r["curves"].get(m) for r in result["runs"].values())] or result["metrics"]
    runs = list(result["runs"].items())
    cols = max(len(names), len(runs), 1)
    fig = plt.figure(figsize=(3.8 * cols, 7.2))
    grid = fig.add_gridspec(2, cols, height_ratios=(1, 1.15))
    for i, m in enumerate(names):
        ax = fig.add_subplot(grid[0, i])
        for j, (run, data) in enumerate(runs):
            pts = data["curves"].get(m) or []
            colour = style.series_colour(j)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colour,
                    label=Path(run).name)
            floor = data["floors"].get(m)
            if floor:
                ax.axhline(floor["p95"] if floor.get("zero_centred") else floor["mean"],
                           color=colour, ls="--", lw=0.8)
        ax.set_title(m + (" (dashed: floor)" if any(d["floors"].get(m) for _, d in runs)
                          else ""))
        style.x_axis(ax)
        ax.set_ylabel(m)
        if i == 0:
            ax.legend()
    for j, (run, data) in enumerate(runs):
        ax = fig.add_subplot(grid[1, j])
        run_samples_panel(ax, data.get("samples_file"), data.get("real_file"))
        ax.set_title(Path(run).name, color=style.series_colour(j))
    fig.suptitle("metric curves (top) and each run's final samples (bottom; points: "
                 "generated over real)", fontsize=style.TITLE_SIZE)
    return _save(fig, out / "compare.png")


def plot_run(run_dir: Path) -> list[Path]:
    """Every plot the run directory's files allow; returns the written paths."""
    written: list[Path] = []
    samples, real = run_dir / "samples.npy", run_dir / "real.npy"
    if samples.exists() and real.exists():
        s, r = np.load(samples), np.load(real)
        if s.ndim == 2 and s.shape[1] == 2:
            written.append(plot_scatter(s, r, run_dir / "samples.png", run_dir.name))
        elif s.ndim == 4:
            written.extend(_image_sample_plots(run_dir, s, r))
    traj = run_dir / "trajectory.npz"
    if traj.exists():
        data = np.load(traj)
        if data["xs"].ndim == 3 and data["xs"].shape[2] == 2:
            written.append(plot_progression(data["timesteps"], data["xs"],
                                            run_dir / "progression.png"))
        elif data["xs"].ndim == 5:
            from diffctl_cli.image_plots import progression_grid

            written.append(progression_grid(data["xs"], run_dir / "progression.png"))
    losses = run_dir / "losses.json"
    if losses.exists():
        report = run_dir / "metrics.json"
        stats = ""
        if report.exists():
            stats = training_stats(json.loads(report.read_text()).get("train", {}),
                                   _batch_size(run_dir))
        loss_values = json.loads(losses.read_text())
        if loss_values:
            written.append(plot_losses(loss_values, run_dir / "loss.png", stats))
    history = run_dir / "metrics.jsonl"
    if history.exists():
        recs = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
        out = plot_metric_curves(recs, run_dir / "metric_curves.png")
        if out is not None:
            written.append(out)
    return written


def _run_config(run_dir: Path) -> dict:
    import yaml

    cfg = run_dir / "config.yaml"
    return (yaml.safe_load(cfg.read_text()) or {}) if cfg.exists() else {}


def _batch_size(run_dir: Path) -> int | None:
    """The batch the run trained with: recorded in its report (train.batch_size auto
    chooses it), else its config's."""
    report = run_dir / "metrics.json"
    if report.exists():
        used = (json.loads(report.read_text()).get("train") or {}).get("batch_size")
        if isinstance(used, int):
            return used
    size = (_run_config(run_dir).get("train") or {}).get("batch_size")
    return size if isinstance(size, int) else None


def run_num_classes(run_dir: Path) -> int | None:
    """The denoiser's ``num_classes`` from a run's config.yaml (None: unconditional)."""
    return (_run_config(run_dir).get("denoiser") or {}).get("num_classes") or None


def _image_sample_plots(run_dir: Path, samples: np.ndarray, real: np.ndarray) -> list[Path]:
    """samples.png (one row per class when conditional) and real_vs_generated.png."""
    from diffctl_cli.image_plots import class_grid, real_vs_generated, sample_grid

    k = run_num_classes(run_dir)
    if k:  # sample i was drawn with label i mod k (diffctl.runs.sampling.class_labels)
        labels = np.arange(len(samples)) % k
        grid = class_grid(samples, labels, k, run_dir / "samples.png")
    else:
        grid = sample_grid(samples, run_dir / "samples.png")
    return [grid, real_vs_generated(samples, real, run_dir / "real_vs_generated.png",
                                    title=run_dir.name)]
