"""Helpers of the distillation, sweep and size-study tests: a tiny 2-D run and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# a run small enough for a unit test: a few dozen steps of a small residual MLP on two-moons
TINY = [
    "dataset.n=1000", "denoiser.name=residual-mlp", "denoiser.hidden=32",
    "denoiser.num_blocks=2", "train.epochs=2", "train.batch_size=128",
    "train.checkpoint_every=1", "sample.num_samples=200", "sample.num_steps=8",
    "eval.floor_draws=5", "eval.metrics=[mmd-rbf]", "sample.progression_samples=20",
]


def sets(*overrides: str) -> list[str]:
    """``--set a --set b ...`` for the CLI."""
    return [x for s in overrides for x in ("--set", s)]


def command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from diffctl_cli.app import main; main()", *args]


def cli(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``diffctl`` in a subprocess; with ``check`` a non-zero exit fails the test."""
    proc = subprocess.run(command(*args), cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc
