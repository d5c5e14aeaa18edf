"""Shared machinery of the synthetic 2-D datasets: split, reference draws, augmentation.

A subclass only says how to draw ``n`` points from its distribution (:meth:`Points2D.draw`,
float64 numpy from a ``numpy.random.Generator``). Numpy's PCG64 streams are identical on every
platform, so the same config gives bit-identical tensors everywhere. The training data and
:meth:`Points2D.reference` use different streams of the seed sequence, so a reference sample
is independent of the training data even when its seed equals the dataset's.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from diffctl.datasets.configs import Points2DConfig

_DATA_STREAM = 0
_REFERENCE_STREAM = 1


def numpy_rng(seed: int, stream: int) -> np.random.Generator:
    """A PCG64 generator for ``(stream, seed)``; negative seeds are taken modulo 2**64."""
    return np.random.default_rng([stream, seed & 0xFFFF_FFFF_FFFF_FFFF])


class Points2D:
    """A synthetic 2-D dataset: train/test tensors, fresh reference draws, augmentation.

    Satisfies :class:`diffctl.protocols.Dataset` (``dataset[i] -> (x, -1)`` over the training
    split). The trainer's fast path is :meth:`train_tensor` / :meth:`test_tensor`.
    """

    name: ClassVar[str] = "points-2d"
    sample_shape: tuple[int, ...] = (2,)
    num_classes: int | None = None

    def __init__(self, config: Points2DConfig):
        self.config = config
        data = torch.from_numpy(self.draw(config.n, numpy_rng(config.seed or 0, _DATA_STREAM)))
        data = data.to(torch.float32).contiguous()
        n_test = round(config.n * config.test_fraction)
        # draws are i.i.d., so a prefix split is a random split
        self._test, self._train = data[:n_test], data[n_test:]

    # -- to implement -----------------------------------------------------------------------
    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` points of the training set's recipe, float64 shaped (n, 2)."""
        raise NotImplementedError

    def draw_iid(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` i.i.d. points from the generating distribution, float64 shaped (n, 2).

        The same as :meth:`draw` unless the training recipe is not i.i.d. (two-moons places
        its points on a fixed grid of angles); reference samples and floors use this one.
        """
        return self.draw(n, rng)

    @property
    def title(self) -> str:
        """A human-readable description with the parameters, for plot titles."""
        return self.name

    # -- Dataset protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._train)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._train[index], -1

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.title}: {len(self._train)} train, " \
               f"{len(self._test)} test>"

    # -- fast paths -------------------------------------------------------------------------
    def train_tensor(self) -> torch.Tensor:
        """The training split, (N_train, 2) float32. Shared storage: do not modify in place."""
        return self._train

    def test_tensor(self) -> torch.Tensor:
        """The held-out split, (N_test, 2) float32 (empty when ``test_fraction`` is 0)."""
        return self._test

    def reference(self, n: int, seed: int) -> torch.Tensor:
        """A fresh real sample, (n, 2) float32: a new draw from the generating distribution.

        Reproducible per ``seed``, i.i.d. (:meth:`draw_iid`) and independent of the training
        data; metrics use it for real-vs-generated comparisons and real-vs-real floors, so
        two draws must be as different as two samples of the distribution can be.
        """
        if n < 1:
            raise ValueError(f"reference needs n >= 1, got {n}")
        return torch.from_numpy(self.draw_iid(n, numpy_rng(seed, _REFERENCE_STREAM))).float()

    # -- augmentation -----------------------------------------------------------------------
    @property
    def augmentation_enabled(self) -> bool:
        """Whether :meth:`augment` changes anything (``config.augment`` is not the identity)."""
        return self.config.augment.enabled

    def augment(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Apply an independent random ``x -> s R(theta) x + b`` to each row of ``x`` (B, 2).

        theta ~ U[-r, r] (``rotation_degrees``), s ~ U[``scale``], b ~ U[-d, d]^2
        (``translation``), about the origin. The parameters are drawn on ``generator``'s
        device (CPU by default; the global RNG when None) and moved to ``x``'s device. When
        augmentation is off, ``x`` is returned as is and no random numbers are consumed.
        """
        cfg = self.config.augment
        if not cfg.enabled:
            return x
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(x.shape[0], 4, generator=generator, device=device, dtype=torch.float64)
        theta = (2 * u[:, 0] - 1) * math.radians(cfg.rotation_degrees)
        lo, hi = cfg.scale
        s = lo + (hi - lo) * u[:, 1]
        shift = (2 * u[:, 2:] - 1) * cfg.translation
        cos, sin = s * torch.cos(theta), s * torch.sin(theta)
        # rows of (s R)^T so that out = x @ M gives s R x per example
        m = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
        m, shift = m.to(x.device, x.dtype), shift.to(x.device, x.dtype)
        return torch.einsum("bi,bij->bj", x, m) + shift
