"""The image datasets: mnist, cifar10, digits and image-folder (tiny fake data, no download)."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import diffctl
from diffctl import protocols
from diffctl.datasets.images import split_indices
from diffctl.datasets.mnist import read_idx
from diffctl.errors import ConfigError, UsageError
from diffctl.testing import check_component

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# -- fake data on disk ------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """IDX: two zero bytes, type 0x08 (uint8), ndim, big-endian dims, then the bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def fake_mnist(root: Path, n_train: int = 12, n_test: int = 5, gz: bool = False) -> dict:
    """Random 28x28 digits (distinct) with labels i mod 10 under ``root/MNIST/raw``."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = 255  # every pixel value reachable, the extremes included
        images[:, 0, 1] = 0
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(raw / f"{split}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels, gz)
        data[split] = (images, labels)
    return data


def fake_cifar(root: Path, per_batch: int = 4, n_test: int = 6) -> dict:
    """Five training batches and a test batch in the python-pickle layout (bytes keys)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [(k + i) % 10 for i in range(n)]
        with open(folder / name, "wb") as fh:
            pickle.dump({b"batch_label": b"fake", b"data": data, b"labels": labels}, fh)
        batches[name] = (data, labels)
    return batches


def write_image(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def centre_white(width: int, height: int, side: int) -> np.ndarray:
    """An RGB image, black except a white ``side`` x ``side`` square in the middle."""
    a = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - side) // 2, (width - side) // 2
    a[top:top + side, left:left + side] = 255
    return a


def unit(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8.astype(np.float32) / 127.5 - 1)


# -- mnist ------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_shapes_padding_range_labels(tmp_path: Path, gz: bool) -> None:
    data = fake_mnist(tmp_path, gz=gz)
    ds = diffctl.create("dataset", "mnist", root=str(tmp_path))
    assert isinstance(ds, protocols.Dataset)
    assert ds.sample_shape == (1, 32, 32) and ds.num_classes == 10 and ds.augment is None
    train, test = ds.train_tensor(), ds.test_tensor()
    assert train.shape == (12, 1, 32, 32) and test.shape == (5, 1, 32, 32) and len(ds) == 12
    assert train.dtype == test.dtype == torch.float32
    assert train.min() == -1 and train.max() == 1
    images, labels = data["train"]
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (train[:, 0][:, border] == -1).all()
    assert torch.equal(train[:, 0, 2:30, 2:30], unit(images))
    assert torch.equal(test[:, 0, 2:30, 2:30], unit(data["t10k"][0]))
    assert ds.train_labels().dtype == torch.int64
    assert ds.train_labels().tolist() == labels.tolist()
    assert ds.test_labels().tolist() == data["t10k"][1].tolist()
    x, y = ds[7]
    assert torch.equal(x, train[7]) and y == 7 and isinstance(y, int)
    assert ds.identity == f"mnist:{tmp_path.resolve()}:size=32"
    assert "MNIST" in ds.title


