"""PNG plots of a run, drawn from the files in its run directory (matplotlib, Agg).

Each function reads plain arrays and writes one PNG; ``plot_run`` draws every plot that the
run's files allow. Imported only by commands that plot, so start-up stays light.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _limits(*arrays: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    pts = np.concatenate([a.reshape(-1, 2) for a in arrays])
    lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
    pad = 0.1 * (hi - lo)
    return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def plot_scatter(samples: np.ndarray, real: np.ndarray, path: Path, title: str = "") -> Path:
    """Generated vs real 2-D points side by side, on the same axes limits."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.3), sharex=True, sharey=True)
    xlim, ylim = _limits(samples, real)
    for ax, pts, name, color in ((axes[0], real, "real", "tab:blue"),
                                 (axes[1], samples, "generated", "tab:orange")):
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.4, color=color, linewidths=0)
        ax.set_title(f"{name} (n={len(pts)})")
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_progression(timesteps: np.ndarray, xs: np.ndarray, path: Path) -> Path:
    """Sampler states from noise (left) to data (right); each panel is the state at the
    timestep in its title (-1: the final sample x_0)."""
    k = len(timesteps)
    fig, axes = plt.subplots(1, k, figsize=(2.2 * k, 2.4), sharex=True, sharey=True)
    axes = np.atleast_1d(axes)
    xlim, ylim = _limits(xs[-1])
    for ax, t, x in zip(axes, timesteps, xs, strict=True):
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5, linewidths=0)
        ax.set_title("x_0" if int(t) < 0 else f"t={int(t)}", fontsize=8)
        ax.set_xlim(xlim[0] - 1, xlim[1] + 1)
        ax.set_ylim(ylim[0] - 1, ylim[1] + 1)
        ax.set_xticks([])
        ax.set_yticks([])
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
    ax.plot(arr[:, 0], arr[:, 1], lw=1, marker="o" if len(arr) < 20 else None, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    if stats:
        ax.set_title(stats, fontsize=9)
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
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
        floor = (floors or {}).get(name)
        if floor:
            ax.axhline(floor["mean"], color="grey", ls="--", lw=0.8, label="floor mean")
            ax.axhline(floor["p95"], color="grey", ls=":", lw=0.8, label="floor p95")
            ax.legend(fontsize=6)
        ax.set_xlabel(x)
        ax.set_title(name)
    return _save(fig, path)


def plot_comparison(result: dict, out: Path) -> Path:
    """One panel per compared metric: each run's value against epoch, its floor dashed."""
    out.mkdir(parents=True, exist_ok=True)
    names = [m for m in result["metrics"]
             if any(r["curves"].get(m) for r in result["runs"].values())] or result["metrics"]
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    for ax, m in zip(axes[0], names, strict=True):
        for run, data in result["runs"].items():
            pts = data["curves"].get(m) or []
            line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3,
                            label=Path(run).name)
            floor = data["floors"].get(m)
            if floor:
                ax.axhline(floor["p95"] if floor.get("zero_centred") else floor["mean"],
                           color=line.get_color(), ls="--", lw=0.8)
        ax.set_title(m)
        ax.set_xlabel("epoch")
    axes[0][0].legend(fontsize=7)
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
