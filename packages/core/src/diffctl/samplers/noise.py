"""Per-sample noise streams, so a sample never depends on the batch it was drawn in.

Sample ``i`` of a run with seed ``s`` draws all of its noise (x_T and every stochastic step)
from its own generator seeded by a hash of (s, i). Drawing samples 0..999 in one batch or in
ten batches of 100 (with ``offset``) gives identical samples.
"""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1


def mix_seed(seed: int, index: int) -> int:
    """SplitMix64 of (seed, index): well-spread 63-bit seeds for neighbouring indices."""
    z = (seed * 0x9E3779B97F4A7C15 + index + 1) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) >> 1


class PerSampleGenerator:
    """One CPU generator per sample index; ``randn`` returns (B, *shape) noise.

    Each stream is drawn ahead in blocks of ``block`` draws (one ``torch.randn`` call per
    sample per block instead of per step). The block length depends only on the per-sample
    shape, so sample i's numbers depend only on (seed, i) and its draw count.
    """

    #: Upper bound on the numbers buffered per sample (block length x per-sample size).
    BUFFER_NUMEL = 1 << 14

    def __init__(self, seed: int, num_samples: int, offset: int = 0):
        self.seed, self.offset = seed, offset
        self._generators = [
            torch.Generator().manual_seed(mix_seed(seed, offset + i)) for i in range(num_samples)
        ]
        self._buffer: torch.Tensor | None = None
        self._next = 0

    def __len__(self) -> int:
        return len(self._generators)

    def randn(self, shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32,
              device: torch.device | str = "cpu") -> torch.Tensor:
        """Draw one (B, *shape) tensor; row i comes from sample i's stream."""
        shape = tuple(shape)
        if self._buffer is None or self._buffer.shape[2:] != shape or \
                self._next == self._buffer.shape[1]:
            numel = max(1, int(torch.Size(shape).numel()))
            block = max(1, min(256, self.BUFFER_NUMEL // numel))
            self._buffer = torch.stack(
                [torch.randn((block, *shape), generator=g) for g in self._generators])
            self._next = 0
        rows = self._buffer[:, self._next]
        self._next += 1
        return rows.to(device=device, dtype=dtype)


Generator = torch.Generator | PerSampleGenerator | None


def randn_like(x: torch.Tensor, generator: Generator) -> torch.Tensor:
    """Standard normal noise shaped like ``x`` from any supported generator."""
    if generator is None:
        return torch.randn_like(x)
    if isinstance(generator, PerSampleGenerator):
        if len(generator) != x.shape[0]:
            raise ValueError(f"PerSampleGenerator holds {len(generator)} streams, batch is "
                             f"{x.shape[0]}")
        return generator.randn(tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return noise.to(x.device)


def initial_noise(shape: tuple[int, ...], seed: int, offset: int = 0,
                  device: torch.device | str = "cpu") -> tuple[torch.Tensor, PerSampleGenerator]:
    """x_T for samples ``offset .. offset + shape[0] - 1`` and the generator to go on with."""
    generator = PerSampleGenerator(seed, shape[0], offset)
    return generator.randn(tuple(shape[1:]), device=device), generator
