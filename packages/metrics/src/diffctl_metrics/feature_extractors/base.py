"""diffctl's side of a feature extractor: a torch-fidelity extractor plus the weights it uses.

torch-fidelity computes FID, KID, IS and precision/recall from the features of a
``torch_fidelity.FeatureExtractorBase`` registered in its own registry. A diffctl
``feature-extractor`` component (:class:`FidelityFeatureExtractor`) adds what diffctl needs on
top: where the weights file is (never downloaded), its sha256 (part of every cache key and of
every metric report), the layer each metric reads, and how inputs are resized.

Images reach the extractor as torch-fidelity expects them: uint8 (N, 3, H, W) tensors, grey
images repeated to three channels (:class:`UInt8Images`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from diffctl.errors import UsageError
from diffctl_metrics.weights import sha256_file

_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, memoised per (path, size, mtime) so a run hashes it once."""
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    digest = _SHA_MEMO.get(memo_key)
    if digest is None:
        digest = _SHA_MEMO[memo_key] = sha256_file(path)
    return digest


def hub_checkpoints_dir() -> Path:
    """Where ``torch.hub`` keeps downloaded weights: ``<torch hub dir>/checkpoints``
    (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(what: str, configured: str | None, filename: str, size: str, url: str,
                 setting: str, fetch: str | None = None) -> Path:
    """The weights file: ``configured`` if given, else ``filename`` in the hub cache.

    Raises a one-line :class:`UsageError` naming the file, its size, the command that fetches
    it (``diffctl weights fetch <fetch>``) and where to put it by hand: nothing is downloaded
    unless asked.
    """
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise UsageError(f"{what} weights file not found: {path} ({setting}); expected "
                             f"{filename} ({size}) from {url}")
        return path
    path = hub_checkpoints_dir() / filename
    if not path.is_file():
        how = f"run 'diffctl weights fetch {fetch}', or " if fetch else ""
        raise UsageError(f"{what} weights not found offline: need {filename} ({size}, from "
                         f"{url}); {how}put it in {path.parent}/ or set {setting}")
    return path


def load_state_dict_file(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A state_dict from ``.safetensors`` or a pickled ``.pth``/``.pt`` read with
    ``weights_only=True`` (tensors and plain containers only, no code)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UsageError(f"cannot read {what} weights {path}: {type(exc).__name__}: "
                         f"{reason}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"],
                                                                        dict):
        state = state["state_dict"]
    if not (isinstance(state, dict) and state
            and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise UsageError(f"{what} weights {path} are not a state_dict of tensors")
    return state


def key_mismatch(what: str, path: Path, expected: set[str], got: set[str]) -> UsageError:
    """A one-line error for a state_dict whose keys do not match the network's."""
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    return UsageError(f"{what} weights {path} do not match the network: keys "
                      f"{'; '.join(parts) or 'differ in shape'}")


