"""PNG figures of a size study's analysis (matplotlib, Agg), drawn from the plain data of
:func:`diffctl.study.analysis.analyze`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from diffctl_cli.plots import _save

_COLORS = {"teacher": "black", "distilled": "tab:blue", "from-data": "tab:orange"}


def _label(name: str) -> str:
    return name.replace("distilled-", "dist ").replace("from-data-", "data ")


def plot_mse_heatmap(errors: dict[str, Any], path: Path) -> Path:
    """Rows: students; columns: timestep bins; colour: log10 MSE to the teacher."""
    names = list(errors["to_teacher"])
    table = np.array([errors["to_teacher"][n] for n in names])
    fig, ax = plt.subplots(figsize=(1.1 * len(errors["bins"]) + 2.5, 0.45 * len(names) + 1.8))
    image = ax.imshow(np.log10(np.maximum(table, 1e-12)), aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(errors["bins"])),
                  [f"{lo}-{hi - 1}" for lo, hi in errors["bins"]], rotation=45, fontsize=8)
    ax.set_yticks(range(len(names)), [_label(n) for n in names], fontsize=8)
    for i in range(table.shape[0]):
        for j in range(table.shape[1]):
            ax.text(j, i, f"{table[i, j]:.2g}", ha="center", va="center", fontsize=6,
                    color="white")
    ax.set_xlabel("timestep bin")
    ax.set_title(f"MSE to the teacher's {errors['prediction']} prediction "
                 f"({errors['examples']} held-out examples, shared noise)", fontsize=9)
    fig.colorbar(image, ax=ax, label="log10 MSE")
    return _save(fig, path)


def plot_denoising(denoising: dict[str, Any], path: Path) -> Path:
    """Rows: teacher and students; columns: states from x_T (left) to x_0 (right), all from
    the same x_T. Images show the first sample; points show every sample."""
    states = np.asarray(denoising["states"])  # (models, frames, n, *shape)
    names, steps = denoising["models"], denoising["timesteps"]
    rows, cols = states.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(1.2 * cols + 1, 1.2 * rows + 0.6),
                             squeeze=False)
    images = states.ndim == 6
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            if images:
                pic = np.clip(states[i, j, 0], -1, 1).transpose(1, 2, 0)
                ax.imshow(pic[..., 0] if pic.shape[2] == 1 else (pic + 1) / 2, cmap="gray",
                          vmin=-1, vmax=1, interpolation="nearest")
            else:
                pts = states[i, j]
                ax.scatter(pts[:, 0], pts[:, 1], s=2, linewidths=0,
                           color=_COLORS["teacher" if i == 0 else "distilled"])
                ax.set_xlim(-3.5, 3.5)
                ax.set_ylim(-3.5, 3.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("x_0" if int(steps[j]) < 0 else f"t={int(steps[j])}", fontsize=7)
            if j == 0:
                ax.set_ylabel(_label(names[i]), fontsize=7)
    fig.suptitle(f"denoising from the same x_T ({denoising['steps']} steps)", fontsize=9)
    return _save(fig, path)


def plot_time(timing: dict[str, Any], models: list[dict[str, Any]], errors: dict[str, Any] | None,
              path: Path) -> Path:
    """Left: sampling latency against parameters; right: prediction error per timestep."""
    params = {m["name"]: m["parameters"] for m in models}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    for name, entry in timing["models"].items():
        mode = "teacher" if name == "teacher" else "distilled"
        ax.scatter(params[name], entry["ms_per_sample"], color=_COLORS[mode],
                   marker="*" if name == "teacher" else "o", s=60)
        ax.annotate(_label(name), (params[name], entry["ms_per_sample"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("ms per sample")
    ax.set_title(f"sampling latency (batch {timing['batch_size']}, {timing['steps']} steps, "
                 f"median of {timing['repeats']})", fontsize=9)
    ax = axes[1]
    if errors:
        mids = [(lo + hi - 1) / 2 for lo, hi in errors["bins"]]
        for name, values in errors["to_target"].items():
            mode = "teacher" if name == "teacher" else \
                "from-data" if name.startswith("from-data") else "distilled"
            ax.plot(mids, values, marker=".", color=_COLORS[mode], alpha=0.5 + 0.5 * (
                mode == "teacher"), label=_label(name))
        ax.set_yscale("log")
        ax.legend(fontsize=6, ncol=2)
    ax.set_xlabel("timestep")
    ax.set_ylabel("MSE to the data's target")
    ax.set_title("prediction error against the timestep", fontsize=9)
    return _save(fig, path)


def plot_trajectory(trajectory: dict[str, Any], path: Path) -> Path:
    """Distance from the teacher's state at every step (mean, 10-90% band), per student."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    cmap = plt.get_cmap("viridis")
    names = list(trajectory["models"])
    for k, name in enumerate(names):
        entry = trajectory["models"][name]
        x = np.arange(len(entry["mean"]))
        color = cmap(k / max(1, len(names) - 1))
        style = "--" if name.startswith("from-data") else "-"
        ax.plot(x, entry["mean"], style, color=color, label=_label(name))
        ax.fill_between(x, entry["p10"], entry["p90"], color=color, alpha=0.12)
    ax.axhline(trajectory["reference"]["mean"], color="gray", ls=":",
               label="two unrelated teacher samples")
    ax.set_xlabel("sampler step (0 = the shared x_T)")
    ax.set_ylabel("RMS distance from the teacher's state")
    ax.set_title(f"trajectories from identical x_T ({trajectory['samples']} samples)",
                 fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_efficiency(quality: dict[str, Any], path: Path) -> Path:
    """Left: the headline metric against parameters (log axis), distilled vs from data, the
    teacher and the real-vs-real floor; right: quality per million parameters."""
    rows = quality["models"]
    metric = quality["metric"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for mode in ("distilled", "from-data"):
        pts = sorted((r["parameters"], r["value"], r["quality_per_mparam"])
                     for r in rows.values() if r["mode"] == mode and r["value"] is not None)
        if pts:
            p, v, q = zip(*pts, strict=True)
            axes[0].plot(p, v, "o-", color=_COLORS[mode], label=mode)
            if all(x is not None for x in q):
                axes[1].plot(p, q, "o-", color=_COLORS[mode], label=mode)
    teacher = rows.get("teacher")
    if teacher and teacher["value"] is not None:
        axes[0].scatter(teacher["parameters"], teacher["value"], marker="*", s=150,
                        color="black", label="teacher", zorder=3)
        if teacher["quality_per_mparam"] is not None:
            axes[1].scatter(teacher["parameters"], teacher["quality_per_mparam"], marker="*",
                            s=150, color="black", label="teacher", zorder=3)
        floor = teacher.get("floor")
        if floor:
            ref = floor["p95"] if floor.get("zero_centred") else floor["mean"]
            axes[0].axhline(ref, color="gray", ls=":", label="real-vs-real floor")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.legend(fontsize=8)
    axes[0].set_ylabel(metric)
    axes[0].set_title(f"{metric} against model size", fontsize=9)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("quality per million parameters")
    axes[1].set_title("quality = 1 / (1 + excess over the floor)", fontsize=9)
    return _save(fig, path)
