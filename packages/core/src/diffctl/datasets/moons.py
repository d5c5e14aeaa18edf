"""Two interleaving half-circles, scikit-learn's ``make_moons`` reimplemented in numpy."""

from __future__ import annotations

import numpy as np

from diffctl.datasets.configs import TwoMoonsConfig
from diffctl.datasets.toy2d import Points2D


def make_moons(
    n_samples: int,
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
    shuffle: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Points on two moons, float64 (n, 2), with labels (0 outer, 1 inner), int64 (n,).

    Same definition as ``sklearn.datasets.make_moons``: ``n // 2`` outer points
    ``(cos(pi u), sin(pi u))`` and the rest inner points ``(1 - cos(pi u), 1 - sin(pi u) - 0.5)``,
    ``u`` evenly spaced on [0, 1]; optionally shuffled, then N(0, noise^2) added to each
    coordinate. With ``noise=0, shuffle=False`` the output equals scikit-learn's exactly.
    """
    rng = rng if rng is not None else np.random.default_rng()
    n_out = n_samples // 2
    n_in = n_samples - n_out
    angle_out = np.linspace(0, np.pi, n_out)
    angle_in = np.linspace(0, np.pi, n_in)
    x = np.append(np.cos(angle_out), 1 - np.cos(angle_in))
    y = np.append(np.sin(angle_out), 1 - np.sin(angle_in) - 0.5)
    points = np.vstack([x, y]).T
    labels = np.hstack([np.zeros(n_out, dtype=np.int64), np.ones(n_in, dtype=np.int64)])
    if shuffle:
        order = rng.permutation(n_samples)
        points, labels = points[order], labels[order]
    if noise > 0:
        points = points + rng.normal(scale=noise, size=points.shape)
    return points, labels


def sample_moons(n_samples: int, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``n_samples`` i.i.d. points of the two-moons distribution, float64 (n, 2).

    The distribution that :func:`make_moons` discretises: each point picks a moon with
    probability 1/2 and an angle ``pi u`` with ``u ~ U[0, 1]``, then gets N(0, noise^2) per
    coordinate. ``make_moons`` instead puts its angles on an even grid, so two of its samples
    of the same size share every angle and differ only by their noise: real-vs-real floors
    computed from them come out too small (an unbiased MMD^2 floor is negative every time).
    """
    inner = rng.random(n_samples) < 0.5
    angle = np.pi * rng.random(n_samples)
    x = np.where(inner, 1 - np.cos(angle), np.cos(angle))
    y = np.where(inner, 1 - np.sin(angle) - 0.5, np.sin(angle))
    points = np.stack([x, y], axis=1)
    if noise > 0:
        points = points + rng.normal(scale=noise, size=points.shape)
    return points


class TwoMoons(Points2D):
    """scikit-learn's two moons (shuffled, Gaussian noise ``noise``), 20 000 points by default.

    The training data follows ``make_moons`` exactly; reference samples (metrics and their
    floors) are i.i.d. draws of the same distribution (:func:`sample_moons`).
    """

    name = "two-moons"
    config: TwoMoonsConfig

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return make_moons(n, self.config.noise, rng, shuffle=True)[0]

    def draw_iid(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return sample_moons(n, self.config.noise, rng)

    @property
    def title(self) -> str:
        return f"two-moons (noise {self.config.noise:g})"
