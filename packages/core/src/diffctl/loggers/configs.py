"""Config models of the built-in loggers (no torch import)."""

from __future__ import annotations

from pydantic import Field

from diffctl.config import ComponentConfig


class JsonlLoggerConfig(ComponentConfig):
    """train.jsonl and metrics.jsonl in the run directory (no settings)."""


class CsvLoggerConfig(ComponentConfig):
    """train.csv and metrics.csv in the run directory."""

    folder: str = Field("", description="Sub-folder of the run directory for the CSV files "
                        "('' = the run directory itself).")


class TensorBoardLoggerConfig(ComponentConfig):
    """TensorBoard event files through torch.utils.tensorboard (needs the tensorboard
    package: pip install "diffctl-core[tensorboard]")."""

    folder: str = Field("tensorboard", description="Sub-folder of the run directory for the "
                        "event files (point `tensorboard --logdir` at it).")
    images: bool = Field(True, description="Log a grid of samples at each checkpoint "
                         "evaluation and at the end (image runs).")
