"""Checkpoint sweep speed-up: ``--workers 1`` against ``--workers N`` on the same checkpoints.

Trains a small two-moons run with 20 checkpoints once, then times the sweep with 1 and with N
worker processes (alternating, ``--repeats`` times each) and prints the median ratio.

    python benchmarks/eval_workers.py --workers 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from diffctl.runs.config import apply_overrides, default_config_data, resolve
from diffctl.runs.run import run_experiment
from diffctl.runs.sweep import sweep
from diffctl.training.checkpoint import list_checkpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        config = resolve(apply_overrides(default_config_data(), [
            "dataset.n=4000", f"train.epochs={args.checkpoints}", "train.checkpoint_every=1",
            "denoiser.hidden=128", "eval.floor_draws=0", "sample.num_samples=500"]))
        run_experiment(config, run, evaluate=False)
        names = [p.name for p in list_checkpoints(run / "checkpoints")]
        metrics = ["moons-overall", "mmd-rbf"]
        print(f"{len(names)} checkpoints, {args.num_samples} samples each, metrics {metrics}")
        times: dict[int, list[float]] = {1: [], args.workers: []}
        for _ in range(args.repeats):
            for workers in (1, args.workers):
                start = time.perf_counter()
                sweep(run, names, metrics, args.num_samples, None, seed=1, workers=workers)
                times[workers].append(time.perf_counter() - start)
                print(f"  workers={workers}: {times[workers][-1]:.1f} s")
        one, many = statistics.median(times[1]), statistics.median(times[args.workers])
        print(f"median: workers=1 {one:.1f} s, workers={args.workers} {many:.1f} s, "
              f"speed-up {one / many:.2f}x")


if __name__ == "__main__":
    main()
