"""Training throughput of the image denoisers, and the Trainer's overhead over a bare loop.

For each model, on random MNIST-shaped data (1 x 32 x 32 in [-1, 1]), times ``--steps``
optimisation steps after ``--warmup`` untimed ones, once through diffctl's ``Trainer`` and
once through a hand-written PyTorch loop doing the same work: the same initial weights,
batches of the same size, epsilon-prediction loss on the linear schedule, AdamW, gradient
clipping at 1.0 and an EMA with decay 0.9999 and the trainer's warm-up (the reference MNIST
recipe). The two alternate within each of ``--repeats`` repetitions (order swapped every other
one) and the medians give images/s of both and their ratio; the goal is an overhead under 5%.

    python benchmarks/train_throughput.py --models unet-mini dit-s --batch 32 --steps 30
    python benchmarks/train_throughput.py --models dit-tiny --steps 3 --warmup 1 --batch 4 \\
        --repeats 1                                                  # smoke test
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from torch.nn import functional as F

import diffctl
from diffctl.training.config import TrainConfig
from diffctl.training.trainer import Trainer, pick_device

EMA_DECAY = 0.9999
GRAD_CLIP = 1.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=args.batch, lr=args.lr, optimizer="adamw",
                       weight_decay=0.0, grad_clip=GRAD_CLIP, ema_decay=EMA_DECAY,
                       ema_warmup=True, device=args.device, precision=args.precision,
                       log_every=10**9)


def with_trainer(template: torch.nn.Module, scheduler, data: torch.Tensor,
                 args: argparse.Namespace) -> float:
    """Images/s of the timed steps of ``Trainer.fit`` (marks taken in its step callback)."""
    first, last = args.warmup, args.warmup + args.steps
    marks: dict[int, float] = {}
    device = pick_device(args.device)

    def on_step(event) -> None:
        if event.step in (first, last):
            sync(device)
            marks[event.step] = time.perf_counter()

    trainer = Trainer(copy.deepcopy(template), scheduler, data, train_config(args), seed=0,
                      on_step=on_step)
    assert trainer.total_steps == last, (trainer.total_steps, last)
    trainer.fit()
    return args.steps * args.batch / (marks[last] - marks[first])


def bare_loop(template: torch.nn.Module, alphas_cumprod: torch.Tensor, data: torch.Tensor,
              args: argparse.Namespace) -> float:
    """Images/s of the timed steps of a plain loop: the same work, no framework."""
    device = pick_device(args.device)
    model = copy.deepcopy(template).to(device).train()
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    data, ab = data.to(device), alphas_cumprod.to(device, torch.float32)
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data), generator=gen).to(device)
    b, T = args.batch, len(ab)
    start = 0.0
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            sync(device)
            start = time.perf_counter()
        x0 = data[order[step * b:(step + 1) * b]]
        t = torch.randint(0, T, (b,), generator=gen).to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        a = ab[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            prediction = model(x_t, t)
        loss = F.mse_loss(prediction.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        decay = min(EMA_DECAY, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters(), strict=True):
                e.lerp_(p, 1 - decay)
            for e, buf in zip(ema.buffers(), model.buffers(), strict=True):
                e.copy_(buf)
    sync(device)
    return args.steps * b / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["unet-mini", "dit-s"],
                        help="registered denoisers (default: unet-mini dit-s)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (>= 1)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each side")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 1 or args.repeats < 1:
        parser.error("--warmup, --steps and --repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    scheduler = diffctl.create("scheduler", "linear")
    n = (args.warmup + args.steps) * args.batch
    data = torch.rand(n, args.channels, args.image_size, args.image_size,
                      generator=torch.Generator().manual_seed(0)) * 2 - 1
    print(f"device {pick_device(args.device)}, {torch.get_num_threads()} threads, batch "
          f"{args.batch}, {args.steps} timed steps after {args.warmup}, {args.repeats} repeats, "
          f"{args.precision}, data {tuple(data.shape[1:])}")
    for name in args.models:
        torch.manual_seed(0)
        template = diffctl.create("denoiser", name, in_channels=args.channels,
                                  image_size=args.image_size)
        params = sum(p.numel() for p in template.parameters())
        print(f"{name} ({params:,} parameters)")
        rates: dict[str, list[float]] = {"bare": [], "trainer": []}
        for rep in range(args.repeats):
            order = ("bare", "trainer") if rep % 2 == 0 else ("trainer", "bare")
            for side in order:
                if side == "bare":
                    rate = bare_loop(template, scheduler.alphas_cumprod, data, args)
                else:
                    rate = with_trainer(template, scheduler, data, args)
                rates[side].append(rate)
                print(f"  {side:>7}: {rate:8.1f} images/s")
        bare, trainer = statistics.median(rates["bare"]), statistics.median(rates["trainer"])
        print(f"  median: bare {bare:.1f} images/s, trainer {trainer:.1f} images/s, ratio "
              f"{trainer / bare:.3f} (overhead {100 * (1 - trainer / bare):+.1f}%)")


if __name__ == "__main__":
    main()
