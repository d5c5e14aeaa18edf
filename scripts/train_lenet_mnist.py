"""Train the ``lenet-mnist`` feature extractor shipped with diffctl-metrics.

    python scripts/train_lenet_mnist.py --root /path/containing/MNIST   # or set DIFFCTL_DATA

Reads the MNIST IDX files (torchvision layout, ``<root>/MNIST/raw/``; never downloads), pads
the 28x28 digits to 32x32 with background and scales them to [-1, 1] exactly like diffctl's
``mnist`` dataset, trains :class:`diffctl_metrics.feature_extractors.lenet.LeNet` with Adam and
writes ``packages/metrics/src/diffctl_metrics/weights/lenet-mnist.safetensors`` with the test
accuracy and the training settings in the safetensors metadata.

Reproducible: every random choice (initialisation, shuffling, dropout) comes from ``--seed``;
deterministic algorithms are enforced and the thread count is fixed (``--threads``), so the
same command on the same machine and torch version writes the same file, byte for byte (the
safetensors header is written with sorted keys). About 4-5 minutes on an idle 2-core CPU
(4 epochs of ~65 s); much longer when the cores are shared. ``--max-train``, ``--max-test``,
``--epochs 1`` and ``--min-accuracy 0`` make a quick smoke run (the reproducibility test in
``tests/test_metrics_images.py`` does that twice and compares the files' sha256).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from diffctl_metrics.feature_extractors.lenet import LeNet

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "packages/metrics/src/diffctl_metrics/weights/lenet-mnist.safetensors"


def load_split(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, 32, 32) float images in [-1, 1] (28x28 padded by 2 with -1) and int64 labels."""
    from torchvision.datasets import MNIST
    try:
        ds = MNIST(str(root), train=train, download=False)
    except RuntimeError as exc:
        sys.exit(f"MNIST not found under {root}/MNIST/raw ({exc}); pass --root or set "
                 "DIFFCTL_DATA")
    x = ds.data.unsqueeze(1).float() / 127.5 - 1.0
    return F.pad(x, (2, 2, 2, 2), value=-1.0), ds.targets.long()


def canonical_safetensors(raw: bytes) -> bytes:
    """The same safetensors file with its JSON header written with sorted keys.

    safetensors stores the metadata in a hash map, so its key order (and with it the file's
    sha256, which diffctl's metric cache keys and reports use) changes from process to
    process. Tensor offsets are relative to the end of the header and do not change; the
    header is padded with spaces to a multiple of 8 bytes, as the format allows.
    """
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + size:]


@torch.no_grad()
def accuracy(net: LeNet, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    net.eval()
    correct = sum(int((net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
                  for i in range(0, len(x), batch))
    return correct / len(x)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=os.environ.get("DIFFCTL_DATA") or "data",
                        help="folder containing MNIST/raw (default: $DIFFCTL_DATA, else ./data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="safetensors to write")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (epoch 1)")
    parser.add_argument("--lr-decay", type=float, default=0.5,
                        help="learning rate factor applied after every epoch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (fixed for "
                        "bit-reproducibility)")
    parser.add_argument("--max-train", type=int, default=None,
                        help="train on the first N training digits only (smoke tests)")
    parser.add_argument("--max-test", type=int, default=None,
                        help="measure accuracy on the first N test digits only (smoke tests)")
    parser.add_argument("--min-accuracy", type=float, default=0.99,
                        help="exit with status 1 (and write nothing) below this test accuracy")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    root = Path(args.root).expanduser()
    x_train, y_train = load_split(root, train=True)
    x_test, y_test = load_split(root, train=False)
    if args.max_train is not None:
        x_train, y_train = x_train[:args.max_train], y_train[:args.max_train]
    if args.max_test is not None:
        x_test, y_test = x_test[:args.max_test], y_test[:args.max_test]

    net = LeNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=args.lr_decay)
    shuffle = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        net.train()
        order = torch.randperm(len(x_train), generator=shuffle)
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        scheduler.step()
        print(f"epoch {epoch}/{args.epochs}: train loss {total / len(order):.4f}, test accuracy "
              f"{accuracy(net, x_test, y_test):.4f} ({time.perf_counter() - start:.0f} s)",
              flush=True)
    seconds = time.perf_counter() - start
    test_acc = accuracy(net, x_test, y_test)
    train_acc = accuracy(net, x_train, y_train)
    print(f"test accuracy {test_acc:.4f} (train {train_acc:.4f}), {seconds:.0f} s training")
    if test_acc < args.min_accuracy:
        print(f"test accuracy below {args.min_accuracy}: nothing written", file=sys.stderr)
        return 1

    from safetensors.torch import save
    # max_test only when set: the default command still writes the shipped file's metadata
    settings = {k: v for k, v in vars(args).items()
                if k not in ("root", "out", "min_accuracy")
                and not (k == "max_test" and v is None)}
    metadata = {
        "format": "diffctl lenet-mnist v1",
        "test_accuracy": f"{test_acc:.4f}",
        "train_accuracy": f"{train_acc:.4f}",
        "config": json.dumps(settings, sort_keys=True),
        "torch_version": torch.__version__,
        "command": "python scripts/train_lenet_mnist.py",
        "data": "MNIST IDX (60000 train / 10000 test), 28x28 padded to 32x32, [-1, 1]",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    raw = save({k: v.contiguous() for k, v in net.state_dict().items()}, metadata)
    tmp.write_bytes(canonical_safetensors(raw))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
