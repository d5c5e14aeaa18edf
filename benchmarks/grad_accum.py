"""What gradient accumulation costs: 4 micro-batches against one batch of the same total size.

For each model, on random MNIST-shaped data (1 x 32 x 32), diffctl's ``Trainer`` runs
``--steps`` timed optimisation steps (after ``--warmup``) with ``train.batch_size`` B, once
with ``grad_accum_steps: 1`` and once with ``grad_accum_steps: 4`` (micro-batches of B / 4).
Both sides compute the same update; the two alternate within each of ``--repeats``
repetitions and the medians give images/s and the ratio accumulated / whole. The issue's
target is a cost of at most 5% (ratio >= 0.95) where the whole batch fits.

    python benchmarks/grad_accum.py --models unet-mini dit-s --batch 64
    python benchmarks/grad_accum.py --quick              # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics

import torch
from step_timer import StepTimer, Stop

import diffctl
from diffctl.training.config import TrainConfig
from diffctl.training.trainer import Trainer


def images_per_second(model_name: str, data: torch.Tensor, args: argparse.Namespace,
                      accum: int) -> float:
    last = args.warmup + args.steps
    timer = StepTimer(args.warmup, last, stop=True)
    torch.manual_seed(0)
    model = diffctl.create("denoiser", model_name, image_size=32, in_channels=1)
    steps_per_epoch = len(data) // args.batch
    cfg = TrainConfig(epochs=-(-last // steps_per_epoch), batch_size=args.batch, lr=1e-4,
                      grad_accum_steps=accum, device="cpu", log_every=10**9,
                      checkpoint_every=10**6)
    trainer = Trainer(model, diffctl.create("scheduler", "linear"), data, cfg, seed=0,
                      on_step=timer)
    with contextlib.suppress(Stop):
        trainer.fit()
    return args.steps * args.batch / timer.seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes (a smoke test)")
    parser.add_argument("--models", nargs="+", default=["unet-mini", "dit-s"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--accum", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.batch, args.steps, args.warmup, args.repeats = \
            ["dit-tiny"], 8, 2, 1, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch % args.accum:
        parser.error(f"--batch {args.batch} is not divisible by --accum {args.accum}")
    gen = torch.Generator().manual_seed(0)
    data = torch.rand(args.batch * (args.warmup + args.steps + 1), 1, 32, 32,
                      generator=gen) * 2 - 1
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} "
          f"threads; batch {args.batch} whole vs {args.accum} x {args.batch // args.accum}, "
          f"{args.steps} timed steps, median of {args.repeats}")
    for name in args.models:
        rates: dict[int, list[float]] = {1: [], args.accum: []}
        for rep in range(args.repeats):
            order = [1, args.accum] if rep % 2 == 0 else [args.accum, 1]
            for accum in order:
                rates[accum].append(images_per_second(name, data, args, accum))
        whole, split = statistics.median(rates[1]), statistics.median(rates[args.accum])
        print(f"{name:10s} whole {whole:8.1f} images/s   accumulated {split:8.1f} images/s   "
              f"ratio {split / whole:.3f} (target >= 0.95)")


if __name__ == "__main__":
    main()
