"""``lenet-mnist``: a small MNIST classifier as an offline feature extractor.

FID, KID and precision/recall need a feature space, the Inception Score a classifier. For MNIST
the ImageNet Inception-v3 is both heavy and an odd fit; a LeNet-style classifier trained on
MNIST itself gives a meaningful digit feature space (the "classifier FID" used for MNIST
generators) and a classifier-based Inception Score whose maximum is 10, the number of classes.

The network (:class:`LeNet`) is LeNet-5-like (LeCun et al. 1998): two 5x5 convolutions with
max pooling, a 128-unit hidden layer and 10 logits. It is trained by
``scripts/train_lenet_mnist.py`` (seeded, deterministic on the CPU) on the 28x28 digits padded
to 32x32, exactly the images diffctl's ``mnist`` dataset produces, and ships with this package
as ``weights/lenet-mnist.safetensors`` (its test accuracy is in the file's metadata).

Inputs (torch-fidelity's convention): uint8 (N, 3, H, W). The channels are averaged to grey
(exact for grey images repeated to three channels), scaled to [-1, 1] as in training, and
brought to 32x32: 32x32 is used as is, 28x28 is padded by 2 background pixels on each side
(like the dataset), an image smaller than 28x28 is taken as a digit without margin and scaled
into an 18x18 box centred on 32x32 (see ``SMALL_DIGIT_BOX``), any other size is resized
bilinearly (antialiased). Features:
``"128"`` (the hidden layer after its ReLU; FID, KID, precision/recall) and ``"logits"`` (IS).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from diffctl.errors import UsageError
from diffctl_metrics.configs import LeNetMNISTConfig
from diffctl_metrics.feature_extractors.base import FidelityFeatureExtractor, key_mismatch

INPUT_SIZE = 32
FEATURE_DIM = 128
WEIGHTS_FILENAME = "lenet-mnist.safetensors"


def shipped_weights() -> Path:
    """The weights file inside the installed diffctl-metrics package."""
    return Path(str(resources.files("diffctl_metrics") / "weights" / WEIGHTS_FILENAME))


class LeNet(nn.Module):
    """LeNet-5-style classifier for (N, 1, 32, 32) images in [-1, 1].

    conv 5x5 (1 -> 32) - ReLU - maxpool 2 - conv 5x5 (32 -> 64) - ReLU - maxpool 2 -
    linear 1600 -> 128 - ReLU - dropout 0.5 - linear 128 -> 10.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=5)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=5)
        self.fc1 = nn.Linear(64 * 5 * 5, FEATURE_DIM)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 128 hidden units (after ReLU) of (N, 1, 32, 32) images in [-1, 1]."""
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, 10)."""
        return self.fc2(self.dropout(self.features(x)))


#: Images smaller than 28x28 are taken as digits without a margin (scikit-learn's 8x8 digits,
#: diffctl's 16x16 ``digits``): scaled to an 18x18 box and centred on the 32x32 canvas, the
#: framing of MNIST, whose digits fill a 20x20 box of 28x28. On the 1797 ``digits`` images the
#: LeNet then classifies 84% correctly, against 52% when they are stretched to 32x32.
SMALL_DIGIT_BOX = 18


