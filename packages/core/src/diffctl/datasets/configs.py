"""Config models of the built-in datasets (no torch: imported when plugins are listed)."""

from __future__ import annotations

from pydantic import Field, model_validator

from diffctl.config import ComponentConfig


class Augment2DConfig(ComponentConfig):
    """Random similarity transform per example, ``x -> s R(theta) x + b`` about the origin.

    Every range is a no-op at its default, so augmentation is off unless asked for.
    """

    rotation_degrees: float = Field(
        0.0, ge=0.0, le=180.0,
        description="theta ~ U[-r, r] degrees, rotation about the origin (0: off).")
    scale: tuple[float, float] = Field(
        (1.0, 1.0), description="s ~ U[lo, hi], isotropic scale about the origin ([1, 1]: off).")
    translation: float = Field(
        0.0, ge=0.0, description="b ~ U[-d, d] per coordinate (0: off).")

    @model_validator(mode="after")
    def _check_scale(self):
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ValueError("scale must be [lo, hi] with 0 < lo <= hi")
        return self

    @property
    def enabled(self) -> bool:
        """Whether any part of the transform differs from the identity."""
        return self.rotation_degrees > 0 or self.scale != (1.0, 1.0) or self.translation > 0


class Points2DConfig(ComponentConfig):
    """Fields shared by the synthetic 2-D datasets."""

    n: int = Field(10_000, ge=2, description="Examples generated (train + test).")
    seed: int | None = Field(
        None, ge=0, description="Seed of the generated examples and of the split; null: the "
        "run's 'data' stream (diffctl.seeds), 0 outside a run.")
    test_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of the n examples held out as the test split.")
    augment: Augment2DConfig = Field(
        default_factory=Augment2DConfig,
        description="Random rotation/scale/translation applied by the trainer (off by default).")

    @model_validator(mode="after")
    def _check_split(self):
        n_test = round(self.n * self.test_fraction)
        if self.n - n_test < 1:
            raise ValueError("test_fraction leaves no training examples")
        return self


class TwoMoonsConfig(Points2DConfig):
    n: int = Field(20_000, ge=2, description="Examples generated (train + test).")
    noise: float = Field(0.1, ge=0.0,
                         description="Std of the Gaussian noise added to each coordinate.")


class GMMRingConfig(Points2DConfig):
    num_components: int = Field(8, ge=1, description="Gaussian modes, equally spaced on a circle.")
    radius: float = Field(5.0, gt=0.0, description="Radius of the circle of mode centres.")
    std: float = Field(0.2, gt=0.0, description="Isotropic std of every mode.")

    def metric_defaults(self) -> dict[str, dict]:
        """Options of metrics that need the mixture itself (see ``diffctl.runs.config``)."""
        return {"mode-coverage": {"num_modes": self.num_components, "radius": self.radius,
                                  "std": self.std}}
