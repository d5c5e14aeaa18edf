"""What the operations of :class:`diffctl.runs.Run` return: plain data, printed by the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffctl.runs.components import Components
from diffctl.runs.sampling import Inpainted
from diffctl.samplers.base import Trajectory


@dataclass
class LoadedModel:
    """A run's components with one checkpoint's weights loaded (EMA when asked and present)."""

    components: Components
    model: torch.nn.Module
    checkpoint: Path
    state: dict[str, Any]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


@dataclass
class SampleResult:
    """What :meth:`Run.sample` drew and measured."""

    samples: torch.Tensor
    path: Path | None
    checkpoint: str
    sampler: str
    steps: int
    seed: int
    labels: torch.Tensor | None
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    floors: dict[str, dict[str, Any]] = field(default_factory=dict)
    real: torch.Tensor | None = None
    trajectory: Trajectory | None = None
    note: str = ""


@dataclass
class InpaintResult:
    """What :meth:`Run.inpaint` filled in and how close it came to the originals."""

    result: Inpainted
    region: str
    sampler: str
    steps: int
    psnr_filled_region: float
    ssim_whole_image: float
    path: Path | None = None


@dataclass
class EvalResult:
    """What :meth:`Run.evaluate` measured, and where it wrote it."""

    folder: Path
    rows: list[dict[str, Any]]
    failures: list[dict[str, str]]
    floors: dict[str, dict[str, Any]]
    metrics: list[str]
    num_samples: int
    workers: int
    seconds: float
    samples: dict[str, Path] = field(default_factory=dict)  # checkpoint -> kept samples
    real: Path | None = None  # as many real samples as were kept per checkpoint
