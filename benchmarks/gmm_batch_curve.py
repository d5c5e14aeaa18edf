"""Quality against epochs and training time: the gmm-ring standard and large-batch recipes.

The reference workflow trains the ring with batch 128 at lr 1e-4 (configs/gmm-ring.yaml) and
with batch 1280 at lr 1e-4 / sqrt(10) (configs/gmm-ring-large-batch.yaml) and reports that
both reach similar quality "with sufficient training". This script measures how much is
sufficient: it trains

- ``standard``: configs/gmm-ring.yaml for ``--epochs`` epochs (default 1000);
- ``large``: configs/gmm-ring-large-batch.yaml for ``--large-epochs`` (default 4000);
- ``large-linear``: the large batch with the linearly scaled rate 1e-3 (10x batch, 10x lr)
  for ``--epochs``,

each with a checkpoint every tenth (sixteenth for ``large``) of its length, then evaluates
every checkpoint with the recipe's sampler (1000 ancestral steps) on ``--num-samples``
samples: c2st, modes hit and the share of samples within 3 std of a mode, next to the
real-vs-real floor. It prints one row per checkpoint with its step and cumulative training
seconds (``train_seconds`` of metrics.jsonl), and for each recipe the first checkpoint whose
c2st is at or below the floor's p95.

A run directory that already holds its last checkpoint is evaluated without training again
(delete it to retrain); every evaluation writes a new ``eval/<time>-<settings>/`` in it.

    OMP_NUM_THREADS=1 python benchmarks/gmm_batch_curve.py --out runs/gmm-curve
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffctl.runs import Run, compose
from diffctl.runs.config import load_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def recipes(epochs: int, large_epochs: int) -> dict[str, tuple[str, list[str]]]:
    """name -> (config file, overrides)."""
    return {
        "standard": ("gmm-ring.yaml", [f"train.epochs={epochs}",
                                       f"train.checkpoint_every={max(1, epochs // 10)}"]),
        "large": ("gmm-ring-large-batch.yaml",
                  [f"train.epochs={large_epochs}",
                   f"train.checkpoint_every={max(1, large_epochs // 16)}"]),
        "large-linear": ("gmm-ring-large-batch.yaml",
                         [f"train.epochs={epochs}", "train.lr=1e-3",
                          f"train.checkpoint_every={max(1, epochs // 10)}"]),
    }


def trained(path: Path, overrides: list[str], config: str, seed: int) -> Run:
    """The run at ``path``, trained first unless its final checkpoint is there."""
    cfg = compose(load_yaml(CONFIGS / config), seed=seed, overrides=overrides)
    last = path / "checkpoints" / f"epoch-{cfg.train.epochs:04d}"
    if last.exists():
        return Run.open(path)
    run = Run.create(cfg, path)
    run.train()
    return run


def train_seconds(path: Path) -> dict[int, float]:
    """epoch -> cumulative training seconds at that checkpoint."""
    lines = (path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return {row["epoch"]: row["train_seconds"] for row in rows if "train_seconds" in row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/gmm-curve", help="Folder of the three runs.")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--large-epochs", type=int, default=4000)
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="Recipes to run (default: all three).")
    args = parser.parse_args()

    out = Path(args.out)
    print(f"{'recipe':13s} {'epoch':>6s} {'step':>7s} {'train s':>8s} {'c2st':>7s} "
          f"{'modes':>5s} {'in 3 std':>8s}")
    for name, (config, overrides) in recipes(args.epochs, args.large_epochs).items():
        if args.only and name not in args.only:
            continue
        path = out / name
        run = trained(path, overrides, config, args.seed)
        result = run.evaluate(checkpoints="all", metrics=["c2st", "mode-coverage"],
                              num_samples=args.num_samples, workers=1)
        seconds = train_seconds(path)
        p95 = result.floors["c2st"]["p95"]
        reached = None
        for row in sorted(result.rows, key=lambda r: r["epoch"]):
            print(f"{name:13s} {row['epoch']:6d} {row['step']:7d} "
                  f"{seconds.get(row['epoch'], float('nan')):8.1f} {row['c2st']:7.4f} "
                  f"{int(row['modes_hit']):5d} {row['within_3std']:8.3f}")
            if reached is None and row["c2st"] <= p95:
                reached = row
        floor = result.floors
        print(f"{name:13s} floor: c2st mean {floor['c2st']['mean']:.4f} p95 {p95:.4f}; "
              f"in 3 std {floor['within_3std']['mean']:.3f}; "
              + (f"c2st at or below the floor's p95 from epoch {reached['epoch']} "
                 f"({seconds.get(reached['epoch'], float('nan')):.0f} s of training)"
                 if reached else "c2st never reaches the floor's p95"))


if __name__ == "__main__":
    main()
