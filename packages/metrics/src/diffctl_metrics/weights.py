"""Pretrained weight files the metrics read, and an opt-in way to fetch them.

Nothing downloads on its own: the extractors look for their file in the torch hub cache
(``<torch hub dir>/checkpoints``, where ``torch.hub`` itself would put it) or at a configured
path, and a missing file is a one-line error naming ``diffctl weights fetch NAME``. Fetching
downloads from the official URL into a temporary file in that cache, checks its sha256 and only
then renames it into place, so a failed or forged download never becomes the file a metric reads.

Checksums: the torch-fidelity Inception file is pinned by its full sha256; torchvision's
backbones by the sha256 prefix PyTorch publishes in their file names (``alexnet-owt-7be5be79``:
the digest starts with 7be5be79), which is the check ``torch.hub`` itself makes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffctl.errors import StorageError, UsageError


@dataclass(frozen=True)
class WeightFile:
    """One downloadable weights file: where it comes from and how it is checked."""

    name: str  # what ``diffctl weights fetch`` takes
    used_by: str
    filename: str
    url: str
    sha256: str  # the full hex digest, or its published prefix
    size: str

    def path(self) -> Path:
        """Where the metrics look for it (the torch hub cache)."""
        from diffctl_metrics.feature_extractors.base import hub_checkpoints_dir

        return hub_checkpoints_dir() / self.filename

    def matches(self, digest: str) -> bool:
        return digest.startswith(self.sha256)

    def status(self) -> dict[str, Any]:
        """Present, and does it pass its checksum?"""
        path = self.path()
        present = path.is_file()
        ok = present and self.matches(sha256_file(path))
        return {"name": self.name, "used_by": self.used_by, "file": self.filename,
                "sha256": self.sha256, "url": self.url, "size": self.size,
                "path": str(path), "present": present, "verified": ok}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (no torch import: ``diffctl weights``
    stays fast; the extractors memoise it per file, see ``feature_extractors.base``)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inception() -> WeightFile:
    from diffctl_metrics.feature_extractors.inception import (
        WEIGHTS_FILENAME,
        WEIGHTS_SIZE,
        WEIGHTS_URL,
    )

    return WeightFile("inception-v3-compat", "fid, kid, isc, prc, c2st (inception features)",
                      WEIGHTS_FILENAME, WEIGHTS_URL,
                      "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
                      WEIGHTS_SIZE)


def _lpips(net: str) -> WeightFile:
    from diffctl_metrics.lpips_metric import backbone_file

    filename, size, url = backbone_file(net)
    prefix = filename.rsplit("-", 1)[-1].split(".", 1)[0]
    return WeightFile(f"lpips-{net}", f"lpips (net: {net})", filename, url, prefix, size)


def weight_files() -> dict[str, WeightFile]:
    """Every file ``diffctl weights`` knows, by name."""
    files = [_inception(), *(_lpips(net) for net in ("alex", "vgg", "squeeze"))]
    return {f.name: f for f in files}


def get(name: str) -> WeightFile:
    files = weight_files()
    if name not in files:
        raise UsageError(f"unknown weights {name!r} (known: {', '.join(files)})")
    return files[name]


Opener = Callable[[str], Any]


def fetch(name: str, url: str | None = None, opener: Opener | None = None,
          force: bool = False) -> Path:
    """Download weights ``name`` (from ``url``, default the official one) into the hub cache,
    verified against the pinned sha256. Returns the path. An existing verified file is kept
    unless ``force``; a download whose checksum differs is deleted and is an error."""
    entry = get(name)
    target = entry.path()
    if target.is_file() and entry.matches(sha256_file(target)) and not force:
        return target
    opener = opener or urllib.request.urlopen
    source = url or entry.url
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", dir=target.parent)
    except OSError as exc:
        raise StorageError(f"cannot write into {target.parent}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, opener(source) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                digest.update(block)
        if not entry.matches(digest.hexdigest()):
            raise UsageError(f"{source} has sha256 {digest.hexdigest()}, not the pinned "
                             f"{entry.sha256}...; nothing was installed")
        os.replace(tmp, target)
    except OSError as exc:
        raise StorageError(f"fetching {name} from {source} failed: "
                           f"{getattr(exc, 'reason', None) or exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target
