"""Maximum mean discrepancy: the unbiased MMD² estimator of Gretton et al. (2012, JMLR), eq. 3.

For samples X = (x_1..x_m) and Y = (y_1..y_n) and a kernel k::

    MMD²_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
             - 2/(mn) sum_{i, j} k(x_i, y_j)

It is centred on zero when X and Y come from the same distribution, so it can be slightly
negative; compare it with its real-vs-real floor (``diffctl.evaluation.floor``).

Bandwidth. The median heuristic (median pairwise distance) is taken over the *real* sample
only. Over the pooled sample, poor generated points (spread out, or far from the data) would
inflate the bandwidth, and a wider kernel shrinks MMD: the worse the samples, the more lenient
the metric. It would also make the kernel of ``metric(generated, real)`` differ from the one
of the floor ``metric(real_a, real_b)``. From the real sample alone, the kernel is a property
of the data distribution and the sample size: the evaluation and its floor use the same
bandwidth up to the sampling noise of a median of real points. Set ``bandwidth`` to fix the
kernel exactly (e.g. to compare runs on different real draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from diffctl_metrics._common import as_numpy, as_tensor, subsample_indices
from diffctl_metrics.configs import MMDLinearConfig, MMDRBFConfig


def median_heuristic(z: torch.Tensor, max_points: int = 2000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance of ``z`` (N, D) on a seeded subsample of at most
    ``max_points`` rows (numpy's median: the mean of the two middle values for an even count).
    Falls back to 1.0 when the median is 0 (more than half the pairs coincide)."""
    idx = torch.from_numpy(subsample_indices(len(z), max_points, seed)).to(z.device)
    dists = torch.pdist(z.index_select(0, idx).double())
    median = float(np.median(dists.cpu().numpy())) if dists.numel() else 0.0
    return median if median > 0 else 1.0


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, gammas: Sequence[float], block: int,
                same: bool) -> float:
    """Sum of k(a_i, b_j) with k = sum_g exp(-g |a_i - b_j|²), over all pairs, or over i != j
    when ``same`` (a is b: only blocks on and above the diagonal are computed)."""
    total = 0.0  # python float: float64 accumulation of the per-block float64 sums
    rows, cols = min(block, len(a)), min(block, len(b))
    kbuf = torch.empty(rows, cols, dtype=a.dtype, device=a.device)
    tbuf = torch.empty_like(kbuf) if len(gammas) > 1 else kbuf
    for i in range(0, len(a), block):
        ai = a[i:i + block]
        for j in range(i if same else 0, len(b), block):
            # exact differences (no |a|² + |b|² - 2ab cancellation): the diagonal is exactly 0
            d2 = torch.cdist(ai, b[j:j + block],
                             compute_mode="donot_use_mm_for_euclid_dist").square_()
            k = kbuf[:d2.shape[0], :d2.shape[1]]
            tmp = tbuf[:d2.shape[0], :d2.shape[1]]
            # in place into preallocated buffers: the exps of each block dominate the cost
            torch.mul(d2, -gammas[0], out=k).exp_()
            for g in gammas[1:]:
                k.add_(torch.mul(d2, -g, out=tmp).exp_())
            s = float(k.sum())
            if same and i == j:
                total += s - float(k.diagonal().sum())
            else:
                total += 2.0 * s if same else s
    return total


def mmd2_rbf(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float],
             block_size: int = 1024) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) with k(x, y) = sum_s exp(-|x-y|² / (2 s²))
    over ``bandwidths`` s, computed in float64 blocks of ``block_size`` rows/columns."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("unbiased MMD needs at least 2 points in each sample")
    x, y = x.double(), y.double().to(x.device)
    gammas = [1.0 / (2.0 * s * s) for s in bandwidths]
    kxx = _kernel_sum(x, x, gammas, block_size, same=True)
    kyy = _kernel_sum(y, y, gammas, block_size, same=True)
    kxy = _kernel_sum(x, y, gammas, block_size, same=False)
    return kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - 2.0 * kxy / (m * n)


def mmd2_linear(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with k(x, y) = x·y (Gretton et al. 2012, eq. 3).

    With S = sum_i x_i, sum_{i != j} x_i·x_j = |S|² - sum_i |x_i|², and the three terms of
    eq. 3 collapse to ``|mean(x) - mean(y)|² - tr(C_x)/m - tr(C_y)/n`` with C the unbiased
    (ddof = 1) sample covariances: the squared mean difference minus its expected bias.
    """
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("unbiased MMD needs at least 2 points in each sample")
    diff = x.mean(axis=0) - y.mean(axis=0)
    return float(diff @ diff - x.var(axis=0, ddof=1).sum() / m - y.var(axis=0, ddof=1).sum() / n)


class RBFMMD:
    """``mmd-rbf``: unbiased MMD² with a (multi-scale) Gaussian kernel.

    Returns ``{"mmd-rbf": MMD²_u, "mmd_bandwidth": sigma}``, sigma being the base bandwidth
    (fixed, or the median heuristic on the real sample: see the module docstring) before the
    ``scales`` multipliers. Not symmetric in its arguments when the bandwidth is the median
    heuristic (only ``real`` sets it).
    """

    higher_is_better = False
    #: unbiased MMD^2 is centred on zero: its floor is read at the 95th percentile
    zero_centred = True

    def __init__(self, config: MMDRBFConfig | None = None):
        self.config = config or MMDRBFConfig()

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        cfg = self.config
        x = as_tensor(generated)
        y = as_tensor(real, device=x.device)
        sigma = cfg.bandwidth or median_heuristic(y, cfg.median_points, cfg.seed)
        value = mmd2_rbf(x, y, [sigma * s for s in cfg.scales], cfg.block_size)
        return {"mmd-rbf": value, "mmd_bandwidth": float(sigma)}


class LinearMMD:
    """``mmd-linear``: unbiased MMD² with the linear kernel; ``{"mmd-linear": value}``."""

    higher_is_better = False
    #: unbiased MMD^2 is centred on zero: its floor is read at the 95th percentile
    zero_centred = True

    def __init__(self, config: MMDLinearConfig | None = None):
        self.config = config or MMDLinearConfig()

    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        return {"mmd-linear": mmd2_linear(as_numpy(generated), as_numpy(real))}
