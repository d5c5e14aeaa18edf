"""Metric floors: a sample metric between two independent real samples of the same size.

A sample metric is only meaningful next to its floor (docs/design.md, "Metric floors"): even a
perfect generator scores the real-vs-real value, which shrinks as the sample size grows. The
floor is computed over several independent pairs of real samples and summarised by its mean
and 95th percentile; for estimators centred on zero (unbiased MMD², KID) "within k x of the
floor" means below k times the 95th percentile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


def floor_seeds(seed: int, draws: int) -> list[tuple[int, int]]:
    """Two reference seeds per draw, derived from ``seed`` through numpy's ``SeedSequence``
    so that different ``seed`` values never share a sample (unlike ``seed + i``)."""
    states = np.random.SeedSequence(seed).generate_state(2 * draws, dtype=np.uint32)
    return [(int(states[2 * i]), int(states[2 * i + 1])) for i in range(draws)]


def metric_floor(metric: Callable[[Any, Any], dict[str, float]],
                 reference: Callable[[int, int], torch.Tensor], n: int, draws: int = 5,
                 seed: int = 0, on_progress: Callable[[int, int], None] | None = None
                 ) -> dict[str, dict[str, Any]]:
    """The real-vs-real floor of ``metric`` at sample size ``n``.

    Draw ``i`` evaluates ``metric(reference(n, s_a), reference(n, s_b))`` with the two seeds of
    :func:`floor_seeds`; ``reference(n, seed)`` must return a fresh real sample for each seed.
    Returns, for every key the metric returns, ``{"mean": ..., "p95": ..., "values": [...]}``
    with ``p95`` numpy's (linearly interpolated) 95th percentile over the draws.
    ``on_progress(done, draws)`` is called after each draw.
    """
    if draws < 1:
        raise ValueError("draws must be at least 1")
    values: dict[str, list[float]] = {}
    for i, (seed_a, seed_b) in enumerate(floor_seeds(seed, draws)):
        result = metric(reference(n, seed_a), reference(n, seed_b))
        for key, value in result.items():
            values.setdefault(key, []).append(float(value))
        if on_progress is not None:
            on_progress(i + 1, draws)
    return {key: {"mean": float(np.mean(v)), "p95": float(np.percentile(v, 95)), "values": v}
            for key, v in values.items()}
