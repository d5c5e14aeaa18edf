"""The config of a model-size study (``diffctl study sizes --config``); no torch import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator

from diffctl.config import ComponentConfig, validation_message
from diffctl.errors import ConfigError


class SizeStudyConfig(ComponentConfig):
    """Students of several widths against one teacher run; each student is a normal run
    whose config is the teacher's with the student denoiser at one size (then ``set``)."""

    teacher: str = Field(description="Run directory of the trained teacher.")
    sizes: list[float] = Field(min_length=1, description="Size factors of the students, each "
                               "in (0, 1]: the value of the student denoiser's size field.")
    from_data: bool = Field(False, description="Also train every size on the data alone "
                            "(same seed, so the same initial weights and batches): the "
                            "baseline that says whether distillation helps.")
    denoiser: str | None = Field(None, description="Student denoiser (null: the teacher's own "
                                 "when it declares a size field, else the student its "
                                 "registration names, e.g. unet-mini -> student-unet).")
    checkpoint: str = Field("best", description="Teacher checkpoint: best, last or a name.")
    use_ema: bool = Field(True, description="Distil from the teacher's EMA weights.")
    weight: float = Field(1.0, ge=0.0, le=1.0, description="Share of the teacher term in the "
                          "students' loss (distill.weight).")
    set: list[str] = Field(default_factory=list, description="Overrides of every student's "
                           "config, section.field=value (e.g. train.epochs=30).")
    out: str | None = Field(None, description="Study folder (required here or as --out).")
    workers: int = Field(1, ge=1, description="Students trained in parallel processes.")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, sizes: list[float]) -> list[float]:
        bad = [s for s in sizes if not 0.0 < s <= 1.0]
        if bad:
            raise ValueError(f"size factors must be in (0, 1], got {bad}")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"size factors repeat: {sizes}")
        return sorted(sizes)


def parse_sizes(text: str) -> list[float]:
    """``0.01,0.05,0.1`` -> [0.01, 0.05, 0.1] (a bad number is a one-line error)."""
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--sizes expects numbers separated by commas, got {text!r}") from None


def study_config(data: dict[str, Any], where: Path | str = "study") -> SizeStudyConfig:
    """Validate a study config mapping; one-line :class:`ConfigError` otherwise."""
    try:
        return SizeStudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, str(where))) from None
