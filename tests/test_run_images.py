"""Image runs end to end on the bundled 8x8 digits (upsampled to 16x16): no download needed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from diffctl.runs import Run
from diffctl.runs.config import apply_overrides, default_config_data, resolve


def run_experiment(config, out, resume: bool = False, evaluate: bool = True) -> dict:
    """Train (or resume) a run through the library API, then its final evaluation."""
    run = Run.open(out) if resume else Run.create(config, out)
    summary = run.resume() if resume else run.train(evaluate_after=evaluate)
    return run.finalize() if evaluate else {"train": summary}


# a UNet small enough for a unit test: 8/16 channels, two levels (16 -> 8 -> 4)
TINY = ["dataset.name=digits", "denoiser.name=unet-mini", "denoiser.base_channels=8",
        "denoiser.channel_mults=[1, 2]", "denoiser.time_dim=32", "train.epochs=2",
        "train.batch_size=128", "train.checkpoint_every=1", "sample.num_samples=60",
        "sample.num_steps=5", "eval.floor_draws=0", "eval.metric_options.test-loss.examples=60",
        "eval.metric_options.test-loss.timesteps=2", "sampler.clip_denoised=1.0"]


def diffctl(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "diffctl_cli", *args]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def sets(*items: str) -> list[str]:
    return [a for item in items for a in ("--set", item)]


@pytest.mark.slow
def test_class_conditional_image_run_writes_grids_and_reconstruction(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = diffctl("run", "--out", str(out), *sets(
        *TINY, "denoiser.num_classes=10", "sampler.guidance_scale=2.0",
        "eval.metrics=[mmd-rbf, fid]", "eval.reconstruction_metrics=[psnr, ssim]",
        "eval.metric_options.fid.feature_extractor=lenet-mnist",
        "eval.reconstruction_examples=40"), cwd=tmp_path)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["denoiser"]["num_classes"] == 10 and cfg["denoiser"]["in_channels"] is None
    report = json.loads((out / "metrics.json").read_text())
    rec = report["eval"]["reconstruction"]
    assert rec["examples"] == 40 and rec["t"] == 200
    assert 0 < rec["metrics"]["psnr"] < 100 and -1 <= rec["metrics"]["ssim"] <= 1
    assert "psnr (x0 from t=200)" in proc.stdout
    # every image metric's report carries its metadata: extractor, weights, counts, resize
    fid = report["eval"]["metric_metadata"]["fid"]
    assert fid["feature_extractor"] == "lenet-mnist" and len(fid["weights_sha256"]) == 64
    assert fid["num_generated"] == 60 and fid["resize"] and fid["device"] == "cpu"
    assert rec["metric_metadata"]["psnr"]["num_generated"] == 40
    assert f"fid: lenet-mnist (weights sha256 {fid['weights_sha256'][:12]})" in proc.stdout
    samples = np.load(out / "samples.npy")
    assert samples.shape == (60, 1, 16, 16) and np.abs(samples).max() <= 1.0 + 1e-6
    traj = np.load(out / "trajectory.npz")
    # 5 steps: all 6 states (x_T .. x_0) of 10 samples; 10 evenly spaced ones for longer runs
    assert traj["xs"].shape == (6, 10, 1, 16, 16)
    assert traj["timesteps"][0] == 999 and traj["timesteps"][-1] == -1
    assert np.array_equal(traj["xs"][-1], samples[:10])  # the last state is the sample
    for name in ("samples.png", "progression.png", "real_vs_generated.png", "loss.png"):
        assert (out / name).stat().st_size > 0
    from PIL import Image

    # one row per class: 10 rows of 10 images of 16 px, 2 px gutters, upscaled 2x
    assert Image.open(out / "samples.png").size == (2 * (10 * 18 + 2), 2 * (10 * 18 + 2))

    # sampling commands: a class grid, the 10x10 progression, one label, inpainting
    proc = diffctl("sample", "--run", str(out), "--num-samples", "20", "--steps", "4",
                   "--grid", "--progressive", cwd=tmp_path)
    assert "grid:" in proc.stdout and "progression:" in proc.stdout
    last = sorted(p.name for p in (out / "checkpoints").glob("epoch-*"))[-1]
    stem = out / "samples" / f"{last}-ddim-4steps-20-seed0"
    assert Path(f"{stem}-progression.png").exists() and Path(f"{stem}.png").exists()
    proc = diffctl("sample", "--run", str(out), "--num-samples", "10", "--steps", "50",
                   "--progressive", cwd=tmp_path)
    assert "(10 samples x 10 states, x_T to x_0)" in proc.stdout
    # a 10 x 10 grid of 16 px images with 2 px gutters, upscaled 2x like samples.png
    assert Image.open(out / "samples" / f"{last}-ddim-50steps-10-seed0-progression.png"
                      ).size == (2 * (10 * 18 + 2),) * 2
    proc = diffctl("sample", "--run", str(out), "--num-samples", "10", "--steps", "4",
                   "--label", "3", "--grid", "--sampler", "heun", cwd=tmp_path)
    assert (out / "samples" / f"{last}-heun-4steps-10-seed0-label3.png").exists()
    proc = diffctl("sample", "--run", str(out), "--num-samples", "8", "--steps", "4",
                   "--inpaint", "left", cwd=tmp_path)
    assert "PSNR of the filled region" in proc.stdout
    assert (out / "inpaint-left-ddim-4.png").exists()
    bad = diffctl("sample", "--run", str(out), "--label", "12", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "--label" in bad.stderr


def test_mnist_defaults_to_offline_c2st_fid_and_inception_score() -> None:
    """c2st first (the headline), all on lenet-mnist; a class-conditional model adds
    class-accuracy."""
    config = resolve({"dataset": {"name": "mnist"}, "denoiser": {"name": "unet-mini"}})
    assert config.eval.metrics == ["c2st", "fid", "isc"]
    for name in config.eval.metrics:
        assert config.eval.metric_options[name]["feature_extractor"] == "lenet-mnist"
    conditional = resolve({"dataset": {"name": "mnist"},
                           "denoiser": {"name": "unet-mini", "num_classes": 10}})
    assert conditional.eval.metrics == ["c2st", "fid", "isc", "class-accuracy"]
    assert conditional.eval.metric_options["class-accuracy"]["feature_extractor"] == \
        "lenet-mnist"


@pytest.mark.slow
def test_class_accuracy_of_a_conditional_run_uses_the_labels_it_sampled(tmp_path: Path) -> None:
    """The final evaluation passes labels i mod 10 to class-accuracy (its value equals LeNet's
    predictions on samples.npy against those labels) and computes its floor on real labelled
    digits."""
    import torch

    from diffctl_metrics.feature_extractors.lenet import load_lenet, prepare_input, shipped_weights

    config = resolve(apply_overrides(default_config_data(), [
        *TINY, "denoiser.num_classes=10", "eval.floor_draws=5",
        "eval.metrics=[class-accuracy, c2st]"]))
    report = run_experiment(config, tmp_path / "run")["eval"]
    samples = torch.from_numpy(np.load(tmp_path / "run" / "samples.npy"))
    net, _ = load_lenet(shipped_weights())
    u8 = ((samples.double() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    with torch.no_grad():
        predicted = net(prepare_input(u8.expand(-1, 3, -1, -1))).argmax(1)
    expected = float((predicted == torch.arange(60) % 10).double().mean())
    assert report["metrics"]["class-accuracy"] == pytest.approx(expected)
    assert report["metric_metadata"]["class-accuracy"]["num_generated"] == 60
    assert len(report["floors"]["class-accuracy"]["values"]) == 5
    assert len(report["floors"]["c2st"]["values"]) == 5


@pytest.mark.parametrize(("overrides", "message"), [
    (["dataset.name=cifar10", "dataset.root=/nonexistent"], "CIFAR-10 not found"),
    (["denoiser.in_channels=3"], "channel mismatch"),
    (["denoiser.name=dit", "denoiser.patch_size=3"], "not divisible"),
    (["sampler.guidance_scale=3.0"], "needs a class-conditional denoiser"),
    (["denoiser.name=mlp"], "works on vectors"),
    (["sample.num_samples=5000"], "fewer than the 5000 real samples"),
])
def test_bad_image_configs_fail_before_training(tmp_path: Path, overrides, message) -> None:
    base = [t for t in TINY if not t.startswith("denoiser.")] \
        if any(o.startswith("denoiser.name=") for o in overrides) else TINY
    config_overrides = [*base, *overrides]
    from diffctl.errors import DiffctlError

    with pytest.raises(DiffctlError, match=message) as info:
        config = resolve(apply_overrides(default_config_data(), config_overrides))
        run_experiment(config, tmp_path / "run")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained


def test_labels_on_an_unlabelled_folder_fail_before_training(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "pics"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(folder / f"{i}.png")
    proc = diffctl("run", "--out", str(tmp_path / "run"), *sets(
        *TINY, "dataset.name=image-folder", f"dataset.path={folder}", "dataset.image_size=16",
        "dataset.channels=1", "denoiser.num_classes=10", "sample.num_samples=2"),
        cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "needs labels" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_checkpoint_sweep_with_fid_shares_one_reference_computation(tmp_path: Path,
                                                                     monkeypatch) -> None:
    """``diffctl eval --checkpoints all --metric fid`` on an image run: the reference statistics
    are computed once, in the parent, and the worker processes never compute them again (with
    the cache: they read the parent's entry and write none; with ``cache: false``: they read
    the stats file the parent wrote). Every checkpoint gets a FID, the metric-vs-epoch plot is
    written and ``diffctl compare`` reports FID."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIFFCTL_CACHE", str(cache))
    out = tmp_path / "run"
    diffctl("run", "--out", str(out), "--no-plots", *sets(
        *TINY, "eval.metrics=[mmd-rbf]", "eval.metric_options={fid: {feature_extractor: "
        "lenet-mnist}}"), cwd=tmp_path)

    from diffctl.runs import checkpoint_eval as sweep_module

    prepare = sweep_module.prepare_references
    assert prepare(out, ["fid", "mmd-rbf"], 60, 1) == ({"fid": "computed"}, {})
    assert prepare(out, ["fid"], 60, 1) == ({"fid": "cache"}, {})

    def entries() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in cache.rglob("*.npz")}

    prepared: list[tuple] = []  # (result, cache entries) right after the sweep's own call

    def recording(*args, **kwargs):
        result = prepare(*args, **kwargs)
        prepared.append((result, entries()))
        return result

    monkeypatch.setattr(sweep_module, "prepare_references", recording)
    names = ["epoch-0001", "epoch-0002"]
    rows, failures = sweep_module.evaluate_checkpoints(out, names, ["fid"], 80, 3, 7, workers=2)
    assert failures == []
    (sources, overrides), after_prepare = prepared[-1]
    # the two workers wrote no cache entry: no new file, none rewritten (same mtime)
    assert entries() == after_prepare
    assert [r["metric_metadata"]["fid"]["reference"] for r in rows] == ["cache", "cache"]
    assert sources == {"fid": "computed"} and overrides == {} and len(after_prepare) == 2
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["fid"] > 0 for r in rows)

    # cache off: the parent hands the workers a stats file; nobody touches the cache
    config_file = out / "config.yaml"
    original_config = config_file.read_text()
    data = yaml.safe_load(original_config)
    data["eval"]["metric_options"]["fid"]["cache"] = False
    config_file.write_text(yaml.safe_dump(data, sort_keys=False))
    before = entries()
    uncached, _ = sweep_module.evaluate_checkpoints(out, names, ["fid"], 80, 3, 7, workers=2)
    config_file.write_text(original_config)
    (sources, overrides), _ = prepared[-1]
    assert [r["metric_metadata"]["fid"]["reference"] for r in uncached] == ["stats-file"] * 2
    assert entries() == before
    assert sources == {"fid": "computed"} and list(overrides) == ["fid"]
    stats_file = Path(overrides["fid"]["reference_stats"])
    assert {r["metric_metadata"]["fid"]["reference_path"] for r in uncached} == {str(stats_file)}
    assert not stats_file.exists()  # a temporary file, gone with the sweep
    assert [r["fid"] for r in uncached] == pytest.approx([r["fid"] for r in rows], rel=1e-9)

    proc = diffctl("eval", "--run", str(out), "--checkpoints", "all", "--workers", "2",
                   "--metric", "fid", "--num-samples", "60", "--steps", "3", cwd=tmp_path)
    assert "2 checkpoints, 2 worker(s)" in proc.stdout
    (folder,) = (out / "eval").iterdir()
    lines = (folder / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(x)["fid"] > 0 for x in lines] == [True, True]
    assert (folder / "metric_vs_epoch.png").stat().st_size > 0
    data = json.loads(diffctl("compare", str(out), "--metric", "fid", "--json",
                              cwd=tmp_path).stdout)
    assert data["runs"][str(out)]["summary"]["fid"]["checkpoints"] == 2
    assert data["runs"][str(out)]["source"] == str(folder / "checkpoints.jsonl")
    proc = diffctl("compare", str(out), "--metric", "fid", cwd=tmp_path)
    assert "fid" in proc.stdout and "missing" not in proc.stdout
