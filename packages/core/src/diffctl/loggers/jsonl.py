"""``jsonl``: the run directory's own logs, one JSON object per line (always on)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffctl.loggers.configs import JsonlLoggerConfig


class JsonlLogger:
    """train.jsonl (every ``train.log_every`` steps) and metrics.jsonl (each evaluation).

    A resumed run's lines past its checkpoint are dropped by the run directory before this
    logger opens (``RunDirectory.truncate_logs``), so ``open`` has nothing to trim."""

    wants_images = False

    def __init__(self, config: JsonlLoggerConfig | None = None):
        self.config = config or JsonlLoggerConfig()
        self._dir: Any = None

    def open(self, directory: Path, start_step: int) -> None:
        from diffctl.runs.directory import RunDirectory

        self._dir = RunDirectory(directory)

    def log_step(self, step: int, record: dict[str, Any]) -> None:
        from diffctl.runs.directory import TRAIN_LOG

        self._dir.append_line(TRAIN_LOG, {"step": step, **record})

    def log_eval(self, step: int, record: dict[str, Any],
                 floors: dict[str, dict[str, Any]] | None = None) -> None:
        from diffctl.runs.directory import METRICS_LOG

        self._dir.append_line(METRICS_LOG, {"step": step, **record})

    def log_images(self, step: int, tag: str, images: Any) -> None:
        """Images are not logged as JSON."""

    def close(self) -> None:
        self._dir = None
