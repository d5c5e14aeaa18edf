"""The streaming data path: examples read per batch by DataLoader workers, never held whole.

A data set too large for memory reaches the trainer as :class:`StreamingData` instead of a
tensor: an *item source* (``len(source)``, ``source.load(i)`` -> one float32 example in [-1,
1]) and an optional per-example transform (torchvision ``transforms.v2``). Which examples a
batch holds is decided in the training process, exactly as on the in-memory path: the epoch's
permutation comes from the run's ``train`` stream at that epoch, batch ``b`` is
``order[b * B:(b + 1) * B]`` and under DDP rank ``r`` takes every ``world``-th example of it.
Workers only decode; their number changes speed, never which examples or values arrive.

A transform draws its randomness from torch's global RNG, seeded for each example from the
``augment`` stream at (epoch, index) inside :func:`torch.random.fork_rng`: an example's
augmentation depends only on the seed, the epoch and the example, not on the worker, the
batch or the process that decodes it. Without a transform the streamed batches equal the
in-memory ones bit for bit, so both paths train the same weights.

A resumed epoch starts at any batch: the loader is rebuilt with the remaining batches only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from diffctl.seeds import stream_seed


class ItemSource(Protocol):
    """Random access to single examples: ``load(i)`` is example ``i`` as float32 in [-1, 1].
    Must be picklable (worker processes get a copy) and cheap to copy (no decoded data)."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> torch.Tensor: ...


class _Items(Dataset):
    """What a worker runs: keys are ``(epoch, index)``, values one transformed example."""

    def __init__(self, source: ItemSource, transform: Callable[[torch.Tensor], torch.Tensor]
                 | None, seed: int):
        self.source, self.transform, self.seed = source, transform, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> torch.Tensor:
        epoch, index = key
        x = self.source.load(index)
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(stream_seed(self.seed, "augment", epoch, index))
                x = self.transform(x)
        return x


class _Plan:
    """A batch sampler the trainer refills before each pass (the loader asks it for indices
    in the training process, so persistent workers need no notice of a new epoch)."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        return iter(list(self.batches))

    def __len__(self) -> int:
        return len(self.batches)


class StreamingData:
    """A training split read through a DataLoader with ``num_workers`` decoding processes.

    ``len()`` is the number of examples; :meth:`batches` yields this rank's share of each
    batch of an epoch as one float32 tensor, pinned when training on CUDA.
    """

    def __init__(self, source: ItemSource, *, num_workers: int = 1,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 prefetch_factor: int = 4):
        self.source, self.transform = source, transform
        self.num_workers, self.prefetch_factor = int(num_workers), prefetch_factor
        self._loader: DataLoader | None = None
        self._plan = _Plan()
        self._key: tuple[Any, ...] | None = None

    def __len__(self) -> int:
        return len(self.source)

    def example(self, index: int, epoch: int = 0, seed: int = 0) -> torch.Tensor:
        """Example ``index`` as the loader would produce it in ``epoch`` (in this process)."""
        return _Items(self.source, self.transform, seed)[(epoch, index)]

    def _loader_for(self, seed: int, pin: bool) -> DataLoader:
        if self._loader is None or self._key != (seed, pin):
            self.close()
            workers = self.num_workers
            self._loader = DataLoader(
                _Items(self.source, self.transform, seed), batch_sampler=self._plan,
                num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                prefetch_factor=self.prefetch_factor if workers > 0 else None,
                # the loader's own generator: creating an iterator must not draw from torch's
                # global RNG, which belongs to the run's dropout stream
                generator=torch.Generator().manual_seed(0))
            self._key = (seed, pin)
        return self._loader

    def batches(self, order: torch.Tensor, batch_size: int, steps: int, *, epoch: int,
                seed: int, start: int = 0, rank: int = 0, world_size: int = 1,
                pin_memory: bool = False) -> Iterator[torch.Tensor]:
        """This rank's examples of batches ``start .. steps - 1`` of an epoch whose example
        order is ``order``: batch ``b`` is ``order[b * batch_size:(b + 1) * batch_size]``
        and the rank takes its every ``world_size``-th example from ``rank`` on."""
        order_list: Sequence[int] = order.tolist()
        self._plan.batches = [
            [(epoch, i) for i in order_list[b * batch_size:(b + 1) * batch_size]
             [rank::world_size]] for b in range(start, steps)]
        return iter(self._loader_for(seed, pin_memory))

    def close(self) -> None:
        """Stop the worker processes (a new pass starts them again)."""
        if self._loader is not None:
            iterator = getattr(self._loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
            self._loader = None

    def __getstate__(self) -> dict[str, Any]:  # the loader and its workers stay here
        return {**self.__dict__, "_loader": None, "_key": None}
