"""The conformance check of a logger (kind ``logger``, :class:`diffctl.protocols.Logger`)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from diffctl.testing._support import Builder, Checks, label_for, require
from diffctl.testing.config import CONFIG_CHECKS, config_checks

LOGGER_CHECKS = (*CONFIG_CHECKS, "build", "protocol", "records", "images", "resume",
                 "stays-inside")


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")
            if p.is_file()}


def check_logger(factory: str | Callable[[Any], Any], config: type[BaseModel],
                 options: Mapping[str, Any] | None = None, *, label: str | None = None,
                 skip: Collection[str] = ()) -> list[str]:
    """Check a logger built as ``factory(config(**options))``; returns the passed sub-checks.

    ``protocol`` (the members of :class:`~diffctl.protocols.Logger`, ``wants_images`` a
    bool); ``records`` (a run's records: steps with loss and lr, an evaluation with floors and
    a non-numeric metadata entry, are accepted after ``open`` and leave something in the run
    directory); ``images`` (a grid of (N, C, H, W) images in [-1, 1] is accepted when the
    logger wants images); ``resume`` (a second logger opened at a resumed step of the same
    directory accepts records again); ``stays-inside`` (nothing is written outside the run
    directory it was given).
    """
    import torch

    from diffctl.protocols import Logger

    checks = Checks(label_for("logger", factory, label), LOGGER_CHECKS, skip)
    config_checks(checks, config, options)
    builder = Builder(factory, config, options)
    logger = checks.run("build", builder.build)
    if logger is None:
        return checks.passed

    def protocol() -> None:
        require(isinstance(logger, Logger), "lacks a member of diffctl.protocols.Logger "
                "(wants_images, open, log_step, log_eval, log_images, close)")
        require(isinstance(logger.wants_images, bool), "wants_images must be a bool")

    checks.run("protocol", protocol)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_dir = root / "run"
        run_dir.mkdir()
        (run_dir / "config.yaml").write_text("{}\n")
        before_outside = {k for k in _files(root) if not k.startswith("run")}

        def records() -> None:
            logger.open(run_dir, 0)
            for step in (1, 10, 20):
                logger.log_step(step, {"epoch": 0, "loss": 1.0 / step, "lr": 1e-3,
                                       "steps_per_second": 12.5})
            logger.log_eval(20, {"epoch": 1, "train_seconds": 1.5, "test-loss": 0.25,
                                 "metric_metadata": {"fid": {"feature_extractor": "x"}}},
                            {"test-loss": {"mean": 0.2, "p95": 0.3, "values": [0.2]}})
            require(_files(run_dir).keys() - {"config.yaml"},
                    "open/log_step/log_eval left nothing in the run directory")

        def images() -> None:
            grid = torch.rand(6, 1, 8, 8) * 2 - 1
            logger.log_images(20, "samples", grid)
            logger.close()

        def resume() -> None:
            again = builder.build()
            again.open(run_dir, 10)
            again.log_step(20, {"epoch": 1, "loss": 0.05, "lr": 1e-3,
                                "steps_per_second": 12.0})
            again.log_eval(20, {"epoch": 1, "test-loss": 0.2})
            again.close()

        def stays_inside() -> None:
            outside = {k for k in _files(root) if not k.startswith("run")} - before_outside
            require(not outside, f"wrote outside the run directory: {sorted(outside)}")

        checks.run("records", records)
        checks.run("images", images)
        checks.run("resume", resume)
        checks.run("stays-inside", stays_inside)
    return checks.passed
