"""``inception-v3-compat``: torch-fidelity's Inception-v3, the standard of published FID.

FID (Heusel et al. 2017), KID (Binkowski et al. 2018) and IS (Salimans et al. 2016) are
reported in papers with the 2015-12-05 TensorFlow Inception-v3 graph. torch-fidelity ships a
bit-compatible PyTorch port (``torch_fidelity.FeatureExtractorInceptionV3``, registered in
torch-fidelity as ``inception-v3-compat``), including TensorFlow 1.x bilinear resizing of any
input to 299x299. diffctl uses that class unchanged; this module only decides where its
weights come from.

torch-fidelity downloads the weights when given no path and reads a given path with
``torch.load(weights_only=False)``. Here the file is never downloaded: it comes from
``weights_path`` or the torch hub cache (where torch-fidelity itself would have put it), is
read safely (``weights_only=True``, or safetensors), and reaches torch-fidelity re-serialised
in memory from those plain tensors.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar

import torch

from diffctl_metrics.configs import InceptionV3CompatConfig
from diffctl_metrics.feature_extractors.base import (
    FidelityFeatureExtractor,
    find_weights,
    key_mismatch,
    load_state_dict_file,
)

WEIGHTS_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               + WEIGHTS_FILENAME)
#: the official file: 566 tensors, 23.9 M values (the name's 6726825d starts its sha256)
WEIGHTS_SIZE = "about 95.6 MB"
INPUT_SIZE = 299


class InceptionV3Compat(FidelityFeatureExtractor):
    """``inception-v3-compat``: FID/KID/PRC read the 2048-d pool features, IS the 1008
    ``logits_unbiased`` (torch-fidelity's defaults)."""

    name: ClassVar[str] = "inception-v3-compat"
    layers: ClassVar[tuple[str, ...]] = ("2048", "logits_unbiased")

    def __init__(self, config: InceptionV3CompatConfig | None = None):
        super().__init__(config or InceptionV3CompatConfig())

    @classmethod
    def fidelity_class(cls) -> type:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        return FeatureExtractorInceptionV3

    def weights_path(self) -> Path:
        return find_weights("inception-v3-compat", self.config.weights_path, WEIGHTS_FILENAME,
                            WEIGHTS_SIZE, WEIGHTS_URL,
                            "feature_extractor_weights (the extractor's weights_path)",
                            fetch="inception-v3-compat")

    def fidelity_kwargs(self) -> dict[str, Any]:
        path = self.weights_path()
        state = load_state_dict_file(path, "inception-v3-compat")
        self._check_keys(path, state)
        buffer = io.BytesIO()
        torch.save(state, buffer)  # plain tensors we just read safely
        buffer.seek(0)
        return {"feature_extractor_weights_path": buffer}

    def _check_keys(self, path: Path, state: dict[str, torch.Tensor]) -> None:
        """Compare with the network's keys and shapes (built on the meta device: no memory,
        no download) so that a wrong file gives one line instead of torch's error list."""
        expected = _expected_shapes()
        if set(state) != set(expected) or any(tuple(state[k].shape) != shape
                                              for k, shape in expected.items()):
            raise key_mismatch("inception-v3-compat", path, set(expected), set(state))

    def resize_mode(self, height: int, width: int) -> str:
        if (height, width) == (INPUT_SIZE, INPUT_SIZE):
            return "none (299x299 input)"
        return f"tf1-bilinear {height}x{width} to 299x299 (torch-fidelity)"


_SHAPES: dict[str, tuple[int, ...]] | None = None


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of torch-fidelity's InceptionV3 state_dict, from a skeleton built on the
    meta device with its weight loading bypassed."""
    global _SHAPES
    if _SHAPES is None:
        from torch_fidelity import feature_extractor_inceptionv3 as tfi

        class _Skeleton(tfi.FeatureExtractorInceptionV3):
            def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
                return None

        original = tfi.load_state_dict_from_url
        tfi.load_state_dict_from_url = _no_download
        try:
            with torch.device("meta"):
                skeleton = _Skeleton("inception-v3-compat", ["2048"])
        finally:
            tfi.load_state_dict_from_url = original
        _SHAPES = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    return _SHAPES


def _no_download(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {}
