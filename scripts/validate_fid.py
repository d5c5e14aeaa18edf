"""Validate FID with the ``lenet-mnist`` extractor on real MNIST, at full size.

    python scripts/validate_fid.py --root /path/containing/MNIST   # or set DIFFCTL_DATA

Prints, with the 10 000 MNIST test digits as the real reference (statistics cached):

- FID(train vs test): N train digits against the test set - small (the floor of FID at N);
- FID(noise vs test): N Gaussian-noise images (N(0, 1) clipped to [-1, 1]) - large;
- FID as fractions 0, 0.25, 0.5, 0.75, 1 of the noise images are replaced by train digits -
  it must decrease monotonically;
- torch-fidelity's Fréchet distance against an independent numpy/scipy computation
  (float64 moments, ``scipy.linalg.sqrtm``) on the same features;
- the classifier's test accuracy and the Inception Score of the test digits.

Exits with status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from diffctl_metrics.configs import FIDConfig, ISCConfig
from diffctl_metrics.feature_extractors.lenet import load_lenet, shipped_weights
from diffctl_metrics.fidelity import FID, ISC, extract_features


def load_split(root: Path, train: bool, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` digits of a split as (n, 1, 32, 32) in [-1, 1] (padded like the
    ``mnist`` dataset) and their labels."""
    from torchvision.datasets import MNIST
    try:
        ds = MNIST(str(root), train=train, download=False)
    except RuntimeError as exc:
        sys.exit(f"MNIST not found under {root}/MNIST/raw ({exc}); pass --root or set "
                 "DIFFCTL_DATA")
    x = ds.data[:n].unsqueeze(1).float() / 127.5 - 1.0
    return F.pad(x, (2, 2, 2, 2), value=-1.0), ds.targets[:n]


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of Gaussian fits computed independently of torch-fidelity."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # lenet-mnist has dead ReLU units: singular covariances
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_a @ s_b)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean).real)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=os.environ.get("DIFFCTL_DATA") or "data",
                        help="folder containing MNIST/raw (default: $DIFFCTL_DATA, else ./data)")
    parser.add_argument("--n", type=int, default=10000, help="images per side (max 10000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root, n = Path(args.root).expanduser(), min(args.n, 10000)

    test, labels = load_split(root, train=False, n=10000)
    train, _ = load_split(root, train=True, n=n)
    gen = torch.Generator().manual_seed(args.seed)
    noise = torch.randn(n, 1, 32, 32, generator=gen).clamp(-1, 1)
    fid = FID(FIDConfig(feature_extractor="lenet-mnist"))
    ok = True

    start = time.perf_counter()
    real_real = fid(train, test)["fid"]
    meta = fid.metadata
    print(f"extractor {meta['feature_extractor']} layer {meta['feature_layer']} weights "
          f"sha256 {meta['weights_sha256'][:16]}... resize: {meta['resize']}")
    print(f"reference: MNIST test ({meta['num_real']} images), {meta['reference']}")
    noise_real = fid(noise, test)["fid"]
    print(f"FID(train {n} vs test)  = {real_real:10.4f}")
    print(f"FID(noise {n} vs test)  = {noise_real:10.4f}")
    ok &= noise_real > 100 * real_real

    perm = torch.randperm(n, generator=gen)
    values = []
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        mixed = noise.clone()
        k = round(fraction * n)
        mixed[perm[:k]] = train[perm[:k]]
        values.append(fid(mixed, test)["fid"])
        print(f"FID(real fraction {fraction:4.2f})  = {values[-1]:10.4f}")
    monotone = all(a > b for a, b in itertools.pairwise(values))
    print(f"monotone decreasing: {monotone}")
    ok &= monotone

    feats_a = extract_features(fid.extractor, train)["128"]
    feats_b = extract_features(fid.extractor, test)["128"]
    independent = scipy_fid(feats_a.numpy(), feats_b.numpy())
    rel = abs(independent - real_real) / abs(independent)
    print(f"scipy sqrtm FID(train vs test) = {independent:.6f} (relative difference "
          f"{rel:.2e} from torch-fidelity)")
    ok &= rel < 1e-4

    net, weights_meta = load_lenet(shipped_weights())
    with torch.no_grad():
        accuracy = float((net(test).argmax(1) == labels).float().mean())
    isc = ISC(ISCConfig(feature_extractor="lenet-mnist"))(test)
    print(f"lenet-mnist test accuracy {accuracy:.4f} (metadata: "
          f"{weights_meta.get('test_accuracy')}); IS(test) = {isc['isc']:.4f} "
          f"+- {isc['isc_std']:.4f}")
    ok &= accuracy >= 0.99
    print(f"{'all checks passed' if ok else 'CHECK FAILED'} ({time.perf_counter() - start:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
