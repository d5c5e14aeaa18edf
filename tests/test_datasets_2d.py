"""The synthetic 2-D datasets: two-moons and gmm-ring."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import diffctl
from diffctl import protocols
from diffctl.datasets.moons import make_moons
from diffctl.errors import ConfigError

NAMES = ("two-moons", "gmm-ring")


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_split_and_protocol(name: str) -> None:
    ds = diffctl.create("dataset", name, n=1000, test_fraction=0.2)
    assert isinstance(ds, protocols.Dataset)
    assert ds.sample_shape == (2,) and ds.num_classes is None and ds.name == name
    assert name in ds.title
    train, test = ds.train_tensor(), ds.test_tensor()
    assert train.shape == (800, 2) and test.shape == (200, 2)
    assert train.dtype == test.dtype == torch.float32
    assert len(ds) == 800
    x, label = ds[5]
    assert torch.equal(x, train[5]) and x.shape == (2,) and label == -1
    assert torch.isfinite(train).all()
    empty = diffctl.create("dataset", name, n=100, test_fraction=0.0)
    assert empty.test_tensor().shape == (0, 2) and len(empty) == 100


def test_defaults() -> None:
    moons = diffctl.create("dataset", "two-moons")
    assert (moons.config.n, moons.config.noise, moons.config.seed) == (20_000, 0.1, None)
    assert len(moons) + len(moons.test_tensor()) == 20_000 and len(moons.test_tensor()) == 2000
    ring = diffctl.create("dataset", "gmm-ring")
    c = ring.config
    assert (c.n, c.num_components, c.radius, c.std) == (10_000, 8, 5.0, 0.2)
    assert not moons.augmentation_enabled and not ring.augmentation_enabled


@pytest.mark.parametrize("name", NAMES)
def test_same_config_same_tensors(name: str) -> None:
    a = diffctl.create("dataset", name, n=500)
    b = diffctl.create("dataset", name, n=500)
    c = diffctl.create("dataset", name, n=500, seed=7)
    assert torch.equal(a.train_tensor(), b.train_tensor())
    assert torch.equal(a.test_tensor(), b.test_tensor())
    assert not torch.equal(a.train_tensor(), c.train_tensor())


@pytest.mark.parametrize("name", NAMES)
def test_configs_reject_unknown_and_invalid_fields(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        diffctl.create("dataset", name, nosie=0.1)
    with pytest.raises(ConfigError, match="unknown field"):
        diffctl.create("dataset", name, augment={"rotate": 10})
    with pytest.raises(ConfigError):
        diffctl.create("dataset", name, test_fraction=1.0)
    with pytest.raises(ConfigError):
        diffctl.create("dataset", name, augment={"scale": [1.2, 0.8]})


def test_configs_and_plugin_do_not_import_torch() -> None:
    code = ("import sys, diffctl.plugin, diffctl.datasets.configs; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- two-moons ------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 101, 1000])
def test_make_moons_matches_sklearn_without_noise(n: int) -> None:
    sk_datasets = pytest.importorskip("sklearn.datasets")
    ours, labels = make_moons(n, noise=0.0, shuffle=False)
    ref, ref_labels = sk_datasets.make_moons(n, noise=0.0, shuffle=False)
    assert ours.dtype == ref.dtype == np.float64
    assert np.array_equal(ours, ref)
    assert np.array_equal(labels, ref_labels)


def test_make_moons_noise_statistics_match_sklearn() -> None:
    sk_datasets = pytest.importorskip("sklearn.datasets")
    n, noise = 40_000, 0.1
    clean, _ = make_moons(n, shuffle=False)
    noisy, _ = make_moons(n, noise=noise, rng=np.random.default_rng(0), shuffle=False)
    resid = noisy - clean
    assert np.abs(resid.mean(0)).max() < 0.003
    assert np.allclose(resid.std(0), noise, rtol=0.02)
    assert abs(np.corrcoef(resid.T)[0, 1]) < 0.02
    ref, _ = sk_datasets.make_moons(n, noise=noise, random_state=0)
    ours, _ = make_moons(n, noise=noise, rng=np.random.default_rng(1))
    assert np.allclose(ours.mean(0), ref.mean(0), atol=0.01)
    assert np.allclose(np.cov(ours.T), np.cov(ref.T), atol=0.01)


def test_two_moons_without_noise_lies_on_the_moons() -> None:
    x = diffctl.create("dataset", "two-moons", n=2000, noise=0.0).train_tensor().double()
    outer = (x.norm(dim=1) - 1).abs() < 1e-5
    inner = ((x - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=1) - 1).abs() < 1e-5
    assert (outer | inner).all()
    assert outer[x[:, 1] < -1e-6].sum() == 0 and inner[x[:, 1] > 0.5 + 1e-6].sum() == 0
    assert abs(int(outer.sum()) - int(inner.sum())) < 100  # shuffled, then split


# -- gmm-ring -------------------------------------------------------------------------------
def test_gmm_ring_modes_and_statistics() -> None:
    ds = diffctl.create("dataset", "gmm-ring")
    modes = ds.modes
    assert modes.shape == (8, 2) and modes.dtype == torch.float32 and ds.std == 0.2
    assert torch.allclose(modes.norm(dim=1), torch.full((8,), 5.0))
    angles = torch.atan2(modes[:, 1], modes[:, 0]).double()
    gaps = torch.diff(torch.sort(torch.remainder(angles, 2 * math.pi)).values)
    assert torch.allclose(gaps, torch.full((7,), 2 * math.pi / 8, dtype=torch.float64),
                          atol=1e-6)

    x = ds.train_tensor()
    nearest = torch.cdist(x, modes).argmin(1)
    resid = x - modes[nearest]
    n, k = len(x), 8
    counts = torch.bincount(nearest, minlength=k).double()
    sigma = math.sqrt(n * (1 / k) * (1 - 1 / k))  # multinomial count std
    assert ((counts - n / k).abs() < 5 * sigma).all()
    for j in range(k):
        r = resid[nearest == j].double()
        assert r.mean(0).abs().max() < 5 * 0.2 / math.sqrt(len(r))
        assert torch.allclose(r.std(0), torch.tensor(0.2, dtype=torch.float64), rtol=0.08)
    assert torch.allclose(resid.double().std(0), torch.tensor(0.2, dtype=torch.float64),
                          rtol=0.03)


def test_gmm_ring_is_configurable() -> None:
    ds = diffctl.create("dataset", "gmm-ring", num_components=5, radius=2.0, std=0.05, n=5000)
    assert ds.modes.shape == (5, 2) and ds.std == 0.05
    assert torch.allclose(ds.modes.norm(dim=1), torch.full((5,), 2.0))
    x = ds.train_tensor()
    dist = torch.cdist(x, ds.modes).min(1).values
    # |resid| of a 2-D isotropic Gaussian is Rayleigh: mean std * sqrt(pi / 2)
    assert abs(float(dist.mean()) - 0.05 * math.sqrt(math.pi / 2)) < 0.003


# -- reference draws ------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_reference_is_fresh_and_reproducible(name: str) -> None:
    ds = diffctl.create("dataset", name, n=2000, test_fraction=0.0)
    ref = ds.reference(2000, seed=0)  # the data's own seed (null = 0): still independent
    assert ref.shape == (2000, 2) and ref.dtype == torch.float32
    assert torch.equal(ref, ds.reference(2000, seed=0))
    assert not torch.equal(ref, ds.reference(2000, seed=1))
    train = ds.train_tensor()
    exact = torch.cdist(ref.double(), train.double(), compute_mode="donot_use_mm_for_euclid_dist")
    assert exact.min() > 0  # no training point is reused
    assert ds.reference(3, seed=0).shape == (3, 2) and ds.reference(12_345, seed=0).shape[0] \
        == 12_345
    # same distribution as the training data: means within 5 standard errors of their
    # difference (the ring's coordinates have std ~3.5, so a fixed 0.15 was ~1.3 of them)
    se = (ref.var(0) / len(ref) + train.var(0) / len(train)).sqrt()
    assert ((ref.mean(0) - train.mean(0)).abs() < 5 * se).all()
    assert torch.allclose(ref.std(0), train.std(0), rtol=0.05)


def test_two_moons_reference_draws_are_iid() -> None:
    """Two reference samples of one size must not share structure: make_moons' even angle grid
    would make every draw the same points up to noise. Noise-free draws show it directly, and
    an unbiased MMD^2 between independent draws must straddle zero (its mean is 0)."""
    clean = diffctl.create("dataset", "two-moons", n=400, noise=0.0)
    a, b = clean.reference(1000, seed=1), clean.reference(1000, seed=2)
    sort = lambda x: x[torch.argsort(x[:, 0])]  # noqa: E731
    assert not torch.allclose(sort(a), sort(b), atol=1e-3)
    # on the moons: outer points lie on the unit circle, inner ones on the one about (1, 0.5)
    outer = (a.norm(dim=1) - 1).abs() < 1e-5
    inner = ((a - torch.tensor([1.0, 0.5])).norm(dim=1) - 1).abs() < 1e-5
    assert bool((outer | inner).all()) and 0.4 < float(outer.float().mean()) < 0.6

    def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, sigma: float = 0.5) -> float:
        k = lambda p, q: torch.exp(-torch.cdist(p, q) ** 2 / (2 * sigma**2))  # noqa: E731
        n = len(x)
        kxx, kyy = k(x, x), k(y, y)
        off = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        return float(off - 2 * k(x, y).mean())

    ds = diffctl.create("dataset", "two-moons", n=400)
    values = [mmd2_unbiased(ds.reference(1000, 2 * i).double(),
                            ds.reference(1000, 2 * i + 1).double()) for i in range(12)]
    assert min(values) < 0 < max(values), values


def test_reference_of_gmm_has_the_mode_std() -> None:
    ds = diffctl.create("dataset", "gmm-ring", n=100)
    ref = ds.reference(20_000, seed=3)
    resid = ref - ds.modes[torch.cdist(ref, ds.modes).argmin(1)]
    assert torch.allclose(resid.std(0), torch.tensor(0.2), rtol=0.03)


# -- augmentation ---------------------------------------------------------------------------
def test_augmentation_off_is_identity_and_uses_no_randomness() -> None:
    ds = diffctl.create("dataset", "two-moons", n=200)
    x = ds.train_tensor()[:64]
    gen = torch.Generator().manual_seed(0)
    assert ds.augment(x, gen) is x
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(0).get_state())


def test_augmentation_changes_points_reproducibly() -> None:
    ds = diffctl.create("dataset", "gmm-ring", n=500, augment={
        "rotation_degrees": 30, "scale": [0.8, 1.2], "translation": 0.5})
    assert ds.augmentation_enabled
    x = ds.train_tensor()[:256]
    y = ds.augment(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert (y - x).norm(dim=1).min() > 0
    assert torch.equal(y, ds.augment(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(y, ds.augment(x, torch.Generator().manual_seed(2)))
    assert torch.isfinite(ds.augment(x, None)).all()  # global RNG


def test_augmentation_components() -> None:
    x = diffctl.create("dataset", "gmm-ring", n=500).train_tensor()[:256]
    gen = torch.Generator().manual_seed(0)

    rot = diffctl.create("dataset", "gmm-ring", n=500, augment={"rotation_degrees": 45})
    y = rot.augment(x, gen)
    assert torch.allclose(y.norm(dim=1), x.norm(dim=1), atol=1e-5)  # rotation keeps norms
    cos = (x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1))
    angle = torch.rad2deg(torch.acos(cos.clamp(-1, 1)))
    assert angle.max() <= 45 + 1e-2 and angle.max() > 30  # per-example angles up to 45

    scl = diffctl.create("dataset", "gmm-ring", n=500, augment={"scale": [0.5, 2.0]})
    y = scl.augment(x, gen)
    ratio = y.norm(dim=1) / x.norm(dim=1)
    assert ratio.min() >= 0.5 - 1e-5 and ratio.max() <= 2.0 + 1e-5 and ratio.std() > 0.2
    # scaling alone keeps each point on its ray from the origin
    assert torch.allclose(y[:, 0] * x[:, 1], y[:, 1] * x[:, 0], atol=1e-4)
    assert ((y * x).sum(1) > 0).all()

    tr = diffctl.create("dataset", "gmm-ring", n=500, augment={"translation": 0.3})
    shift = tr.augment(x, gen) - x
    assert shift.abs().max() <= 0.3 + 1e-6 and shift.abs().max() > 0.2
    assert shift.std(0).min() > 0.1  # a different shift per example
