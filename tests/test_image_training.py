"""Image denoisers train with every prediction type and through the bf16 / compile options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diffctl.registry import get_registry
from diffctl.runs import Run
from diffctl.runs.components import build
from diffctl.runs.config import apply_overrides, default_config_data, resolve
from diffctl.runs.evaluation import heldout_inputs, metric_values


def run_experiment(config, out, resume: bool = False, evaluate: bool = True) -> dict:
    """Train (or resume) a run through the library API, then its final evaluation."""
    run = Run.open(out) if resume else Run.create(config, out)
    summary = run.resume() if resume else run.train(evaluate_after=evaluate)
    return run.finalize() if evaluate else {"train": summary}


# the bundled digits (1797 images, 1x16x16) and a small UNet-mini: a few seconds per epoch
TINY_UNET = ["dataset.name=digits", "denoiser.name=unet-mini", "denoiser.base_channels=16",
             "denoiser.channel_mults=[1, 2]", "denoiser.time_dim=32", "train.batch_size=64",
             "train.lr=0.002", "train.checkpoint_every=10", "train.log_every=5",
             "sample.num_samples=40", "sample.num_steps=10", "eval.floor_draws=0",
             "eval.metrics=[mmd-rbf]", "eval.metric_options.test-loss.examples=200",
             "sampler.clip_denoised=1.0"]


def config(*extra: str):
    return resolve(apply_overrides(default_config_data(), [*TINY_UNET, *extra]))


@pytest.mark.slow
@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v"])
def test_unet_trains_with_each_prediction_type(tmp_path: Path, prediction: str) -> None:
    """Each objective lowers its own loss on real images; the held-out loss of the trained
    model is below the untrained model's (scored the same way), and samples are images."""
    out = tmp_path / prediction
    report = run_experiment(config(f"denoiser.prediction={prediction}", "train.epochs=3"), out)
    losses = json.loads((out / "losses.json").read_text())
    first = np.mean([v for _, v in losses[:2]])
    last = np.mean([v for _, v in losses[-3:]])
    assert last < 0.7 * first, (first, last)
    trained = report["eval"]["metrics"]["test-loss"]
    cfg = config(f"denoiser.prediction={prediction}")
    components = build(cfg)  # the same seeded initial weights, untrained
    untrained = metric_values(get_registry(), ["test-loss"], None, None,
                              cfg.eval.metric_options,
                              heldout_inputs(cfg, components, components.denoiser.eval()))
    assert trained < 0.7 * untrained["test-loss"], (trained, untrained)
    samples = np.load(out / "samples.npy")
    assert samples.shape == (40, 1, 16, 16) and np.isfinite(samples).all()
    assert np.abs(samples).max() <= 1.0 + 1e-6


def diffctl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "diffctl_cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("option", ["train.precision=bf16", "train.compile=true"])
def test_precision_and_compile_options_through_the_cli(tmp_path: Path, option: str) -> None:
    """``--set train.precision=bf16`` and ``--set train.compile=true`` on a DiT over images: the
    run completes, the option is in the resolved config, the loss is finite and the checkpoint
    holds the plain module's weights (no ``_orig_mod.`` prefix from torch.compile)."""
    from safetensors.torch import load_file

    args = [x for s in ["dataset.name=digits", "denoiser.name=dit-tiny", "train.epochs=1",
                        "train.batch_size=128", "sample.num_samples=20", "sample.num_steps=4",
                        "eval.floor_draws=0", "eval.metrics=[mmd-rbf]",
                        "eval.metric_options.test-loss.examples=100", option]
            for x in ("--set", s)]
    diffctl("run", *args, "--out", "r", "--no-plots", cwd=tmp_path)
    key, value = option.split("=")
    cfg = (tmp_path / "r" / "config.yaml").read_text()
    assert f"{key.split('.')[1]}: {value}" in cfg
    report = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert np.isfinite(report["eval"]["metrics"]["test-loss"])
    weights = load_file(str(tmp_path / "r" / "checkpoints" / "epoch-0001" / "model.safetensors"))
    assert weights and not any(k.startswith("_orig_mod.") for k in weights)
