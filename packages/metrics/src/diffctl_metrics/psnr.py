"""PSNR, the peak signal-to-noise ratio, for reconstruction-style evaluation.

For images in [-1, 1] the peak-to-peak range is L = 2, so per image

    PSNR = 10 log10(L² / MSE) = 10 log10(4 / MSE)

with MSE the mean squared difference over channels and pixels. Both batches are clamped to
[-1, 1] first (as when saved as images). The metric averages the per-image PSNR (the usual
convention of reconstruction benchmarks, not the PSNR of the pooled MSE).
"""

from __future__ import annotations

from typing import Any

import torch

from diffctl_metrics._common import paired_images, paired_metadata
from diffctl_metrics.configs import PSNRConfig

PEAK = 2.0  # max - min of [-1, 1]


def psnr_per_image(a: torch.Tensor, b: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """(N,) float64 PSNR in dB of paired (N, C, H, W) images in [-1, 1], capped at ``max_db``
    (identical images have MSE 0 and an infinite PSNR)."""
    a, b = a.double().clamp(-1, 1), b.double().clamp(-1, 1)
    mse = (a - b).square().flatten(1).mean(dim=1)
    floor = PEAK**2 / 10 ** (max_db / 10)  # the MSE at which PSNR reaches max_db
    return (10 * torch.log10(PEAK**2 / mse.clamp_min(floor))).clamp_max(max_db)


class PSNR:
    """``psnr``: mean per-image PSNR (dB) between ``generated[i]`` and ``real[i]``.

    Returns ``{"psnr": mean, "psnr_std": std over images, "psnr_mse": mean MSE}``; higher is
    better. ``metadata`` after a call: image counts, size (no resize, no extractor) and
    the range convention.
    """

    higher_is_better = True

    def __init__(self, config: PSNRConfig | None = None):
        self.config = config or PSNRConfig()
        self.metadata: dict[str, Any] = {}

    @torch.no_grad()
    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        a, b = paired_images(generated, real, "psnr")
        values = psnr_per_image(a, b, self.config.max_db)
        mse = (a.double().clamp(-1, 1) - b.double().clamp(-1, 1)).square().mean()
        self.metadata = {**paired_metadata("psnr", a), "data_range": "[-1, 1]",
                         "peak": PEAK, "max_db": self.config.max_db}
        std = float(values.std()) if len(values) > 1 else 0.0
        return {"psnr": float(values.mean()), "psnr_std": std, "psnr_mse": float(mse)}
