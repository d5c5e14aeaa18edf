"""MNIST handwritten digits, read straight from the IDX files (torchvision is only needed to
download them).

The 28x28 digits are zero-padded by 2 pixels on every side to 32x32 (background -1 after
scaling), so that image networks can halve the resolution several times.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np

from diffctl.datasets.image_configs import MNISTConfig
from diffctl.datasets.images import (
    ImageDataset,
    data_root,
    describe,
    missing_hint,
    torchvision_download,
)
from diffctl.errors import UsageError

#: IDX type byte -> numpy dtype (multi-byte values are big-endian).
_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_PAD = 2


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (``.gz`` compressed or not) into a numpy array of its shape.

    Header: two zero bytes, a type byte, the number of dimensions, then one big-endian uint32
    per dimension; the values follow in C order.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise UsageError(f"{path} is not an IDX file (bad header)")
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise UsageError(f"{path} is truncated (incomplete header)")
    shape = struct.unpack(f">{ndim}I", data[4:offset])
    count = math.prod(shape)
    if len(data) != offset + count * dtype.itemsize:
        raise UsageError(f"{path} holds {len(data) - offset} bytes of data, expected "
                         f"{count * dtype.itemsize} for shape {shape}")
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)


def find_raw(raw: Path, stem: str) -> Path | None:
    """``raw/stem``, else ``raw/stem.gz``, else None."""
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


class MNIST(ImageDataset):
    """MNIST: 60 000 train / 10 000 test digits, (1, 32, 32) in [-1, 1], labels 0..9.

    Files are expected in torchvision's layout, ``<root>/MNIST/raw/{train,t10k}-{images-idx3,
    labels-idx1}-ubyte`` (``.gz`` accepted too).
    """

    name = "mnist"
    num_classes = 10
    config: MNISTConfig

    def __init__(self, config: MNISTConfig):
        self.root = data_root(config.root)
        raw = self.root / "MNIST" / "raw"
        splits = {}
        for split in ("train", "t10k"):
            stems = (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte")
            paths = [find_raw(raw, stem) for stem in stems]
            if None in paths and config.download:
                torchvision_download("MNIST", self.root)
                paths = [find_raw(raw, stem) for stem in stems]
            for stem, path in zip(stems, paths, strict=True):
                if path is None:
                    raise UsageError(missing_hint("MNIST", raw / stem))
            splits[split] = self._load(*paths)  # type: ignore[arg-type]
        super().__init__(config, *splits["train"], *splits["t10k"])

    @staticmethod
    def _load(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
        images, labels = read_idx(images_path), read_idx(labels_path)
        if images.ndim != 3 or images.dtype != np.uint8 or labels.shape != images.shape[:1]:
            raise UsageError(f"{images_path} and {labels_path} are not a matching pair of "
                             f"MNIST image and label files (shapes {images.shape}, "
                             f"{labels.shape})")
        if labels.size and not 0 <= int(labels.min()) <= int(labels.max()) < 10:
            raise UsageError(f"{labels_path} has labels outside 0..9")
        n, h, w = images.shape
        padded = np.zeros((n, 1, h + 2 * _PAD, w + 2 * _PAD), dtype=np.uint8)
        padded[:, 0, _PAD:_PAD + h, _PAD:_PAD + w] = images
        return padded, labels.astype(np.int64)

    @property
    def title(self) -> str:
        return f"MNIST ({len(self)} train, 28x28 padded to 32x32)"

    @property
    def identity(self) -> str:
        return f"mnist:{self.root}:" + describe({"size": self.sample_shape[-1],
                                                  "limit": self.config.limit})
