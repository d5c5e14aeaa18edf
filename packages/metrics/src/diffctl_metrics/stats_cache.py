"""On-disk cache of reference statistics (FID) and reference features (KID, precision/recall).

Comparing generated images with a fixed real set at every evaluation would push the same real
images through the feature extractor again and again; the cache stores the result once.

Key. torch-fidelity's own cache is keyed by a dataset name and the extractor's name only, so
new weights under the same name would silently reuse stale statistics. Here the key is the
sha256 of a canonical JSON of: the sha256 of the real images' uint8 bytes with their shape (the
identity of dataset, split and sample count in one, robust to any naming), the extractor name,
the layer, the sha256 of the weights file, torch-fidelity's version (its extraction loop and
statistics) and the device type the features were computed on (``cpu`` or ``cuda``: their
kernels differ in the last bits), plus the extractor's other settings (a plugin extractor's
options). Any change to any of them is a different entry.

Storage. One ``.npz`` per entry (numpy arrays, read back with ``allow_pickle=False``) plus a
``meta`` string of JSON describing it; written to a temporary file in the same folder and
renamed into place, so readers never see a partial file and concurrent writers of the same
entry simply race to write identical contents.

Location: ``cache_dir`` if given, else ``$DIFFCTL_CACHE/metrics``, else
``$XDG_CACHE_HOME/diffctl/metrics``, else ``~/.cache/diffctl/metrics``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

CACHE_ENV = "DIFFCTL_CACHE"
KEY_VERSION = 2


def cache_root() -> Path:
    """The user cache folder of diffctl (see the module docstring)."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "diffctl"


def metrics_cache_dir(cache_dir: str | None = None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir else cache_root() / "metrics"


def content_sha256(array: Any) -> str:
    """sha256 of an array's shape, dtype and C-order bytes (a torch tensor or numpy array)."""
    arr = array.numpy() if hasattr(array, "numpy") else np.asarray(array)
    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def reference_key(*, kind: str, images_sha256: str, shape: tuple[int, ...], extractor: str,
                  layer: str, weights_sha256: str, fidelity_version: str,
                  device_type: str, extractor_options: dict[str, Any] | None = None) -> str:
    """The cache key: sha256 of the canonical JSON of every input the cached value depends on.
    ``kind`` is ``fid-stats`` or ``features``; ``fidelity_version`` is torch-fidelity's
    ``__version__``, ``device_type`` the ``torch.device.type`` of the extraction and
    ``extractor_options`` the extractor's other config (a plugin extractor's settings)."""
    parts = {"version": KEY_VERSION, "kind": kind, "images_sha256": images_sha256,
             "shape": list(shape), "extractor": extractor, "layer": layer,
             "weights_sha256": weights_sha256, "torch_fidelity": fidelity_version,
             "device_type": device_type, "extractor_options": extractor_options or {}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays of an ``.npz`` (no pickles) and its ``meta`` JSON ({} when absent)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "meta"}
        meta = json.loads(str(data["meta"])) if "meta" in data.files else {}
    return arrays, meta


def write_npz_atomic(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write arrays and a JSON ``meta`` to ``path`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StatsCache:
    """Entries ``<dir>/<extractor>-<kind>-<key[:40]>.npz``."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = metrics_cache_dir(str(directory) if directory else None)

    def path(self, kind: str, key: str, extractor: str) -> Path:
        return self.directory / f"{extractor}-{kind}-{key[:40]}.npz"

    def get(self, kind: str, key: str, extractor: str) -> dict[str, np.ndarray] | None:
        """The cached arrays, or None on a miss (an unreadable entry counts as a miss)."""
        path = self.path(kind, key, extractor)
        if not path.is_file():
            return None
        try:
            arrays, meta = read_npz(path)
        except Exception as exc:  # corrupt or foreign file: recompute and overwrite
            warnings.warn(f"ignoring unreadable cache entry {path}: {exc}", stacklevel=2)
            return None
        if meta.get("key") != key:
            return None
        return arrays

    def put(self, kind: str, key: str, extractor: str, arrays: dict[str, np.ndarray],
            meta: dict[str, Any]) -> Path:
        path = self.path(kind, key, extractor)
        write_npz_atomic(path, arrays, {**meta, "key": key, "kind": kind})
        return path
