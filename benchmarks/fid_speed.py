"""FID speed: 10 000 MNIST-sized samples against cached reference statistics (``lenet-mnist``).

Computes the reference statistics of 10 000 real images once (into a temporary cache), then
times ``fid(generated, real)`` with a fresh metric, as a run's evaluation would see it: the
real side is a cache hit, the generated side goes through the extractor. Target: under 30 s on
a 2-core CPU; the exit status is 1 when it is missed.

    python benchmarks/fid_speed.py [--root DIR] [--n 10000] [--repeats 3]

Uses the real MNIST test/train digits when found ($DIFFCTL_DATA or --root), else random
images of the same shape (the time does not depend on the content).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from diffctl_metrics.configs import FIDConfig
from diffctl_metrics.fidelity import FID

TARGET_SECONDS = 30.0  # the target for 10k samples on a 2-core CPU


def images(root: Path | None, train: bool, n: int, seed: int) -> tuple[torch.Tensor, str]:
    if root is not None and (root / "MNIST" / "raw").is_dir():
        from torchvision.datasets import MNIST
        data = MNIST(str(root), train=train, download=False).data[:n]
        x = F.pad(data.unsqueeze(1).float() / 127.5 - 1.0, (2, 2, 2, 2), value=-1.0)
        return x, "MNIST " + ("train" if train else "test")
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 32, 32, generator=g) * 2 - 1, "random"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("DIFFCTL_DATA"))
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.root).expanduser() if args.root else None
    real, real_name = images(root, False, args.n, 0)
    generated, gen_name = images(root, True, args.n, 1)
    print(f"torch threads: {torch.get_num_threads()}; generated: {len(generated)} {gen_name}; "
          f"real: {len(real)} {real_name}")

    with tempfile.TemporaryDirectory() as cache:
        config = FIDConfig(feature_extractor="lenet-mnist", cache_dir=cache, device="cpu")
        start = time.perf_counter()
        FID(config).reference_stats(real)
        print(f"reference statistics (once, then cached): {time.perf_counter() - start:.2f} s")
        times = []
        for _ in range(args.repeats):
            metric = FID(config)
            start = time.perf_counter()
            value = metric(generated, real)["fid"]
            times.append(time.perf_counter() - start)
            assert metric.metadata["reference"] == "cache"
            print(f"fid = {value:.4f} in {times[-1]:.2f} s (reference: cache)")
    median = statistics.median(times)
    met = median < TARGET_SECONDS
    print(f"median {median:.2f} s for {args.n} samples ({args.n / median:.0f} images/s); "
          f"target < {TARGET_SECONDS:.0f} s: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
