"""The loggers of one run: built from ``train.loggers``, opened once training knows where it
starts, fed by the run's training and evaluation callbacks (rank 0 only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffctl.registry import Registry

ALWAYS = "jsonl"


def logger_names(names: list[str]) -> list[str]:
    """``names`` with ``jsonl`` first, each once."""
    return list(dict.fromkeys([ALWAYS, *names]))


class RunLoggers:
    """Every logger of a run behind one object; a no-op until :meth:`open`."""

    def __init__(self, registry: Registry, names: list[str],
                 options: dict[str, dict[str, Any]] | None = None, include_jsonl: bool = True):
        chosen = logger_names(names) if include_jsonl else [n for n in names if n != ALWAYS]
        self._loggers = [registry.create("logger", name, (options or {}).get(name))
                         for name in chosen]
        self._open = False

    def __bool__(self) -> bool:
        return bool(self._loggers)

    @property
    def wants_images(self) -> bool:
        return any(getattr(lg, "wants_images", False) for lg in self._loggers)

    def open(self, directory: Path, start_step: int) -> None:
        for logger in self._loggers:
            logger.open(directory, start_step)
        self._open = True

    def log_step(self, step: int, record: dict[str, Any]) -> None:
        if self._open:
            for logger in self._loggers:
                logger.log_step(step, record)

    def log_eval(self, step: int, record: dict[str, Any],
                 floors: dict[str, dict[str, Any]] | None = None) -> None:
        if self._open:
            for logger in self._loggers:
                logger.log_eval(step, record, floors)

    def log_images(self, step: int, tag: str, images: Any) -> None:
        if self._open:
            for logger in self._loggers:
                if getattr(logger, "wants_images", False):
                    logger.log_images(step, tag, images)

    def close(self) -> None:
        if self._open:
            for logger in self._loggers:
                logger.close()
            self._open = False
