"""Registers the metrics package's metrics and feature extractors with diffctl.

Nothing here imports torch, scipy, scikit-learn or POT: factories are ``"module:attribute"``
strings resolved when a metric is first built.
"""

from __future__ import annotations

from diffctl import hookimpl
from diffctl_metrics.configs import (
    C2STConfig,
    ClassAccuracyConfig,
    FIDConfig,
    InceptionV3CompatConfig,
    ISCConfig,
    KIDConfig,
    LeNetMNISTConfig,
    LPIPSConfig,
    MMDLinearConfig,
    MMDRBFConfig,
    ModeCoverageConfig,
    MoonsDistanceConfig,
    MoonsHistConfig,
    MoonsOverallConfig,
    MoonsShapeConfig,
    PRCConfig,
    PSNRConfig,
    SampleStatsConfig,
    SlicedWassersteinConfig,
    SSIMConfig,
    WassersteinConfig,
)

_M = "diffctl_metrics"
#: MNIST's default image metrics read the LeNet shipped with this package (offline)
_LENET = {"feature_extractor": "lenet-mnist"}


@hookimpl
def register_components(registry) -> None:
    add = registry.add
    # registered first: the order of registration is the order of a run's default metrics,
    # so c2st is the headline wherever it is a default
    add("metric", "c2st", factory=f"{_M}.c2st:C2ST", config=C2STConfig,
        summary="Classifier two-sample test (Lopez-Paz & Oquab 2017): cross-validated accuracy "
                "of a kNN (or logistic, MLP) telling generated from real; 0.5 = "
                "indistinguishable.",
        higher_is_better=False, data=("points", "images"), needs=("feature-extractor",),
        default_for={"points": {}, "two-moons": {}, "gmm-ring": {}, "mnist": _LENET,
                     "digits": _LENET})
    # 2-D sample metrics (the 2-D workflows issue)
    add("metric", "mmd-rbf", factory=f"{_M}.mmd:RBFMMD", config=MMDRBFConfig,
        summary="Unbiased MMD² (Gretton et al. 2012, eq. 3), a sum of Gaussian kernels from the "
                "real sample's nearest-neighbour scale to its median distance.",
        zero_centred=True, default_for={"points": {}, "images": {}, "two-moons": {},
                                        "gmm-ring": {}, "digits": {}})
    add("metric", "mmd-linear", factory=f"{_M}.mmd:LinearMMD", config=MMDLinearConfig,
        summary="Biased MMD² with the linear kernel (Gretton et al. 2012, eq. 5): "
                "|mean(x) - mean(y)|², never negative.")
    add("metric", "wasserstein", factory=f"{_M}.wasserstein:Wasserstein",
        config=WassersteinConfig,
        summary="Exact W1 (or W2) earth mover's distance on equal-size subsamples (POT emd2).",
        default_for={"gmm-ring": {}})
    add("metric", "sliced-wasserstein", factory=f"{_M}.wasserstein:SlicedWasserstein",
        config=SlicedWassersteinConfig,
        summary="Sliced Wasserstein distance over seeded random projections (POT).")
    add("metric", "sample-stats", factory=f"{_M}.sample_stats:SampleStats",
        config=SampleStatsConfig,
        summary="Per-dimension mean/std/min/max; headline |d mean|_2 + |d std|_2.")
    add("metric", "mode-coverage", factory=f"{_M}.mode_coverage:ModeCoverage",
        config=ModeCoverageConfig,
        summary="Fraction of mixture modes hit within 3 std (defaults: the gmm-ring dataset).",
        higher_is_better=True, data=("points",), needs=("modes",),
        default_for={"gmm-ring": {}})
    add("metric", "moons-distance", factory=f"{_M}.two_moons:MoonsDistance",
        config=MoonsDistanceConfig,
        summary="1 - fraction of generated points with a real point within 0.02.",
        data=("points",))
    add("metric", "moons-hist-mse", factory=f"{_M}.two_moons:MoonsHistMSE",
        config=MoonsHistConfig,
        summary="MSE of max-normalised 64x64 histograms of generated and real points.",
        data=("points",))
    add("metric", "moons-shape", factory=f"{_M}.two_moons:MoonsShape", config=MoonsShapeConfig,
        summary="(1 - silhouette of 2-means on the generated points) / 2.",
        data=("points",))
    add("metric", "moons-overall", factory=f"{_M}.two_moons:MoonsOverall",
        config=MoonsOverallConfig,
        summary="Mean of moons-distance, moons-hist-mse and moons-shape.",
        data=("points",), default_for={"two-moons": {}})

    # image metrics (the offline image metrics issue): torch-fidelity on local weights
    add("metric", "fid", factory=f"{_M}.fidelity:FID", config=FIDConfig,
        summary="Fréchet distance of extractor features (Heusel et al. 2017) via torch-fidelity; "
                "cached reference stats.",
        data=("images",), needs=("feature-extractor",),
        default_for={"mnist": _LENET, "digits": _LENET})
    add("metric", "kid", factory=f"{_M}.fidelity:KID", config=KIDConfig,
        summary="Kernel Inception Distance: unbiased cubic-kernel MMD² over subsets "
                "(Binkowski et al. 2018), torch-fidelity.",
        zero_centred=True, data=("images",), needs=("feature-extractor",))
    add("metric", "isc", factory=f"{_M}.fidelity:ISC", config=ISCConfig,
        summary="Inception Score of the generated images (Salimans et al. 2016) via "
                "torch-fidelity; lenet-mnist: classifier IS.",
        higher_is_better=True, data=("images",), needs=("classifier",),
        default_for={"mnist": _LENET})
    add("metric", "prc", factory=f"{_M}.fidelity:PRC", config=PRCConfig,
        summary="Improved precision/recall with k-NN feature manifolds (Kynkäänniemi et al. "
                "2019); headline F1, torch-fidelity.",
        higher_is_better=True, data=("images",), needs=("feature-extractor",))
    add("metric", "class-accuracy", factory=f"{_M}.class_accuracy:ClassAccuracy",
        config=ClassAccuracyConfig,
        summary="Share of class-conditional samples a classifier (lenet-mnist's logits) assigns "
                "to their class; floor: its accuracy on real images.",
        higher_is_better=True, data=("images",), needs=("classifier", "labels"),
        default_for={"mnist": _LENET, "digits": _LENET})
    add("metric", "lpips", factory=f"{_M}.lpips_metric:LPIPS", config=LPIPSConfig,
        summary="LPIPS between paired images (Zhang et al. 2018), lpips package, local "
                "backbone weights.",
        data=("images",), input="pairs")
    add("metric", "psnr", factory=f"{_M}.psnr:PSNR", config=PSNRConfig,
        summary="Mean per-image PSNR (dB) between paired images in [-1, 1] (peak-to-peak 2).",
        higher_is_better=True, data=("images",), input="pairs")
    add("metric", "ssim", factory=f"{_M}.ssim:SSIM", config=SSIMConfig,
        summary="Mean SSIM between paired images, 11x11 Gaussian window (Wang et al. 2004).",
        higher_is_better=True, data=("images",), input="pairs")
    add("feature-extractor", "inception-v3-compat",
        factory=f"{_M}.feature_extractors.inception:InceptionV3Compat",
        config=InceptionV3CompatConfig,
        summary="torch-fidelity's TF-compatible Inception-v3 (published FID/KID/IS); weights "
                "from a local file.")
    add("feature-extractor", "lenet-mnist", factory=f"{_M}.feature_extractors.lenet:LeNetMNIST",
        config=LeNetMNISTConfig,
        summary="LeNet MNIST classifier shipped with diffctl-metrics: offline FID/KID/IS/PRC "
                "for MNIST.")