def test_mnist_item_before_and_after_tensor_agree(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    ds = diffctl.create("dataset", "mnist", root=str(tmp_path))
    before = ds[3][0].clone()
    assert torch.equal(before, ds.train_tensor()[3]) and torch.equal(before, ds[3][0])


def test_mnist_limit(tmp_path: Path) -> None:
    fake_mnist(tmp_path)
    full = diffctl.create("dataset", "mnist", root=str(tmp_path))
    ds = diffctl.create("dataset", "mnist", root=str(tmp_path), limit=4)
    assert len(ds) == 4 and ds.train_tensor().shape == (4, 1, 32, 32)
    assert torch.equal(ds.train_tensor(), full.train_tensor()[:4])
    assert ds.train_labels().tolist() == [0, 1, 2, 3]
    assert len(ds.test_tensor()) == 5  # the test split is never limited
    assert ds.identity.endswith(":limit=4")
    with pytest.raises(ConfigError):
        diffctl.create("dataset", "mnist", root=str(tmp_path), limit=0)


def test_data_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mnist(tmp_path / "envroot")
    monkeypatch.setenv("DIFFCTL_DATA", str(tmp_path / "envroot"))
    ds = diffctl.create("dataset", "mnist")
    assert len(ds) == 12 and str((tmp_path / "envroot").resolve()) in ds.identity
    monkeypatch.delenv("DIFFCTL_DATA")
    monkeypatch.chdir(tmp_path)
    fake_mnist(tmp_path / "data", n_train=3)
    assert len(diffctl.create("dataset", "mnist")) == 3  # ./data by default


def test_missing_data_is_a_one_line_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        diffctl.create("dataset", "mnist", root=str(tmp_path))
    msg = str(err.value)
    expected = tmp_path.resolve() / "MNIST" / "raw" / "train-images-idx3-ubyte"
    assert "\n" not in msg and str(expected) in msg
    assert "DIFFCTL_DATA" in msg and "dataset.download=true" in msg
    with pytest.raises(UsageError) as err:
        diffctl.create("dataset", "cifar10", root=str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path.resolve() / "cifar-10-batches-py") in msg
    for options in ({}, {"path": str(tmp_path / "nowhere")}):
        with pytest.raises(UsageError) as err:
            diffctl.create("dataset", "image-folder", **options)
        assert "\n" not in str(err.value) and "dataset.path" in str(err.value)


def test_bad_idx_files_are_usage_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(UsageError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"abc")
    with pytest.raises(UsageError, match="expected 5"):
        read_idx(short)
    good = tmp_path / "good.gz"
    write_idx(tmp_path / "good", np.arange(6, dtype=np.uint8).reshape(2, 3), gz=True)
    assert read_idx(good).tolist() == [[0, 1, 2], [3, 4, 5]]


# -- reference --------------------------------------------------------------------------------
def test_reference_is_deterministic_and_without_replacement(tmp_path: Path) -> None:
    fake_mnist(tmp_path, n_train=12, n_test=5)
    ds = diffctl.create("dataset", "mnist", root=str(tmp_path))
    test, train = ds.test_tensor(), ds.train_tensor()

    def rows(t: torch.Tensor) -> list[bytes]:
        return [r.numpy().tobytes() for r in t]

    a, b = ds.reference(4, seed=3), ds.reference(4, seed=3)
    assert a.shape == (4, 1, 32, 32) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(ds.reference(4, seed=4), a)
    assert len(set(rows(a))) == 4 and set(rows(a)) <= set(rows(test))  # from the test split
    assert sorted(rows(ds.reference(5, seed=0))) == sorted(rows(test))
    big = ds.reference(15, seed=1)  # more than the test split: train + test
    assert torch.equal(big, ds.reference(15, seed=1))
    assert len(set(rows(big))) == 15 and set(rows(big)) <= set(rows(test)) | set(rows(train))
    assert sorted(rows(ds.reference(17, seed=2))) == sorted(rows(test) + rows(train))
    with pytest.raises(UsageError, match="17 images"):
        ds.reference(18, seed=0)


def test_reference_labels_are_those_of_the_reference_images(tmp_path: Path) -> None:
    """reference_labels(n, seed) labels exactly the images reference(n, seed) returns, from
    the test split alone and from train + test (the images are distinct: rows identify them)."""
    fake_mnist(tmp_path, n_train=12, n_test=5)
    ds = diffctl.create("dataset", "mnist", root=str(tmp_path))
    label_of = {x.numpy().tobytes(): int(y) for split in ("train", "test")
                for x, y in zip(getattr(ds, f"{split}_tensor")(),
                                getattr(ds, f"{split}_labels")(), strict=True)}
    for n, seed in ((4, 3), (5, 0), (15, 1), (17, 2)):
        labels = ds.reference_labels(n, seed)
        assert labels.dtype == torch.int64 and labels.shape == (n,)
        assert labels.tolist() == [label_of[x.numpy().tobytes()] for x in ds.reference(n, seed)]
    assert ds.reference_labels(15, 1).tolist() != ds.reference_labels(15, 4).tolist()


def test_a_floors_two_real_samples_share_no_image(tmp_path: Path) -> None:
    """reference_pair(n, a, b): the first sample is reference(n, a), the second shares no image
    with it (from the rest of train + test); None when there are fewer than 2n images."""
    fake_mnist(tmp_path, n_train=12, n_test=5)
    ds = diffctl.create("dataset", "mnist", root=str(tmp_path))

    def rows(t: torch.Tensor) -> set[bytes]:
        return {r.numpy().tobytes() for r in t}

    for n, (seed_a, seed_b) in ((4, (3, 9)), (8, (1, 2)), (3, (0, 0))):
        first, second = ds.reference_pair(n, seed_a, seed_b)
        assert torch.equal(first, ds.reference(n, seed_a)) and second.shape == first.shape
        assert len(rows(second)) == n and not rows(first) & rows(second)
        assert torch.equal(second, ds.reference_pair(n, seed_a, seed_b)[1])  # reproducible
    assert ds.reference_pair(9, 0, 1) is None  # 17 images: no two disjoint samples of 9


def test_the_mmd_floor_of_a_finite_dataset_is_centred() -> None:
    """Two overlapping draws of the bundled digits put unbiased MMD² below zero nearly every
    time; two disjoint ones centre it (the floors in runs use reference_pair)."""
    from diffctl.evaluation.floor import metric_floor

    ds = diffctl.create("dataset", "digits")
    metric = diffctl.create("metric", "mmd-rbf")
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    mmd = lambda a, b: metric(flat(a), flat(b))  # noqa: E731
    kw = {"draws": 20, "seed": 0, "zero_centred": ("mmd-rbf",)}
    overlapping = metric_floor(mmd, ds.reference, 400, **kw)["mmd-rbf"]
    disjoint = metric_floor(mmd, ds.reference, 400, pair=ds.reference_pair, **kw)["mmd-rbf"]
    assert overlapping["p95"] < 0  # the defect: every draw shares images
    spread = np.std(disjoint["values"], ddof=1)
    assert abs(disjoint["mean"]) < 3 * spread / np.sqrt(20) and disjoint["p95"] > 0


# -- cifar10 ----------------------------------------------------------------------------------
def test_cifar10_layout_labels_and_limit(tmp_path: Path) -> None:
    batches = fake_cifar(tmp_path)
    ds = diffctl.create("dataset", "cifar10", root=str(tmp_path))
    assert isinstance(ds, protocols.Dataset)
    assert ds.sample_shape == (3, 32, 32) and ds.num_classes == 10 and ds.augment is None
    assert len(ds) == 20 and ds.test_tensor().shape == (6, 3, 32, 32)
    data, labels = batches["data_batch_2"]
    x, y = ds[4]  # first image of the second batch
    assert y == labels[0] and ds.train_labels()[4:8].tolist() == labels
    # rows are 1024 red values, then 1024 green, then 1024 blue, each row-major
    assert torch.equal(x, unit(data[0].reshape(3, 32, 32)))
    assert torch.equal(ds.test_tensor()[5], unit(batches["test_batch"][0][5].reshape(3, 32, 32)))
    assert ds.test_labels().tolist() == batches["test_batch"][1]
    assert ds.identity == f"cifar10:{tmp_path.resolve()}:size=32"
    assert len(diffctl.create("dataset", "cifar10", root=str(tmp_path), limit=7)) == 7


def test_cifar10_refuses_pickles_with_code(tmp_path: Path) -> None:
    fake_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.getcwd, ())

    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as fh:
        pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(UsageError, match="refusing to load"):
        diffctl.create("dataset", "cifar10", root=str(tmp_path))


