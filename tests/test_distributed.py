"""Data-parallel training under torchrun (gloo on the CPU): same result as one process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

#: Shared by the torchrun script and the one-process reference: trains the mlp on 300 points;
#: ``variant`` picks float64 with gradient accumulation and, optionally, the streaming path.
COMMON = textwrap.dedent('''
    import torch, diffctl
    from diffctl.training.config import TrainConfig
    from diffctl.training.streaming import StreamingData
    from diffctl.training.trainer import Trainer

    class Rows:
        """An item source over a tensor (the streaming path without image files)."""

        def __init__(self, data):
            self.data = data

        def __len__(self):
            return len(self.data)

        def load(self, index):
            return self.data[index]

    def train(variant="plain", accum=1, checkpoint_dir=None):
        torch.manual_seed(0)
        data = torch.randn(300, 2)
        model = diffctl.create("denoiser", "mlp", hidden=32)
        if variant != "plain":
            data, model = data.double(), model.double()
        sched = diffctl.create("scheduler", "linear", num_train_timesteps=100)
        cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-3, checkpoint_every=1, device="cpu",
                          ema_decay=None, grad_clip=None, grad_accum_steps=accum)
        if variant == "streaming":
            data = StreamingData(Rows(data), num_workers=0)
        trainer = Trainer(model, sched, data, cfg, seed=3, checkpoint_dir=checkpoint_dir)
        trainer.fit()
        return trainer
''')

SCRIPT = COMMON + textwrap.dedent('''
    import sys
    from pathlib import Path
    from safetensors.torch import save_file

    out = Path(sys.argv[1])
    runs = {"plain": train(checkpoint_dir=out / "ck"),
            # 2 ranks x 2 micro-batches x 16 examples = the batch of 64
            "accum": train("accum", accum=2), "streaming": train("streaming", accum=2)}
    for name, trainer in runs.items():
        save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()},
                  str(out / f"{name}-{trainer.dist.rank}.safetensors"))
''')


def single_process_weights(variant: str = "plain") -> dict[str, torch.Tensor]:
    namespace: dict = {}
    exec(COMMON, namespace)
    return namespace["train"](variant).model.state_dict()


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", str(script), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ranks = [load_file(tmp_path / f"plain-{r}.safetensors") for r in (0, 1)]
    reference = single_process_weights()
    for name, value in reference.items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)
        # same batches, timesteps and noise; only the gradient's summation order differs
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-4, atol=1e-5)
    # float64, 2 ranks x 2 micro-batches (in memory and streamed, each rank reading only its
    # share) against one process taking the batch of 64 whole
    reference = single_process_weights("accum")
    for variant in ("accum", "streaming"):
        ranks = [load_file(tmp_path / f"{variant}-{r}.safetensors") for r in (0, 1)]
        for name, value in reference.items():
            torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0)
            torch.testing.assert_close(ranks[0][name], value, rtol=1e-10, atol=1e-12,
                                       msg=f"{variant}: {name}")
    # rank 0 alone wrote the checkpoints (no evaluation here, hence no "best")
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "epoch-0001", "epoch-0002", "last"]


@pytest.mark.slow
def test_diffctl_run_under_torchrun(tmp_path: Path) -> None:
    """`torchrun -m diffctl_cli run --out DIR`: one run directory, written by rank 0."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    small = ["dataset.n=1000", "denoiser.name=mlp", "train.epochs=2", "train.batch_size=128",
             "train.checkpoint_every=1", "sample.num_samples=200", "sample.num_steps=5",
             "eval.floor_draws=5", "sample.progression_samples=20"]
    args = [a for s in small for a in ("--set", s)]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "diffctl_cli", "run", "--out",
                           str(tmp_path / "run"), "--no-plots", *args],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = tmp_path / "run"
    assert (run / "metrics.json").exists() and (run / "config.yaml").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    assert proc.stdout.count("moons-overall") == 1  # one report, from rank 0
