"""The streaming data path: peak memory on a large image folder, and its speed against the
in-memory path on MNIST-sized data.

1. **Memory.** A synthetic ``image-folder`` (default 20,000 RGB PNGs at 256 x 256) trains a
   small DiT for ``--steps`` steps with ``dataset.streaming: true``, in a child process whose
   peak resident memory (``ru_maxrss`` of the process plus that of its DataLoader workers) is
   printed next to what the in-memory path would need for the split as float32. The
   issue's target is under 4 GB on the 2-core CPU.
2. **Speed.** For each of ``--mnist-models`` (default: unet-mini, the default image
   denoiser, and dit-tiny, fast enough for decoding to show), the trainer on a synthetic
   folder of MNIST-sized greyscale images (32 x 32), once from memory and once streamed,
   alternating over ``--repeats`` repetitions; the medians give images/s of both and the ratio
   streaming / in-memory (target >= 0.9).

The folders are generated once and cached under ``$TMPDIR/diffctl-bench-streaming/`` (one
folder per count, size and channels; delete it to regenerate). Writing 20,000 PNGs at 256 x 256
takes about 2 minutes on one core (about 6 ms each, 1.4 GB on disk).

    python benchmarks/streaming.py                      # the issue's sizes
    python benchmarks/streaming.py --quick              # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from step_timer import StepTimer, Stop

import diffctl
from diffctl.training.config import TrainConfig
from diffctl.training.streaming import StreamingData
from diffctl.training.trainer import Trainer

CACHE = Path(tempfile.gettempdir()) / "diffctl-bench-streaming"


def synthetic_folder(n: int, size: int, channels: int) -> Path:
    """``n`` smooth random PNGs (bicubic upsampling of 8 x 8 noise), cached by parameters."""
    from PIL import Image

    folder = CACHE / f"n{n}-s{size}-c{channels}-v1"
    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    shape = (8, 8) if channels == 1 else (8, 8, 3)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8))
        small.resize((size, size), Image.Resampling.BICUBIC).save(
            folder / f"{i:06d}.png", compress_level=1)
    (folder / ".complete").write_text(f"{n} images in {time.perf_counter() - started:.0f} s\n")
    return folder


def dit(size: int, channels: int, patch: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return diffctl.create("denoiser", "dit", image_size=size, in_channels=channels,
                          patch_size=patch, hidden=64, depth=2, heads=4, kv_heads=2)


def train_config(batch: int, steps_per_epoch: int, steps: int, workers: int) -> TrainConfig:
    return TrainConfig(epochs=max(1, -(-steps // steps_per_epoch)), batch_size=batch,
                       lr=1e-4, ema_decay=0.999, device="cpu", log_every=10**9,
                       checkpoint_every=10**6, num_workers=workers)


def measure_memory(args: argparse.Namespace) -> dict:
    """In this (child) process: train through the streaming path, return peak memory."""
    ds = diffctl.create("dataset", "image-folder", path=args.folder, image_size=args.size,
                        channels=3, test_fraction=0.01, streaming=True)
    data = StreamingData(ds.stream_source(), num_workers=args.workers)
    steps_per_epoch = len(ds) // args.batch
    cfg = train_config(args.batch, steps_per_epoch, args.steps, args.workers)
    timer = StepTimer(1, args.steps, stop=True)
    trainer = Trainer(dit(args.size, 3, args.patch), diffctl.create("scheduler", "linear"),
                      data, cfg, seed=0, on_step=timer)
    with contextlib.suppress(Stop):
        trainer.fit()
    data.close()  # the workers exit, so their peak reaches RUSAGE_CHILDREN
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    timed = args.steps - 1
    return {"train_images": len(ds), "steps": args.steps, "peak_self": own,
            "peak_children": children,
            "images_per_second": timed * args.batch / timer.seconds}


def throughput(model: str, data, batch: int, steps: int, warmup: int, workers: int) -> float:
    """Images/s of the timed steps of ``Trainer.fit`` on ``data`` (tensor or streamed)."""
    last = warmup + steps
    timer = StepTimer(warmup, last, stop=True)
    cfg = train_config(batch, len(data) // batch, last, workers)
    torch.manual_seed(0)
    denoiser = diffctl.create("denoiser", model, image_size=32, in_channels=1)
    trainer = Trainer(denoiser, diffctl.create("scheduler", "linear"), data, cfg, seed=0,
                      on_step=timer)
    try:
        trainer.fit()
    except Stop:
        pass
    finally:
        if isinstance(data, StreamingData):
            data.close()
    return steps * batch / timer.seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes (a smoke test)")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--mnist-images", type=int, default=6_000)
    parser.add_argument("--mnist-models", nargs="+", default=["unet-mini", "dit-tiny"])
    parser.add_argument("--mnist-steps", type=int, default=10)
    parser.add_argument("--mnist-batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--measure-memory", dest="folder", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.folder:  # the child of part 1
        print(json.dumps(measure_memory(args)))
        return
    if args.quick:
        args.images, args.size, args.patch, args.steps, args.batch = 96, 64, 16, 6, 8
        args.mnist_images, args.mnist_steps, args.mnist_batch = 256, 3, 16
        args.mnist_models = ["dit-tiny"]
        args.warmup, args.repeats = 1, 1

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} "
          f"threads, {args.workers} loader worker(s)")
    folder = synthetic_folder(args.images, args.size, 3)
    child = [sys.executable, __file__, "--measure-memory", str(folder), "--size",
             str(args.size), "--patch", str(args.patch), "--steps", str(args.steps),
             "--batch", str(args.batch), "--workers", str(args.workers)]
    if args.threads:
        child += ["--threads", str(args.threads)]
    proc = subprocess.run(child, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"memory measurement failed:\n{proc.stderr[-3000:]}")
    mem = json.loads(proc.stdout.strip().splitlines()[-1])
    in_memory = mem["train_images"] * 3 * args.size ** 2 * 4
    gib = 1024 ** 3
    print(f"\n1. streaming {mem['train_images']} images of 3x{args.size}x{args.size}, "
          f"{mem['steps']} steps of {args.batch}: {mem['images_per_second']:.1f} images/s")
    total = mem["peak_self"] + mem["peak_children"]
    print(f"   peak resident memory: trainer {mem['peak_self'] / gib:.2f} GiB + largest worker "
          f"{mem['peak_children'] / gib:.2f} GiB = {total / gib:.2f} GiB (an upper bound: "
          "pages a forked worker shares with the trainer count twice; target < 4 GB)")
    print(f"   the same split as float32 in memory would need {in_memory / gib:.2f} GiB")

    mnist = synthetic_folder(args.mnist_images, 32, 1)
    memory_data = diffctl.create("dataset", "image-folder", path=str(mnist), image_size=32,
                                 channels=1, test_fraction=0.01, streaming=False).train_tensor()
    source = diffctl.create("dataset", "image-folder", path=str(mnist), image_size=32,
                            channels=1, test_fraction=0.01, streaming=True).stream_source()
    print(f"\n2. MNIST-sized (1x32x32, {len(source)} images, batch {args.mnist_batch}, "
          f"{args.mnist_steps} timed steps, median of {args.repeats}):")
    for model in args.mnist_models:
        rates: dict[str, list[float]] = {"in-memory": [], "streaming": []}
        for rep in range(args.repeats):
            sides = ["in-memory", "streaming"] if rep % 2 == 0 else ["streaming", "in-memory"]
            for side in sides:
                data = memory_data if side == "in-memory" else \
                    StreamingData(source, num_workers=args.workers)
                rates[side].append(throughput(model, data, args.mnist_batch, args.mnist_steps,
                                              args.warmup, args.workers))
        mem_rate, stream_rate = (statistics.median(rates[k]) for k in ("in-memory", "streaming"))
        print(f"   {model:10s} in-memory {mem_rate:8.1f} images/s   streaming "
              f"{stream_rate:8.1f} images/s   ratio streaming / in-memory: "
              f"{stream_rate / mem_rate:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
