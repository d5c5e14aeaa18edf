"""Data-parallel training under ``torchrun``: which process am I, and the process group.

``torchrun --nproc_per_node N`` starts N copies of the command with ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK`` set. The trainer then wraps the model in DistributedDataParallel and each
process takes every N-th example of each global batch (the batch order, timesteps and noise
come from the same seeded generator on every rank), so an N-process run computes the same
gradient as a one-process run with the same ``batch_size``. Only rank 0 evaluates and writes
checkpoints and metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from diffctl.errors import UsageError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """This process's place in a ``torchrun`` job (one process when not under torchrun)."""
    try:
        return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                        int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers") from None


def setup(info: DistInfo, device: torch.device) -> torch.device:
    """Join the process group (NCCL on CUDA, gloo on CPU); returns this rank's device."""
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def all_mean(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of a scalar over all ranks (the value itself in a one-process run)."""
    if not info.enabled:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / info.world_size


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. the early-stopping decision)."""
    if not info.enabled:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())
