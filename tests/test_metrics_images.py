"""Image metrics (diffctl-metrics): torch-fidelity FID/KID/IS/PRC on local weights, the
reference cache, offline weight loading of Inception and LPIPS, PSNR and SSIM.

Nothing here touches the network: downloads are patched to fail. Tests that need the real
MNIST files are skipped when they are absent ($DIFFCTL_DATA or /work/shared/data).
"""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from scipy import linalg

import diffctl
from diffctl.errors import UsageError
from diffctl_metrics import fidelity
from diffctl_metrics.configs import (
    FIDConfig,
    ISCConfig,
    KIDConfig,
    LeNetMNISTConfig,
    LPIPSConfig,
    PRCConfig,
)
from diffctl_metrics.feature_extractors.base import UInt8Images, file_sha256, to_uint8
from diffctl_metrics.feature_extractors.inception import WEIGHTS_FILENAME as INCEPTION_FILE
from diffctl_metrics.feature_extractors.lenet import (
    FeatureExtractorLeNetMNIST,
    LeNetMNIST,
    shipped_weights,
)
from diffctl_metrics.fidelity import FID, ISC, KID, PRC, inception_score
from diffctl_metrics.lpips_metric import LPIPS, build_lpips, linear_heads_path
from diffctl_metrics.psnr import PSNR
from diffctl_metrics.ssim import SSIM, gaussian_window
from diffctl_metrics.stats_cache import reference_key

IMAGE_METRICS = ["fid", "kid", "isc", "prc", "lpips", "psnr", "ssim"]
LENET = {"feature_extractor": "lenet-mnist"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No downloads, a private metrics cache and torch hub dir."""
    def no_network(*args, **kwargs):
        raise AssertionError("a download was attempted")

    import torch_fidelity.feature_extractor_inceptionv3 as tfi
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(tfi, "load_state_dict_from_url", no_network)
    monkeypatch.setenv("DIFFCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    yield


def smooth_images(n: int, seed: int, channels: int = 1, size: int = 32,
                  contrast: float = 1.0) -> torch.Tensor:
    """Random smooth images in [-1, 1]: 6x6 noise upsampled, so features vary."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, channels, 6, 6, generator=g)
    x = F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    return (contrast * x).tanh()


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of Gaussian fits, independently: float64 moments and scipy's sqrtm."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # lenet-mnist has dead ReLU units: singular covariances
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b)
                 - 2 * np.trace(covmean).real)


def lenet_features(images: torch.Tensor) -> np.ndarray:
    """The 128-d LeNet features, straight from the network (not through torch-fidelity)."""
    from diffctl_metrics.feature_extractors.lenet import load_lenet, prepare_input
    net, _ = load_lenet(shipped_weights())
    u8 = to_uint8(images)
    with torch.no_grad():
        return net.features(prepare_input(u8.expand(-1, 3, -1, -1))).numpy()