def prepare_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, 1, 32, 32) in [-1, 1] (see the module docstring)."""
    x = x.float().mean(dim=1, keepdim=True) / 127.5 - 1.0
    height, width = x.shape[-2:]
    if (height, width) == (INPUT_SIZE, INPUT_SIZE):
        return x
    if (height, width) == (28, 28):
        return F.pad(x, (2, 2, 2, 2), value=-1.0)
    if height < 28 and width < 28:
        box = SMALL_DIGIT_BOX
        x = F.interpolate(x, size=(box, box), mode="bilinear", align_corners=False,
                          antialias=True)
        pad = (INPUT_SIZE - box) // 2
        return F.pad(x, (pad, INPUT_SIZE - box - pad) * 2, value=-1.0)
    return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                         antialias=True)


def resize_mode(height: int, width: int) -> str:
    if (height, width) == (INPUT_SIZE, INPUT_SIZE):
        return "none (32x32 input)"
    if (height, width) == (28, 28):
        return "pad 28x28 to 32x32 with background"
    if height < 28 and width < 28:
        return (f"bilinear {height}x{width} to {SMALL_DIGIT_BOX}x{SMALL_DIGIT_BOX}, centred on "
                "32x32 background (MNIST framing)")
    return f"bilinear {height}x{width} to 32x32"


def load_lenet(path: Path) -> tuple[LeNet, dict[str, str]]:
    """A :class:`LeNet` in eval mode with the weights of a safetensors file, and the file's
    metadata (``test_accuracy``, training settings)."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    try:
        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
    except Exception as exc:
        raise UsageError(f"cannot read lenet-mnist weights {path}: {type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                         ) from None
    net = LeNet()
    expected = set(net.state_dict())
    if set(state) != expected or any(state[k].shape != v.shape
                                     for k, v in net.state_dict().items()):
        raise key_mismatch("lenet-mnist", path, expected, set(state))
    net.load_state_dict(state)
    return net.eval().requires_grad_(False), meta


class FeatureExtractorLeNetMNIST(FeatureExtractorBase):
    """torch-fidelity feature extractor around :class:`LeNet` (features ``"128"``,
    ``"logits"``). ``feature_extractor_weights_path`` = a safetensors file (default: the
    shipped one)."""

    def __init__(self, name: str, features_list: list[str],
                 feature_extractor_weights_path: str | None = None, **kwargs: Any):
        super().__init__(name, features_list)
        path = Path(feature_extractor_weights_path) if feature_extractor_weights_path \
            else shipped_weights()
        self.net, self.weights_metadata = load_lenet(path)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("128", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits", "fid": "128", "kid": "128", "prc": "128"}[metric]

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if not (x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3):
            raise ValueError(f"expected uint8 (N, 3, H, W) images, got {x.dtype} "
                             f"{tuple(x.shape)}")
        hidden = self.net.features(prepare_input(x))
        out = {"128": hidden, "logits": self.net.fc2(hidden)}
        return tuple(out[name] for name in self.features_list)


class LeNetMNIST(FidelityFeatureExtractor):
    """``lenet-mnist``: the shipped MNIST LeNet as a feature extractor (fully offline)."""

    name: ClassVar[str] = "lenet-mnist"
    layers: ClassVar[tuple[str, ...]] = ("128", "logits")

    def __init__(self, config: LeNetMNISTConfig | None = None):
        super().__init__(config or LeNetMNISTConfig())

    @classmethod
    def fidelity_class(cls) -> type:
        return FeatureExtractorLeNetMNIST

    def weights_path(self) -> Path:
        if self.config.weights_path:
            path = Path(self.config.weights_path).expanduser()
            if not path.is_file():
                raise UsageError(f"lenet-mnist weights file not found: {path} (weights_path); "
                                 "train one with scripts/train_lenet_mnist.py")
            return path
        path = shipped_weights()
        if not path.is_file():
            raise UsageError(f"lenet-mnist weights missing from the diffctl-metrics install: "
                             f"{path}; reinstall diffctl-metrics or run "
                             "scripts/train_lenet_mnist.py")
        return path

    def fidelity_kwargs(self) -> dict[str, Any]:
        return {"feature_extractor_weights_path": str(self.weights_path())}

    def resize_mode(self, height: int, width: int) -> str:
        return resize_mode(height, width)

    def training_metadata(self) -> dict[str, Any]:
        """The metadata stored in the weights file (test accuracy, seed, epochs, ...)."""
        from safetensors import safe_open
        with safe_open(str(self.weights_path()), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
        return {k: (json.loads(v) if k == "config" else v) for k, v in meta.items()}
