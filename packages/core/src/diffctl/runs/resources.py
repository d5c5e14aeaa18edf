"""Will it fit? Memory estimates checked before a run builds or draws anything large.

A size far beyond the machine (``sample.num_samples=1e12``, ``denoiser.hidden=1e6``) must be a
one-line error before any work, not a ``MemoryError`` traceback after it. Estimates are upper
bounds of what the run keeps at once; they are compared with the memory available now
(``MemAvailable`` on Linux, else the physical memory).
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Any

from diffctl.errors import UsageError

#: Bytes per trainable parameter while training: weights, gradient, AdamW's two moments and
#: the EMA copy, float32.
TRAINING_BYTES_PER_PARAMETER = 5 * 4
#: Bytes per generated value while evaluating: samples, the real sample and a working copy.
SAMPLE_BYTES_PER_VALUE = 3 * 4


def available_memory() -> int:
    """Bytes of memory available to this process now (best effort)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_fits(needed: float, what: str, setting: str) -> None:
    """One line naming ``setting`` when ``needed`` bytes exceed the memory available."""
    have = available_memory()
    if needed > have:
        raise UsageError(f"{what} needs about {_gib(needed)} of memory and {_gib(have)} is "
                         f"available; lower {setting}")


def check_samples(n: int, sample_shape: tuple[int, ...], setting: str) -> None:
    """``n`` samples of ``sample_shape`` (generated, real and a copy) fit in memory."""
    check_fits(SAMPLE_BYTES_PER_VALUE * n * math.prod(sample_shape), f"{n:,} samples", setting)


def parameter_count(factory: Any) -> int:
    """Parameters of the module ``factory()`` builds, counted on the meta device (no memory
    is allocated for them)."""
    import torch

    with torch.device("meta"):
        module = factory()
    return sum(p.numel() for p in module.parameters()) if hasattr(module, "parameters") else 0


def check_model(count: int, name: str) -> None:
    check_fits(TRAINING_BYTES_PER_PARAMETER * count,
               f"training denoiser '{name}' ({count:,} parameters)", "the denoiser's size")


@contextmanager
def memory_errors(what: str, setting: str):
    """Turn an allocation failure inside the block into one line naming ``setting``."""
    try:
        yield
    except MemoryError:
        raise UsageError(f"not enough memory for {what}; lower {setting}") from None
    except RuntimeError as exc:
        text = str(exc)
        if "out of memory" in text.lower() or "can't allocate" in text or \
                "not enough memory" in text.lower():
            raise UsageError(f"not enough memory for {what}; lower {setting}") from None
        raise
