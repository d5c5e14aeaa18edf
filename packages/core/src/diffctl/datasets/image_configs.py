"""Config models of the built-in image datasets.

No torch, torchvision or numpy here: this module is imported whenever plugins are listed. The
shared fields are built by small functions so that every model lists its fields in a natural
order (where the data is, then how it is shaped, then how it is split and trimmed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from diffctl.config import ComponentConfig


def _root() -> Any:
    return Field(None, description="Data root holding the dataset in torchvision's layout "
                 "(null: the DIFFCTL_DATA environment variable, else ./data).")


def _download() -> Any:
    return Field(False, description="Download with torchvision when the files are missing "
                 "(off: a missing dataset is an error; nothing is fetched unasked).")


def _limit() -> Any:
    return Field(None, ge=1, description="Use only the first N training images (null: all); "
                 "for quick runs. The test split is kept whole.")


def _test_fraction() -> Any:
    return Field(0.1, ge=0.0, lt=1.0,
                 description="Share of the images held out, at random, as the test split.")


def _seed() -> Any:
    return Field(None, ge=0, description="Seed of the random train/test split and of the image "
                 "order; null: the run's 'data' stream (diffctl.seeds), 0 outside a run.")


class ImageDatasetConfig(ComponentConfig):
    """Base of the image dataset configs; each declares ``limit``, last (field order is what
    ``diffctl show`` prints, and a field declared here would come first)."""

    if TYPE_CHECKING:
        limit: int | None


class MNISTConfig(ImageDatasetConfig):
    """MNIST from ``<root>/MNIST/raw`` (official 60 000 / 10 000 split)."""

    root: str | None = _root()
    download: bool = _download()
    limit: int | None = _limit()


class CIFAR10Config(ImageDatasetConfig):
    """CIFAR-10 from ``<root>/cifar-10-batches-py`` (official 50 000 / 10 000 split)."""

    root: str | None = _root()
    download: bool = _download()
    hflip: bool = Field(False, description="Augment training batches with a random horizontal "
                        "flip (probability 1/2 per image).")
    limit: int | None = _limit()


class DigitsConfig(ImageDatasetConfig):
    """scikit-learn's bundled 8x8 digits, upsampled to 16x16 (no files, no download)."""

    test_fraction: float = _test_fraction()
    seed: int | None = _seed()
    limit: int | None = _limit()


class ImageFolderConfig(ImageDatasetConfig):
    """Any folder of PNG/JPEG images, optionally one subfolder per class."""

    path: str | None = Field(
        None, description="Folder of PNG/JPEG images, absolute or relative to the working "
        "directory (required). Subfolders, if any, are the classes (sorted names -> labels).")
    image_size: int = Field(64, ge=1, description="Side of the square images: the shorter side "
                            "is resized to this (bicubic), then the centre is cropped.")
    channels: Literal[1, 3] = Field(3, description="1 (greyscale) or 3 (RGB); every image is "
                                    "converted.")
    streaming: bool | Literal["auto"] = Field(
        "auto", description="Read training images from disk batch by batch (DataLoader "
        "workers, train.num_workers) instead of decoding them all up front. auto: stream when "
        "the training split as float32 would take over a quarter of the available memory. "
        "Either way the run trains the same batches and weights. The test split is decoded "
        "whole when first evaluated: keep test_fraction small for a very large folder.")
    test_fraction: float = _test_fraction()
    seed: int | None = _seed()
    limit: int | None = _limit()
