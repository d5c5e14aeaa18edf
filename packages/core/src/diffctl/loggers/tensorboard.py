"""``tensorboard``: event files for TensorBoard (``tensorboard --logdir <run>/tensorboard``).

Scalars go under ``train/`` (loss, lr, steps per second), ``eval/`` (every metric at each
checkpoint) and ``final/`` (the final evaluation, with each floor's mean and 95th percentile
under ``floor/``); sample grids under ``samples`` and ``final samples``. A resumed
run writes into the same folder with ``purge_step`` at its checkpoint's next step, so
TensorBoard drops the events the interrupted run wrote past it: no step appears twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffctl.errors import UsageError
from diffctl.loggers.configs import TensorBoardLoggerConfig


def tile(images: Any, ncol: int = 8, pad: int = 1) -> Any:
    """(N, C, H, W) in [0, 1] -> one (C, H', W') grid, ``ncol`` images a row, white gutters."""
    import torch

    n, c, h, w = images.shape
    nrow = -(-n // ncol)
    grid = torch.ones(c, nrow * (h + pad) + pad, ncol * (w + pad) + pad)
    for i, image in enumerate(images):
        r, k = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, top:top + h, left:left + w] = image
    return grid


class TensorBoardLogger:
    def __init__(self, config: TensorBoardLoggerConfig | None = None):
        self.config = config or TensorBoardLoggerConfig()
        self.wants_images = self.config.images
        self._writer: Any = None

    def open(self, directory: Path, start_step: int) -> None:
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError('logger tensorboard needs the tensorboard package: pip install '
                             '"diffctl-core[tensorboard]"') from None
        self._writer = SummaryWriter(log_dir=str(Path(directory) / self.config.folder),
                                     purge_step=start_step + 1 if start_step else None)

    def log_step(self, step: int, record: dict[str, Any]) -> None:
        for key in ("loss", "lr", "steps_per_second"):
            value = record.get(key)
            if isinstance(value, int | float):
                self._writer.add_scalar(f"train/{key}", value, step)

    def log_eval(self, step: int, record: dict[str, Any],
                 floors: dict[str, dict[str, Any]] | None = None) -> None:
        skip = {"epoch", "train_seconds", "wall_seconds"}
        prefix = "eval" if floors is None else "final"
        for key, value in record.items():
            if key not in skip and isinstance(value, int | float) and not isinstance(value,
                                                                                      bool):
                self._writer.add_scalar(f"{prefix}/{key}", value, step)
        for key, floor in (floors or {}).items():
            for stat in ("mean", "p95"):
                if isinstance(floor.get(stat), int | float):
                    self._writer.add_scalar(f"floor/{key}_{stat}", floor[stat], step)
        self._writer.flush()

    def log_images(self, step: int, tag: str, images: Any) -> None:
        """(N, C, H, W) images in [-1, 1] as one grid."""
        if not self.wants_images or images is None or images.ndim != 4:
            return
        self._writer.add_image(tag, tile((images.float().clamp(-1, 1) + 1) / 2), step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
