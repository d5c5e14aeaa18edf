"""SSIM, the structural similarity index (Wang, Bovik, Sheikh and Simoncelli 2004).

For every position of a Gaussian window (11x11, sigma 1.5, fully inside the image) with local
means mu, variances s² and covariance s_xy (window-weighted, eq. 14-16 of the paper)

    SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x² + mu_y² + C1)(s_x² + s_y² + C2))

with C1 = (K1 L)², C2 = (K2 L)², K1 = 0.01, K2 = 0.03 and L = 2, the range of [-1, 1]. The
map is averaged over positions and channels for one value per image (MSSIM, eq. 17); the
metric averages over images. This matches the paper's reference implementation without its
automatic downsampling (which is a no-op below 256 px) and scikit-image's
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=2)``. Images are clamped to [-1, 1] first.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from diffctl.errors import UsageError
from diffctl_metrics._common import paired_images, paired_metadata
from diffctl_metrics.configs import SSIMConfig

DATA_RANGE = 2.0


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """(size, size) float64 Gaussian weights summing to 1."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim_per_image(a: torch.Tensor, b: torch.Tensor, window_size: int = 11, sigma: float = 1.5,
                   k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """(N,) float64 mean SSIM of paired (N, C, H, W) images in [-1, 1]."""
    _, c, h, w = a.shape
    if min(h, w) < window_size:
        raise UsageError(f"ssim needs images of at least {window_size}x{window_size} (the "
                         f"window), got {h}x{w}")
    a = a.double().clamp(-1, 1)
    b = b.double().clamp(-1, 1)
    win = gaussian_window(window_size, sigma).to(a.device).expand(c, 1, -1, -1)

    def filt(x: torch.Tensor) -> torch.Tensor:  # window-weighted local mean, valid positions
        return F.conv2d(x, win, groups=c)

    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    c1, c2 = (k1 * DATA_RANGE) ** 2, (k2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(dim=1)


class SSIM:
    """``ssim``: mean SSIM between ``generated[i]`` and ``real[i]``.

    Returns ``{"ssim": mean, "ssim_std": std over images}``; higher is better (1 = identical).
    ``metadata`` after a call: image counts, size (no resize, no extractor) and
    the window settings.
    """

    higher_is_better = True

    def __init__(self, config: SSIMConfig | None = None):
        self.config = config or SSIMConfig()
        self.metadata: dict[str, Any] = {}

    @torch.no_grad()
    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        cfg = self.config
        a, b = paired_images(generated, real, "ssim")
        values = ssim_per_image(a, b, cfg.window_size, cfg.sigma, cfg.k1, cfg.k2)
        self.metadata = {**paired_metadata("ssim", a), "data_range": "[-1, 1]",
                         "window": f"gaussian {cfg.window_size}x{cfg.window_size}, "
                                   f"sigma {cfg.sigma}", "k1": cfg.k1, "k2": cfg.k2}
        std = float(values.std()) if len(values) > 1 else 0.0
        return {"ssim": float(values.mean()), "ssim_std": std}