def test_cifar10_hflip_flips_exactly_the_chosen_images(tmp_path: Path) -> None:
    fake_cifar(tmp_path)
    ds = diffctl.create("dataset", "cifar10", root=str(tmp_path), hflip=True)
    assert ds.augment is not None and ds.augmentation_enabled
    x = ds.train_tensor()[:16].repeat(4, 1, 1, 1)
    out = ds.augment(x, torch.Generator().manual_seed(5))
    chosen = torch.rand(len(x), generator=torch.Generator().manual_seed(5)) < 0.5
    assert 0 < int(chosen.sum()) < len(x)
    for i in range(len(x)):
        assert torch.equal(out[i], x[i].flip(-1) if chosen[i] else x[i])
    assert torch.equal(out, ds.augment(x, torch.Generator().manual_seed(5)))
    assert not torch.equal(out, ds.augment(x, torch.Generator().manual_seed(6)))
    assert torch.equal(ds.train_tensor()[:16], x[:16])  # the input is left alone


# -- digits -----------------------------------------------------------------------------------
def test_digits_shapes_labels_split() -> None:
    pytest.importorskip("sklearn")
    ds = diffctl.create("dataset", "digits")
    assert isinstance(ds, protocols.Dataset)
    assert ds.sample_shape == (1, 16, 16) and ds.num_classes == 10 and ds.augment is None
    train, test = ds.train_tensor(), ds.test_tensor()
    assert len(train) + len(test) == 1797 and len(test) == 180 and len(ds) == len(train)
    assert train.min() >= -1 and train.max() <= 1 and float(train.min()) == -1
    # against scikit-learn's own 8x8 images, in the split's order
    from sklearn.datasets import load_digits

    bunch = load_digits()
    everything = diffctl.create("dataset", "digits", test_fraction=0.0)
    order = split_indices(1797, 0.0, 0)[0]
    assert everything.train_labels().tolist() == bunch.target[order].tolist()
    small = torch.from_numpy(bunch.images[order]).float() / 8 - 1
    big = everything.train_tensor()[:, 0]
    assert torch.equal(big[:, 0, 0], small[:, 0, 0])  # bilinear: corners are kept exactly
    assert torch.allclose(big.mean((1, 2)), small.mean((1, 2)), atol=0.05)
    labels = torch.cat([ds.train_labels(), ds.test_labels()])
    assert labels.dtype == torch.int64 and labels.bincount().tolist() == [
        178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    x, y = ds[0]
    assert torch.equal(x, train[0]) and y == int(ds.train_labels()[0])
    other = diffctl.create("dataset", "digits", seed=1)
    assert not torch.equal(other.train_tensor()[:10], train[:10])
    assert len(diffctl.create("dataset", "digits", limit=50)) == 50
    assert len(diffctl.create("dataset", "digits", test_fraction=0.0).test_tensor()) == 0


# -- image-folder -----------------------------------------------------------------------------
def test_image_folder_with_class_subfolders(tmp_path: Path) -> None:
    for i in range(3):
        write_image(tmp_path / "cat" / f"{i}.png", centre_white(40, 20, 20))
        write_image(tmp_path / "dog" / f"{i}.jpg", np.zeros((12, 30, 3), dtype=np.uint8))
    write_image(tmp_path / "dog" / "more" / "deep.png", np.zeros((10, 10, 3), dtype=np.uint8))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = diffctl.create("dataset", "image-folder", path=str(tmp_path), image_size=10,
                        test_fraction=0.0)
    assert isinstance(ds, protocols.Dataset)
    assert ds.num_classes == 2 and ds.classes == ["cat", "dog"]
    assert ds.sample_shape == (3, 10, 10) and len(ds) == 7
    train, labels = ds.train_tensor(), ds.train_labels()
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1, 1]
    cats, dogs = train[labels == 0], train[labels == 1]
    assert (dogs == -1).all()
    # 40x20 -> 20x10 (shorter side 10) -> centre 10x10: the white square, blurred at its edge
    assert (cats[:, :, :, 2:8] > 0.95).all() and cats.min() >= -1 and cats.max() <= 1
    assert str(tmp_path.resolve()) in ds.identity and "size=10" in ds.identity


