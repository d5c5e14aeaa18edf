"""Config models of the metrics (no torch, scipy or sklearn: imported when plugins are listed)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from diffctl.config import ComponentConfig


class MMDRBFConfig(ComponentConfig):
    """Unbiased MMD² with a Gaussian kernel (Gretton et al. 2012, eq. 3)."""

    bandwidth: float | None = Field(
        None, gt=0,
        description="Kernel bandwidth sigma in k(x, y) = exp(-|x - y|² / (2 sigma²)); "
        "null = median heuristic (median pairwise distance of the pooled sample).")
    scales: list[float] = Field(
        default_factory=lambda: [1.0], min_length=1,
        description="Bandwidth multipliers; the kernel is the sum of one Gaussian per "
        "multiplier (multi-scale MMD). [1.0] is a single Gaussian.")
    median_points: int = Field(
        2000, ge=2,
        description="Median heuristic on a seeded random subsample of at most this many "
        "pooled points.")
    block_size: int = Field(
        1024, ge=1, description="Rows/columns per kernel block (1024 measured fastest on CPU).")
    seed: int = Field(0, description="Seed of the median-heuristic subsample.")

    @model_validator(mode="after")
    def _positive_scales(self):
        if any(s <= 0 for s in self.scales):
            raise ValueError("scales must be positive")
        return self


class MMDLinearConfig(ComponentConfig):
    """Unbiased MMD² with the linear kernel k(x, y) = x·y (no settings)."""


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
