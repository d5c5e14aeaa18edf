"""Compare runs: final values, best value and when, convergence speed, stability."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from diffctl.errors import UsageError


def load_history(run_dir: Path) -> list[dict[str, Any]]:
    """Per-checkpoint records: the sweep's if there is one, else the training log."""
    for name in ("eval/checkpoints.jsonl", "metrics.jsonl"):
        f = run_dir / name
        if f.exists():
            return [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return []


def summarize(history: list[dict[str, Any]], metric: str, higher_is_better: bool = False,
              last_k: int = 5, tolerance: float = 0.1,
              zero_centred: bool = False) -> dict[str, Any]:
    """Best value and its epoch; epochs to come within ``tolerance`` of the best
    (convergence speed); coefficient of variation over the last ``last_k`` checkpoints
    (stability).

    For an estimator centred on zero (unbiased MMD², KID) a negative value is sampling noise
    around a true 0: values are clipped at 0 before picking the best, and "within tolerance"
    means within ``tolerance`` of the way from the worst value to the best (10% of the
    best itself would be 0 there)."""
    pts = [(r["epoch"], float(r[metric])) for r in history
           if metric in r and math.isfinite(float(r[metric]))]
    if not pts:
        return {}
    epochs, values = zip(*pts, strict=True)
    arr = np.asarray(values)
    if zero_centred:
        arr = np.maximum(arr, 0.0)
    i = int(arr.argmax() if higher_is_better else arr.argmin())
    best = float(arr[i])
    margin = tolerance * (abs(float(arr.max() - arr.min())) if zero_centred else abs(best))
    good = arr >= best - margin if higher_is_better else arr <= best + margin
    tail = arr[-last_k:]
    mean = float(tail.mean())
    return {"final": float(arr[-1]), "best": best, "best_epoch": int(epochs[i]),
            "epochs_to_within_10pct": int(epochs[int(np.argmax(good))]),
            "cv_last": float(tail.std() / abs(mean)) if mean != 0 else math.nan,
            "checkpoints": len(arr)}


def _metric_attribute(name: str, attribute: str, registry: Any = None) -> bool | None:
    """A class attribute of the registered metric ``name`` (False when it lacks it); None if
    no metric has that name (a secondary value such as ``mmd_bandwidth``)."""
    from diffctl.errors import UnknownComponentError
    from diffctl.registry import get_registry

    registry = registry or get_registry()
    try:
        spec = registry.get("metric", name)
    except UnknownComponentError:
        return None
    factory = spec.load_factory()
    value = getattr(factory, attribute, None)
    if value is None and not isinstance(factory, type):  # a factory function: ask its product
        value = getattr(spec.create(), attribute, None)
    return bool(value)


def metric_direction(name: str, registry: Any = None) -> bool | None:
    """``higher_is_better`` of the registered metric ``name``; None if no metric has that
    name."""
    return _metric_attribute(name, "higher_is_better", registry)


def compare_runs(run_dirs: list[Path], metrics: list[str] | None = None,
                 higher_is_better: dict[str, bool] | None = None,
                 registry: Any = None) -> dict[str, Any]:
    """Per run and metric: the summary above, plus the final report's metrics.

    Without ``metrics``, every registered metric in the runs' histories is compared (not the
    secondary values a metric reports beside its headline). Which way is better comes from
    ``higher_is_better`` or else from the registered metric. The final values include the
    reconstruction metrics of image runs (``psnr``, ``ssim``, ...).
    """
    directions = dict(higher_is_better or {})
    out: dict[str, Any] = {}
    for run in run_dirs:
        if not (run / "config.yaml").is_file():
            raise UsageError(f"not a run directory (no config.yaml): {run}")
        history = load_history(run)
        keys = sorted({k for r in history for k in r
                       if k not in {"step", "epoch", "checkpoint", "seconds",
                                    "train_seconds", "wall_seconds"}})
        for key in metrics or keys:
            if key not in directions:
                direction = metric_direction(key, registry)
                if direction is not None or metrics:
                    directions[key] = bool(direction)
        names = list(metrics) if metrics else [k for k in keys if k in directions]
        final: dict[str, Any] = {}
        report = run / "metrics.json"
        if report.exists():
            data = json.loads(report.read_text())
            ev = data.get("eval", {})
            final = dict(ev.get("metrics", {}))
            final.update(ev.get("reconstruction", {}).get("metrics", {}))
            final["train_seconds"] = data.get("train", {}).get("train_seconds")
        out[str(run)] = {"final": final,
                         "summary": {m: summarize(history, m, directions.get(m, False),
                                                  zero_centred=bool(_metric_attribute(
                                                      m, "zero_centred", registry)))
                                     for m in names},
                         "higher_is_better": {m: directions.get(m, False) for m in names}}
    return out
