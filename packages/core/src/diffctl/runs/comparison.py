"""Compare runs: final values against their floors, the best checkpoint, convergence, stability.

Values are compared by their distance from the real-vs-real floor, never by their raw size
alone: a value at or below its floor's noise level reads as "at the floor" (excess 0), not as
better than the real data (docs/design.md, "Metric floors"). For an estimator centred on zero
(unbiased MMD², KID) the floor's reference is its 95th percentile, otherwise its mean.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from diffctl.errors import UsageError
from diffctl.runs import directory as files
from diffctl.runs.directory import RunDirectory, read_json, read_jsonl

#: Keys of history rows that are not metric values.
BOOKKEEPING = {"step", "epoch", "checkpoint", "seconds", "train_seconds", "wall_seconds",
               "metric_metadata", "error"}


def history_source(run_dir: Path) -> tuple[Path | None, dict[str, dict[str, Any]]]:
    """Where a run's per-checkpoint records come from: its newest ``diffctl eval`` folder
    (with that folder's floors), else the training log; (None, {}) when there is neither."""
    directory = RunDirectory(run_dir)
    evals = directory.eval_dirs()
    if evals:
        folder = evals[-1]
        floors_file = folder / files.EVAL_FLOORS
        data = read_json(floors_file, "floors") if floors_file.exists() else {}
        floors = data.get("floors", {}) if isinstance(data, dict) else data
        problem = files.floors_problem(floors)
        if problem:
            raise UsageError(f"floors {floors_file} are damaged: {problem}")
        return folder / files.EVAL_ROWS, floors
    log = directory.file(files.METRICS_LOG)
    return (log if log.exists() else None), {}


def floor_excess(value: float, floor: dict[str, Any] | None, higher_is_better: bool
                 ) -> float | None:
    """How far ``value`` is from its floor, in units of the floor's reference value: 0 at or
    beyond the reference (no better than real data can be read), positive when worse. None
    without a usable floor."""
    if not floor:
        return None
    reference = floor.get("p95") if floor.get("zero_centred") else floor.get("mean")
    if reference is None or not math.isfinite(value):
        return None
    scale = abs(reference) if reference != 0 else 1.0
    gap = reference - value if higher_is_better else value - reference
    return max(0.0, gap) / scale


def summarize(history: list[dict[str, Any]], metric: str, higher_is_better: bool = False,
              last_k: int = 5, tolerance: float = 0.1,
              floor: dict[str, Any] | None = None) -> dict[str, Any]:
    """Best value and its epoch; epochs to come within ``tolerance`` of the best (convergence
    speed); coefficient of variation over the last ``last_k`` checkpoints (stability).

    With a ``floor`` (a ``diffctl eval`` at a fixed sample size) checkpoints are ranked by
    their excess over it (:func:`floor_excess`), so every checkpoint at the floor ties for
    best and the first of them is reported; "within tolerance" is an excess of at most
    ``tolerance``. Without one they are ranked by value in the metric's direction."""
    pts = [(r["epoch"], float(r[metric])) for r in history
           if metric in r and isinstance(r[metric], int | float) and math.isfinite(r[metric])]
    if not pts:
        return {}
    epochs, values = zip(*pts, strict=True)
    arr = np.asarray(values)
    excess = [floor_excess(v, floor, higher_is_better) for v in values] if floor else None
    if excess is not None and all(e is not None for e in excess):
        score = np.asarray(excess, dtype=float)
        i = int(score.argmin())
        good = score <= score[i] + tolerance
    else:
        i = int(arr.argmax() if higher_is_better else arr.argmin())
        margin = tolerance * abs(float(arr[i]))
        good = arr >= arr[i] - margin if higher_is_better else arr <= arr[i] + margin
    tail = arr[-last_k:]
    mean = float(tail.mean())
    out = {"final": float(arr[-1]), "best": float(arr[i]), "best_epoch": int(epochs[i]),
           "epochs_to_within_10pct": int(epochs[int(np.argmax(good))]),
           "cv_last": float(tail.std() / abs(mean)) if mean != 0 else math.nan,
           "checkpoints": len(arr)}
    if excess is not None:
        out["best_excess_over_floor"] = excess[i]
    return out


def compare(run_dirs: list[Path | str], metrics: list[str] | None = None,
            registry: Any = None) -> dict[str, Any]:
    """Compare runs on ``metrics`` (default: every registered metric found in any run).

    Returns ``{"metrics": [...], "higher_is_better": {m: bool}, "runs": {run: {...}},
    "ranking": {m: [[runs tied], ...]}}``. Per run: ``source`` (the history file read),
    ``final`` (the final report's values, reconstruction metrics included), ``floors`` and
    ``excess`` (distance of each final value from its floor), ``summary`` (per-checkpoint
    history, see :func:`summarize`), ``curves`` ([epoch, value] per checkpoint), ``missing``
    (requested metrics the run lacks), ``samples_file`` and ``real_file`` (the final
    evaluation's samples.npy and real.npy, None when absent). Runs are
    ranked per metric by excess over the floor, runs within 1% of each other tied; runs
    without a floor for a metric are ranked after those with one, by value.
    """
    from diffctl.registry import get_registry

    registry = registry or get_registry()
    runs = [Path(r) for r in run_dirs]
    if not runs:
        raise UsageError("compare needs at least one run directory")
    loaded: dict[str, dict[str, Any]] = {}
    for run in runs:
        directory = RunDirectory(run)
        if not directory.exists():
            raise UsageError(f"not a run directory (no {files.CONFIG}): {run}")
        source, eval_floors = history_source(run)
        history = read_jsonl(source, announce_torn=True) if source else []
        if any("epoch" not in r for r in history):
            raise UsageError(f"{source}: a record without its epoch (damaged?)")
        report = directory.report() or {}
        ev = report.get("eval") or {}
        final = dict(ev.get("metrics") or {})
        final.update((ev.get("reconstruction") or {}).get("metrics") or {})
        loaded[str(run)] = {"source": str(source) if source else None,
                            "history": history,
                            "history_floors": eval_floors, "final": final,
                            "floors": dict(ev.get("floors") or {}),
                            "train_seconds": (report.get("train") or {}).get("train_seconds")}
    if metrics:
        for name in metrics:
            registry.get("metric", name)  # an unknown name is an error, not an empty table
        names = list(metrics)
    else:
        found = {k for d in loaded.values()
                 for k in [*d["final"], *(k for r in d["history"] for k in r)]}
        names = [s.name for s in registry.specs("metric") if s.name in found]
    directions = {m: registry.metric_info(m).higher_is_better for m in names}
    out_runs: dict[str, Any] = {}
    for run, d in loaded.items():
        excess = {m: floor_excess(d["final"][m], d["floors"].get(m), directions[m])
                  for m in names if m in d["final"]}
        summary = {m: summarize(d["history"], m, directions[m],
                                floor=d["history_floors"].get(m)) for m in names}
        missing = [m for m in names if m not in d["final"] and not summary[m]]
        curves = {m: [[r["epoch"], r[m]] for r in d["history"] if m in r and "epoch" in r]
                  for m in names}
        out_runs[run] = {"source": d["source"], "final": {m: d["final"][m] for m in names
                                                           if m in d["final"]},
                         "floors": {m: d["floors"][m] for m in names if m in d["floors"]},
                         "excess": excess, "summary": summary, "curves": curves,
                         "missing": missing,
                         "train_seconds": d["train_seconds"],
                         **_sample_files(Path(run))}
    ranking = {m: _rank(out_runs, m, directions[m]) for m in names}
    return {"metrics": names, "higher_is_better": directions, "runs": out_runs,
            "ranking": ranking}


def _sample_files(run: Path) -> dict[str, str | None]:
    """Where a run's final samples and real sample are (None when absent)."""
    directory = RunDirectory(run)
    found = {key: directory.file(name) for key, name in (("samples_file", files.SAMPLES),
                                                         ("real_file", files.REAL))}
    return {key: str(path) if path.is_file() else None for key, path in found.items()}


def _rank(runs: dict[str, Any], metric: str, higher_is_better: bool) -> list[list[str]]:
    """Runs best first, as groups of ties: by excess over the floor where there is one
    (within 0.01 of each other: tied), then the rest by final value."""
    with_floor = sorted((r["excess"][metric], name) for name, r in runs.items()
                        if r["excess"].get(metric) is not None)
    groups: list[tuple[float, list[str]]] = []  # (excess of the group's first run, runs)
    for value, name in with_floor:
        if groups and value - groups[-1][0] <= 0.01:
            groups[-1][1].append(name)
        else:
            groups.append((value, [name]))
    ranked = [names for _, names in groups]
    rest = [(r["final"][metric], name) for name, r in runs.items()
            if metric in r["final"] and r["excess"].get(metric) is None]
    rest.sort(reverse=higher_is_better)
    return ranked + [[name] for _, name in rest]
