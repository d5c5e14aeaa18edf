"""Config models of the metrics (no torch, scipy or sklearn: imported when plugins are listed)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from diffctl.config import ComponentConfig


class MMDRBFConfig(ComponentConfig):
    """Unbiased MMD² with a multi-scale Gaussian kernel (Gretton et al. 2012, eq. 3)."""

    bandwidth: float | None = Field(
        None, gt=0,
        description="Base (largest) bandwidth sigma of the Gaussians exp(-|x - y|² / "
        "(2 sigma²)); null = the median pairwise distance of the real sample only (so that "
        "poor generated samples cannot widen the kernel, and the real-vs-real floor uses a "
        "kernel from the same distribution).")
    scales: list[float] | None = Field(
        None, min_length=1,
        description="Bandwidth multipliers: the kernel is the sum of one Gaussian per "
        "multiplier of the base bandwidth ([1.0] = a single Gaussian). null = multi-scale: the "
        "base, its half, its quarter, ... down to the first at or below the real sample's "
        "nearest-neighbour scale (the median distance from a point to its nearest other "
        "point), at most 16 Gaussians. Set both bandwidth and scales for a fixed kernel.")
    median_points: int = Field(
        2000, ge=2,
        description="The median and nearest-neighbour scales are taken on a seeded random "
        "subsample of at most this many real points.")
    block_size: int = Field(
        256, ge=1,
        description="Rows/columns per kernel block (256 measured fastest on CPU: a block's "
        "Gaussians are computed in cache).")
    seed: int = Field(0, description="Seed of the subsample of the median and "
                      "nearest-neighbour scales.")

    @model_validator(mode="after")
    def _positive_scales(self):
        if self.scales is not None and any(s <= 0 for s in self.scales):
            raise ValueError("scales must be positive")
        return self


class MMDLinearConfig(ComponentConfig):
    """Biased MMD² with the linear kernel k(x, y) = x·y: |mean(x) - mean(y)|² (no settings)."""


class WassersteinConfig(ComponentConfig):
    """Exact earth mover's distance between equal-size subsamples (POT's network simplex)."""

    p: Literal[1, 2] = Field(
        1, description="Order: 1 = W1 with Euclidean ground cost, 2 = W2 (squared Euclidean "
        "cost, square root of the optimal cost).")
    max_points: int = Field(
        2000, ge=1,
        description="Both samples are subsampled (seeded) to min(max_points, len(gen), "
        "len(real)) points. The exact solver costs ~n^2.3 time and n² memory: about 1 s at "
        "2000 points and 5 s at 5000 on a 2-core CPU.")
    seed: int = Field(0, description="Seed of the subsamples.")


class SlicedWassersteinConfig(ComponentConfig):
    """Sliced Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015) through POT."""

    p: Literal[1, 2] = Field(1, description="Order of the 1-D Wasserstein distances.")
    num_projections: int = Field(256, ge=1, description="Random directions on the circle.")
    max_points: int | None = Field(
        None, ge=1, description="Optional seeded subsample of each sample (null = all).")
    seed: int = Field(0, description="Seed of the projections and subsamples.")


class SampleStatsConfig(ComponentConfig):
    """Per-dimension mean, std, min and max of both samples (no settings)."""


class ModeCoverageConfig(ComponentConfig):
    """Mode coverage of a Gaussian mixture (defaults: the gmm-ring dataset)."""

    num_modes: int = Field(8, ge=1, description="K modes equally spaced on a circle.")
    radius: float = Field(5.0, gt=0, description="Radius of the ring of modes.")
    std: float = Field(0.2, gt=0, description="Standard deviation of each mixture component.")
    modes: list[list[float]] | None = Field(
        None, description="Explicit mode centres (overrides num_modes and radius).")
    min_fraction: float = Field(
        0.1, ge=0,
        description="A mode is hit when at least min_fraction x N / K generated samples "
        "(and at least one) lie within 3 std of it, N / K being a mode's expected share.")

    @model_validator(mode="after")
    def _explicit_modes(self):
        if self.modes is not None:
            if not self.modes:
                raise ValueError("modes must not be empty")
            if len({len(m) for m in self.modes}) != 1:
                raise ValueError("all modes must have the same dimension")
        return self


class MoonsDistanceConfig(ComponentConfig):
    """Two-moons distance: share of generated points with no real point nearby."""

    radius: float = Field(0.02, gt=0, description="Neighbourhood radius.")


class MoonsHistConfig(ComponentConfig):
    """Two-moons histogram MSE."""

    bins: int = Field(64, ge=1, description="Bins per axis.")
    padding: float = Field(0.5, ge=0, description="Padding added to each side of the joint "
                           "range of both samples.")


class MoonsShapeConfig(ComponentConfig):
    """Two-moons shape: k-means (k = 2) silhouette of the generated points."""

    silhouette_points: int = Field(
        5000, ge=2, description="Silhouette on a seeded subsample of at most this many points "
        "(it costs O(n²)).")
    seed: int = Field(0, description="Seed of the k-means and the silhouette subsample.")


class MoonsOverallConfig(ComponentConfig):
    """Mean of moons-distance, moons-hist-mse and moons-shape."""

    radius: float = Field(0.02, gt=0, description="moons-distance neighbourhood radius.")
    bins: int = Field(64, ge=1, description="moons-hist-mse bins per axis.")
    padding: float = Field(0.5, ge=0, description="moons-hist-mse range padding.")
    silhouette_points: int = Field(5000, ge=2,
                                   description="moons-shape silhouette subsample size.")
    seed: int = Field(0, description="moons-shape seed.")


# -- image metrics (the offline image metrics issue) -----------------------------------------
#: Feature extractors shipped with diffctl-metrics (kind ``feature-extractor``).
FEATURE_EXTRACTOR_HELP = (
    "Registered feature-extractor name: inception-v3-compat (torch-fidelity's Inception-v3, "
    "the standard of published FID/KID/IS; needs its weights file locally) or lenet-mnist "
    "(the MNIST classifier shipped with diffctl-metrics; fully offline, MNIST only), or any "
    "feature-extractor a plugin registers.")


class InceptionV3CompatConfig(ComponentConfig):
    """torch-fidelity's Inception-v3 port of the 2015-12-05 TensorFlow graph."""

    weights_path: str | None = Field(
        None,
        description="Local weights file (torch-fidelity's weights-inception-2015-12-05-"
        "6726825d.pth, or a .safetensors file with the same keys); null = look in the torch hub "
        "cache, <torch hub dir>/checkpoints/. Never downloaded.")