# -- registration ------------------------------------------------------------------------------
def test_registered_and_listed() -> None:
    reg = diffctl.get_registry()
    metrics = reg.components("metric")
    assert all(name in metrics for name in IMAGE_METRICS)
    assert reg.components("feature-extractor") == ["inception-v3-compat", "lenet-mnist"]
    for name in IMAGE_METRICS:
        metric = reg.create("metric", name)
        assert isinstance(metric.higher_is_better, bool)
        assert isinstance(metric.metadata, dict)
    extractor = reg.create("feature-extractor", "lenet-mnist")
    assert isinstance(extractor, LeNetMNIST)
    assert extractor.weights_path() == shipped_weights()
    # listing plugins must not import torch, numpy or scipy (configs and plugin module)
    code = ("import sys, diffctl_metrics.plugin, diffctl_metrics.configs\n"
            "bad = [m for m in ('torch', 'numpy', 'scipy') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# a third-party extractor: lenet-mnist's network with every feature multiplied by `scale`
class ScaledLeNetConfig(LeNetMNISTConfig):
    """lenet-mnist with scaled features (a plugin's extractor with an option of its own)."""

    scale: float = Field(1.0, gt=0, description="Factor applied to every feature.")


class _ScaledFidelityLeNet(FeatureExtractorLeNetMNIST):
    def __init__(self, name, features_list, feature_extractor_weights_path=None, scale=1.0,
                 **kwargs):
        super().__init__(name, features_list, feature_extractor_weights_path, **kwargs)
        self.scale = scale

    def forward(self, x):
        return tuple(f * self.scale for f in super().forward(x))


class ScaledLeNet(LeNetMNIST):
    name = "scaled-lenet"

    @classmethod
    def fidelity_class(cls):
        return _ScaledFidelityLeNet

    def fidelity_kwargs(self):
        return {**super().fidelity_kwargs(), "scale": self.config.scale}


class ScaledLeNetPlugin:
    @diffctl.hookimpl
    def register_components(self, registry) -> None:
        registry.add("feature-extractor", "scaled-lenet", factory=ScaledLeNet,
                     config=ScaledLeNetConfig, summary="lenet-mnist with scaled features.")


def test_builtin_extractors_come_from_the_registry() -> None:
    """No special path: without diffctl-metrics' plugin in the registry, lenet-mnist is an
    unknown component even though the metric classes are importable."""
    from diffctl.errors import UnknownComponentError
    from diffctl.testing import isolated_registry, use_registry
    with use_registry(isolated_registry(builtins=("diffctl-core",))):
        with pytest.raises(UnknownComponentError, match="lenet-mnist"):
            FID(FIDConfig(**LENET, cache=False))(smooth_images(8, 1), smooth_images(8, 2))
        with pytest.raises(UnknownComponentError, match="inception-v3-compat"):
            fidelity.create_feature_extractor("inception-v3-compat")


def test_third_party_extractor_with_its_own_options(tmp_path) -> None:
    from diffctl.errors import ConfigError
    from diffctl.testing import isolated_registry, use_registry
    gen, real = smooth_images(120, 1), smooth_images(100, 2, contrast=2.0)
    reg = isolated_registry(ScaledLeNetPlugin(), builtins=("diffctl-core", "diffctl-metrics"))
    with use_registry(reg):
        base = FID(FIDConfig(**LENET, cache=False))(gen, real)["fid"]
        ones = FID(FIDConfig(feature_extractor="scaled-lenet", cache=False))
        assert ones(gen, real)["fid"] == pytest.approx(base, rel=1e-6)
        # features x2: means x2, covariances x4, so FID x4
        metric = FID(FIDConfig(feature_extractor="scaled-lenet", cache_dir=str(tmp_path / "c"),
                               feature_extractor_options={"scale": 2.0}))
        assert metric(gen, real)["fid"] == pytest.approx(4 * base, rel=1e-5)
        meta = metric.metadata
        assert meta["feature_extractor"] == "scaled-lenet"
        assert meta["feature_extractor_options"] == {"scale": 2.0}
        # the option is part of the cache key: scale 3 is a fresh entry, not scale 2's stats
        three = FID(FIDConfig(feature_extractor="scaled-lenet", cache_dir=str(tmp_path / "c"),
                              feature_extractor_options={"scale": 3.0}))
        assert three(gen, real)["fid"] == pytest.approx(9 * base, rel=1e-5)
        assert three.metadata["reference"] == "computed"
        assert three.metadata["reference_path"] != meta["reference_path"]
        # feature_extractor_weights still reaches a plugin extractor's weights_path
        from safetensors.torch import load_file, save_file
        other = tmp_path / "other.safetensors"
        save_file(load_file(str(shipped_weights())), str(other), {"copy": "1"})
        kid = KID(KIDConfig(feature_extractor="scaled-lenet", feature_extractor_weights=str(other),
                            feature_extractor_options={"scale": 2.0}, subsets=5,
                            subset_size=50, cache=False))
        kid(gen, real)
        assert kid.metadata["weights_sha256"] == file_sha256(other)
        assert kid.metadata["weights_path"] == str(other)
        # the extractor's config model validates its options
        with pytest.raises(ConfigError, match="unknown field"):
            FID(FIDConfig(feature_extractor="scaled-lenet", cache=False,
                          feature_extractor_options={"sclae": 2.0}))(gen, real)


def test_lenet_weights_ship_with_accuracy() -> None:
    path = shipped_weights()
    assert path.is_file() and path.stat().st_size < 2_000_000
    meta = LeNetMNIST().training_metadata()
    assert float(meta["test_accuracy"]) >= 0.99
    assert meta["config"]["seed"] == 0


@pytest.mark.parametrize(("name", "kwargs"), [
    ("fid", {}), ("kid", {"symmetric": False, "zero_for_identical": False}), ("prc", {}),
    ("isc", {"symmetric": False}),
    ("psnr", {}), ("ssim", {}),
])
def test_conformance_kit(name: str, kwargs: dict) -> None:
    """diffctl.testing's metric checks, with smooth 32x32 images as the real data."""
    from diffctl.testing import check_component
    options = {**LENET, "cache": False} if name in ("fid", "kid", "prc") else (
        LENET if name == "isc" else {})
    if name == "kid":
        options = {**options, "subsets": 10, "subset_size": 50}
    passed = check_component("metric", name, options, num_samples=100,
                             reference=lambda n, seed: smooth_images(n, seed), **kwargs)
    assert {"protocol", "output", "deterministic", "identical-inputs"} <= set(passed)


# -- FID/KID/IS/PRC through torch-fidelity ---------------------------------------------------------
def test_fid_equals_scipy_sqrtm_and_torch_fidelity() -> None:
    gen, real = smooth_images(300, 1), smooth_images(260, 2, contrast=2.0)
    metric = FID(FIDConfig(**LENET, cache=False))
    value = metric(gen, real)["fid"]
    expected = scipy_fid(lenet_features(gen), lenet_features(real))
    assert value > 0
    assert value == pytest.approx(expected, rel=1e-4)
    # torch-fidelity's own top-level API on the same uint8 datasets gives the same number
    import torch_fidelity
    metric.extractor.register_with_fidelity()
    out = torch_fidelity.calculate_metrics(
        input1=UInt8Images(to_uint8(gen)), input2=UInt8Images(to_uint8(real)), fid=True,
        feature_extractor="lenet-mnist", cuda=False, cache=False, verbose=False,
        save_cpu_ram=True)
    assert value == pytest.approx(out["frechet_inception_distance"], rel=1e-6)
    meta = metric.metadata
    assert meta["feature_extractor"] == "lenet-mnist" and meta["feature_layer"] == "128"
    assert meta["weights_sha256"] == file_sha256(shipped_weights())
    assert (meta["num_generated"], meta["num_real"]) == (300, 260)
    assert meta["resize"] == "none (32x32 input)" and meta["reference"] == "computed"


def test_grey_28px_and_rgb_inputs() -> None:
    x = smooth_images(40, 3)
    metric = FID(FIDConfig(**LENET, cache=False))
    padded = metric(x, smooth_images(40, 4))["fid"]
    # 28x28 digits are padded to 32x32 with background, exactly as the dataset does
    inner = x[:, :, 2:-2, 2:-2]
    framed = F.pad(inner, (2, 2, 2, 2), value=-1.0)
    a = metric(framed, smooth_images(40, 4))["fid"]
    b = metric(inner, smooth_images(40, 4))["fid"]
    assert a == pytest.approx(b, rel=1e-6) and metric.metadata["resize"].startswith("pad")
    # grey repeated to 3 channels gives the same features as the grey image
    assert metric(x.expand(-1, 3, -1, -1), smooth_images(40, 4))["fid"] == pytest.approx(padded)


def test_small_digits_are_framed_like_mnist() -> None:
    """Images under 28x28 (the bundled 16x16 digits) are scaled into an 18x18 box centred on
    32x32: the LeNet then recognises most of them, as it does not when they fill the frame."""
    from diffctl_metrics.feature_extractors.lenet import prepare_input

    ds = diffctl.create("dataset", "digits")
    images = torch.cat([ds.train_tensor(), ds.test_tensor()])
    labels = torch.cat([ds.train_labels(), ds.test_labels()])
    u8 = ((images + 1) * 127.5).round().to(torch.uint8)
    framed = prepare_input(u8)
    assert framed.shape == (len(images), 1, 32, 32)
    assert (framed[..., :7, :] == -1).all() and (framed[..., :, -7:] == -1).all()
    features = fidelity.extract_features("lenet-mnist", images, device="cpu")
    accuracy = float((features["logits"].argmax(1) == labels).float().mean())
    stretched = F.interpolate(images, size=(32, 32), mode="bilinear", antialias=True)
    naive = fidelity.extract_features("lenet-mnist", stretched, device="cpu")
    naive_accuracy = float((naive["logits"].argmax(1) == labels).float().mean())
    assert accuracy > 0.8 and naive_accuracy < 0.6, (accuracy, naive_accuracy)


def test_kid_prc_isc_sanity() -> None:
    x, y = smooth_images(200, 5), smooth_images(200, 6, contrast=3.0)
    kid = KID(KIDConfig(**LENET, subsets=20, subset_size=100, cache=False))
    same, diff = kid(x, x)["kid"], kid(x, y)["kid"]
    assert abs(same) < 0.1 * diff and diff > 0
    assert kid(x, x)["kid_subset_size"] == 100
    prc = PRC(PRCConfig(**LENET, cache=False))(x, x)
    assert prc["prc_precision"] == 1.0 and prc["prc_recall"] == 1.0 and prc["prc"] == 1.0
    isc = ISC(ISCConfig(**LENET, splits=4))
    value = isc(x)["isc"]
    assert 1.0 <= value <= 10.0 and isc.metadata["splits"] == 4


def test_kid_isc_prc_equal_torch_fidelity_calculate_metrics() -> None:
    """The same uint8 inputs through torch-fidelity's top-level API give the same numbers."""
    import torch_fidelity
    gen, real = smooth_images(240, 21), smooth_images(200, 22, contrast=2.0)
    kid = KID(KIDConfig(**LENET, subsets=30, subset_size=150, cache=False))
    isc = ISC(ISCConfig(**LENET, splits=6))
    prc = PRC(PRCConfig(**LENET, neighborhood=4, cache=False))
    ours = {**kid(gen, real), **isc(gen), **prc(gen, real)}
    kid.extractor.register_with_fidelity()
    out = torch_fidelity.calculate_metrics(
        input1=UInt8Images(to_uint8(gen)), input2=UInt8Images(to_uint8(real)), kid=True,
        isc=True, prc=True, kid_subsets=30, kid_subset_size=150, isc_splits=6,
        prc_neighborhood=4, rng_seed=2020, feature_extractor="lenet-mnist", cuda=False,
        cache=False, verbose=False, save_cpu_ram=True)
    assert ours["kid"] == pytest.approx(out["kernel_inception_distance_mean"], rel=1e-6)
    assert ours["kid_std"] == pytest.approx(out["kernel_inception_distance_std"], rel=1e-6)
    assert ours["isc"] == pytest.approx(out["inception_score_mean"], rel=1e-6)
    assert ours["isc_std"] == pytest.approx(out["inception_score_std"], rel=1e-6)
    assert ours["prc_precision"] == pytest.approx(out["precision"], rel=1e-9)
    assert ours["prc_recall"] == pytest.approx(out["recall"], rel=1e-9)
    assert ours["prc"] == pytest.approx(out["f_score"], rel=1e-9)
    # not trivially equal: the inputs differ, so the values are informative
    assert ours["kid"] > 0 and 0 < ours["prc_precision"] < 1 and 1 < ours["isc"] < 10


#: the keys every image metric's metadata has after a call
METADATA_KEYS = {"metric", "feature_extractor", "weights_sha256", "num_generated", "num_real",
                 "resize", "image_size", "device"}


def test_every_image_metric_reports_its_metadata(tmp_path) -> None:
    state = _torchvision_state("squeezenet1_1")
    backbone = tmp_path / "squeeze.pth"
    torch.save(state, backbone)
    gen, real = smooth_images(24, 23), smooth_images(20, 24)
    options = {"fid": {**LENET, "cache": False}, "kid": {**LENET, "subset_size": 10},
               "isc": {**LENET, "splits": 2}, "prc": LENET,
               "lpips": {"net": "squeeze", "backbone_weights": str(backbone)}, "psnr": {},
               "ssim": {}}
    lenet_sha = file_sha256(shipped_weights())
    for name in IMAGE_METRICS:
        metric = diffctl.create("metric", name, options[name])
        assert metric.metadata == {}
        paired = name in ("lpips", "psnr", "ssim")
        metric(gen[:20] if paired else gen, real)
        meta = metric.metadata
        assert set(meta) >= METADATA_KEYS, (name, METADATA_KEYS - set(meta))
        assert meta["metric"] == name and meta["image_size"] == [32, 32]
        assert meta["num_generated"] == (20 if paired else 24), name
        assert meta["num_real"] == (None if name == "isc" else 20), name
        if name in ("fid", "kid", "isc", "prc"):
            assert meta["feature_extractor"] == "lenet-mnist"
            assert meta["weights_sha256"] == lenet_sha
            assert meta["resize"] == "none (32x32 input)" and meta["device"] in ("cpu", "cuda")
        elif name == "lpips":
            assert meta["feature_extractor"] == "lpips-squeeze"
            assert meta["weights_sha256"] == file_sha256(backbone)
            assert meta["resize"] == "bilinear 32x32 to 64x64"
        else:
            assert meta["feature_extractor"] is None and meta["weights_sha256"] is None
            assert meta["resize"] == "none (32x32)"
        import json
        json.dumps(meta)  # storable as is in metrics.json


def test_explicit_device_from_the_run() -> None:
    """A run passes its device as the metric's ``device`` option: cpu runs there, mps (which
    torch-fidelity cannot use) extracts on the CPU and says so."""
    gen, real = smooth_images(20, 25), smooth_images(20, 26)
    values = []
    for device in ("cpu", "mps"):
        metric = diffctl.create("metric", "fid", {**LENET, "cache": False, "device": device})
        values.append(metric(gen, real)["fid"])
        assert metric.metadata["device"] == "cpu"
        assert metric.metadata["device_requested"] == device
    assert values[0] == values[1] > 0
    assert fidelity.extraction_device("mps").type == "cpu"
    if torch.cuda.is_available():
        assert fidelity.extraction_device("auto").type == "cuda"
    from diffctl.errors import ConfigError
    for name in ("fid", "kid", "isc", "prc", "lpips"):
        with pytest.raises(ConfigError, match="device"):
            diffctl.create("metric", name, device="tpu")
        assert diffctl.create("metric", name, device="cuda:1").config.device == "cuda:1"


def test_reference_features_files_and_prepare_reference(tmp_path) -> None:
    gen, real = smooth_images(70, 27), smooth_images(60, 28, contrast=2.0)
    for cls, config_cls in ((KID, KIDConfig), (PRC, PRCConfig)):
        extra = {"subsets": 5, "subset_size": 40} if cls is KID else {}
        direct = cls(config_cls(**LENET, cache=False, **extra))
        expected = direct(gen, real)
        # cache off: prepare_reference writes a features file and names it in the overrides
        source, overrides = direct.prepare_reference(real, tmp_path)
        assert source == "computed" and set(overrides) == {"reference_features"}
        path = Path(overrides["reference_features"])
        assert path.parent == tmp_path and path.is_file()
        from_file = cls(config_cls(**LENET, cache=False, **extra, **overrides))
        assert from_file(gen, None) == expected
        assert from_file.metadata["reference"] == "features-file"
        assert from_file.metadata["num_real"] == 60
        assert from_file.metadata["reference_path"] == str(path)
        # nothing more to prepare once a file is configured; no folder, nothing prepared
        assert from_file.prepare_reference(real, tmp_path) == ("none", {})
        assert direct.prepare_reference(real) == ("none", {})
        # cache on: the cache entry is the prepared result (no overrides needed)
        cached = cls(config_cls(**LENET, cache_dir=str(tmp_path / cls.__name__), **extra))
        assert cached.prepare_reference(real, tmp_path) == ("computed", {})
        assert cached.prepare_reference(real, tmp_path) == ("cache", {})
        # a features file made with other weights is refused
        from safetensors.torch import load_file, save_file
        other = tmp_path / "other.safetensors"
        save_file(load_file(str(shipped_weights())), str(other), {"copy": "1"})
        with pytest.raises(UsageError, match=r"reference_features .* computed with weights"):
            cls(config_cls(**LENET, feature_extractor_weights=str(other), **overrides,
                           **extra))(gen, None)
    fid = FID(FIDConfig(**LENET, cache=False))
    source, overrides = fid.prepare_reference(real, tmp_path)
    assert source == "computed" and set(overrides) == {"reference_stats"}
    with pytest.raises(UsageError, match="lacks a 2-D array features"):
        KID(KIDConfig(**LENET, reference_features=overrides["reference_stats"]))(gen, None)
    assert ISC(ISCConfig(**LENET)).prepare_reference(real, tmp_path) == ("none", {})


def test_inception_score_closed_forms() -> None:
    confident = torch.full((1000, 10), -50.0)
    confident[torch.arange(1000), torch.arange(1000) % 10] = 50.0
    mean, std = inception_score(confident, splits=10, shuffle=False)  # 10 classes per split
    assert mean == pytest.approx(10.0, rel=1e-6) and std < 1e-6
    assert inception_score(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-6)
    assert inception_score(confident, splits=10)[0] == pytest.approx(10.0, rel=0.1)
    one_class = torch.zeros(1000, 10)
    one_class[:, 3] = 50.0
    assert inception_score(one_class)[0] == pytest.approx(1.0, abs=1e-6)
    assert inception_score(torch.zeros(100, 10))[0] == pytest.approx(1.0, abs=1e-9)


# -- c2st and class-accuracy on images -----------------------------------------------------------
def lenet_predictions(images: torch.Tensor) -> np.ndarray:
    """LeNet's predicted class, straight from the network (not through torch-fidelity)."""
    from diffctl_metrics.feature_extractors.lenet import load_lenet, prepare_input
    net, _ = load_lenet(shipped_weights())
    with torch.no_grad():
        return net(prepare_input(to_uint8(images).expand(-1, 3, -1, -1))).argmax(1).numpy()


def test_c2st_on_lenet_features_is_c2st_of_the_features() -> None:
    """With feature_extractor set, c2st classifies the extractor's 128-d features (the layer
    fid reads); without it, the flattened pixels."""
    gen, real = smooth_images(150, 41), smooth_images(150, 42, contrast=1.5)
    metric = diffctl.create("metric", "c2st", **LENET)
    out = metric(gen, real)
    direct = diffctl.create("metric", "c2st")(lenet_features(gen), lenet_features(real))
    assert out["c2st"] == pytest.approx(direct["c2st"], abs=1e-12)
    assert metric.metadata["feature_layer"] == "128" and metric.metadata["dimension"] == 128
    assert metric.metadata["weights_sha256"] == file_sha256(shipped_weights())
    pixels = diffctl.create("metric", "c2st")(gen, real)
    flat = diffctl.create("metric", "c2st")(gen.reshape(150, -1), real.reshape(150, -1))
    assert pixels == flat
    with pytest.raises(UsageError, match="no layer 'pool'"):
        diffctl.create("metric", "c2st", **LENET, feature_layer="pool")(gen, real)


def test_class_accuracy_counts_samples_classified_as_their_class() -> None:
    images = smooth_images(200, 43, contrast=2.0)
    predicted = lenet_predictions(images)
    metric = diffctl.create("metric", "class-accuracy")  # lenet-mnist's logits by default
    assert metric.higher_is_better is True
    assert metric(images, None, labels=torch.from_numpy(predicted)) == {
        "class-accuracy": 1.0, "class_accuracy_min": 1.0}
    wanted = predicted.copy()
    wanted[:20] = (wanted[:20] + 1) % 10  # 20 samples generated for another class
    out = metric(images, None, labels=wanted)
    assert out["class-accuracy"] == pytest.approx(1 - 20 / 200)
    per_class = [np.mean(predicted[wanted == c] == c) for c in np.unique(wanted)]
    assert out["class_accuracy_min"] == pytest.approx(min(per_class))
    assert metric.metadata["num_generated"] == 200 and len(metric.metadata["weights_sha256"]) == 64
    with pytest.raises(UsageError, match="needs the class each sample was generated for"):
        metric(images, None)
    with pytest.raises(UsageError, match="no layer 'scores'"):
        diffctl.create("metric", "class-accuracy", logits_layer="scores")(images, None,
                                                                          labels=wanted)


def count_extractions(monkeypatch) -> list[int]:
    """From now on, the size of every image set LeNetMNIST extracts features of, in order."""
    calls: list[int] = []
    original = LeNetMNIST.extract

    def counting(self, images, device, batch_size):
        calls.append(len(images))
        return original(self, images, device, batch_size)

    monkeypatch.setattr(LeNetMNIST, "extract", counting)
    return calls


def test_labels_reach_the_metrics_that_need_them_and_their_floors(monkeypatch) -> None:
    """metric_values passes labels= (and real_labels=) only to metrics that need labels, and
    shares image features: c2st, fid and class-accuracy extract each image set once. The floor
    of class-accuracy is the classifier's accuracy on real labelled draws."""
    from diffctl.evaluation.floor import floor_seeds
    from diffctl.registry import get_registry
    from diffctl.runs.evaluation import metric_floors, metric_values
    from diffctl.seeds import stream_seed

    reg = get_registry()
    ds = diffctl.create("dataset", "digits")
    gen, real = ds.reference(60, 1), ds.reference(60, 2)
    labels = ds.reference_labels(60, 1)
    calls = count_extractions(monkeypatch)
    options = {"fid": {**LENET, "cache": False}, "c2st": LENET}
    values = metric_values(reg, ["c2st", "fid", "class-accuracy", "mmd-rbf"], gen, real, options,
                           labels=labels, real_labels=ds.reference_labels(60, 2))
    assert calls == [60, 60]
    expected = float(np.mean(lenet_predictions(gen) == labels.numpy()))
    assert values["class-accuracy"] == pytest.approx(expected)
    with pytest.raises(UsageError, match="needs the class"):
        metric_values(reg, ["class-accuracy"], gen, real, options)
    floors = metric_floors(reg, ["class-accuracy", "c2st"], options, ds, 60, draws=5, seed=7)
    draws = floor_seeds(stream_seed(7, "floors"), 5)
    direct = [float(np.mean(lenet_predictions(ds.reference(60, a)) ==
                            ds.reference_labels(60, a).numpy())) for a, _ in draws]
    assert floors["class-accuracy"]["values"] == pytest.approx(direct)
    assert 0.45 < floors["c2st"]["mean"] < 0.55


# -- the reference cache ------------------------------------------------------------------------
def test_cache_key_depends_on_weights_and_content() -> None:
    base = {"kind": "fid-stats", "images_sha256": "a" * 64, "shape": (10, 1, 32, 32),
            "extractor": "lenet-mnist", "layer": "128", "weights_sha256": "b" * 64,
            "fidelity_version": "0.4.0", "device_type": "cpu"}
    key = reference_key(**base)
    assert reference_key(**base) == key
    assert reference_key(**base, extractor_options={}) == key
    for field, other in (("weights_sha256", "c" * 64), ("images_sha256", "d" * 64),
                         ("shape", (11, 1, 32, 32)), ("extractor", "inception-v3-compat"),
                         ("layer", "logits"), ("kind", "features"),
                         ("fidelity_version", "0.4.1"), ("device_type", "cuda"),
                         ("extractor_options", {"scale": 2.0})):
        assert reference_key(**{**base, field: other}) != key, field


def test_metric_cache_key_uses_torch_fidelity_version_and_device_type(monkeypatch) -> None:
    """The key the metric computes carries the installed torch-fidelity version and the
    extraction device's type: another version (or device type) is another cache entry."""
    import torch_fidelity
    seen: list[dict] = []
    original = fidelity.reference_key
    monkeypatch.setattr(fidelity, "reference_key",
                        lambda **kw: seen.append(kw) or original(**kw))
    gen, real = smooth_images(30, 1), smooth_images(30, 2)
    metric = FID(FIDConfig(**LENET, device="cpu"))
    metric(gen, real)
    first = metric.metadata["reference_path"]
    assert seen[-1]["fidelity_version"] == torch_fidelity.__version__
    assert seen[-1]["device_type"] == "cpu"
    monkeypatch.setattr(torch_fidelity, "__version__", "0.4.99")
    again = FID(FIDConfig(**LENET, device="cpu"))
    again(gen, real)
    assert again.metadata["reference"] == "computed"
    assert again.metadata["reference_path"] != first


def test_cache_entries_follow_weights_and_real_content(tmp_path) -> None:
    gen, real = smooth_images(60, 7), smooth_images(60, 8)
    cache_dir = tmp_path / "c"
    # a second weights file: the shipped one with a perturbed layer (a new sha256)
    from safetensors.torch import load_file, save_file
    state = load_file(str(shipped_weights()))
    state["fc1.bias"] = state["fc1.bias"] + 0.5
    other = tmp_path / "other.safetensors"
    save_file(state, str(other))

    def run(weights, real_images):
        metric = FID(FIDConfig(**LENET, feature_extractor_weights=weights,
                               cache_dir=str(cache_dir)))
        value = metric(gen, real_images)["fid"]
        return value, metric.metadata

    v1, m1 = run(None, real)
    v2, m2 = run(str(other), real)
    changed = real.clone()
    changed[0, 0, 16, 16] = -changed[0, 0, 16, 16]
    _, m3 = run(None, changed)
    assert [m["reference"] for m in (m1, m2, m3)] == ["computed"] * 3
    assert len({m1["reference_path"], m2["reference_path"], m3["reference_path"]}) == 3
    assert len(list(cache_dir.glob("*.npz"))) == 3
    assert v1 != v2 and m2["weights_sha256"] == file_sha256(other)


def test_cache_hit_skips_reference_features(tmp_path, monkeypatch) -> None:
    gen, real = smooth_images(80, 9), smooth_images(120, 10)
    metric = FID(FIDConfig(**LENET, cache_dir=str(tmp_path / "c")))
    first = metric(gen, real)["fid"]
    entry = Path(metric.metadata["reference_path"])
    mtime = entry.stat().st_mtime_ns
    calls = count_extractions(monkeypatch)
    fresh = FID(FIDConfig(**LENET, cache_dir=str(tmp_path / "c")))
    assert fresh(gen, real)["fid"] == first
    assert fresh.metadata["reference"] == "cache"
    assert calls == [80]  # only the generated images went through the network
    assert entry.stat().st_mtime_ns == mtime
    # no cache: the real images are extracted again
    FID(FIDConfig(**LENET, cache=False))(gen, real)
    assert calls == [80, 120, 80]  # the reference first, then the generated images


def test_an_evaluation_extracts_each_image_set_once(monkeypatch) -> None:
    """fid, kid, isc and prc on one (generated, real) pair share a feature store owned by the
    evaluation: one pass per image set, and nothing remembered after it."""
    from diffctl.registry import get_registry
    from diffctl.runs.evaluation import metric_values

    gen, real = smooth_images(60, 21), smooth_images(60, 22)
    calls = count_extractions(monkeypatch)
    options = {m: {**LENET, "cache": False} for m in ("fid", "kid", "prc")}
    options["kid"] |= {"subsets": 5, "subset_size": 30}
    options["isc"] = dict(LENET)
    values = metric_values(get_registry(), ["fid", "kid", "isc", "prc"], gen, real, options)
    assert set(values) >= {"fid", "kid", "isc", "prc"}
    assert calls == [60, 60]  # the real images, then the generated ones: once each
    metric_values(get_registry(), ["fid"], gen, real, options)
    assert calls == [60, 60, 60, 60]  # a new evaluation computes its own


def test_reference_stats_file(tmp_path) -> None:
    gen, real = smooth_images(90, 11), smooth_images(110, 12)
    metric = FID(FIDConfig(**LENET, cache=False))
    direct = metric(gen, real)["fid"]
    path = metric.save_reference_stats(real, tmp_path / "mnist-ref.npz")
    from_file = FID(FIDConfig(**LENET, reference_stats=str(path)))
    assert from_file(gen, None)["fid"] == pytest.approx(direct, rel=1e-9)
    assert from_file.metadata["reference"] == "stats-file"
    assert from_file.metadata["num_real"] == 110
    # a bare pytorch-fid style file (mu, sigma only) works too
    with np.load(path) as data:
        np.savez(tmp_path / "bare.npz", mu=data["mu"], sigma=data["sigma"])
    bare = FID(FIDConfig(**LENET, reference_stats=str(tmp_path / "bare.npz")))
    assert bare(gen, None)["fid"] == pytest.approx(direct, rel=1e-9)
    # stats of another extractor are refused, in one line
    with pytest.raises(UsageError, match="computed with feature_extractor lenet-mnist") as err:
        FID(FIDConfig(feature_extractor="inception-v3-compat", reference_stats=str(path)))(
            gen, None)
    assert "\n" not in str(err.value)
    from safetensors.torch import load_file, save_file
    other = tmp_path / "other.safetensors"  # same tensors, other metadata: another sha256
    save_file(load_file(str(shipped_weights())), str(other), {"copy": "1"})
    with pytest.raises(UsageError, match="computed with weights_sha256"):
        FID(FIDConfig(**LENET, reference_stats=str(path),
                      feature_extractor_weights=str(other)))(gen, None)
    with pytest.raises(UsageError, match="reference_stats file not found"):
        FID(FIDConfig(**LENET, reference_stats=str(tmp_path / "none.npz")))(gen, None)
    with pytest.raises(UsageError, match="real"):
        FID(FIDConfig(**LENET))(gen, None)


# -- offline weights: Inception and LPIPS ---------------------------------------------------------
def _random_inception(folder: Path, name: str = INCEPTION_FILE) -> Path:
    """torch-fidelity's InceptionV3 with random init (its weight loading bypassed), saved as
    a state_dict file with the real file's keys."""
    path = folder / name
    if path.is_file():
        return path
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    class RandomInit(tfi.FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):
            return None

    saved = tfi.load_state_dict_from_url
    tfi.load_state_dict_from_url = lambda *args, **kwargs: {}
    try:
        torch.manual_seed(0)
        net = RandomInit("inception-v3-compat", ["2048"])
    finally:
        tfi.load_state_dict_from_url = saved
    folder.mkdir(parents=True, exist_ok=True)
    state = net.state_dict()
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def test_inception_from_hub_cache_offline(tmp_path) -> None:
    weights = _random_inception(tmp_path / "torch" / "hub" / "checkpoints")
    # (FID itself would spend most of the time in torch-fidelity's eigvals of a 2048x2048
    # matrix; IS and KID go through the same extractor and weights code)
    x = smooth_images(2, 13, channels=3)
    isc = ISC(ISCConfig(feature_extractor="inception-v3-compat"))
    # IS of 2 images lies in [1, 2]; 1 itself can come out an ulp below
    assert 1.0 - 1e-9 <= isc(x)["isc"] <= 2.0
    assert isc.metadata["feature_layer"] == "logits_unbiased"
    metric = KID(KIDConfig(feature_extractor="inception-v3-compat", cache=False))
    value = metric(x, x, features={})["kid"]  # one forward pass: the store holds x's features
    assert math.isfinite(value)
    meta = metric.metadata
    assert meta["weights_path"] == str(weights)
    assert meta["weights_sha256"] == file_sha256(weights)
    assert meta["feature_layer"] == "2048"
    assert meta["resize"] == "tf1-bilinear 32x32 to 299x299 (torch-fidelity)"


def test_inception_explicit_safetensors_and_bad_keys(tmp_path) -> None:
    from diffctl_metrics.feature_extractors.inception import InceptionV3Compat
    path = _random_inception(tmp_path, "inception.safetensors")
    extractor = fidelity.create_feature_extractor("inception-v3-compat", str(path))
    assert isinstance(extractor, InceptionV3Compat)
    module = extractor.build(("2048",), torch.device("cpu"))
    from safetensors.torch import load_file
    saved = load_file(str(path))
    assert torch.equal(module.Conv2d_1a_3x3.conv.weight, saved["Conv2d_1a_3x3.conv.weight"])
    assert torch.equal(module.fc.weight, saved["fc.weight"])
    # a file with other keys: one line, no torch key dump
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3)}, bad)
    with pytest.raises(UsageError, match="do not match the network") as err:
        fidelity.create_feature_extractor("inception-v3-compat", str(bad)).build(
            ("2048",), torch.device("cpu"))
    assert "\n" not in str(err.value)


