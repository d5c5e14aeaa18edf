"""Rich tables of the library's results: metrics with floors, training lines, metadata."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from diffctl.runs.comparison import floor_excess
from diffctl.runs.evaluation import floor_ratio


def fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else ("" if value is None
                                                                   else str(value))


def _direction(name: str) -> bool | None:
    """Whether a larger value of ``name`` is better; None for a metric's secondary keys
    (``mmd_bandwidth``, ``c2st_std``, ...), which are no quality and get no ratio."""
    from diffctl.errors import UnknownComponentError
    from diffctl.registry import get_registry

    try:
        return get_registry().metric_info(name).higher_is_better
    except UnknownComponentError:
        return None


def metrics_table(title: str, values: dict[str, float], floors: dict[str, dict]) -> Table:
    """Each value next to its real-vs-real floor (mean, p95) and their ratio: to the mean, or
    for estimators centred on zero (unbiased MMD², KID) to the p95 (docs/design.md). A value
    at or beyond its floor's reference reads "at floor": no better than real data can be
    measured at this sample size."""
    table = Table(title=title)
    for col in ("metric", "value", "floor mean", "floor p95", "value / floor"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for name, value in values.items():
        floor = floors.get(name)
        if floor:
            ratio, label = floor_ratio(value, floor)
            shown = "-" if ratio is None else f"{ratio:.2f}" + (f" {label}" if label else "")
            direction = _direction(name)
            if direction is None:
                shown = ""  # a secondary key: its floor is context, not a verdict
            elif ratio is not None and floor_excess(value, floor, direction) == 0:
                shown = "at floor"
            table.add_row(name, fmt(value), fmt(floor["mean"]), fmt(floor["p95"]), shown)
        else:
            table.add_row(name, fmt(value), "", "", "")
    return table


def train_line(path: str, train: dict[str, Any]) -> str:
    return (f"[bold]run[/] {path}  device {train['device']}  params {train['parameters']:,}  "
            f"epochs {train['epoch']}  steps {train['step']}  train "
            f"{train['train_seconds']:.1f} s" + (
                f"  ({train.get('stop_reason') or 'stopped early'})"
                if train.get("stopped_early") else ""))


def describe_metadata(md: dict[str, Any]) -> str:
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


def report_tables(report: dict[str, Any]) -> tuple[Table | None, list[str]]:
    """The final report's metrics table (reconstruction rows included) and metadata lines."""
    ev = report.get("eval")
    if not ev:
        return None, []
    table = metrics_table(f"metrics on {ev['num_samples']} samples "
                          f"(sampling {ev['sample_seconds']:.1f} s)", ev["metrics"],
                          ev["floors"])
    rec = ev.get("reconstruction")
    if rec:
        for name, value in rec["metrics"].items():
            table.add_row(f"{name} (x0 from t={rec['t']})", fmt(value), "", "", "")
    metadata = {**ev.get("metric_metadata", {}), **(rec or {}).get("metric_metadata", {})}
    return table, [f"{name}: {describe_metadata(md)}" for name, md in metadata.items()]


def sampler_table(result: Any) -> Table:
    """A sampler comparison: each sampler's steps, wall time and headline metric, the floor."""
    table = Table(title=f"{result.checkpoint}: {result.num_samples} samples per sampler from "
                  f"the same x_T (seed {result.seed})")
    for col in ("sampler", "steps", "seconds", result.metric or "metric"):
        table.add_column(col, justify="left" if col == "sampler" else "right")
    for row in result.rows:
        table.add_row(row.spec.label, str(row.steps), f"{row.seconds:.2f}", fmt(row.value))
    if result.floor:
        table.add_row("real-vs-real floor", "", "", f"{fmt(result.floor['mean'])} mean, "
                      f"{fmt(result.floor['p95'])} p95")
    return table
