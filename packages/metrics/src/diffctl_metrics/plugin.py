"""Registers the metrics package's metrics with diffctl.

Nothing here imports torch, scipy, scikit-learn or POT: factories are ``"module:attribute"``
strings resolved when a metric is first built.
"""

from __future__ import annotations

from diffctl import hookimpl
from diffctl_metrics.configs import (
    MMDLinearConfig,
    MMDRBFConfig,
    ModeCoverageConfig,
    MoonsDistanceConfig,
    MoonsHistConfig,
    MoonsOverallConfig,
    MoonsShapeConfig,
    SampleStatsConfig,
    SlicedWassersteinConfig,
    WassersteinConfig,
)

_M = "diffctl_metrics"


@hookimpl
def register_components(registry) -> None:
    add = registry.add
    # 2-D sample metrics (the 2-D workflows issue)
    add("metric", "mmd-rbf", factory=f"{_M}.mmd:RBFMMD", config=MMDRBFConfig,
        summary="Unbiased MMD² with a Gaussian kernel, median-heuristic bandwidth "
                "(Gretton et al. 2012, eq. 3).")
    add("metric", "mmd-linear", factory=f"{_M}.mmd:LinearMMD", config=MMDLinearConfig,
        summary="Unbiased MMD² with the linear kernel: squared mean difference minus its bias.")
    add("metric", "wasserstein", factory=f"{_M}.wasserstein:Wasserstein",
        config=WassersteinConfig,
        summary="Exact W1 (or W2) earth mover's distance on equal-size subsamples (POT emd2).")
    add("metric", "sliced-wasserstein", factory=f"{_M}.wasserstein:SlicedWasserstein",
        config=SlicedWassersteinConfig,
        summary="Sliced Wasserstein distance over seeded random projections (POT).")
    add("metric", "sample-stats", factory=f"{_M}.sample_stats:SampleStats",
        config=SampleStatsConfig,
        summary="Per-dimension mean/std/min/max; headline |d mean|_2 + |d std|_2.")
    add("metric", "mode-coverage", factory=f"{_M}.mode_coverage:ModeCoverage",
        config=ModeCoverageConfig,
        summary="Fraction of mixture modes hit within 3 std (defaults: the gmm-ring dataset).")
    add("metric", "moons-distance", factory=f"{_M}.two_moons:MoonsDistance",
        config=MoonsDistanceConfig,
        summary="1 - fraction of generated points with a real point within 0.02.")
    add("metric", "moons-hist-mse", factory=f"{_M}.two_moons:MoonsHistMSE",
        config=MoonsHistConfig,
        summary="MSE of max-normalised 64x64 histograms of generated and real points.")
    add("metric", "moons-shape", factory=f"{_M}.two_moons:MoonsShape", config=MoonsShapeConfig,
        summary="(1 - silhouette of 2-means on the generated points) / 2.")
    add("metric", "moons-overall", factory=f"{_M}.two_moons:MoonsOverall",
        config=MoonsOverallConfig,
        summary="Mean of moons-distance, moons-hist-mse and moons-shape.")