def test_missing_weights_is_one_line_error(tmp_path) -> None:
    gen = smooth_images(4, 15)
    with pytest.raises(UsageError) as err:
        FID(FIDConfig(feature_extractor="inception-v3-compat"))(gen, gen)
    msg = str(err.value)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    assert "\n" not in msg and INCEPTION_FILE in msg and "95.6 MB" in msg and str(hub) in msg
    with pytest.raises(UsageError) as err:
        LPIPS(LPIPSConfig(net="alex"))(gen, gen)
    msg = str(err.value)
    assert "\n" not in msg and "alexnet-owt-7be5be79.pth" in msg and "233.1 MB" in msg
    assert str(hub) in msg and "backbone_weights" in msg
    with pytest.raises(UsageError, match=r"not found: .*nowhere\.pth") as err:
        LPIPS(LPIPSConfig(net="squeeze", backbone_weights=str(tmp_path / "nowhere.pth")))(gen,
                                                                                         gen)
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="not found"):
        FID(FIDConfig(**LENET, feature_extractor_weights=str(tmp_path / "x.safetensors")))(
            gen, gen)


def _torchvision_state(builder: str) -> dict[str, torch.Tensor]:
    import torchvision.models as tvm
    torch.manual_seed(0)
    return getattr(tvm, builder)(weights=None).state_dict()


