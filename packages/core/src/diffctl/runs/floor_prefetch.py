"""Real-vs-real floors of a 2-D run's final evaluation, computed while the model trains.

A floor depends on the data, the metrics, the sample size and the run seed, never on the
model, so it can be computed before the model exists. On a CPU with two or more cores, a
2-D run trains on one thread (a small MLP on 2-D points trains as fast on one thread as on
two: 41.5 s against 40.1 s for the default run on the 2-core CPU) and a spawned process
computes the floors on another core meanwhile; the final evaluation then only collects them.
For the default run that is the 20 MMD draws and the c2st and two-moons draws, about 16 s
of a minute's run.

The rule "2-D on CPU trains on one thread" holds whether or not floors are computed (and on
resume), so a run's numbers never depend on whether a floor process was started or when it
finished. If the floor process fails, the final evaluation computes the floors itself.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch


def trains_on_one_thread(images: bool, device: torch.device, distributed: bool) -> bool:
    """Whether a run trains on a single torch thread: 2-D data on a CPU, outside DDP."""
    return not images and device.type == "cpu" and not distributed


def worth_prefetching(images: bool, device: torch.device, distributed: bool,
                      floor_draws: int) -> bool:
    """Whether to compute the floors in a second process: a 2-D run on a CPU with a spare core
    and floors to compute."""
    return (trains_on_one_thread(images, device, distributed) and floor_draws > 0
            and (os.cpu_count() or 1) >= 2)


class FloorPrefetch:
    """The final evaluation's floors (``metric_floors`` of ``eval.metrics`` and test-loss at
    ``sample.num_samples``, run seed ``seed``) from a single-threaded ``python -m`` child
    process (not multiprocessing: a spawned process re-imports the caller's main script,
    which a plain script calling ``Run.train`` does not guard)."""

    def __init__(self, config_data: dict[str, Any]):
        self._folder = Path(tempfile.mkdtemp(prefix="diffctl-floors-"))
        (self._folder / "config.json").write_text(json.dumps(config_data))
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   OPENBLAS_NUM_THREADS="1")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "diffctl.runs.floor_prefetch", str(self._folder)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        # floors nobody collects (a resume that only trains, an error) end with the caller
        atexit.register(self.close)

    def result(self, timeout: float | None = None) -> dict[str, dict[str, Any]] | None:
        """The floors, waiting for them if need be; None when the process failed."""
        try:
            self._process.wait(timeout=timeout)
            out = self._folder / "floors.json"
            found = json.loads(out.read_text()) if out.exists() else None
        except (subprocess.TimeoutExpired, OSError, ValueError):
            found = None
        self.close()
        return found if isinstance(found, dict) else None

    def close(self) -> None:
        """Stop the process if it is still running and remove its folder."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._folder, ignore_errors=True)
        atexit.unregister(self.close)


def _compute(folder: Path) -> None:
    """The floor process: the registry loaded afresh, one torch thread, floors.json written
    only when every floor was computed."""
    from diffctl.registry import get_registry
    from diffctl.runs.components import build_dataset
    from diffctl.runs.config import resolve
    from diffctl.runs.evaluation import final_floors

    torch.set_num_threads(1)
    registry = get_registry()
    config = resolve(json.loads((folder / "config.json").read_text()), registry)
    floors = final_floors(config, registry, build_dataset(config, registry), "cpu")
    partial = folder / "floors.json.partial"
    partial.write_text(json.dumps(floors))
    partial.replace(folder / "floors.json")


if __name__ == "__main__":
    _compute(Path(sys.argv[1]))
