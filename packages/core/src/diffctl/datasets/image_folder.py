"""Any folder of PNG/JPEG images, optionally sorted into one subfolder per class.

Layouts: images directly in ``path`` (no labels), or ``path/<class>/**/*.png`` with the sorted
class folder names as labels 0..K-1 (as torchvision's ``ImageFolder``). Every image is converted
to greyscale or RGB, its shorter side resized to ``image_size`` (bicubic, antialiased by PIL) and
the centre square cropped. Images are decoded once, when the dataset is built; with ``limit``
only the test split and the first ``limit`` training images are decoded.

With ``streaming`` (chosen automatically for a folder too large for memory) nothing is decoded
up front: the splits are :class:`~diffctl.datasets.images.LazyImages` and the trainer reads
the training images through :meth:`ImageFolder.stream_source`, a few batches ahead, in
DataLoader workers. Both paths decode with the same function, so they see the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffctl.datasets.image_configs import ImageFolderConfig
from diffctl.datasets.images import (
    ImageDataset,
    LazyImages,
    describe,
    should_stream,
    split_indices,
    to_unit_range,
)
from diffctl.errors import UsageError

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith(".")


def scan(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files (sorted), their labels (-1 without class folders) and the class names."""
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    top = sorted(p for p in folder.iterdir() if _is_image(p))
    if not subfolders:
        return top, [-1] * len(top), []
    if top:
        raise UsageError(f"{folder} has both images and subfolders; put every image in a class "
                         f"subfolder (e.g. {top[0].name}) or remove the subfolders")
    files: list[Path] = []
    labels: list[int] = []
    for label, sub in enumerate(subfolders):
        found = sorted(p for p in sub.rglob("*") if _is_image(p))
        files += found
        labels += [label] * len(found)
    return files, labels, [p.name for p in subfolders]


def load_image(path: Path, size: int, channels: int) -> np.ndarray:
    """Decode, convert, resize the shorter side to ``size`` and centre-crop: uint8 (C, S, S)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            w, h = img.size
            scale = size / min(w, h)
            new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
            left, top = round((new_w - size) / 2), round((new_h - size) / 2)
            img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise UsageError(f"cannot read image {path}: {exc}") from None
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


@dataclass(frozen=True)
class FolderItems:
    """The training images of a folder as an item source of the streaming path
    (:class:`diffctl.training.streaming.ItemSource`): file names only, cheap to send to
    worker processes."""

    files: tuple[Path, ...]
    image_size: int
    channels: int

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> torch.Tensor:
        array = load_image(self.files[index], self.image_size, self.channels)
        return to_unit_range(torch.from_numpy(np.array(array)))  # a writable copy


class ImageFolder(ImageDataset):
    """A folder of images as a dataset: (channels, image_size, image_size) in [-1, 1].

    ``num_classes`` is the number of class subfolders, or None (labels -1) without them. The
    train/test split is random, seeded by ``seed``.
    """

    name = "image-folder"
    config: ImageFolderConfig

    def __init__(self, config: ImageFolderConfig):
        if config.path is None:
            raise UsageError("dataset 'image-folder' needs a folder: pass --set "
                             "dataset.path=<folder of PNG/JPEG images>")
        self.path = Path(config.path).expanduser().resolve()
        if not self.path.is_dir():
            raise UsageError(f"image folder not found: expected a folder at {self.path}; set "
                             "dataset.path")
        files, labels, self.classes = scan(self.path)
        if not files:
            raise UsageError(f"no PNG/JPEG images found in {self.path}")
        self.num_classes = len(self.classes) or None
        self.num_files = len(files)
        train, test = split_indices(len(files), config.test_fraction,
                                     config.seed or 0)
        train = train[:config.limit] if config.limit is not None else train
        label_array = np.asarray(labels, dtype=np.int64)
        has_labels = self.num_classes is not None
        shape = (config.channels, config.image_size, config.image_size)
        self.streaming = should_stream(config.streaming,
                                       len(train) * int(np.prod(shape)) * 4)
        self._train_files = tuple(files[i] for i in train)
        if self.streaming:
            def one(i: int) -> np.ndarray:
                return load_image(files[i], config.image_size, config.channels)

            super().__init__(config, LazyImages(one, train, shape),
                             label_array[train] if has_labels else None,
                             LazyImages(one, test, shape),
                             label_array[test] if has_labels else None)
            return

        def decode(indices: np.ndarray) -> np.ndarray:
            shape = (len(indices), config.channels, config.image_size, config.image_size)
            out = np.empty(shape, dtype=np.uint8)
            for row, i in enumerate(indices):
                out[row] = load_image(files[i], config.image_size, config.channels)
            return out

        super().__init__(config, decode(train), label_array[train] if has_labels else None,
                         decode(test), label_array[test] if has_labels else None)

    def stream_source(self) -> FolderItems:
        """The training split for :class:`diffctl.training.streaming.StreamingData`."""
        c = self.config
        return FolderItems(self._train_files[:len(self)], c.image_size, c.channels)

    @property
    def title(self) -> str:
        c = self.config
        return f"{self.path.name} ({len(self)} train, {c.image_size}x{c.image_size})"

    @property
    def identity(self) -> str:
        c = self.config
        return f"image-folder:{self.path}:" + describe({
            "files": self.num_files, "size": c.image_size, "channels": c.channels,
            "test_fraction": c.test_fraction, "seed": c.seed or 0, "limit": c.limit})