def _check_backbone_copied(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Every torchvision `features.i.*` tensor is in lpips' `net.sliceK.i.*`."""
    mine = model.state_dict()
    for key, value in state.items():
        if not key.startswith("features."):
            continue
        index_and_name = key[len("features."):]
        hits = [k for k in mine if k.startswith("net.slice") and
                k.split(".", 2)[2] == index_and_name]
        assert len(hits) == 1 and torch.equal(mine[hits[0]], value), key


def test_lpips_from_local_backbone_offline(tmp_path) -> None:
    state = _torchvision_state("squeezenet1_1")
    from diffctl_metrics.lpips_metric import backbone_file
    filename = backbone_file("squeeze")[0]
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(state, hub / filename)
    metric = LPIPS(LPIPSConfig(net="squeeze"))
    x, y = smooth_images(4, 16), smooth_images(4, 17, contrast=3.0)
    assert metric(x, x)["lpips"] == pytest.approx(0.0, abs=1e-7)
    d = metric(x, y)["lpips"]
    assert d > 0 and metric(y, x)["lpips"] == pytest.approx(d, rel=1e-5)
    meta = metric.metadata
    assert meta["weights_sha256"] == file_sha256(hub / filename)
    assert meta["resize"] == "bilinear 32x32 to 64x64" and meta["num_pairs"] == 4
    model = metric.model()
    _check_backbone_copied(model, state)
    heads = torch.load(linear_heads_path("squeeze"), map_location="cpu", weights_only=True)
    for key, value in heads.items():
        assert torch.equal(model.state_dict()[key], value)
    # an explicit .safetensors backbone file gives the same model
    from safetensors.torch import save_file
    save_file(state, str(tmp_path / "squeeze.safetensors"))
    explicit = LPIPS(LPIPSConfig(net="squeeze", backbone_weights=str(tmp_path /
                                                                     "squeeze.safetensors")))
    assert explicit(x, y)["lpips"] == pytest.approx(d, rel=1e-6)


def test_lpips_alexnet_mapping() -> None:
    state = _torchvision_state("alexnet")
    model = build_lpips("alex", state)
    _check_backbone_copied(model, state)
    with pytest.raises(UsageError, match="do not match"):
        build_lpips("alex", {k: v for k, v in state.items() if k != "features.0.weight"})


# -- PSNR and SSIM -------------------------------------------------------------------------------
def test_psnr_closed_form() -> None:
    x = torch.rand(5, 3, 16, 16) - 0.5
    out = PSNR()(x + 0.1, x)
    assert out["psnr"] == pytest.approx(10 * math.log10(4 / 0.01), rel=1e-6)
    assert out["psnr_mse"] == pytest.approx(0.01, rel=1e-6)
    assert PSNR()(x, x)["psnr"] == 100.0
    with pytest.raises(UsageError, match="same shape"):
        PSNR()(x, x[:4])


def ssim_reference(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """SSIM of two (H, W) images by the definition: explicit weighted sums at every window
    position fully inside the image, averaged."""
    w = gaussian_window(size, sigma).numpy()
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    values = []
    for i in range(a.shape[0] - size + 1):
        for j in range(a.shape[1] - size + 1):
            pa, pb = a[i:i + size, j:j + size], b[i:i + size, j:j + size]
            ma, mb = (w * pa).sum(), (w * pb).sum()
            va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
            cov = (w * (pa - ma) * (pb - mb)).sum()
            values.append((2 * ma * mb + c1) * (2 * cov + c2)
                          / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_against_definition() -> None:
    x = smooth_images(2, 18, channels=3, size=16).double()
    y = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    metric = SSIM()
    got = metric(x, y)["ssim"]
    expected = np.mean([np.mean([ssim_reference(x[n, c].numpy(), y[n, c].numpy())
                                 for c in range(3)]) for n in range(2)])
    assert got == pytest.approx(expected, rel=1e-9)
    assert metric(x, x)["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert metric(y, x)["ssim"] == pytest.approx(got, rel=1e-12)
    # constant images: the structure terms are 1, SSIM = (2ab + C1) / (a² + b² + C1)
    a, b, c1 = 0.2, -0.4, (0.01 * 2) ** 2
    const = metric(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))["ssim"]
    assert const == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)
    with pytest.raises(UsageError, match="at least 11x11"):
        metric(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))


def test_device_errors() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UsageError, match="CUDA is not available"):
        FID(FIDConfig(**LENET, device="cuda"))(smooth_images(4, 1), smooth_images(4, 2))


