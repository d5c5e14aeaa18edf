"""Leaving the run directory: PNG folders and single-file models (issue 16 items 3 and 4)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import diffctl
from diffctl.runs import Run, compose
from diffctl.runs.export import read_pngs, write_pngs
from diffctl_cli.app import main

TINY = ["train.epochs=1", "sample.num_samples=60", "sample.num_steps=4", "eval.floor_draws=0",
        "eval.metrics=[fid]", "eval.metric_options={fid: {feature_extractor: lenet-mnist, "
        "cache: false}}", "sample.progression_samples=0"]


def cli(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "run"
    run = Run.create(compose(denoiser="unet-mini", overrides=[*TINY, "denoiser.num_classes=10"]),
                     out)
    run.train()
    run.finalize()
    return out


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    images = torch.rand(5, 1, 8, 8) * 2 - 1
    paths = write_pngs(images, tmp_path / "p", torch.tensor([3, 1, 4, 1, 5]))
    assert [p.name for p in paths] == [f"00000{i}.png" for i in range(5)]
    back = read_pngs(tmp_path / "p", (1, 8, 8))
    quantized = ((images + 1) * 127.5).round() / 127.5 - 1
    assert torch.allclose(back, quantized, atol=1e-6)
    rows = list(csv.reader((tmp_path / "p" / "labels.csv").read_text().splitlines()))
    assert rows[0] == ["file", "label"] and rows[1] == ["000000.png", "3"]
    with pytest.raises(diffctl.errors.UsageError, match="already holds PNG"):
        write_pngs(images, tmp_path / "p")
    with pytest.raises(diffctl.errors.UsageError, match="is 8x8"):
        read_pngs(tmp_path / "p", (1, 16, 16))


def test_png_folder_scores_like_the_in_process_evaluation(digits_run: Path, tmp_path: Path,
                                                          capsys) -> None:
    """``sample --png-dir`` with the run's own seed, sampler and steps writes the final
    evaluation's samples; ``eval --generated`` on them gives the same FID."""
    pngs = tmp_path / "pngs"
    assert cli("sample", "--run", str(digits_run), "--png-dir", str(pngs), "--no-metrics") == 0
    assert len(list(pngs.glob("*.png"))) == 60
    lines = (pngs / "labels.csv").read_text().splitlines()
    labels = [int(r[1]) for r in list(csv.reader(lines))[1:]]
    assert labels == [i % 10 for i in range(60)]
    capsys.readouterr()
    assert cli("eval", "--run", str(digits_run), "--generated", str(pngs), "--no-floors") == 0
    shown = capsys.readouterr().out
    report = json.loads((digits_run / "metrics.json").read_text())
    run = Run.open(digits_run)
    scored = run.evaluate_images(pngs, floors=False)["metrics"]["fid"]
    assert scored == pytest.approx(report["eval"]["metrics"]["fid"], rel=1e-9)
    assert f"{scored:.4g}" in shown


def test_exported_model_samples_what_its_run_samples(digits_run: Path, tmp_path: Path) -> None:
    model_file = tmp_path / "model.safetensors"
    assert cli("export", str(digits_run), "--out", str(model_file), "--checkpoint", "last") == 0
    model = diffctl.load_model(str(model_file))
    assert model.metadata["weights"] == "ema" and model.metadata["checkpoint"] == "epoch-0001"
    exported = model.sample(12, steps=4, seed=3)
    from_run = Run.open(digits_run).sample(num_samples=12, steps=4, seed=3, metrics=False,
                                           save=False)
    assert torch.equal(exported, from_run.samples)
    out = tmp_path / "s"
    assert cli("sample", "--model", str(model_file), "--num-samples", "12", "--steps", "4",
               "--seed", "3", "--out", str(out)) == 0
    (saved,) = out.glob("*.npy")
    assert np.array_equal(np.load(saved), exported.numpy())
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(diffctl.errors.UsageError, match="not a readable safetensors"):
        diffctl.load_model(str(bad))
