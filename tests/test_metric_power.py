"""Power of the 2-D headline metrics: bad samples must fail them, real samples must pass.

Against independent real samples of two-moons and gmm-ring, each bad sample is scored and
compared with the metric's real-vs-real floor (``metric_floor``, 10 draws at the same n). A
value *fails* when it is above the floor's p95 by more than two standard deviations of the
floor values ("clearly above" the noise of real data); an independent real sample must stay
below that line. The bad samples:

- blob: a Gaussian with the data's mean and covariance;
- shifted: a fresh real sample moved by 0.1 (the two-moons noise std, half a gmm-ring mode std);
- scaled: a fresh real sample scaled 1.03x about its own mean;
- smeared ring: gmm-ring points moved along the circle by noise of std a sixth of the arc
  between modes (0.65): 58% of the points within 3 std of a mode against 99% for real data,
  the smeared ring of issue 13, with all 8 modes "covered".

Sizes were settled before the tests were written, over floor seeds 0-3 with 3 bad draws each
(and an earlier sweep of 10 bad draws against 30-40-draw floors); the tests use the first
seeds. At n = 2000:

- c2st (kNN, k = 57): floor mean 0.493-0.505, p95 0.505-0.522, fail line 0.52-0.54. Two-moons
  blob >= 0.736, shifted >= 0.587; gmm-ring blob >= 0.888, shifted >= 0.576, scaled >= 0.621,
  smeared >= 0.747; real samples <= 0.516. The 1.03x moons are the hard case: 0.497-0.545 at
  n = 2000 (below the p95 on some seeds), 0.526-0.548 at n = 5000 (k = 89; p95 0.507-0.510,
  real samples <= 0.511; 0.522-0.540 in the 10-draw sweep against a p95 of 0.514).
- mmd-rbf, multi-scale: two-moons p95 0.0013-0.0034, blob >= 21x the p95, shifted >= 5.3x;
  gmm-ring p95 0.0020-0.0038, blob >= 95x, scaled >= 5.2x, smeared >= 15x. It does not reliably
  see the 1.03x moons (0.09-2.8x the p95 at n = 2000, 0.8-3.1x at 5000) or the shifted ring
  (2.2-4.8x, not always past the line): c2st does. The single median-scale Gaussian it
  replaces scores the smeared ring inside its floor (-0.0002 to 0.00002 on the first seeds,
  line 0.0015).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import diffctl
from diffctl.evaluation.floor import metric_floor

N = 2000
FLOOR_DRAWS = 10
SEEDS = (0, 1, 2)  # bad samples from reference seeds 500 + s, real comparison 700 + s


def reference(name: str):
    return diffctl.create("dataset", name).reference


def real(name: str, n: int, seed: int) -> np.ndarray:
    return reference(name)(n, seed).double().numpy()


def blob(name: str, n: int, seed: int) -> np.ndarray:
    """A Gaussian with the mean and covariance of 20 000 real points."""
    big = real(name, 20_000, 10**6 + seed)
    return np.random.default_rng(seed).multivariate_normal(big.mean(0), np.cov(big.T), size=n)


def shifted(name: str, n: int, seed: int, by: float = 0.1) -> np.ndarray:
    """A fresh real sample moved by ``by`` along the diagonal."""
    return real(name, n, seed) + by / math.sqrt(2)


def scaled(name: str, n: int, seed: int, factor: float = 1.03) -> np.ndarray:
    """A fresh real sample scaled about its own mean."""
    x = real(name, n, seed)
    return (x - x.mean(0)) * factor + x.mean(0)


def smeared_ring(n: int, seed: int, fraction: float = 1 / 6) -> np.ndarray:
    """gmm-ring points moved along the circle: arc-length noise of std ``fraction`` of the
    2 pi r / K arc between modes."""
    ds = diffctl.create("dataset", "gmm-ring")
    x = ds.reference(n, seed).double().numpy()
    radius, k = ds.config.radius, ds.config.num_components
    angle_std = fraction * (2 * math.pi * radius / k) / radius
    r, angle = np.hypot(x[:, 0], x[:, 1]), np.arctan2(x[:, 1], x[:, 0])
    angle = angle + np.random.default_rng(seed + 17).normal(0.0, angle_std, n)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


BAD = {
    "blob": blob,
    "shifted": shifted,
    "scaled": scaled,
    "smeared": lambda name, n, seed: smeared_ring(n, seed),
}


def fail_line(metric, name: str, key: str, n: int, seed: int = 0) -> tuple[float, dict]:
    """The floor's p95 plus two standard deviations of its values, and the floor."""
    floor = metric_floor(metric, reference(name), n, draws=FLOOR_DRAWS, seed=seed)[key]
    return floor["p95"] + 2 * float(np.std(floor["values"])), floor


