"""Summary statistics of generated and real samples, per dimension."""

from __future__ import annotations

from typing import Any

import numpy as np

from diffctl_metrics._common import as_numpy
from diffctl_metrics.configs import SampleStatsConfig

_STATS = ("mean", "std", "min", "max")


def _stats(x: np.ndarray) -> dict[str, np.ndarray]:
    # std: population (ddof = 0), numpy's default
    return {"mean": x.mean(0), "std": x.std(0), "min": x.min(0), "max": x.max(0)}


class SampleStats:
    """``sample-stats``: for each statistic s in mean, std, min, max and dimension d, keys
    ``gen_{s}_{d}``, ``real_{s}_{d}`` and ``diff_{s}_{d}`` (gen - real); the headline
    ``sample-stats`` is |mean_gen - mean_real|_2 + |std_gen - std_real|_2 over dimensions."""

    higher_is_better = False

    def __init__(self, config: SampleStatsConfig | None = None):
        self.config = config or SampleStatsConfig()

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        x, y = as_numpy(generated), as_numpy(real)
        if x.shape[1] != y.shape[1]:
            raise ValueError(f"dimension mismatch: {x.shape[1]} vs {y.shape[1]}")
        gen, ref = _stats(x), _stats(y)
        out: dict[str, float] = {
            "sample-stats": float(np.linalg.norm(gen["mean"] - ref["mean"])
                                  + np.linalg.norm(gen["std"] - ref["std"]))}
        for s in _STATS:
            for d in range(x.shape[1]):
                out[f"gen_{s}_{d}"] = float(gen[s][d])
                out[f"real_{s}_{d}"] = float(ref[s][d])
                out[f"diff_{s}_{d}"] = float(gen[s][d] - ref[s][d])
        return out
