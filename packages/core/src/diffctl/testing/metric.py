"""Conformance of a sample metric: named floats, determinism, floor, sensitivity, symmetry.

A sample metric is judged against its floor, the value between two independent real samples
(DESIGN.md, "Metric floors"). Identical inputs must score at least as well as that floor: zero
for a distance, about zero or below for an unbiased estimator such as MMD².
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import BaseModel

from diffctl.testing._support import (
    Builder,
    Checks,
    NotApplicable,
    default_devices,
    label_for,
    preserved_rng,
    require,
    same,
    single_thread,
)
from diffctl.testing.config import CONFIG_CHECKS, config_checks

METRIC_CHECKS = (*CONFIG_CHECKS, "protocol", "output", "deterministic", "identical-inputs",
                 "sensitivity", "symmetric", "devices")
FLOOR_DRAWS = 5


def gaussian_reference(n: int, seed: int) -> Any:
    """The default real data: ``n`` points of a standard 2-D Gaussian, reproducible per seed."""
    import torch

    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def check_metric(factory: str | Callable[[Any], Any], config: type[BaseModel],
                 options: Mapping[str, Any] | None = None, *,
                 reference: Callable[[int, int], Any] | None = None, name: str | None = None,
                 symmetric: bool = True, num_samples: int = 500,
                 devices: Collection[str] | None = None, label: str | None = None,
                 skip: Collection[str] = ()) -> list[str]:
    """Check a metric built as ``factory(config(**options))``; returns the passed sub-checks.

    ``reference(n, seed)`` draws real samples (default: a standard 2-D Gaussian; pass a
    dataset's ``reference`` for a metric made for particular data). The headline value is the
    key ``name`` (the registered name; default: the only key, else the first). Beyond the config
    checks: ``protocol`` (``higher_is_better`` is a bool); ``output`` (a non-empty dict of
    finite Python floats holding the headline); ``deterministic`` (same inputs, same values,
    inputs untouched); ``identical-inputs`` (metric(x, x) is at least as good as the
    real-vs-real floor over 5 draws); ``sensitivity`` (a sample collapsed to one point two
    standard deviations off the data mean scores worse than the floor); ``symmetric`` (when
    ``symmetric``: swapping the arguments keeps the headline);
    ``devices`` (inputs on each non-CPU device of ``devices``, default CUDA when available, give
    the CPU's values).
    """
    checks = Checks(label_for("metric", factory, label), METRIC_CHECKS, skip)
    config_checks(checks, config, options)
    builder = Builder(factory, config, options)
    metric = checks.run("build", builder.build)
    with single_thread(), preserved_rng():
        _metric_checks(checks, builder, metric, reference or gaussian_reference, name,
                       symmetric, num_samples, devices)
    return checks.passed


def _metric_checks(checks: Checks, builder: Builder, metric: Any,
                   reference: Callable[[int, int], Any], name: str | None, symmetric: bool,
                   n: int, devices: Collection[str] | None) -> None:
    import torch

    from diffctl.protocols import Metric

    pairs = [(reference(n, 1000 + 2 * i), reference(n, 1001 + 2 * i))
             for i in range(FLOOR_DRAWS)]
    x, y = pairs[0]
    # mode collapse onto a point 2 std away from the data mean: wrong location and spread
    spread = x.std(dim=0, keepdim=True)
    collapsed = x.mean(dim=0, keepdim=True) + spread * (2 + 0.01 * torch.randn(
        x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype))
    state: dict[str, Any] = {}

    def headline(values: dict[str, float]) -> float:
        key = state["key"]
        require(key in values, f"the headline {key!r} is missing from {sorted(values)}")
        return values[key]

    def lower_is_better() -> bool:
        return not getattr(metric, "higher_is_better", False)

    def protocol() -> None:
        require(isinstance(metric, Metric), "missing members of diffctl.protocols.Metric "
                "(higher_is_better, __call__)")
        require(isinstance(metric.higher_is_better, bool),
                f"higher_is_better must be a bool, got {metric.higher_is_better!r}")

    def output() -> None:
        values = metric(x, y)
        require(isinstance(values, dict) and values, f"expected a non-empty dict of named "
                f"floats, got {values!r}")
        bad = {k: v for k, v in values.items() if not isinstance(k, str) or not (
            isinstance(v, float) and math.isfinite(v))}
        require(not bad, f"values must be finite Python floats (use float(...)): {bad}")
        state["key"] = name or next(iter(values))
        headline(values)

    def deterministic() -> None:
        kept = (x.clone(), y.clone())
        first = metric(x, y)
        require(same(x, kept[0]) and same(y, kept[1]), "the metric modified its inputs")
        require(metric(x, y) == first, "the same inputs gave different values")
        require(builder.build()(x, y) == first,
                "a second metric built from the same config gave different values")

    floors: list[float] = []

    def identical_inputs() -> None:
        floors[:] = [headline(metric(a, b)) for a, b in pairs]
        same_input = headline(metric(x, x.clone()))
        tol = 1e-9 + 1e-6 * max(abs(v) for v in floors)
        if lower_is_better():
            ok, bound = same_input <= max(floors) + tol, f"<= {max(floors):.6g}"
        else:
            ok, bound = same_input >= min(floors) - tol, f">= {min(floors):.6g}"
        require(ok, f"metric(x, x) = {same_input:.6g}, expected at least as good as two "
                f"independent real samples ({bound}; floor values "
                f"{[round(v, 6) for v in floors]})")

    def sensitivity() -> None:
        if not floors:
            floors[:] = [headline(metric(a, b)) for a, b in pairs]
        value = headline(metric(collapsed, x))
        worse = value > max(floors) if lower_is_better() else value < min(floors)
        require(worse, f"a sample collapsed to a point off the data scores {value:.6g}, not "
                f"worse than two independent real samples ({[round(v, 6) for v in floors]})")

    def symmetric_() -> None:
        if not symmetric:
            raise NotApplicable
        for a, b in ((x, y), (collapsed, x)):
            ab, ba = headline(metric(a, b)), headline(metric(b, a))
            require(math.isclose(ab, ba, rel_tol=1e-6, abs_tol=1e-9),
                    f"metric(a, b) = {ab:.9g} but metric(b, a) = {ba:.9g}; pass "
                    "symmetric=False if the metric is asymmetric by design")

    def devices_() -> None:
        others = [d for d in default_devices(devices) if d != "cpu"]
        if not others:
            raise NotApplicable
        expected = headline(metric(x, y))
        for device in others:
            got = headline(metric(x.to(device), y.to(device)))
            require(math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-7),
                    f"inputs on {device} gave {got:.6g}, on the CPU {expected:.6g}")

    checks.run("protocol", protocol)
    checks.run("output", output)
    if "key" not in state:  # output skipped: still know the headline
        state["key"] = name or next(iter(metric(x, y)))
    checks.run("deterministic", deterministic)
    checks.run("identical-inputs", identical_inputs)
    checks.run("sensitivity", sensitivity)
    checks.run("symmetric", symmetric_)
    checks.run("devices", devices_)
