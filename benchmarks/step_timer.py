"""Wall time between two training steps inside ``Trainer.fit``, shared by the benchmarks.

A benchmark passes a :class:`StepTimer` as the trainer's ``on_step``: it notes the time at
step ``first`` (after the warm-up) and at step ``last``, synchronising CUDA first so queued
kernels count, and with ``stop`` ends training at ``last`` by raising :class:`Stop`.
"""

from __future__ import annotations

import time

import torch


class Stop(Exception):
    """Raised by a stopping :class:`StepTimer` at its last step."""


class StepTimer:
    def __init__(self, first: int, last: int, device: torch.device | None = None,
                 stop: bool = False):
        self.first, self.last, self.device, self.stop = first, last, device, stop
        self.marks: dict[int, float] = {}

    def __call__(self, event) -> None:
        if event.step in (self.first, self.last):
            if self.device is not None and self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.marks[event.step] = time.perf_counter()
        if self.stop and event.step == self.last:
            raise Stop

    @property
    def seconds(self) -> float:
        """Wall time from step ``first`` to step ``last``."""
        return self.marks[self.last] - self.marks[self.first]