class LeNetMNISTConfig(ComponentConfig):
    """The LeNet-style MNIST classifier trained by scripts/train_lenet_mnist.py."""

    weights_path: str | None = Field(
        None,
        description="A .safetensors file written by scripts/train_lenet_mnist.py; null = the "
        "weights shipped inside diffctl-metrics.")


#: devices a metric accepts: auto, or what a run may train on.
DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?|mps(:\d+)?)$"


class _FidelityConfig(ComponentConfig):
    """Settings shared by the torch-fidelity metrics (fid, kid, isc, prc)."""

    feature_extractor: str = Field("inception-v3-compat", description=FEATURE_EXTRACTOR_HELP)
    feature_extractor_weights: str | None = Field(
        None,
        description="Weights file handed to the feature extractor as its weights_path "
        "(overrides feature_extractor_options.weights_path); null = the extractor's default "
        "(hub cache for inception-v3-compat, the shipped file for lenet-mnist).")
    feature_extractor_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Config of the feature-extractor component (validated by its own config "
        "model), e.g. the options of a third-party extractor.")
    device: str = Field(
        "auto", pattern=DEVICE_PATTERN,
        description="Where torch-fidelity runs the extractor: auto (cuda when available), cpu, "
        "cuda or cuda:N; mps runs it on the CPU (torch-fidelity supports cpu and cuda). A run "
        "passes its own device here when the option is left at auto.")
    batch_size: int = Field(256, ge=1, description="Images per feature-extractor batch.")


