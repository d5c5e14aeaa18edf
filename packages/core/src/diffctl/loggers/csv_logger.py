"""``csv``: train.csv, metrics.csv (one row per record) and final.csv (each final metric with
its floor), for spreadsheets and pandas."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from diffctl.loggers.configs import CsvLoggerConfig

TRAIN_CSV = "train.csv"
METRICS_CSV = "metrics.csv"
FINAL_CSV = "final.csv"


class CsvLogger:
    """The numeric fields of each record; the header is the first record's keys (later keys
    that were not in it are left out). On resume, rows past the checkpoint are dropped."""

    wants_images = False

    def __init__(self, config: CsvLoggerConfig | None = None):
        self.config = config or CsvLoggerConfig()
        self._folder: Path | None = None

    def open(self, directory: Path, start_step: int) -> None:
        self._folder = Path(directory) / self.config.folder
        self._folder.mkdir(parents=True, exist_ok=True)
        for name in (TRAIN_CSV, METRICS_CSV):
            self._trim(self._folder / name, start_step)

    @staticmethod
    def _trim(path: Path, start_step: int) -> None:
        """Keep the header and the rows up to ``start_step`` (a torn last row goes too)."""
        from diffctl.runs.directory import write_atomic

        if not path.exists():
            return
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
        if not rows:
            return
        header, kept = rows[0], [rows[0]]
        for row in rows[1:]:
            if len(row) == len(header) and row[0].isdigit() and int(row[0]) <= start_step:
                kept.append(row)
        out = io.StringIO()
        csv.writer(out).writerows(kept)
        write_atomic(path, out.getvalue())

    def _append(self, name: str, step: int, record: dict[str, Any]) -> None:
        assert self._folder is not None, "open() first"
        row = {"step": step, **{k: v for k, v in record.items()
                                if isinstance(v, int | float | str) or v is None}}
        path = self._folder / name
        new = not path.exists() or path.stat().st_size == 0
        if new:
            header = list(row)
        else:
            with open(path, encoding="utf-8") as fh:
                header = next(csv.reader(fh))
        with open(path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def log_step(self, step: int, record: dict[str, Any]) -> None:
        self._append(TRAIN_CSV, step, record)

    def log_eval(self, step: int, record: dict[str, Any],
                 floors: dict[str, dict[str, Any]] | None = None) -> None:
        if floors is None:
            self._append(METRICS_CSV, step, record)
            return
        assert self._folder is not None, "open() first"
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["step", "metric", "value", "floor_mean", "floor_p95"])
        for key, value in record.items():
            if isinstance(value, int | float):
                floor = floors.get(key) or {}
                writer.writerow([step, key, value, floor.get("mean", ""), floor.get("p95", "")])
        from diffctl.runs.directory import write_atomic

        write_atomic(self._folder / FINAL_CSV, out.getvalue())

    def log_images(self, step: int, tag: str, images: Any) -> None:
        """CSV has no images."""

    def close(self) -> None:
        self._folder = None
