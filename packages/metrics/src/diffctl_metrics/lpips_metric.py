"""LPIPS, the learned perceptual image patch similarity (Zhang et al. 2018), offline.

LPIPS compares two images through the unit-normalised activations of an ImageNet backbone
(AlexNet, VGG-16 or SqueezeNet 1.1), weighting the squared differences per channel with linear
heads calibrated on human judgements, then averaging over space and summing over layers.
0 means identical; larger is more different.

The ``lpips`` package provides the network; its linear heads ship inside the package
(``lpips/weights/v0.1/<net>.pth``). Its backbone, however, comes from torchvision with
ImageNet weights, and ``lpips.LPIPS(pretrained=True)`` would download them. Here the LPIPS
module is built with a randomly initialised backbone (``pnet_rand=True``: torchvision with
``weights=None``, no download), the linear heads are read from the package data, and the
backbone's layers are filled from a local torchvision state_dict: ``backbone_weights``, or the
file torchvision would have downloaded, found in the torch hub cache.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from diffctl_metrics._common import paired_images
from diffctl_metrics.configs import LPIPSConfig
from diffctl_metrics.feature_extractors.base import (
    file_sha256,
    find_weights,
    key_mismatch,
    load_state_dict_file,
    resolve_device,
)

#: net -> (torchvision builder, weights enum name): the backbone LPIPS was calibrated with.
_BACKBONES = {
    "alex": ("alexnet", "AlexNet_Weights"),
    "vgg": ("vgg16", "VGG16_Weights"),
    "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights"),
}


def backbone_file(net: str) -> tuple[str, str, str]:
    """(file name, size, url) of torchvision's ImageNet weights of ``net``'s backbone."""
    import torchvision.models as tvm
    weights = getattr(tvm, _BACKBONES[net][1]).IMAGENET1K_V1
    size_mb = weights.meta.get("_file_size")
    size = f"{size_mb:.1f} MB" if size_mb else "size unknown"
    return weights.url.rsplit("/", 1)[-1], size, weights.url


def linear_heads_path(net: str) -> Path:
    """The lpips package's calibrated linear heads of ``net`` (version 0.1)."""
    import lpips
    return Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"


def build_lpips(net: str, backbone_state: dict[str, torch.Tensor],
                source: str | Path = "backbone") -> torch.nn.Module:
    """An ``lpips.LPIPS`` (v0.1, eval mode, frozen) with ``backbone_state`` (a torchvision
    ``state_dict`` of the ``net`` backbone) and the package's linear heads; no download."""
    import lpips
    import torchvision.models as tvm

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=False, net=net, version="0.1", pnet_rand=True,
                            verbose=False)
    heads = torch.load(linear_heads_path(net), map_location="cpu", weights_only=True)
    # the heads are lin0..linL; `lins.i` are the same modules listed again
    lin_keys = {k for k in model.state_dict() if k.startswith("lin") and k[3].isdigit()}
    if set(heads) != lin_keys:
        raise RuntimeError(f"lpips linear heads of {net} do not match the LPIPS module")
    model.load_state_dict(heads, strict=False)

    backbone = getattr(tvm, _BACKBONES[net][0])(weights=None)
    expected = backbone.state_dict()
    if set(backbone_state) != set(expected) or any(
            backbone_state[k].shape != v.shape for k, v in expected.items()):
        raise key_mismatch(f"lpips {net} backbone", Path(source), set(expected),
                           set(backbone_state))
    backbone.load_state_dict(backbone_state)
    # lpips slices torchvision's `features` into stages whose children keep their index as
    # name (slice2.3 is features[3]): copy each layer from the loaded backbone.
    copied = 0
    for stage in model.net.children():
        for index, layer in stage.named_children():
            layer.load_state_dict(backbone.features[int(index)].state_dict())
            copied += sum(p.numel() for p in layer.parameters())
    if copied != sum(p.numel() for p in backbone.features.parameters()):
        raise RuntimeError(f"lpips {net}: backbone layers were not all copied")
    return model.eval().requires_grad_(False)


class LPIPS:
    """``lpips``: mean LPIPS between paired images ``generated[i]`` and ``real[i]``.

    Returns ``{"lpips": mean, "lpips_std": std over pairs}``; lower is better. Grey images are
    repeated to three channels; images with a side below ``min_size`` are upsampled
    bilinearly first. ``metadata`` after a call: extractor (``lpips-<net>``), backbone, weights
    file and sha256, linear-head sha256, image and pair counts, resize mode, device.
    """

    higher_is_better = False

    def __init__(self, config: LPIPSConfig | None = None):
        self.config = config or LPIPSConfig()
        self.metadata: dict[str, Any] = {}
        self._model: torch.nn.Module | None = None
        self._weights: Path | None = None

    def weights_path(self) -> Path:
        filename, size, url = backbone_file(self.config.net)
        return find_weights(f"lpips {self.config.net} backbone", self.config.backbone_weights,
                            filename, size, url, "backbone_weights",
                            fetch=f"lpips-{self.config.net}")

    def model(self) -> torch.nn.Module:
        if self._model is None:
            path = self.weights_path()
            state = load_state_dict_file(path, f"lpips {self.config.net} backbone")
            self._model = build_lpips(self.config.net, state, path)
            self._weights = path
        return self._model

    def _prepare(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        x = x.to(device=device, dtype=torch.float32)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        side = min(x.shape[-2:])
        if self.config.min_size and side < self.config.min_size:
            scale = self.config.min_size / side
            size = (round(x.shape[-2] * scale), round(x.shape[-1] * scale))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x

    def resize_mode(self, height: int, width: int) -> str:
        side = min(height, width)
        if self.config.min_size and side < self.config.min_size:
            scale = self.config.min_size / side
            return (f"bilinear {height}x{width} to {round(height * scale)}x"
                    f"{round(width * scale)}")
        return f"none ({height}x{width})"

    @torch.no_grad()
    def __call__(self, generated: Any, real: Any) -> dict[str, float]:
        gen, ref = paired_images(generated, real, "lpips")
        device = resolve_device(self.config.device)
        model = self.model().to(device)
        dists = []
        for i in range(0, len(gen), self.config.batch_size):
            a = self._prepare(gen[i:i + self.config.batch_size], device)
            b = self._prepare(ref[i:i + self.config.batch_size], device)
            dists.append(model(a, b).reshape(-1).double().cpu())
        d = torch.cat(dists)
        assert self._weights is not None
        height, width = gen.shape[-2:]
        self.metadata = {
            "metric": "lpips", "feature_extractor": f"lpips-{self.config.net}",
            "net": self.config.net, "version": "0.1",
            "weights_path": str(self._weights), "weights_sha256": file_sha256(self._weights),
            "linear_heads_sha256": file_sha256(linear_heads_path(self.config.net)),
            "num_generated": len(d), "num_real": len(d), "num_pairs": len(d),
            "image_size": [height, width],
            "resize": self.resize_mode(height, width), "device": str(device),
        }
        return {"lpips": float(d.mean()), "lpips_std": float(d.std()) if len(d) > 1 else 0.0}

