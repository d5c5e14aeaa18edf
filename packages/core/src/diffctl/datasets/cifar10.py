"""CIFAR-10 from its official "python version" batches, with optional horizontal flips.

The batches are Python pickles (the format the dataset is published in, and what torchvision
unpacks to ``<root>/cifar-10-batches-py``). Unpickling can run arbitrary code, so they are read
with an unpickler that only admits the few numpy constructors a batch needs; anything else is
refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffctl.datasets.image_configs import CIFAR10Config
from diffctl.datasets.images import (
    ImageDataset,
    data_root,
    describe,
    missing_hint,
    torchvision_download,
)
from diffctl.errors import UsageError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"

# the reconstructors numpy's own pickles name, looked up by behaviour so that both the
# ``numpy.core`` (numpy 1) and ``numpy._core`` (numpy 2) spellings resolve to them
_NUMPY_GLOBALS = {
    "_reconstruct": np.zeros(1).__reduce__()[0],
    "scalar": np.float64(0).__reduce__()[0],
    "ndarray": np.ndarray,
    "dtype": np.dtype,
}


class _BatchUnpickler(pickle.Unpickler):
    """Admits numpy arrays, dtypes and scalars only (plus the builtin containers)."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "numpy" and name in _NUMPY_GLOBALS:
            return _NUMPY_GLOBALS[name]
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> uint8 images (N, 3, 32, 32) and int64 labels (N,)."""
    try:
        with open(path, "rb") as fh:
            batch = _BatchUnpickler(fh, encoding="latin1").load()
        data = batch.get("data", batch.get(b"data"))
        labels = batch.get("labels", batch.get(b"labels"))
        images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (pickle.UnpicklingError, AttributeError, TypeError, ValueError, EOFError) as exc:
        raise UsageError(f"{path} is not a CIFAR-10 batch ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if len(labels) != len(images) or (labels.size and not 0 <= labels.min() <= labels.max() < 10):
        raise UsageError(f"{path} is not a CIFAR-10 batch (labels do not match the images)")
    return images, labels


class CIFAR10(ImageDataset):
    """CIFAR-10: 50 000 train / 10 000 test images, (3, 32, 32) in [-1, 1], labels 0..9.

    ``hflip`` turns on :meth:`hflip` as the training augmentation (``augment``).
    """

    name = "cifar10"
    num_classes = 10
    config: CIFAR10Config

    def __init__(self, config: CIFAR10Config):
        self.root = data_root(config.root)
        folder = self.root / FOLDER
        names = (*TRAIN_BATCHES, TEST_BATCH)
        if config.download and not all((folder / n).is_file() for n in names):
            torchvision_download("CIFAR10", self.root)
        for n in names:
            if not (folder / n).is_file():
                raise UsageError(missing_hint("CIFAR-10", folder / n))
        train = [read_batch(folder / n) for n in TRAIN_BATCHES]
        test_images, test_labels = read_batch(folder / TEST_BATCH)
        super().__init__(config, np.concatenate([b[0] for b in train]),
                         np.concatenate([b[1] for b in train]), test_images, test_labels)
        if config.hflip:
            self.augment = self.hflip

    def hflip(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mirror each image of the batch ``x`` (B, C, H, W) left-right with probability 1/2.

        One uniform number per image is drawn on ``generator``'s device (CPU by default; the
        global RNG when None); image ``i`` is flipped when it is below 0.5. Returns a new tensor.
        """
        device = generator.device if generator is not None else torch.device("cpu")
        flip = torch.rand(x.shape[0], generator=generator, device=device) < 0.5
        flip = flip.to(x.device).view(-1, *([1] * (x.dim() - 1)))
        return torch.where(flip, x.flip(-1), x)

    @property
    def title(self) -> str:
        return f"CIFAR-10 ({len(self)} train, 32x32)"

    @property
    def identity(self) -> str:
        return f"cifar10:{self.root}:" + describe({"size": 32, "limit": self.config.limit})
