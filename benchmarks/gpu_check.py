"""The GPU check: one script, one table, about 8 minutes on one GPU.

1. DiT training throughput (images/s) and peak GPU memory per precision (fp32, bf16, fp16,
   bf16 + torch.compile), with the fraction of the matmul peak reached
   (``hardware_fraction.py``'s method: counted FLOPs per step over the step time, against a
   large ``torch.mm`` in the same dtype, measured in this run);
2. a short DDPM run on MNIST (``$DIFFCTL_DATA``; the bundled digits when MNIST is absent)
   through ``diffctl run``, with its LeNet FID next to the real-vs-real floor;
3. a 2-process DDP smoke run under ``torchrun`` when the machine has 2 GPUs or more.

    python benchmarks/gpu_check.py                 # on a GPU machine; prints the table
    python benchmarks/gpu_check.py --quick         # tiny sizes, CPU allowed (the test suite)

The printed table (with the date, GPU, torch version and this command) is what the README's
GPU section may quote; nothing else is.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import diffctl
from diffctl.training.config import TrainConfig
from diffctl.training.trainer import Trainer, pick_device

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from hardware_fraction import DTYPES, matmul_peak, step_flops  # noqa: E402
from step_timer import StepTimer  # noqa: E402

VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "fp16": ("fp16", False),
            "bf16+compile": ("bf16", True)}


def supported_precisions() -> set[str]:
    """The precisions this version's TrainConfig accepts (fp16 arrives with its grad scaler)."""
    return set(TrainConfig.model_fields["precision"].annotation.__args__)


def throughput(args, model_name: str, variant: str) -> dict:
    precision, compiled = VARIANTS[variant]
    device = pick_device(args.device)
    torch.manual_seed(0)
    model = diffctl.create("denoiser", model_name, in_channels=3, image_size=32)
    n = (args.warmup + args.steps) * args.batch
    data = torch.rand(n, 3, 32, 32) * 2 - 1
    config = TrainConfig(epochs=1, batch_size=args.batch, lr=1e-4, device=args.device,
                         precision=precision, compile=compiled, log_every=10**9)
    timer = StepTimer(args.warmup, args.warmup + args.steps, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    Trainer(model, diffctl.create("scheduler", "linear"), data, config, seed=0,
            on_step=timer).fit()
    seconds = timer.seconds / args.steps
    peak_memory = torch.cuda.max_memory_allocated(device) / 2**30 \
        if device.type == "cuda" else float("nan")

    class Shape:  # what step_flops reads
        batch, channels, image_size = args.batch, 3, 32

    flops = step_flops(Shape, model_name, device, precision)
    peak = matmul_peak(device, DTYPES[precision], args.matmul_size, repeats=3)
    return {"model": model_name, "variant": variant, "images_per_s": args.batch / seconds,
            "peak_memory_gib": peak_memory, "fraction_of_peak": flops / seconds / peak}


def mnist_fid(args, workdir: Path) -> dict:
    """A short class-free DDPM run on MNIST (digits without MNIST): its FID and floor."""
    root = os.environ.get("DIFFCTL_DATA", "")
    has_mnist = bool(root) and (Path(root) / "MNIST").is_dir()
    dataset = ["--dataset", "mnist"] if has_mnist else ["--denoiser", "unet-mini"]
    sets = ["eval.metrics=[fid]", "eval.metric_options={fid: {feature_extractor: lenet-mnist}}",
            f"train.epochs={args.mnist_epochs}", f"sample.num_samples={args.mnist_samples}",
            f"train.device={args.device}", "train.precision=bf16"
            if pick_device(args.device).type == "cuda" else "train.precision=fp32"]
    cmd = [sys.executable, "-m", "diffctl_cli", "run", *dataset, "--out",
           str(workdir / "mnist"), "--no-plots", *[x for s in sets for x in ("--set", s)]]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    report = json.loads((workdir / "mnist" / "metrics.json").read_text())
    ev = report["eval"]
    return {"data": "mnist" if has_mnist else "digits", "fid": ev["metrics"]["fid"],
            "floor_mean": ev["floors"].get("fid", {}).get("mean"),
            "samples": ev["num_samples"], "seconds": time.perf_counter() - started}


def ddp_smoke(args, workdir: Path) -> str:
    if torch.cuda.device_count() < 2:
        return "skipped (fewer than 2 GPUs)"
    cmd = ["torchrun", "--nproc_per_node", "2", "-m", "diffctl_cli", "train", "--denoiser",
           "unet-mini", "--set", "train.epochs=1", "--set", "train.device=cuda", "--out",
           str(workdir / "ddp")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    return "ok" if proc.returncode == 0 else f"failed: {proc.stderr.strip()[-200:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--models", nargs="+", default=["dit-s", "dit-b"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--mnist-epochs", type=int, default=3)
    parser.add_argument("--mnist-samples", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.models, args.batch, args.steps, args.warmup = ["dit-tiny"], 4, 2, 1
        args.matmul_size, args.mnist_epochs, args.mnist_samples = 256, 1, 50
    device = pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"diffctl GPU check, {datetime.date.today()}, {name}, torch {torch.__version__}, "
          f"command: python benchmarks/gpu_check.py {' '.join(sys.argv[1:])}".rstrip())
    variants = [v for v, (p, _) in VARIANTS.items() if p in supported_precisions()]
    if device.type != "cuda":
        variants = [v for v in variants if not v.endswith("compile") and v != "fp16"]
    print(f"{'model':<10} {'variant':<14} {'images/s':>10} {'peak GiB':>9} "
          f"{'fraction of peak':>17}")
    for model_name in args.models:
        base = None
        for variant in variants:
            row = throughput(args, model_name, variant)
            base = base or row["images_per_s"]
            print(f"{model_name:<10} {variant:<14} {row['images_per_s']:>10.1f} "
                  f"{row['peak_memory_gib']:>9.2f} {row['fraction_of_peak']:>17.3f}  "
                  f"(x{row['images_per_s'] / base:.2f} vs {variants[0]})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        fid = mnist_fid(args, Path(tmp))
        print(f"{fid['data']} run: {args.mnist_epochs} epochs, FID (lenet-mnist, "
              f"{fid['samples']} samples) {fid['fid']:.2f}, floor mean "
              f"{fid['floor_mean'] or float('nan'):.2f}, {fid['seconds']:.0f} s")
        print(f"DDP 2 processes: {ddp_smoke(args, Path(tmp))}")


if __name__ == "__main__":
    main()