class _CachedReferenceConfig(_FidelityConfig):
    """Adds the on-disk cache of reference statistics/features."""

    cache: bool = Field(
        True,
        description="Cache the real images' statistics (fid) or features (kid, prc) on disk, "
        "keyed by a sha256 of the real images' bytes, the extractor, its layer and the weights "
        "file's sha256.")
    cache_dir: str | None = Field(
        None,
        description="Cache folder; null = $DIFFCTL_CACHE/metrics, else "
        "$XDG_CACHE_HOME/diffctl/metrics, else ~/.cache/diffctl/metrics.")


REFERENCE_FEATURES_HELP = (
    "A precomputed .npz of the real images' features (array features, as written by "
    "save_reference_features); when set, the real images passed to the metric are ignored and "
    "may be None.")


class FIDConfig(_CachedReferenceConfig):
    """Fréchet Inception Distance (Heusel et al. 2017) through torch-fidelity."""

    reference_stats: str | None = Field(
        None,
        description="A precomputed .npz of the real images' statistics (arrays mu and sigma, as "
        "written by FID.save_reference_stats or pytorch-fid); when set, the real images passed "
        "to the metric are ignored and may be None.")


class KIDConfig(_CachedReferenceConfig):
    """Kernel Inception Distance (Binkowski et al. 2018) through torch-fidelity."""

    reference_features: str | None = Field(
        None, description=REFERENCE_FEATURES_HELP)
    subsets: int = Field(100, ge=1, description="Number of random subset pairs averaged.")
    subset_size: int = Field(
        1000, ge=2,
        description="Images per subset; capped at the smaller sample size (the value used is "
        "returned as kid_subset_size).")
    degree: int = Field(3, ge=1, description="Degree d of the polynomial kernel "
                        "(gamma x·y + coef0)^d.")
    gamma: float | None = Field(None, gt=0, description="Kernel gamma; null = 1 / feature dim.")
    coef0: float = Field(1.0, description="Kernel coef0.")
    seed: int = Field(2020, description="Seed of the subset draws (torch-fidelity's rng_seed).")


class ISCConfig(_FidelityConfig):
    """Inception Score (Salimans et al. 2016) of the generated images through torch-fidelity."""

    splits: int = Field(
        10, ge=1,
        description="The score is averaged over this many splits (capped at the sample size).")
    shuffle: bool = Field(True, description="Shuffle the samples (seeded) before splitting.")
    seed: int = Field(2020, description="Seed of the shuffle (torch-fidelity's rng_seed).")


class PRCConfig(_CachedReferenceConfig):
    """Improved precision and recall (Kynkäänniemi et al. 2019) through torch-fidelity."""

    reference_features: str | None = Field(
        None, description=REFERENCE_FEATURES_HELP)
    neighborhood: int = Field(
        3, ge=1, description="k of the k-nearest-neighbour balls that approximate each manifold.")
    distance_batch_size: int = Field(
        2000, ge=1,
        description="Rows per block of pairwise distances (memory ~ rows x N x 4 bytes).")


class LPIPSConfig(ComponentConfig):
    """LPIPS (Zhang et al. 2018) between paired images, through the lpips package."""

    net: Literal["alex", "vgg", "squeeze"] = Field(
        "alex", description="Backbone: alex (AlexNet), vgg (VGG-16) or squeeze (SqueezeNet 1.1).")
    backbone_weights: str | None = Field(
        None,
        description="Local torchvision ImageNet state_dict of the backbone (.pth or "
        ".safetensors); null = look in the torch hub cache, <torch hub dir>/checkpoints/. "
        "Never downloaded. The linear heads ship with the lpips package.")
    min_size: int = Field(
        64, ge=0,
        description="Images whose shorter side is below this are bilinearly upsampled so that "
        "it equals min_size (AlexNet's deep layers are 1x1 at 32 px); 0 = never resize.")
    device: str = Field("auto", pattern=DEVICE_PATTERN,
                        description="auto (cuda when available), cpu, cuda, cuda:N or mps; a "
                        "run passes its own device here when the option is left at auto.")
    batch_size: int = Field(64, ge=1, description="Image pairs per batch.")