def test_image_folder_flat_grey_split_and_exact_crop(tmp_path: Path) -> None:
    for i in range(10):
        write_image(tmp_path / f"img{i}.png", centre_white(16 + 2 * i, 8, 8))
    ds = diffctl.create("dataset", "image-folder", path=str(tmp_path), image_size=8,
                        channels=1, test_fraction=0.2, seed=3)
    assert ds.num_classes is None and ds.train_labels() is None and ds.test_labels() is None
    assert ds.sample_shape == (1, 8, 8) and len(ds) == 8 and len(ds.test_tensor()) == 2
    assert ds[0][1] == -1
    # shorter side already 8: no resampling, the centre crop is exactly the white square
    assert (ds.train_tensor() == 1).all() and (ds.test_tensor() == 1).all()
    rgb = diffctl.create("dataset", "image-folder", path=str(tmp_path), image_size=4)
    assert rgb.sample_shape == (3, 4, 4) and len(rgb) + len(rgb.test_tensor()) == 10
    limited = diffctl.create("dataset", "image-folder", path=str(tmp_path), image_size=4,
                             limit=3)
    assert len(limited) == 3 and torch.equal(limited.train_tensor(), rgb.train_tensor()[:3])
    with pytest.raises(ConfigError):
        diffctl.create("dataset", "image-folder", path=str(tmp_path), channels=2)


