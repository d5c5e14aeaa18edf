"""Conformance of a sample metric: named floats, determinism, floor, sensitivity, symmetry.

A sample metric is judged against its floor, the value between two independent real samples,
summarised over 5 draws by its mean and 95th percentile (:mod:`diffctl.evaluation.floor`).
Identical inputs must score zero for a distance, and for other metrics (an unbiased estimator
such as MMD², centred on zero and negative for identical inputs, or a higher-is-better score) no
worse than the floor's 95th percentile (the 5th for higher-is-better).
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

METRIC_CHECKS = (*CONFIG_CHECKS, "build", "protocol", "output", "deterministic", "identical-inputs",
                 "sensitivity", "symmetric", "devices")
FLOOR_DRAWS = 5


def gaussian_reference(n: int, seed: int) -> Any:
    """The default real data: ``n`` points of a standard 2-D Gaussian, reproducible per seed."""
    import torch

    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def check_metric(factory: str | Callable[[Any], Any], config: type[BaseModel],
                 options: Mapping[str, Any] | None = None, *,
                 reference: Callable[[int, int], Any] | None = None, name: str | None = None,
                 symmetric: bool = True, zero_for_identical: bool | None = None,
                 identical_tolerance: float | None = None, num_samples: int = 500,
                 devices: Collection[str] | None = None, label: str | None = None,
                 skip: Collection[str] = ()) -> list[str]:
    """Check a metric built as ``factory(config(**options))``; returns the passed sub-checks.

    ``reference(n, seed)`` draws real samples (default: a standard 2-D Gaussian; pass a
    dataset's ``reference`` for a metric made for particular data). The headline value is the
    key ``name`` (the registered name; default: the only key, else the first). Beyond the config
    checks: ``protocol`` (``higher_is_better`` is a bool); ``output`` (a non-empty dict of
    finite Python floats holding the headline); ``deterministic`` (same inputs, same values,
    inputs untouched); ``identical-inputs`` (when ``zero_for_identical``, the default for a
    lower-is-better metric, i.e. a distance: ``|metric(x, x)| <= identical_tolerance``, default
    ``1e-9 + 1e-6 * max|floor|``; otherwise metric(x, x) is no worse than the 95th percentile
    of the real-vs-real floor over 5 draws, or for a higher-is-better metric no lower than its
    5th percentile; pass ``zero_for_identical=False`` for an estimator centred on zero such as
    unbiased MMD² or KID, which is negative for identical inputs; not applicable to a metric of
    the generated sample alone, i.e. metric(x, x) == metric(x, y)); ``sensitivity`` (a sample
    collapsed to one point two standard deviations off the data mean scores worse than the
    floor); ``symmetric`` (when ``symmetric``: swapping the arguments keeps the headline);
    ``devices`` (inputs on each non-CPU device of ``devices``, default CUDA when available, give
    the CPU's values). ``skip=["build"]`` checks the config only.
    """
    checks = Checks(label_for("metric", factory, label), METRIC_CHECKS, skip)
    config_checks(checks, config, options)
    builder = Builder(factory, config, options)
    if "build" in checks.skip:
        return checks.passed
    metric = checks.run("build", builder.build)
    with single_thread(), preserved_rng():
        if callable(getattr(metric, "score_model", None)):
            _model_metric_checks(checks, builder, metric, name)
        else:
            _metric_checks(checks, builder, metric, reference or gaussian_reference, name,
                           symmetric, zero_for_identical, identical_tolerance, num_samples,
                           devices)
    return checks.passed


def _model_metric_checks(checks: Checks, builder: Builder, metric: Any,
                         name: str | None) -> None:
    """A metric of the model (``ModelMetric``, e.g. ``test-loss``): ``protocol``, ``output``
    (finite named floats for a small denoiser on held-out 2-D data) and ``deterministic``
    (same seed, same values; a second build agrees). The sample-only sub-checks do not apply.
    """
    import torch

    from diffctl.protocols import ModelMetric
    from diffctl.schedules.noise_schedule import NoiseSchedule

    torch.manual_seed(0)
    model = _tiny_denoiser().eval()
    scheduler = NoiseSchedule.from_betas(torch.linspace(1e-4, 0.02, 100, dtype=torch.float64))
    data = gaussian_reference(64, 0)

    def score(subject: Any) -> dict[str, float]:
        return subject.score_model(model, scheduler, data, None, seed=0)

    def protocol() -> None:
        require(isinstance(metric, ModelMetric), "missing members of "
                "diffctl.protocols.ModelMetric (higher_is_better, score_model)")
        require(isinstance(metric.higher_is_better, bool),
                f"higher_is_better must be a bool, got {metric.higher_is_better!r}")

    def output() -> None:
        values = score(metric)
        require(isinstance(values, dict) and values, f"expected a non-empty dict of named "
                f"floats, got {values!r}")
        bad = {k: v for k, v in values.items() if not isinstance(k, str) or not (
            isinstance(v, float) and math.isfinite(v))}
        require(not bad, f"values must be finite Python floats (use float(...)): {bad}")
        key = name or next(iter(values))
        require(key in values, f"the headline {key!r} is missing from {sorted(values)}")

    def deterministic() -> None:
        kept = data.clone()
        first = score(metric)
        require(same(data, kept), "the metric modified its inputs")
        require(score(metric) == first, "the same inputs and seed gave different values")
        require(score(builder.build()) == first,
                "a second metric built from the same config gave different values")

    checks.run("protocol", protocol)
    checks.run("output", output)
    checks.run("deterministic", deterministic)


def _tiny_denoiser() -> Any:
    """A small epsilon-predicting torch module over 2-D points, for model-metric checks."""
    import torch

    class Tiny(torch.nn.Module):
        prediction = "epsilon"

        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(3, 2)

        def forward(self, x, t, cond=None):
            return self.net(torch.cat([x, t[:, None].to(x.dtype) / 100], dim=1))

    return Tiny()


def _metric_checks(checks: Checks, builder: Builder, metric: Any,
                   reference: Callable[[int, int], Any], name: str | None, symmetric: bool,
                   zero_for_identical: bool | None, identical_tolerance: float | None,
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
        import numpy as np

        floors[:] = [headline(metric(a, b)) for a, b in pairs]
        same_input = headline(metric(x, x.clone()))
        shown = [round(v, 6) for v in floors]
        tol = (1e-9 + 1e-6 * max(abs(v) for v in floors) if identical_tolerance is None
               else identical_tolerance)
        zero = lower_is_better() if zero_for_identical is None else zero_for_identical
        if zero:
            ok = abs(same_input) <= tol
            failure = (f"metric(x, x) = {same_input:.6g}, expected 0 for identical inputs "
                       f"(|value| <= {tol:.3g}; floor values {shown}); pass "
                       "zero_for_identical=False for an estimator centred on zero (unbiased "
                       "MMD², KID)")
        else:
            if lower_is_better():
                p95 = float(np.percentile(floors, 95))  # as run directories report it
                ok, bound = same_input <= p95 + tol, f"<= the floor's p95 {p95:.6g}"
            else:
                p5 = float(np.percentile(floors, 5))
                ok, bound = same_input >= p5 - tol, f">= the floor's p5 {p5:.6g}"
            failure = (f"metric(x, x) = {same_input:.6g}, expected at least as good as two "
                       f"independent real samples ({bound}; floor values {shown})")
        if not ok and same_input == floors[0]:
            # metric(x, x) == metric(x, y): a metric of the generated sample alone, whose
            # value on x is one more floor draw; identical inputs say nothing about it
            raise NotApplicable
        require(ok, failure)

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