class PSNRConfig(ComponentConfig):
    """Peak signal-to-noise ratio between paired images in [-1, 1]."""

    max_db: float = Field(
        100.0, gt=0,
        description="Per-image PSNR is capped at this value (identical images would give "
        "infinity).")


class SSIMConfig(ComponentConfig):
    """Structural similarity (Wang et al. 2004) between paired images in [-1, 1]."""

    window_size: int = Field(11, ge=3, description="Side of the Gaussian window (odd).")
    sigma: float = Field(1.5, gt=0, description="Standard deviation of the Gaussian window.")
    k1: float = Field(0.01, gt=0, description="C1 = (k1 L)², L = 2 the range of [-1, 1].")
    k2: float = Field(0.03, gt=0, description="C2 = (k2 L)².")

    @model_validator(mode="after")
    def _odd_window(self):
        if self.window_size % 2 == 0:
            raise ValueError("window_size must be odd")
        return self


# -- classifier-based metrics (issue 13) ------------------------------------------------------
class C2STConfig(ComponentConfig):
    """Classifier two-sample test (Lopez-Paz & Oquab 2017): cross-validated accuracy of a
    classifier telling generated from real samples; 0.5 = indistinguishable."""

    classifier: Literal["knn", "logistic", "mlp"] = Field(
        "knn",
        description="knn: k-nearest neighbours (sees any local difference in density; no "
        "training randomness); logistic: logistic regression (a linear boundary: sees "
        "differences of the means along some direction only); mlp: a small multilayer "
        "perceptron (hidden_layers, ReLU, Adam at learning rate 1e-2 with early stopping, "
        "seeded; about 1 s at 2000 points per side).")
    n_neighbors: int | None = Field(
        None, ge=1,
        description="k of the knn classifier; null = the odd integer nearest the square root "
        "of the number of training points of a fold (41 at 1000 points per side, 89 at 5000).")
    hidden_layers: list[int] = Field(
        default_factory=lambda: [64, 64], min_length=1,
        description="Widths of the mlp classifier's hidden layers.")
    folds: int = Field(
        5, ge=2, description="Stratified cross-validation folds: each point is tested once, "
        "by a classifier trained on the other folds.")
    max_points: int = Field(
        5000, ge=2,
        description="Both samples are subsampled (seeded) to the same size, min(max_points, "
        "len(generated), len(real)): equal classes make 0.5 the chance level.")
    standardize: bool = Field(
        True, description="Scale each feature to zero mean and unit variance (fitted on the "
        "training folds), so that distances and fits do not depend on units.")
    seed: int = Field(0, description="Seed of the subsamples, the folds and the mlp.")
    feature_extractor: str | None = Field(
        None,
        description="null = classify the samples themselves (points, or flattened images); "
        "else a registered feature-extractor (lenet-mnist, inception-v3-compat, a plugin's) "
        "whose features of the images are classified.")
    feature_extractor_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Config of the feature-extractor component (e.g. weights_path).")
    feature_layer: str | None = Field(
        None, description="Extractor layer to classify; null = the layer FID reads (lenet-mnist "
        "128, inception-v3-compat 2048).")
    device: str = Field(
        "auto", pattern=DEVICE_PATTERN,
        description="Where the extractor runs (auto: cuda when available); a run passes its own "
        "device here when the option is left at auto.")
    batch_size: int = Field(256, ge=1, description="Images per feature-extractor batch.")


class ClassAccuracyConfig(ComponentConfig):
    """Share of class-conditional samples that a classifier assigns to the class they were
    generated for."""

    feature_extractor: str = Field(
        "lenet-mnist",
        description="A registered feature-extractor with a logits layer (the classifier): "
        "lenet-mnist for MNIST, or a plugin's classifier for other data.")
    feature_extractor_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Config of the feature-extractor component (e.g. weights_path).")
    logits_layer: str = Field("logits", description="The extractor layer holding the class "
                              "logits (argmax = predicted class).")
    device: str = Field(
        "auto", pattern=DEVICE_PATTERN,
        description="Where the classifier runs (auto: cuda when available); a run passes its "
        "own device here when the option is left at auto.")
    batch_size: int = Field(256, ge=1, description="Images per classifier batch.")
