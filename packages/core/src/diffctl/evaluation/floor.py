"""Metric floors: a sample metric between two independent real samples of the same size.

A sample metric is only meaningful next to its floor (docs/design.md, "Metric floors"): even a
perfect generator scores the real-vs-real value, which shrinks as the sample size grows. The
floor is computed over several independent pairs of real samples and summarised by its mean
and 95th percentile; for estimators centred on zero (unbiased MMD², KID) "within k x of the
floor" means below k times the 95th percentile.

The 95th percentile of a handful of draws is not an estimate of the null's 95th percentile:
over 5 draws numpy's interpolated p95 lies between the 4th and 5th order statistics, whose
expected position is near the 80th percentile, and it scatters widely. For unbiased MMD² of
5,000 two-moons points against 5,000, 40 real-vs-real draws gave a p95 of 7.3e-4, while eight
disjoint groups of 5 of the same draws gave p95s from -1.2e-4 to 1.0e-3: a zero-centred
floor could come out negative, and "k x p95" meant nothing. So a zero-centred estimator gets
at least :data:`ZERO_CENTRED_DRAWS` draws and its p95 is the normal quantile
``mean + 1.645 sd`` (sample sd), which uses every draw; its order-statistic value is kept as
``p95_empirical``. Every other floor is read at its mean, and its p95 stays the empirical one.

The null of unbiased MMD² is right-skewed (most draws slightly negative, a few large), so 10
draws are still too few: the floors stream of run seed 3 gave 10 negative draws and a normal
p95 of -1.1e-4; its first 20 draws give 5.6e-4 (30 draws: 7.4e-4). For run seeds 0 / 1 / 3
the 20-draw normal p95 is 6.4e-4 / 1.3e-3 / 5.6e-4 against 30-draw empirical p95s of 8.3e-4 /
1.1e-3 / 7.7e-4.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

#: the fewest draws for the floor of a zero-centred estimator (its reference is a tail quantile)
ZERO_CENTRED_DRAWS = 20
#: the standard normal's 95th percentile
_Z95 = 1.6448536269514722


def zero_centred_p95(values: list[float]) -> float:
    """The 95th percentile of a zero-centred estimator's real-vs-real distribution from its
    draws: ``mean + z_0.95 * sd`` with the sample standard deviation (ddof=1); the mean alone
    for a single draw. The null of unbiased MMD² is a little right-skewed, so this is a
    slightly lenient reading of the tail (6.5e-4 against 7.3e-4 empirical over the 40 draws of
    the module docstring), and a far steadier one than an order statistic of a few draws."""
    v = np.asarray(values, dtype=np.float64)
    spread = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return float(v.mean()) + _Z95 * spread


def floor_seeds(seed: int, draws: int) -> list[tuple[int, int]]:
    """Two reference seeds per draw, derived from ``seed`` through numpy's ``SeedSequence``
    so that different ``seed`` values never share a sample (unlike ``seed + i``)."""
    states = np.random.SeedSequence(seed).generate_state(2 * draws, dtype=np.uint32)
    return [(int(states[2 * i]), int(states[2 * i + 1])) for i in range(draws)]


def metric_floor(metric: Callable[[Any, Any], dict[str, float]],
                 reference: Callable[[int, int], torch.Tensor], n: int, draws: int = 5,
                 seed: int = 0, on_progress: Callable[[int, int], None] | None = None,
                 zero_centred: Collection[str] = (),
                 pair: Callable[[int, int, int], tuple[Any, Any] | None] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """The real-vs-real floor of ``metric`` at sample size ``n``.

    Draw ``i`` evaluates ``metric(reference(n, s_a), reference(n, s_b))`` with the two seeds of
    :func:`floor_seeds`; ``reference(n, seed)`` must return a fresh real sample for each seed.
    Returns, for every key the metric returns, ``{"mean": ..., "p95": ..., "values": [...]}``
    with ``p95`` numpy's (linearly interpolated) 95th percentile over the draws. The keys in
    ``zero_centred`` get at least :data:`ZERO_CENTRED_DRAWS` draws, ``p95`` from
    :func:`zero_centred_p95`, the empirical one as ``p95_empirical`` and ``zero_centred:
    True``. ``pair(n, s_a, s_b)``, when given, returns the two samples of a draw instead (two
    that share no point, for a finite dataset: ``reference_pair`` of the image datasets), or
    None to fall back on two ``reference`` calls. ``on_progress(done, draws)`` is called after
    each draw.
    """
    if draws < 1:
        raise ValueError("draws must be at least 1")
    if zero_centred:
        draws = max(draws, ZERO_CENTRED_DRAWS)
    values: dict[str, list[float]] = {}
    for i, (seed_a, seed_b) in enumerate(floor_seeds(seed, draws)):
        both = pair(n, seed_a, seed_b) if pair is not None else None
        if both is None:
            both = reference(n, seed_a), reference(n, seed_b)
        result = metric(*both)
        for key, value in result.items():
            values.setdefault(key, []).append(float(value))
        if on_progress is not None:
            on_progress(i + 1, draws)
    floors: dict[str, dict[str, Any]] = {}
    for key, v in values.items():
        floors[key] = {"mean": float(np.mean(v)), "p95": float(np.percentile(v, 95)), "values": v}
        if key in zero_centred:
            floors[key] |= {"p95": zero_centred_p95(v), "p95_empirical": floors[key]["p95"],
                            "zero_centred": True}
    return floors
