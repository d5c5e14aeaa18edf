"""How close training comes to the machine's peak: model FLOP/s over the measured matmul peak.

For each model and precision, in one process run:

1. the FLOPs of one training step (forward, loss, backward) are counted by
   ``torch.utils.flop_counter.FlopCounterMode`` on one batch;
2. the step time is measured with diffctl's ``Trainer`` (the code ``diffctl run`` uses), over
   ``--steps`` steps after ``--warmup`` untimed ones (the warm-up absorbs compilation);
3. the peak is a large ``torch.mm`` in the same dtype on the same device, timed right before;

and prints achieved TFLOP/s, the peak and their ratio (the fraction of peak, often called
MFU). FlopCounterMode counts matrix multiplications and convolutions (2 FLOPs per
multiply-add), not elementwise work, so the fraction is a lower bound of the busy time.

    python benchmarks/hardware_fraction.py --models unet-mini dit-s                 # CPU
    python benchmarks/hardware_fraction.py --device cuda --models dit-s dit-b \\
        --variants fp32 bf16 bf16+compile --batch 128
    python benchmarks/hardware_fraction.py --quick                                   # smoke test
"""

from __future__ import annotations

import argparse
import time

import torch
from step_timer import StepTimer

import diffctl
from diffctl.training.config import TrainConfig
from diffctl.training.objective import diffusion_loss
from diffctl.training.trainer import Trainer, pick_device

VARIANTS = {  # name: (precision, compile)
    "fp32": ("fp32", False),
    "bf16": ("bf16", False),
    "fp16": ("fp16", False),
    "bf16+compile": ("bf16", True),
    "fp32+compile": ("fp32", True),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """FLOP/s of an n x n by n x n ``torch.mm`` (2 n³ FLOPs), best of ``repeats``."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def make_model(args: argparse.Namespace, name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return diffctl.create("denoiser", name, in_channels=args.channels,
                          image_size=args.image_size)


def step_flops(args: argparse.Namespace, name: str, device: torch.device,
               precision: str) -> float:
    """FLOPs of one training step (forward + backward) on one batch."""
    from torch.utils.flop_counter import FlopCounterMode

    model = make_model(args, name).to(device)
    scheduler = diffctl.create("scheduler", "linear")
    x0 = torch.randn(args.batch, args.channels, args.image_size, args.image_size,
                     device=device)
    t = torch.randint(0, scheduler.num_train_timesteps, (args.batch,), device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(device.type, dtype=DTYPES.get(precision, torch.float32),
                                 enabled=precision != "fp32"):
        loss = diffusion_loss(model, scheduler, x0, t, torch.randn_like(x0))
        loss.backward()
    return float(counter.get_total_flops())


def step_seconds(args: argparse.Namespace, name: str, precision: str,
                 compiled: bool) -> float:
    """Seconds per training step of diffctl's Trainer, after the warm-up."""
    device = pick_device(args.device)
    model = make_model(args, name)
    n = (args.warmup + args.steps) * args.batch
    data = torch.rand(n, args.channels, args.image_size, args.image_size) * 2 - 1
    config = TrainConfig(epochs=1, batch_size=args.batch, lr=2e-4, device=args.device,
                         precision=precision, compile=compiled, log_every=10**9)
    timer = StepTimer(args.warmup, args.warmup + args.steps, device)
    Trainer(model, diffctl.create("scheduler", "linear"), data, config, seed=0,
            on_step=timer).fit()
    return timer.seconds / args.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["unet-mini", "dit-s"])
    parser.add_argument("--variants", nargs="+", default=["fp32"], choices=list(VARIANTS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--matmul-size", type=int, default=None,
                        help="side of the peak matmul (default 2048 on CPU, 8192 on GPU)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes: checks the script runs (the test suite uses it)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.batch, args.steps, args.warmup = ["dit-tiny"], 4, 2, 1
        args.image_size, args.matmul_size = 16, 256
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    size = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"batch {args.batch}, {args.channels}x{args.image_size}x{args.image_size}, "
          f"{args.steps} timed steps after {args.warmup}")
    print(f"{'model':<12} {'variant':<14} {'GFLOP/step':>11} {'s/step':>8} {'TFLOP/s':>8} "
          f"{'peak TFLOP/s':>13} {'fraction':>9}")
    for name in args.models:
        for variant in args.variants:
            precision, compiled = VARIANTS[variant]
            peak = matmul_peak(device, DTYPES[precision], size, repeats=3)
            flops = step_flops(args, name, device, precision)
            seconds = step_seconds(args, name, precision, compiled)
            achieved = flops / seconds
            print(f"{name:<12} {variant:<14} {flops / 1e9:>11.2f} {seconds:>8.3f} "
                  f"{achieved / 1e12:>8.3f} {peak / 1e12:>13.3f} {achieved / peak:>9.3f}",
                  flush=True)


if __name__ == "__main__":
    main()
