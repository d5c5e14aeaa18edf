"""scikit-learn's bundled 8x8 handwritten digits, upsampled to 16x16: real images with no
download, small enough for quick runs and tests.

Upsampling is bilinear (``align_corners=False``): each output pixel is a convex mix of its
neighbours, so the range stays [0, 16], and the digits look like smooth strokes rather than 2x2
blocks, which suits small convolutional denoisers better.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from diffctl.datasets.image_configs import DigitsConfig
from diffctl.datasets.images import ImageDataset, describe, split_indices
from diffctl.errors import UsageError

SIZE = 16
_MAX_INTENSITY = 16.0


def load_digit_images() -> tuple[torch.Tensor, np.ndarray]:
    """All 1797 digits as float32 (N, 1, 16, 16) in [-1, 1] and their int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError("dataset 'digits' needs scikit-learn (pip install scikit-learn)"
                         ) from None
    bunch = load_digits()
    small = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32))[:, None]
    large = F.interpolate(small, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    images = (large / (_MAX_INTENSITY / 2) - 1).clamp_(-1.0, 1.0).contiguous()
    return images, np.asarray(bunch.target, dtype=np.int64)


class Digits(ImageDataset):
    """1797 digits (1, 16, 16) in [-1, 1], labels 0..9, split at random by ``seed``."""

    name = "digits"
    num_classes = 10
    config: DigitsConfig

    def __init__(self, config: DigitsConfig):
        images, labels = load_digit_images()
        train, test = split_indices(len(images), config.test_fraction,
                                     config.seed or 0)
        super().__init__(config, images[torch.from_numpy(train)], labels[train],
                         images[torch.from_numpy(test)], labels[test])

    @property
    def title(self) -> str:
        return f"digits ({len(self)} train, 8x8 upsampled to 16x16)"

    @property
    def identity(self) -> str:
        c = self.config
        return "digits:sklearn:" + describe({"size": SIZE, "test_fraction": c.test_fraction,
                                             "seed": c.seed or 0, "limit": c.limit})
