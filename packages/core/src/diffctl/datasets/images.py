"""Shared machinery of the image datasets: data root, splits, [-1, 1] scaling, reference draws.

A subclass loads its images once, as uint8 (N, C, H, W) arrays (or float tensors already in
[-1, 1]) with int64 labels, and hands them to :meth:`ImageDataset.__init__`. Images stay uint8
until a split is asked for as a whole; ``x / 127.5 - 1`` maps 0 to -1 and 255 to 1 exactly, and
``ds[i]`` applies the same operations to one image, so it equals ``train_tensor()[i]`` bit for
bit. Nothing is written to disk except what torchvision's downloader writes when asked to.

A split may instead be :class:`LazyImages` (a data set streamed from disk): it decodes only
the images indexed, and only :meth:`ImageDataset.train_tensor` / ``test_tensor`` decode all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from diffctl.datasets.image_configs import ImageDatasetConfig
from diffctl.datasets.toy2d import numpy_rng
from diffctl.errors import UsageError

DATA_ENV = "DIFFCTL_DATA"
_SPLIT_STREAM = 0
_REFERENCE_STREAM = 1


def data_root(root: str | None) -> Path:
    """The absolute data root: ``root``, else ``$DIFFCTL_DATA``, else ``./data``."""
    chosen = root or os.environ.get(DATA_ENV, "").strip() or "data"
    return Path(chosen).expanduser().resolve()


def missing_hint(name: str, expected: Path, downloadable: bool = True) -> str:
    """The one-line 'not found' message: where the files are expected and how to get them."""
    how = f"set {DATA_ENV} or dataset.root"
    if downloadable:
        how += ", or pass --set dataset.download=true"
    return f"{name} not found: expected {expected}; {how}"


def torchvision_download(dataset: str, root: Path) -> None:
    """Fetch ``torchvision.datasets.<dataset>`` into ``root`` (its own on-disk layout)."""
    try:
        from torchvision import datasets as tv_datasets
    except ImportError:
        raise UsageError(f"downloading {dataset} needs torchvision (pip install torchvision); "
                         f"or put the files under {root} yourself") from None
    try:
        getattr(tv_datasets, dataset)(str(root), train=True, download=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UsageError(f"{dataset} download into {root} failed ({type(exc).__name__}: "
                         f"{reason}); fetch the files yourself or check the network") from None


def split_indices(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``range(n)``: (train, test) index arrays, each in random order.

    ``round(n * test_fraction)`` examples are held out. The order is part of the split, so the
    seed changes which image sits at each index.
    """
    order = numpy_rng(seed, _SPLIT_STREAM).permutation(n)
    n_test = round(n * test_fraction)
    return order[n_test:], order[:n_test]


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] (``x / 127.5 - 1``); float input is returned as is."""
    if images.dtype != torch.uint8:
        return images
    return images.to(torch.float32).div_(127.5).sub_(1.0)


#: Stream a data set whose training split as float32 exceeds this share of available memory.
STREAMING_MEMORY_FRACTION = 0.25


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable on Linux, else the
    physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def should_stream(choice: bool | str, float32_bytes: int) -> bool:
    """``dataset.streaming``: true or false as given; auto streams when the training split
    as float32 would take more than :data:`STREAMING_MEMORY_FRACTION` of available memory."""
    if choice == "auto":
        return float32_bytes > STREAMING_MEMORY_FRACTION * available_memory()
    return bool(choice)


class LazyImages:
    """A uint8 (N, C, H, W) image array decoded on demand: ``load(i)`` gives image ``rows[i]``.
    Indexing by an int gives one (C, H, W) tensor, by indices a stacked tensor, by a slice
    another lazy array."""

    dtype = torch.uint8

    def __init__(self, load: Callable[[int], np.ndarray], rows: np.ndarray,
                 shape: tuple[int, int, int]):
        self._load, self.rows, self._item_shape = load, np.asarray(rows), shape

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self._item_shape)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return LazyImages(self._load, self.rows[index], self._item_shape)
        if isinstance(index, (int, np.integer)) or (torch.is_tensor(index) and index.ndim == 0):
            return torch.from_numpy(np.array(self._load(int(self.rows[int(index)]))))
        picked = [int(i) for i in (index.tolist() if hasattr(index, "tolist") else index)]
        out = torch.empty((len(picked), *self._item_shape), dtype=torch.uint8)
        for row, i in enumerate(picked):
            out[row] = torch.from_numpy(np.array(self._load(int(self.rows[i]))))
        return out

    def materialize(self) -> torch.Tensor:
        """Every image, decoded: (N, C, H, W) uint8."""
        return self[np.arange(len(self))]


def _tensor(array: np.ndarray | torch.Tensor | LazyImages) -> torch.Tensor | LazyImages:
    if isinstance(array, (torch.Tensor, LazyImages)):
        return array
    return torch.from_numpy(np.ascontiguousarray(array))


class ImageDataset:
    """An image dataset: (C, H, W) tensors in [-1, 1], labels, train/test splits, references.

    Satisfies :class:`diffctl.protocols.Dataset` (``ds[i] -> (x, label)`` over the training
    split, label -1 without classes); the trainer's fast path is :meth:`train_tensor`.
    ``augment`` is None unless the dataset offers a batch augmentation that is switched on.
    """

    name: ClassVar[str] = "images"
    sample_shape: tuple[int, int, int]
    num_classes: int | None = None
    augment: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None

    def __init__(self, config: ImageDatasetConfig, train: np.ndarray | torch.Tensor | LazyImages,
                 train_labels: np.ndarray | None, test: np.ndarray | torch.Tensor | LazyImages,
                 test_labels: np.ndarray | None):
        self.config = config
        train_t, test_t = _tensor(train), _tensor(test)
        if config.limit is not None:
            train_t = train_t[:config.limit]
            train_labels = None if train_labels is None else train_labels[:config.limit]
        if len(train_t) == 0:
            raise UsageError(f"{self.name}: no training images (check the files and "
                             "dataset.test_fraction)")
        self.sample_shape = tuple(int(d) for d in train_t.shape[1:])  # type: ignore[assignment]
        self._raw = {"train": train_t, "test": test_t}
        self._labels = {
            "train": None if train_labels is None else torch.as_tensor(train_labels,
                                                                       dtype=torch.int64),
            "test": None if test_labels is None else torch.as_tensor(test_labels,
                                                                     dtype=torch.int64),
        }
        self._float: dict[str, torch.Tensor] = {}

    # -- to describe the data -------------------------------------------------------------------
    @property
    def title(self) -> str:
        """A human-readable description, for plot titles."""
        c, h, w = self.sample_shape
        return f"{self.name} ({len(self)} train, {c}x{h}x{w})"

    @property
    def identity(self) -> str:
        """A string naming exactly this data (source, location, options), for cache keys."""
        raise NotImplementedError

    # -- Dataset protocol -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._raw["train"])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images = self._float.get("train")
        x = images[index] if images is not None else to_unit_range(self._raw["train"][index])
        labels = self._labels["train"]
        return x, (int(labels[index]) if labels is not None else -1)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.identity}: {len(self)} train, " \
               f"{len(self._raw['test'])} test>"

    # -- fast paths -----------------------------------------------------------------------------
    def _split(self, split: str) -> torch.Tensor:
        if split not in self._float:
            raw = self._raw[split]
            if isinstance(raw, LazyImages):
                raw = raw.materialize()
            self._float[split] = to_unit_range(raw)
        return self._float[split]

    def train_tensor(self) -> torch.Tensor:
        """The training split, (N, C, H, W) float32 in [-1, 1]. Shared: do not modify in place."""
        return self._split("train")

    def test_tensor(self) -> torch.Tensor:
        """The test split, (N_test, C, H, W) float32 in [-1, 1] (may be empty)."""
        return self._split("test")

    def train_labels(self) -> torch.Tensor | None:
        """Class labels of the training split, int64 (N,), or None without classes."""
        return self._labels["train"]

    def test_labels(self) -> torch.Tensor | None:
        """Class labels of the test split, int64 (N_test,), or None without classes."""
        return self._labels["test"]

    @property
    def augmentation_enabled(self) -> bool:
        """Whether the trainer augments batches of this dataset."""
        return self.augment is not None

    def _reference_indices(self, n: int, seed: int) -> torch.Tensor:
        """Indices of the reference draw ``(n, seed)`` into test + train (test first)."""
        if n < 1:
            raise ValueError(f"reference needs n >= 1, got {n}")
        n_test, n_train = len(self._raw["test"]), len(self)
        rng = numpy_rng(seed, _REFERENCE_STREAM)
        if n <= n_test:
            return torch.from_numpy(rng.choice(n_test, n, replace=False))
        if n > n_test + n_train:
            raise UsageError(f"{self.name} has {n_train + n_test} images (train + test), fewer "
                             f"than the {n} real samples asked for; lower sample.num_samples")
        return torch.from_numpy(rng.choice(n_test + n_train, n, replace=False))

    def reference(self, n: int, seed: int) -> torch.Tensor:
        """A real sample for metrics, (n, C, H, W) float32, reproducible per ``seed``.

        Drawn without replacement from the test split when ``n`` is at most its size, else
        from train + test together (the training images after ``limit``). Asking for more
        images than the dataset has is a :class:`UsageError`: repeated images would make
        metrics and their floors look better than they are.
        """
        return self._images_at(self._reference_indices(n, seed))

    def reference_pair(self, n: int, seed_a: int, seed_b: int
                       ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Two real samples of ``n`` images that share no image, for a real-vs-real floor:
        ``reference(n, seed_a)`` and a draw (``seed_b``) from the test + train images it does
        not hold. None when the dataset has fewer than 2n images.

        Two independent draws from a finite set share images (two draws of 500 of the 1797
        digits share over a hundred), and a shared image is an exact match that no generator
        produces: the floor comes out too good. Unbiased MMD² between two overlapping real
        digit samples was below zero in 19 of 20 draws (mean -2.5e-3, sd 1.1e-3)."""
        pair = self._pair_indices(n, seed_a, seed_b)
        return None if pair is None else (self._images_at(pair[0]), self._images_at(pair[1]))

    def _pair_indices(self, n: int, seed_a: int, seed_b: int
                      ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Indices into test + train (test first) of :meth:`reference_pair`."""
        total = len(self._raw["test"]) + len(self)
        if 2 * n > total:
            return None
        first = self._reference_indices(n, seed_a)
        rest = np.setdiff1d(np.arange(total), first.numpy())
        second = numpy_rng(seed_b, _REFERENCE_STREAM).choice(rest, n, replace=False)
        return first, torch.from_numpy(second)

    def _images_at(self, idx: torch.Tensor) -> torch.Tensor:
        """Images at indices into test + train (test first), in [-1, 1]."""
        test = self._raw["test"]
        n_test = len(test)
        from_test = idx < n_test
        if bool(from_test.all()):
            return to_unit_range(test[idx])
        out = torch.empty((len(idx), *self.sample_shape), dtype=torch.float32)
        out[from_test] = to_unit_range(test[idx[from_test]])
        out[~from_test] = to_unit_range(self._raw["train"][idx[~from_test] - n_test])
        return out

    def reference_labels(self, n: int, seed: int) -> torch.Tensor | None:
        """Class labels, int64 (n,), of exactly the images ``reference(n, seed)`` returns (for
        metrics that need labels, e.g. the class-accuracy floor); None without classes."""
        idx = self._reference_indices(n, seed)
        test, train = self._labels["test"], self._labels["train"]
        n_test = len(self._raw["test"])
        if n <= n_test:
            return None if test is None else test[idx]
        if test is None or train is None:
            return None
        return torch.cat([test, train])[idx]


def describe(options: dict[str, Any]) -> str:
    """``key=value`` pairs joined by ``:`` (None values left out), for :attr:`identity`."""
    return ":".join(f"{k}={v}" for k, v in options.items() if v is not None)