# -- real MNIST (skipped when absent) -------------------------------------------------------------
def _mnist_root() -> Path | None:
    for candidate in (os.environ.get("DIFFCTL_DATA"), "/work/shared/data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate)
    return None


def _mnist(train: bool, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from torchvision.datasets import MNIST
    ds = MNIST(str(_mnist_root()), train=train, download=False)
    x = F.pad(ds.data[:n].unsqueeze(1).float() / 127.5 - 1.0, (2, 2, 2, 2), value=-1.0)
    return x, ds.targets[:n]


needs_mnist = pytest.mark.skipif(_mnist_root() is None, reason="real MNIST not found")


@needs_mnist
def test_lenet_mnist_accuracy_on_the_full_test_set() -> None:
    """The shipped classifier, measured (not its stored metadata): >= 99% on all 10 000 test
    digits, and the same number the training script wrote into the file."""
    test, labels = _mnist(False, 10_000)
    assert len(test) == 10_000
    from diffctl_metrics.feature_extractors.lenet import load_lenet
    net, meta = load_lenet(shipped_weights())
    with torch.no_grad():
        predicted = torch.cat([net(test[i:i + 1000]).argmax(1) for i in range(0, 10_000, 1000)])
    accuracy = float((predicted == labels).double().mean())
    assert accuracy >= 0.99
    assert f"{accuracy:.4f}" == meta["test_accuracy"]


@needs_mnist
def test_class_accuracy_floor_on_mnist_is_lenets_accuracy() -> None:
    """The class-accuracy floor of the mnist dataset: LeNet on real labelled test digits
    (>= 0.98 on 1000), and c2st of real against real digits on LeNet features is chance."""
    from diffctl.registry import get_registry
    from diffctl.runs.evaluation import metric_floors

    ds = diffctl.create("dataset", "mnist", root=str(_mnist_root()))
    floors = metric_floors(get_registry(), ["class-accuracy", "c2st"], {"c2st": LENET}, ds,
                           1000, draws=5, seed=0)
    assert min(floors["class-accuracy"]["values"]) >= 0.98
    assert 0.47 < floors["c2st"]["mean"] < 0.53


@needs_mnist
@pytest.mark.slow
def test_mnist_fid_validation_10k() -> None:
    """The validation of the issue at full size, against the 10 000 test digits: FID of 10k
    train digits is small, of 10k noise images large, decreasing monotonically as real digits
    replace noise, and torch-fidelity's value equals scipy's sqrtm on the same features."""
    n = 10_000
    test, _ = _mnist(False, n)
    train, _ = _mnist(True, n)
    noise = torch.randn(n, 1, 32, 32, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    metric = FID(FIDConfig(**LENET))
    # seven passes of 10k images through the network in all (~2 s each on an idle 2-core
    # CPU): the test digits once for the check below and once in a feature store shared by
    # IS and every FID's reference, then the five mixtures
    feats_test = fidelity.extract_features(metric.extractor, test)["128"].numpy()
    store: dict = {}
    assert ISC(ISCConfig(**LENET))(test, features=store)["isc"] > 9.5
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    values = []
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        mixed = noise.clone()
        k = round(fraction * n)
        mixed[perm[:k]] = train[perm[:k]]
        values.append(metric(mixed, test, features=store)["fid"])
        assert metric.metadata["num_generated"] == metric.metadata["num_real"] == n
    noise_real, real_real = values[0], values[-1]
    # reference points (scripts/validate_fid.py): 2.28 and 1351 on these exact images
    assert real_real < 5.0 and noise_real > 500.0 and noise_real > 100 * real_real, values
    assert all(a > b for a, b in itertools.pairwise(values)), values
    feats_train = fidelity.extract_features(metric.extractor, train)["128"].numpy()
    assert real_real == pytest.approx(scipy_fid(feats_train, feats_test), rel=1e-4)
    # and those are the network's own features, not something torch-fidelity changed
    np.testing.assert_allclose(feats_test[:500], lenet_features(test[:500]), rtol=1e-5,
                               atol=1e-5)


@needs_mnist
@pytest.mark.slow
def test_train_lenet_script_is_reproducible(tmp_path) -> None:
    """scripts/train_lenet_mnist.py on a small subset, twice: byte-identical files."""
    import hashlib
    script = Path(__file__).resolve().parents[1] / "scripts" / "train_lenet_mnist.py"
    digests = []
    for run in ("a", "b"):
        out = tmp_path / f"{run}.safetensors"
        proc = subprocess.run(
            [sys.executable, str(script), "--root", str(_mnist_root()), "--out", str(out),
             "--epochs", "1", "--max-train", "3000", "--max-test", "1000",
             "--min-accuracy", "0"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    extractor = LeNetMNIST(LeNetMNISTConfig(weights_path=str(tmp_path / "a.safetensors")))
    meta = extractor.training_metadata()
    assert meta["config"]["max_train"] == 3000 and meta["config"]["max_test"] == 1000
    assert meta["config"]["epochs"] == 1 and meta["config"]["seed"] == 0
    assert 0.5 < float(meta["test_accuracy"]) <= 1.0  # it learned something in 3000 digits