def resolve_device(device: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; otherwise ``torch.device(device)``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {device!r} requested but CUDA is not available")
    return dev


def to_uint8(images: Any) -> torch.Tensor:
    """(N, C, H, W) float images in [-1, 1] -> uint8 on the CPU: round((x + 1) * 127.5),
    clamped to [0, 255]. This inverts the datasets' ``x / 127.5 - 1`` exactly. uint8 input is
    passed through; (N, H, W) is read as single-channel."""
    t = images.detach() if isinstance(images, torch.Tensor) else torch.as_tensor(images)
    if t.ndim == 3:
        t = t.unsqueeze(1)
    if t.ndim != 4 or t.shape[1] not in (1, 3) or len(t) == 0:
        raise UsageError(f"image metrics need (N, 1 or 3, H, W) images, got shape "
                         f"{tuple(t.shape)}")
    t = t.cpu()
    if t.dtype == torch.uint8:
        return t.contiguous()
    if not t.is_floating_point():
        raise UsageError(f"images must be float in [-1, 1] or uint8, got {t.dtype}")
    return ((t.double() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8).contiguous()


class UInt8Images(Dataset):
    """The dataset torch-fidelity reads: item i is image i as a uint8 (3, H, W) tensor, a
    single-channel image repeated to three channels."""

    def __init__(self, images: torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError("UInt8Images needs a uint8 (N, 1 or 3, H, W) tensor")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        x = self.images[index]
        return x.expand(3, *x.shape[1:]) if x.shape[0] == 1 else x


class FidelityFeatureExtractor:
    """A ``feature-extractor`` component: a torch-fidelity extractor with local weights.

    Subclasses set ``name`` (diffctl's and torch-fidelity's registry name), ``fidelity_class``
    (a ``FeatureExtractorBase`` subclass, registered into torch-fidelity on first use when it
    is not already) and implement :meth:`weights_path`, :meth:`fidelity_kwargs` and
    :meth:`resize_mode`. Built torch-fidelity modules are kept per (layers, device).
    """

    name: ClassVar[str]
    #: the layers extracted in one pass (every metric's default layer): IS reads the logits,
    #: FID/KID/PRC the pool features, so one forward pass serves all four metrics.
    layers: ClassVar[tuple[str, ...]]

    def __init__(self, config: Any):
        self.config = config
        self._modules: dict[tuple[tuple[str, ...], str], Any] = {}

    # -- to implement ----------------------------------------------------------------------
    @classmethod
    def fidelity_class(cls) -> type:
        """The ``torch_fidelity.FeatureExtractorBase`` subclass."""
        raise NotImplementedError

    def weights_path(self) -> Path:
        """The local weights file (raises a one-line UsageError when it is missing)."""
        raise NotImplementedError

    def fidelity_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for the torch-fidelity extractor's constructor."""
        return {}

    def resize_mode(self, height: int, width: int) -> str:
        """How an (H, W) input is brought to the network's input size (for reports)."""
        raise NotImplementedError

    # -- provided --------------------------------------------------------------------------
    def weights_sha256(self) -> str:
        return file_sha256(self.weights_path())

    def layer_for(self, metric: str) -> str:
        """torch-fidelity's default layer of this extractor for ``metric`` (fid/kid/isc/prc)."""
        return self.fidelity_class().get_default_feature_layer_for_metric(metric)

    def register_with_fidelity(self) -> None:
        """Register ``fidelity_class`` in torch-fidelity under ``name`` unless it is there."""
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
        if self.name not in FEATURE_EXTRACTORS_REGISTRY:
            register_feature_extractor(self.name, self.fidelity_class())

    def build(self, layers: tuple[str, ...], device: torch.device) -> Any:
        """The torch-fidelity module for ``layers`` on ``device`` (built once, then reused)."""
        key = (tuple(layers), str(device))
        module = self._modules.get(key)
        if module is None:
            from torch_fidelity.utils import create_feature_extractor
            self.register_with_fidelity()
            with _cuda_index(device):
                module = create_feature_extractor(self.name, list(layers),
                                                  cuda=device.type == "cuda", verbose=False,
                                                  **self.fidelity_kwargs())
            self._modules = {key: module}  # keep one: inception is ~100 MB
        return module

    def extract(self, images: torch.Tensor, device: torch.device,
                batch_size: int) -> dict[str, torch.Tensor]:
        """Features of uint8 (N, C, H, W) ``images`` for every layer in ``layers``, through
        torch-fidelity's own extraction loop; float32 CPU tensors (N, D)."""
        from torch_fidelity.utils import get_featuresdict_from_dataset
        module = self.build(self.layers, device)
        with _cuda_index(device):
            return get_featuresdict_from_dataset(UInt8Images(images), module, batch_size,
                                                 device.type == "cuda", save_cpu_ram=True,
                                                 verbose=False)

    def describe(self) -> dict[str, Any]:
        """Identity of the extractor for reports and cache keys."""
        path = self.weights_path()
        return {"feature_extractor": self.name, "weights_path": str(path),
                "weights_sha256": file_sha256(path)}


class _cuda_index:
    """``torch.cuda.device(i)`` for ``cuda:i`` (torch-fidelity's ``cuda=True`` uses the
    current device), a no-op otherwise."""

    def __init__(self, device: torch.device):
        self.ctx = (torch.cuda.device(device.index)
                    if device.type == "cuda" and device.index is not None else None)

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)
