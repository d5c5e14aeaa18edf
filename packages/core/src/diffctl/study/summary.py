"""Quality per size, efficiency, and the study's summary table (plain data).

Quality comes from each run's final report (``metrics.json``): every metric the teacher's
config evaluates (the students inherit it), each next to its real-vs-real floor, and
test-loss. The headline metric is ``fid`` when the runs measure it (on ``lenet-mnist``
features for MNIST and the digits), else the first sample metric, else test-loss.

Efficiency reads a value by its distance from the floor (docs/design.md, "Metric floors"):
``excess`` = how far it is from real data at this sample size, in units of the floor
(0: indistinguishable), ``quality`` = 1 / (1 + excess) in (0, 1], and quality per million
parameters. Without a floor the quality is left out.
"""

from __future__ import annotations

from typing import Any

from diffctl.errors import UsageError
from diffctl.registry import Registry
from diffctl.runs.comparison import floor_excess
from diffctl.study.models import TEACHER

#: One summary row per size; these columns, in this order (None where not measured).
SUMMARY_COLUMNS = (
    "size", "params", "latency_ms", "metric", "value_distilled", "value_from_data",
    "floor", "mse_to_teacher_distilled", "mse_to_teacher_from_data",
    "test_loss_distilled", "test_loss_from_data", "final_distance_distilled",
    "final_distance_from_data", "train_seconds_distilled", "train_seconds_from_data",
    "distillation_helps")


def headline_metric(reports: dict[str, dict[str, Any] | None], registry: Registry) -> str:
    """fid if measured, else the first sample metric of the teacher's report, else
    test-loss."""
    teacher = reports.get(TEACHER) or next((r for r in reports.values() if r), None)
    names = list(((teacher or {}).get("eval") or {}).get("metrics") or {})
    if "fid" in names:
        return "fid"
    for name in names:
        try:
            if registry.metric_info(name).input == "samples":
                return name
        except UsageError:  # a secondary value of a metric (mmd_bandwidth), not a metric
            continue
    return "test-loss"


def quality(models: list[dict[str, Any]], registry: Registry,
            metric: str | None = None) -> dict[str, Any]:
    """Per model (``{"name", "size", "mode", "parameters", "report"}``): the headline
    metric with its floor, excess, quality and quality per million parameters, test-loss,
    training time, and every other final metric."""
    reports = {m["name"]: m["report"] for m in models}
    metric = metric or headline_metric(reports, registry)
    try:
        higher = registry.metric_info(metric).higher_is_better
    except UsageError:
        higher = False
    rows = {}
    for m in models:
        ev = (m["report"] or {}).get("eval") or {}
        train = (m["report"] or {}).get("train") or {}
        values = ev.get("metrics") or {}
        value = values.get(metric)
        floor = (ev.get("floors") or {}).get(metric)
        excess = floor_excess(value, floor, higher) if value is not None else None
        q = 1.0 / (1.0 + excess) if excess is not None else None
        params = m["parameters"]
        rows[m["name"]] = {
            "size": m["size"], "mode": m["mode"], "parameters": params, "value": value,
            "floor": floor and {k: floor.get(k) for k in ("mean", "p95", "zero_centred")},
            "excess": excess, "quality": q,
            "quality_per_mparam": q / (params / 1e6) if q is not None and params else None,
            "test_loss": values.get("test-loss"), "train_seconds": train.get("train_seconds"),
            "epochs": train.get("epoch"), "stop_reason": train.get("stop_reason"),
            "metrics": values}
    return {"metric": metric, "higher_is_better": higher, "models": rows}


def summary_rows(study_points: list[dict[str, Any]], qual: dict[str, Any] | None,
                 errors: dict[str, Any] | None, timing: dict[str, Any] | None,
                 trajectory: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per size (the teacher first, with its own size): parameters, latency, the
    headline metric distilled and from data, MSE to the teacher (mean over timestep bins),
    test-loss, final-sample distance from the teacher, training time, and whether the
    distilled student beat the one trained on the data (on the headline metric)."""
    by_size: dict[float, dict[str, str]] = {}
    for p in study_points:
        by_size.setdefault(p["size"], {})[p["mode"]] = p["name"]
    qm = (qual or {}).get("models", {})
    higher = bool((qual or {}).get("higher_is_better"))

    def mse(name: str | None) -> float | None:
        values = ((errors or {}).get("to_teacher") or {}).get(name or "")
        return sum(values) / len(values) if values else None

    def latency(name: str | None) -> float | None:
        return (((timing or {}).get("models") or {}).get(name or "") or {}).get("ms_per_sample")

    def final(name: str | None) -> float | None:
        entry = ((trajectory or {}).get("models") or {}).get(name or "")
        return entry["final"]["mean"] if entry else None

    def q(name: str | None, key: str) -> Any:
        return (qm.get(name or "") or {}).get(key)

    teacher = qm.get(TEACHER, {})
    rows = [{"size": teacher.get("size"), "mode": TEACHER, "params": teacher.get("parameters"),
             "latency_ms": latency(TEACHER), "metric": (qual or {}).get("metric"),
             "value_teacher": q(TEACHER, "value"), "floor": _floor_value(q(TEACHER, "floor")),
             "test_loss_teacher": q(TEACHER, "test_loss"),
             "train_seconds_teacher": q(TEACHER, "train_seconds")}]
    for size in sorted(by_size):
        d, f = by_size[size].get("distilled"), by_size[size].get("from-data")
        any_name = d or f
        vd, vf = q(d, "value"), q(f, "value")
        helps = distillation_verdict(vd, vf, higher, q(any_name, "floor"))
        rows.append({
            "size": size, "params": q(any_name, "parameters"),
            "latency_ms": latency(d) if latency(d) is not None else latency(f),
            "metric": (qual or {}).get("metric"), "value_distilled": vd, "value_from_data": vf,
            "floor": _floor_value(q(any_name, "floor")),
            "mse_to_teacher_distilled": mse(d), "mse_to_teacher_from_data": mse(f),
            "test_loss_distilled": q(d, "test_loss"), "test_loss_from_data": q(f, "test_loss"),
            "final_distance_distilled": final(d), "final_distance_from_data": final(f),
            "train_seconds_distilled": q(d, "train_seconds"),
            "train_seconds_from_data": q(f, "train_seconds"), "distillation_helps": helps})
    return rows


#: below this relative difference two values of a quality metric count as equal, whatever
#: the floor's spread (a 500-sample FID moves by a few per cent between sample draws)
RELATIVE_NOISE = 0.02


def distillation_verdict(distilled: float | None, from_data: float | None, higher: bool,
                         floor: dict[str, Any] | None) -> bool | None:
    """True when the distilled student is better than the one trained on data, False when
    worse, None when either is missing or they differ by less than the noise: the spread of
    the metric's real-vs-real floor (p95 - mean) or 2% of the larger value, whichever is
    larger. A difference inside the noise is no finding."""
    if distilled is None or from_data is None:
        return None
    spread = max(float(floor["p95"]) - float(floor["mean"]), 0.0) if floor else 0.0
    noise = max(spread, RELATIVE_NOISE * max(abs(distilled), abs(from_data)))
    if abs(distilled - from_data) <= noise:
        return None
    return distilled > from_data if higher else distilled < from_data


def _floor_value(floor: dict[str, Any] | None) -> float | None:
    if not floor:
        return None
    return floor.get("p95") if floor.get("zero_centred") else floor.get("mean")
