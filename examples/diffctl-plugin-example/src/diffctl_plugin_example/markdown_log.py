"""``markdown``: a logger that keeps one table row per evaluation in ``log.md``, readable on
any code host. A third-party logger in a few lines: the five methods of
``diffctl.protocols.Logger``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class MarkdownLogger:
    wants_images = False

    def __init__(self, config: Any = None):
        self.config = config
        self.path: Path | None = None

    def open(self, directory: Path, start_step: int) -> None:
        self.path = Path(directory) / "log.md"
        if not self.path.exists():
            self.path.write_text("| step | metric | value |\n|---:|---|---:|\n")

    def log_step(self, step: int, record: dict[str, Any]) -> None:
        """Training steps are left to the other loggers."""

    def log_eval(self, step: int, record: dict[str, Any], floors: Any = None) -> None:
        with open(self.path, "a") as fh:
            for key, value in record.items():
                if isinstance(value, float):
                    fh.write(f"| {step} | {key} | {value:.4g} |\n")

    def log_images(self, step: int, tag: str, images: Any) -> None:
        """No images in a table."""

    def close(self) -> None:
        self.path = None