def test_image_folder_rejects_mixed_layout_and_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no PNG/JPEG images"):
        diffctl.create("dataset", "image-folder", path=str(tmp_path / "empty"))
    write_image(tmp_path / "mixed" / "a.png", np.zeros((4, 4, 3), dtype=np.uint8))
    write_image(tmp_path / "mixed" / "cls" / "b.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(UsageError, match="both images and subfolders"):
        diffctl.create("dataset", "image-folder", path=str(tmp_path / "mixed"))


# -- registry and conformance -----------------------------------------------------------------
def test_registered_and_conformant(tmp_path: Path) -> None:
    assert {"mnist", "cifar10", "digits", "image-folder"} <= set(diffctl.components("dataset"))
    fake_mnist(tmp_path, n_train=60, n_test=8)  # the reference check draws 64
    fake_cifar(tmp_path, per_batch=13)
    for i in range(8):
        write_image(tmp_path / "pics" / f"{i}.png", centre_white(8 + i, 8, 1 + i))
    options = {"mnist": {"root": str(tmp_path)}, "cifar10": {"root": str(tmp_path)},
               "digits": {}, "image-folder": {"path": str(tmp_path / "pics"), "image_size": 4,
                                              "test_fraction": 0.0}}
    for name, opts in options.items():
        if name == "digits" and not _has_sklearn():
            continue
        ds = diffctl.create("dataset", name, **opts)
        assert isinstance(ds, protocols.Dataset) and ds.identity.startswith(name)
        skip = ("reference",) if name == "image-folder" else ()  # 8 images, fewer than 64
        assert "splits" in check_component("dataset", name, opts, skip=skip)


def _has_sklearn() -> bool:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def test_config_modules_import_neither_torch_nor_numpy() -> None:
    code = ("import sys, diffctl.plugin, diffctl.datasets.image_configs; "
            "bad = {'torch', 'numpy', 'torchvision', 'PIL', 'sklearn'} & set(sys.modules); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the real MNIST (skipped when absent) -----------------------------------------------------
def _real_mnist_root() -> Path | None:
    for candidate in (os.environ.get("DIFFCTL_DATA"), "/work/shared/data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    return None


@pytest.mark.skipif(_real_mnist_root() is None, reason="real MNIST not found (DIFFCTL_DATA)")
def test_real_mnist() -> None:
    ds = diffctl.create("dataset", "mnist", root=str(_real_mnist_root()))
    train, test = ds.train_tensor(), ds.test_tensor()
    assert train.shape == (60000, 1, 32, 32) and test.shape == (10000, 1, 32, 32)
    assert float(train.min()) == -1 and float(train.max()) == 1
    assert (train[:, :, :2] == -1).all() and (train[:, :, :, -2:] == -1).all()
    for labels, n in ((ds.train_labels(), 60000), (ds.test_labels(), 10000)):
        counts = labels.bincount(minlength=10)
        assert len(counts) == 10 and counts.sum() == n
        assert (counts > 0.08 * n).all() and (counts < 0.12 * n).all()
    assert -0.85 < float(train.mean()) < -0.7  # mostly background
