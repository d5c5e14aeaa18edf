"""End-to-end 2-D runs through the library and the ``diffctl`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffctl.runs.config import apply_overrides, default_config_data, resolve
from diffctl.runs.run import run_experiment

# a run small enough for a unit test: a few hundred steps of a small MLP
SMALL = [
    "dataset.n=2000", "denoiser.name=mlp", "train.epochs=4", "train.batch_size=128",
    "train.checkpoint_every=2", "sample.num_samples=400", "sample.num_steps=10",
    "eval.floor_draws=5", "sample.progression_samples=50",
]


def small_config(*extra: str):
    return resolve(apply_overrides(default_config_data(), [*SMALL, *extra]))


def diffctl(*args: str, cwd: Path, env: dict | None = None, check: bool = True
            ) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from diffctl_cli.app import main; main()", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_run_writes_the_run_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    report = run_experiment(small_config(), out)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["denoiser"]["name"] == "mlp" and cfg["dataset"]["n"] == 2000
    assert "activation" in cfg["denoiser"] and "prediction" in cfg["denoiser"]  # defaults filled
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["best", "epoch-0002", "epoch-0004", "last"]
    assert (out / "checkpoints" / "epoch-0004" / "model.safetensors").exists()
    history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [2, 4]
    assert all("test-loss" in h and "wall_seconds" in h for h in history)
    final = json.loads((out / "metrics.json").read_text())
    assert set(final["eval"]["metrics"]) >= {"moons-overall", "mmd-rbf", "test-loss"}
    assert "moons-overall" in final["eval"]["floors"] and "test-loss" not in final["eval"][
        "floors"]
    assert len(final["eval"]["floors"]["mmd-rbf"]["values"]) == 5
    # the training log: every log_every (50) steps and the first; 4 epochs of 14 steps
    log = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 50] and all(np.isfinite(r["loss"]) for r in log)
    assert set(log[0]) == {"step", "epoch", "loss", "lr", "steps_per_second"}
    samples = np.load(out / "samples.npy")
    assert samples.shape == (400, 2) and np.isfinite(samples).all()
    assert report["train"]["epoch"] == 4


def test_same_config_and_seed_reproduce(tmp_path: Path) -> None:
    a = run_experiment(small_config("train.epochs=2"), tmp_path / "a")
    b = run_experiment(small_config("train.epochs=2"), tmp_path / "b")
    assert a["eval"]["metrics"] == b["eval"]["metrics"]
    assert np.array_equal(np.load(tmp_path / "a/samples.npy"), np.load(tmp_path / "b/samples.npy"))


def test_config_yaml_repeats_the_run(tmp_path: Path) -> None:
    run_experiment(small_config("train.epochs=2"), tmp_path / "a")
    again = resolve(yaml.safe_load((tmp_path / "a/config.yaml").read_text()))
    run_experiment(again, tmp_path / "b")
    assert np.array_equal(np.load(tmp_path / "a/samples.npy"), np.load(tmp_path / "b/samples.npy"))


@pytest.mark.parametrize(("args", "message"), [
    (["--denoiser", "resnet-mlp"], "did you mean 'residual-mlp'"),
    (["--set", "train.lr=-1"], "train.lr"),
    (["--set", "train.batch_size=0"], "train.batch_size"),
    (["--set", "train.lrr=0.1"], "unknown field"),
    (["--set", "denoiser.hiddn=3"], "unknown field"),
    (["--config", "missing.yaml"], "config file not found"),
    (["--set", "sample.num_samples=1"], "sample.num_samples"),
    (["--set", "eval.floor_draws=2"], "at least 5 real-vs-real draws"),
    (["--set", "train.best_metric=tset-loss"], "train.best_metric 'tset-loss'"),
    (["--steps", "1001"], "exceeds the schedule's num_train_timesteps 1000"),
    (["--metric", "test-los"], "did you mean 'test-loss'"),
    pytest.param(["--set", "train.device=cuda"], "CUDA is not available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, args, message) -> None:
    proc = diffctl("run", *args, "--out", "out", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_missing_run_directory_is_an_error(tmp_path: Path) -> None:
    for cmd in (["sample", "--run", "nope"], ["eval", "--run", "nope"], ["compare", "nope"],
                ["run", "--resume", "nope"]):
        proc = diffctl(*cmd, cwd=tmp_path, check=False)
        assert proc.returncode == 2 and "nope" in proc.stderr, (cmd, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_run_sample_eval_compare(tmp_path: Path) -> None:
    sets = [x for s in SMALL for x in ("--set", s)]
    diffctl("run", *sets, "--out", "r1", cwd=tmp_path)
    for png in ("samples.png", "loss.png", "progression.png", "metric_curves.png"):
        assert (tmp_path / "r1" / png).stat().st_size > 1000, png
    diffctl("run", *sets, "--set", "train.lr=0.003", "--out", "r2", cwd=tmp_path)
    proc = diffctl("sample", "--run", "r1", "--sampler", "dpmpp-2m", "--steps", "8",
                   "--num-samples", "300", cwd=tmp_path)
    assert np.load(tmp_path / "r1" / "samples-dpmpp-2m-8.npy").shape == (300, 2)
    proc = diffctl("eval", "--run", "r1", "--checkpoints", "all", "--workers", "2",
                   "--num-samples", "300", cwd=tmp_path)
    lines = (tmp_path / "r1" / "eval" / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [2, 4]
    assert (tmp_path / "r1" / "eval" / "metric_vs_epoch.png").exists()
    floors = json.loads((tmp_path / "r1" / "eval" / "floors.json").read_text())
    assert floors["num_samples"] == 300
    assert len(floors["floors"]["moons-overall"]["values"]) == 5
    assert "floor p95" in proc.stdout and "300 samples" in proc.stdout
    proc = diffctl("compare", "r1", "r2", "--json", cwd=tmp_path)
    data = json.loads(proc.stdout)
    assert set(data) == {"r1", "r2"}
    assert data["r1"]["summary"]["moons-overall"]["checkpoints"] == 2


def test_corrupted_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    run_experiment(small_config("train.epochs=2"), tmp_path / "r")
    (tmp_path / "r/checkpoints/epoch-0002/model.safetensors").write_bytes(b"\0" * 10)
    proc = diffctl("sample", "--run", "r", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    assert "epoch-0002/model.safetensors" in proc.stderr and "Traceback" not in proc.stderr


def test_killed_run_resumes_from_last_checkpoint(tmp_path: Path) -> None:
    """SIGKILL a training run after its first checkpoint, then --resume it to the end."""
    sets = [x for s in [*SMALL, "train.epochs=40", "train.checkpoint_every=1",
                        "dataset.n=4000"] for x in ("--set", s)]
    cmd = [sys.executable, "-c", "from diffctl_cli.app import main; main()", "train", *sets,
           "--out", "r"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = tmp_path / "r" / "checkpoints" / "last"
    deadline = time.time() + 120
    while time.time() < deadline and not last.exists():
        time.sleep(0.05)
    time.sleep(0.3)  # let it get somewhere inside a later epoch or checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "no checkpoint before the kill"
    killed_at = json.loads(((tmp_path / "r/checkpoints") / last.read_text().strip()
                            / "state.json").read_text())["epoch"]
    assert killed_at < 40, "the run finished before it was killed; make it longer"
    diffctl("run", "--resume", "r", "--no-plots", cwd=tmp_path)
    state = json.loads((tmp_path / "r/metrics.json").read_text())["train"]
    assert state["epoch"] == 40
    epochs = [json.loads(x)["epoch"] for x in
              (tmp_path / "r/metrics.jsonl").read_text().splitlines()]
    assert epochs[-1] == 40 and killed_at in epochs


def test_compare_knows_which_way_each_metric_is_better(tmp_path: Path) -> None:
    """best = max for higher-is-better metrics (mode-coverage, psnr), min for the others; the
    secondary values a metric reports (modes_hit) are left out unless asked for; the final
    values include an image run's reconstruction metrics."""
    from diffctl.runs.compare import compare_runs

    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text("{}\n")
    rows = [{"epoch": 1, "mode-coverage": 0.5, "modes_hit": 4.0, "mmd-rbf": 0.03},
            {"epoch": 2, "mode-coverage": 1.0, "modes_hit": 8.0, "mmd-rbf": 0.01},
            {"epoch": 3, "mode-coverage": 0.875, "modes_hit": 7.0, "mmd-rbf": 0.02}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "metrics.json").write_text(json.dumps({"train": {"train_seconds": 3.0}, "eval": {
        "metrics": {"mmd-rbf": 0.02}, "reconstruction": {"metrics": {"psnr": 21.5}}}}))
    out = compare_runs([run])[str(run)]
    assert set(out["summary"]) == {"mode-coverage", "mmd-rbf"}
    assert out["summary"]["mode-coverage"]["best"] == 1.0
    assert out["summary"]["mode-coverage"]["best_epoch"] == 2
    assert out["summary"]["mmd-rbf"]["best"] == 0.01
    assert out["higher_is_better"] == {"mode-coverage": True, "mmd-rbf": False}
    assert out["final"]["psnr"] == 21.5 and out["final"]["train_seconds"] == 3.0
    noisy = [{"epoch": e, "mmd-rbf": v} for e, v in
             [(1, 0.05), (2, 0.004), (3, -0.0002), (4, 0.0001), (5, -0.0003)]]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in noisy))
    mmd = compare_runs([run])[str(run)]["summary"]["mmd-rbf"]
    # centred on zero: negative values are noise about 0, so the best is 0 (first at epoch 3)
    # and "within 10%" is within 10% of the 0.05 range: from epoch 2 on
    assert mmd["best"] == 0.0 and mmd["best_epoch"] == 3 and mmd["epochs_to_within_10pct"] == 2
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    asked = compare_runs([run], ["modes_hit"])[str(run)]["summary"]["modes_hit"]
    assert asked["best"] == 4.0  # unregistered key: lower is better unless told otherwise
    told = compare_runs([run], ["modes_hit"], {"modes_hit": True})[str(run)]["summary"]
    assert told["modes_hit"]["best"] == 8.0


