"""Checkpoint sweep speed-up: ``diffctl eval --workers N`` against ``--workers 1``.

Trains the gmm-ring recipe (configs/gmm-ring.yaml: the reference workflow's parallel
checkpoint evaluation) with a checkpoint after each of ``--checkpoints`` epochs, then times
the sweep over those checkpoints (1000 ancestral steps, mode-coverage + MMD + exact
Wasserstein per checkpoint) three ways, alternating, ``--repeats`` times each:

- ``workers=1``: one process with every core's threads (what ``--workers 1`` does);
- ``workers=1 threads=1``: one single-threaded process;
- ``workers=N``: N processes with ``cores // N`` threads each (what ``--workers N`` does).

It prints the medians and two ratios: N workers against the all-cores single process (the
user-facing speed-up) and against the single-threaded one (how well the pool scales).

    python benchmarks/eval_workers.py --workers 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from diffctl.runs import Run, compose
from diffctl.runs.checkpoint_eval import evaluate_checkpoints
from diffctl.runs.config import load_yaml
from diffctl.training.checkpoint import list_checkpoints

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gmm-ring.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--checkpoints", type=int, default=20)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default 1000)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        config = compose(load_yaml(CONFIG), overrides=[
            f"train.epochs={args.checkpoints}", "train.checkpoint_every=1",
            "eval.during_training=[]"])
        Run.create(config, run).train(evaluate_after=False)
        names = [p.name for p in list_checkpoints(run / "checkpoints")]
        metrics = list(config.eval.metrics)
        steps = args.steps or config.sample.num_steps
        print(f"{len(names)} checkpoints, {args.num_samples} samples each, "
              f"{steps} steps, metrics {metrics}, "
              f"{os.cpu_count()} cores")
        variants = {"workers=1": (1, None), "workers=1 threads=1": (1, 1),
                    f"workers={args.workers}": (args.workers, None)}
        times: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.repeats):
            for label, (workers, threads) in variants.items():
                start = time.perf_counter()
                evaluate_checkpoints(run, names, metrics, args.num_samples, steps, seed=1,
                                     workers=workers, threads=threads)
                times[label].append(time.perf_counter() - start)
                print(f"  {label}: {times[label][-1]:.1f} s", flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        many = med[f"workers={args.workers}"]
        print("median: " + ", ".join(f"{k} {v:.1f} s" for k, v in med.items()))
        print(f"speed-up of workers={args.workers}: {med['workers=1'] / many:.2f}x against "
              f"workers=1 (all cores), {med['workers=1 threads=1'] / many:.2f}x against "
              "workers=1 threads=1")


if __name__ == "__main__":
    main()
