"""Training images/s with fp32 eager vs bf16 autocast and/or ``torch.compile``, side by side.

Runs diffctl's ``Trainer`` (the code ``diffctl run`` uses, with ``train.precision`` and
``train.compile``) on random data of the chosen shape, class-conditioned when
``--num-classes`` is set, and times ``--steps`` steps after ``--warmup`` untimed ones (the
warm-up absorbs compilation). Prints images/s per variant and the ratio to fp32 eager.
Meant for a GPU (``--device cuda``); on a CPU it only checks the options do not break.

    python benchmarks/precision_compile.py --model dit --device cuda --batch 32 256
    python benchmarks/precision_compile.py --model dit-tiny --steps 2 --warmup 1 --batch 4 \\
        --variants fp32 bf16                                              # CPU smoke test
"""

from __future__ import annotations

import argparse

import torch
from step_timer import StepTimer

import diffctl
from diffctl.training.config import TrainConfig
from diffctl.training.trainer import Trainer, pick_device

VARIANTS = {  # name: (precision, compile)
    "fp32": ("fp32", False),
    "bf16": ("bf16", False),
    "fp32+compile": ("fp32", True),
    "bf16+compile": ("bf16", True),
}


def images_per_second(args: argparse.Namespace, batch: int, variant: str) -> float:
    precision, compiled = VARIANTS[variant]
    device = pick_device(args.device)
    torch.manual_seed(0)
    kwargs = {"in_channels": args.channels, "image_size": args.image_size}
    if args.num_classes:
        kwargs["num_classes"] = args.num_classes
    model = diffctl.create("denoiser", args.model, **kwargs)
    n = (args.warmup + args.steps) * batch
    g = torch.Generator().manual_seed(0)
    data = torch.rand(n, args.channels, args.image_size, args.image_size, generator=g) * 2 - 1
    labels = torch.randint(0, args.num_classes, (n,), generator=g) if args.num_classes else None
    config = TrainConfig(epochs=1, batch_size=batch, lr=2e-4, grad_clip=1.0, ema_decay=0.9999,
                         device=args.device, precision=precision, compile=compiled,
                         log_every=10**9)
    timer = StepTimer(args.warmup, args.warmup + args.steps, device)
    trainer = Trainer(model, diffctl.create("scheduler", "linear"), data, config, seed=0,
                      labels=labels, on_step=timer)
    trainer.fit()
    return args.steps * batch / timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="dit")
    parser.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=10, help="0: unconditional")
    parser.add_argument("--device", default="cuda", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.model} on {name}, torch {torch.__version__}, data "
          f"{args.channels}x{args.image_size}x{args.image_size}, {args.num_classes} classes, "
          f"{args.steps} timed steps after {args.warmup}")
    for batch in args.batch:
        rates = {v: images_per_second(args, batch, v) for v in args.variants}
        base = rates[args.variants[0]]
        for v, rate in rates.items():
            print(f"  batch {batch:4d}  {v:>13}: {rate:9.1f} images/s  "
                  f"x{rate / base:.2f} vs {args.variants[0]}")


if __name__ == "__main__":
    main()