def test_mode_coverage_follows_the_gmm_ring_config() -> None:
    """A ring of 6 modes at radius 3 is scored against those modes, not the metric's default
    8 at radius 5; explicit metric options still win."""
    import diffctl

    cfg = resolve(apply_overrides(default_config_data(), [
        "dataset.name=gmm-ring", "dataset.num_components=6", "dataset.radius=3",
        "dataset.std=0.1", "eval.metrics=[mode-coverage]"]))
    opts = cfg.eval.metric_options["mode-coverage"]
    assert (opts["num_modes"], opts["radius"], opts["std"]) == (6, 3.0, 0.1)
    ds = diffctl.create("dataset", "gmm-ring", num_components=6, radius=3.0, std=0.1)
    metric = diffctl.create("metric", "mode-coverage", opts)
    value = metric(ds.reference(3000, 1), None)
    assert value["mode-coverage"] == 1.0 and value["within_3std"] > 0.98
    own = resolve(apply_overrides(default_config_data(), [
        "dataset.name=gmm-ring", "dataset.num_components=6", "eval.metrics=[mode-coverage]",
        "eval.metric_options={mode-coverage: {num_modes: 4}}"]))
    assert own.eval.metric_options["mode-coverage"]["num_modes"] == 4


def test_resume_drops_log_lines_past_the_checkpoint(tmp_path: Path) -> None:
    """A run killed after writing epoch 4's record but before its checkpoint landed (and in
    the middle of a log line): resuming from epoch 2 logs epochs 3-4 again, once."""
    import shutil

    out = tmp_path / "r"
    run_experiment(small_config(), out)
    shutil.rmtree(out / "checkpoints" / "epoch-0004")
    (out / "checkpoints" / "last").write_text("epoch-0002\n")
    with open(out / "train.jsonl", "a") as fh:
        fh.write('{"step": 9')  # torn by the kill
    run_experiment(small_config(), out, resume=True)
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [2, 4]
    steps = [json.loads(x)["step"] for x in (out / "train.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 50