def scores(metric, key: str, name: str, bad: str, n: int, seeds=SEEDS) -> list[float]:
    return [metric(BAD[bad](name, n, 500 + s), real(name, n, 700 + s))[key] for s in seeds]


def real_scores(metric, key: str, name: str, n: int, seeds=SEEDS) -> list[float]:
    return [metric(real(name, n, 900 + s), real(name, n, 700 + s))[key] for s in seeds]


# -- c2st, the headline ------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "bads"), [
    ("two-moons", ("blob", "shifted")),
    ("gmm-ring", ("blob", "shifted", "scaled", "smeared")),
])
def test_c2st_fails_bad_samples_and_passes_real_ones(name: str, bads: tuple[str, ...]) -> None:
    metric = diffctl.create("metric", "c2st")
    line, floor = fail_line(metric, name, "c2st", N)
    assert 0.48 < floor["mean"] < 0.52  # chance level
    assert max(real_scores(metric, "c2st", name, N)) <= line
    for bad in bads:
        values = scores(metric, "c2st", name, bad, N)
        assert min(values) > line, (bad, values, line, floor)


def test_c2st_sees_the_moons_scaled_by_3_percent_at_5000_samples() -> None:
    """The hardest case (module docstring): above the floor's p95, real samples below it."""
    n = 5000
    metric = diffctl.create("metric", "c2st")
    floor = metric_floor(metric, reference("two-moons"), n, draws=FLOOR_DRAWS)["c2st"]
    values = scores(metric, "c2st", "two-moons", "scaled", n)
    assert min(values) > floor["p95"], (values, floor)
    assert max(real_scores(metric, "c2st", "two-moons", n)) <= floor["p95"] + 2 * np.std(
        floor["values"])


# -- mmd-rbf, multi-scale ----------------------------------------------------------------------
def test_multiscale_mmd_sees_the_smeared_ring_that_the_median_bandwidth_misses() -> None:
    multi = diffctl.create("metric", "mmd-rbf")
    single = diffctl.create("metric", "mmd-rbf", scales=[1.0])  # the old median heuristic
    line, floor = fail_line(multi, "gmm-ring", "mmd-rbf", N)
    smeared = scores(multi, "mmd-rbf", "gmm-ring", "smeared", N)
    assert min(smeared) > line and min(smeared) > 5 * floor["p95"], (smeared, floor)
    assert max(real_scores(multi, "mmd-rbf", "gmm-ring", N)) <= line
    # the median bandwidth (~7 on a ring of radius 5) cannot tell the smear from real data
    old_line, old_floor = fail_line(single, "gmm-ring", "mmd-rbf", N)
    old = scores(single, "mmd-rbf", "gmm-ring", "smeared", N)
    assert max(old) < old_line, (old, old_floor)
    # the multi-scale kernel: from the median (~7) down past the modes' std (0.2)
    out = multi(smeared_ring(N, 500), real("gmm-ring", N, 700))
    assert out["mmd_bandwidth"] == pytest.approx(7.07, abs=0.1)
    assert out["mmd_bandwidth_min"] < 0.05 and out["mmd_num_scales"] >= 8


@pytest.mark.parametrize(("name", "bads"), [
    ("two-moons", ("blob", "shifted")),
    ("gmm-ring", ("blob", "scaled")),
])
def test_multiscale_mmd_fails_bad_samples(name: str, bads: tuple[str, ...]) -> None:
    metric = diffctl.create("metric", "mmd-rbf")
    line, floor = fail_line(metric, name, "mmd-rbf", N)
    for bad in bads:
        values = scores(metric, "mmd-rbf", name, bad, N, seeds=SEEDS[:2])
        assert min(values) > line and min(values) > 2 * floor["p95"], (bad, values, floor)


def test_the_smeared_ring_covers_every_mode_but_is_not_the_ring() -> None:
    """Why mode-coverage cannot be the headline: all 8 modes are hit."""
    out = diffctl.create("metric", "mode-coverage")(smeared_ring(5000, 1), None)
    assert out["modes_hit"] == 8
    assert 0.5 < out["within_3std"] < 0.65  # real data: 0.989
