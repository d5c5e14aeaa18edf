"""Input conversion and seeded subsampling shared by the sample metrics."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from diffctl.errors import UsageError


def as_numpy(x: Any, dim: int | None = None) -> np.ndarray:
    """A float64 (N, D) array from a tensor or array of N samples (trailing dims flattened)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    arr = arr.reshape(len(arr), -1) if arr.ndim != 2 else arr
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"expected points of dimension {dim}, got shape {tuple(arr.shape)}")
    if len(arr) == 0:
        raise ValueError("empty sample")
    return arr


def as_tensor(x: Any, device: torch.device | None = None) -> torch.Tensor:
    """A float64 (N, D) tensor (on ``device``, else where ``x`` lives) from a tensor or array."""
    t = x.detach() if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    t = t.to(device=device or t.device, dtype=torch.float64)
    t = t.reshape(len(t), -1) if t.ndim != 2 else t
    if len(t) == 0:
        raise ValueError("empty sample")
    return t


def subsample_indices(n: int, k: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded uniform subsample of ``min(k, n)`` of ``range(n)``."""
    if k >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def paired_images(generated: Any, real: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Two float (N, C, H, W) tensors of the same shape, dtype and device (``generated``'s),
    for the metrics that compare image i with image i (lpips, psnr, ssim); (N, H, W) gains
    C = 1."""
    if real is None:
        raise UsageError(f"{name} compares paired images: the real images are missing")
    a = generated.detach() if isinstance(generated, torch.Tensor) else torch.as_tensor(generated)
    b = real.detach() if isinstance(real, torch.Tensor) else torch.as_tensor(real)
    a, b = (t.unsqueeze(1) if t.ndim == 3 else t for t in (a, b))
    if a.ndim != 4 or a.shape != b.shape or len(a) == 0:
        raise UsageError(f"{name} compares paired images: need two (N, C, H, W) batches of the "
                         f"same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a = a if a.is_floating_point() else a.float()
    return a, b.to(device=a.device, dtype=a.dtype)


def paired_metadata(metric: str, images: torch.Tensor) -> dict[str, Any]:
    """The metadata keys every image metric reports, for a pixel-space paired metric
    (psnr, ssim): no feature extractor or weights, images compared at their own size."""
    height, width = images.shape[-2:]
    return {"metric": metric, "feature_extractor": None, "weights_sha256": None,
            "num_generated": len(images), "num_real": len(images), "num_pairs": len(images),
            "image_size": [height, width], "resize": f"none ({height}x{width})",
            "device": str(images.device)}
