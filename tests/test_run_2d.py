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

from diffctl.errors import UsageError
from diffctl.runs import Run
from diffctl.runs.config import apply_overrides, default_config_data, resolve


def run_experiment(config, out, resume: bool = False, evaluate: bool = True) -> dict:
    """Train (or resume) a run through the library API, then its final evaluation."""
    run = Run.open(out) if resume else Run.create(config, out)
    summary = run.resume() if resume else run.train(evaluate_after=evaluate)
    return run.finalize() if evaluate else {"train": summary}


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
    assert len(final["eval"]["floors"]["mmd-rbf"]["values"]) == 20  # zero-centred: >= 20 draws
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
    # samples of two checkpoints (and two step counts) land in different files
    for checkpoint, steps in (("epoch-0002", "8"), ("last", "8"), ("last", "6")):
        diffctl("sample", "--run", "r1", "--sampler", "dpmpp-2m", "--steps", steps,
                "--num-samples", "300", "--checkpoint", checkpoint, cwd=tmp_path)
    written = sorted(p.name for p in (tmp_path / "r1" / "samples").glob("*.npy"))
    assert written == ["epoch-0002-dpmpp-2m-8steps-300-seed0.npy",
                       "epoch-0004-dpmpp-2m-6steps-300-seed0.npy",
                       "epoch-0004-dpmpp-2m-8steps-300-seed0.npy"]
    assert np.load(tmp_path / "r1/samples" / written[0]).shape == (300, 2)
    proc = diffctl("eval", "--run", "r1", "--checkpoints", "all", "--workers", "2",
                   "--num-samples", "300", cwd=tmp_path)
    (folder,) = (tmp_path / "r1" / "eval").iterdir()
    lines = (folder / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [2, 4]
    assert (folder / "metric_vs_epoch.png").exists()
    floors = json.loads((folder / "floors.json").read_text())
    assert floors["num_samples"] == 300
    assert len(floors["floors"]["moons-overall"]["values"]) == 5
    assert "floor p95" in proc.stdout and "300 samples" in proc.stdout
    proc = diffctl("compare", "r1", "r2", "--json", cwd=tmp_path)
    data = json.loads(proc.stdout)
    assert set(data["runs"]) == {"r1", "r2"}
    assert data["runs"]["r1"]["summary"]["moons-overall"]["checkpoints"] == 2
    assert data["runs"]["r1"]["source"] == str(Path("r1") / "eval" / folder.name /
                                               "checkpoints.jsonl")
    assert data["runs"]["r2"]["source"] == str(Path("r2") / "metrics.jsonl")
    proc = diffctl("compare", "r1", "r2", cwd=tmp_path)
    assert f"history from {Path('r1') / 'eval' / folder.name}" in proc.stdout


def test_eval_never_overwrites_an_earlier_evaluation(tmp_path: Path) -> None:
    run_experiment(small_config(), tmp_path / "r")
    run = Run.open(tmp_path / "r")
    first = run.evaluate(metrics=["mmd-rbf"], num_samples=100, steps=5, floors=False)
    before = (first.folder / "checkpoints.jsonl").read_text()
    second = run.evaluate(metrics=["mmd-rbf"], num_samples=100, steps=5, floors=False)
    third = run.evaluate(checkpoints="last", metrics=["moons-overall"], num_samples=120,
                         steps=4, floors=False)
    folders = {first.folder, second.folder, third.folder}
    assert len(folders) == 3 and all(f.parent == tmp_path / "r" / "eval" for f in folders)
    assert (first.folder / "checkpoints.jsonl").read_text() == before
    settings = json.loads((third.folder / "settings.json").read_text())
    assert settings["checkpoints"] == ["epoch-0004"] and settings["num_samples"] == 120
    assert [r["epoch"] for r in third.rows] == [4]


def test_eval_with_a_damaged_checkpoint_finishes_the_others_and_exits_1(tmp_path: Path) -> None:
    run_experiment(small_config("train.epochs=6"), tmp_path / "r")
    damaged = tmp_path / "r/checkpoints/epoch-0004/model.safetensors"
    data = bytearray(damaged.read_bytes())
    data[-8:] = b"\xff" * 8  # flipped bytes inside a tensor: only the checksum can tell
    damaged.write_bytes(bytes(data))
    for workers in ("1", "2"):
        proc = diffctl("eval", "--run", "r", "--num-samples", "100", "--steps", "4",
                       "--metric", "mmd-rbf", "--no-floors", "--workers", workers, cwd=tmp_path,
                       check=False)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert "failed epoch-0004" in proc.stdout and "checksum" in proc.stdout
        assert "1 of 3 checkpoints could not be evaluated" in proc.stdout
    folder = sorted((tmp_path / "r/eval").iterdir())[-1]
    rows = [json.loads(x) for x in (folder / "checkpoints.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [2, 6]
    settings = json.loads((folder / "settings.json").read_text())
    assert [f["checkpoint"] for f in settings["failures"]] == ["epoch-0004"]


def test_api_and_cli_write_identical_samples(tmp_path: Path) -> None:
    """The README's Python section: the default experiment through the API equals
    ``diffctl run`` for the same config and seed."""
    from diffctl.runs import compose

    sets = [x for s in SMALL for x in ("--set", s)]
    diffctl("run", *sets, "--seed", "5", "--out", "cli", "--no-plots", cwd=tmp_path)
    run = Run.create(compose(seed=5, overrides=SMALL), tmp_path / "api")
    run.train()
    report = run.finalize()
    assert np.array_equal(np.load(tmp_path / "cli/samples.npy"),
                          np.load(tmp_path / "api/samples.npy"))
    cli_report = json.loads((tmp_path / "cli/metrics.json").read_text())
    assert cli_report["eval"]["metrics"] == report["eval"]["metrics"]


@pytest.mark.parametrize("extra", [["--set", "train.lr=0.5"], ["--config", "c.yaml"],
                                   ["--seed", "3"], ["--dataset", "gmm-ring"],
                                   ["--out", "elsewhere"], ["--steps", "5"],
                                   ["--metric", "mmd-rbf"], ["--sampler", "heun"]])
def test_resume_rejects_options_it_would_ignore(tmp_path: Path, extra) -> None:
    run_experiment(small_config("train.epochs=2"), tmp_path / "r")
    (tmp_path / "c.yaml").write_text("seed: 1\n")
    before = sorted(p.name for p in (tmp_path / "r").rglob("*"))
    proc = diffctl("run", "--resume", "r", *extra, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "--resume" in proc.stderr and extra[0] in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "r").rglob("*")) == before


def test_resume_extends_a_finished_run_and_forks_from_a_chosen_checkpoint(tmp_path: Path) -> None:
    run_experiment(small_config("train.lr_schedule=constant"), tmp_path / "r")
    history = (tmp_path / "r/metrics.jsonl").read_text()
    # a fork from epoch 2 trains epochs 3-4 again in a new directory: the same weights as the
    # original's epoch 4 (bit-exact resume), and the original is left as it was
    diffctl("run", "--resume", "r", "--checkpoint", "epoch-0002", "--no-plots", cwd=tmp_path)
    fork = tmp_path / "r-from-epoch-0002"
    assert (tmp_path / "r/metrics.jsonl").read_text() == history
    for name in ("model.safetensors", "ema.safetensors"):
        assert (fork / "checkpoints/epoch-0004" / name).read_bytes() == \
            (tmp_path / "r/checkpoints/epoch-0004" / name).read_bytes()
    assert [json.loads(x)["epoch"] for x in (fork / "metrics.jsonl").read_text().splitlines()] \
        == [2, 4]
    # --epochs extends the finished run in place
    diffctl("run", "--resume", "r", "--epochs", "6", "--no-plots", cwd=tmp_path)
    assert json.loads((tmp_path / "r/metrics.json").read_text())["train"]["epoch"] == 6
    assert yaml.safe_load((tmp_path / "r/config.yaml").read_text())["train"]["epochs"] == 6
    proc = diffctl("run", "--resume", "r", "--epochs", "3", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "below the 6 epochs" in proc.stderr


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


def _fake_run(path: Path, history: list[dict], final: dict | None = None,
              floors: dict | None = None, reconstruction: dict | None = None) -> Path:
    """A run directory holding only what compare reads."""
    path.mkdir()
    (path / "config.yaml").write_text("{}\n")
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in history))
    if final is not None:
        (path / "metrics.json").write_text(json.dumps({"train": {"train_seconds": 3.0}, "eval": {
            "metrics": final, "floors": floors or {},
            "reconstruction": {"metrics": reconstruction or {}}}}))
    return path


def test_compare_knows_which_way_each_metric_is_better(tmp_path: Path) -> None:
    """best = max for higher-is-better metrics (mode-coverage, psnr), min for the others; the
    secondary values a metric reports (modes_hit) are not compared; the final values include
    an image run's reconstruction metrics."""
    from diffctl.runs import compare

    rows = [{"epoch": 1, "mode-coverage": 0.5, "modes_hit": 4.0, "mmd-rbf": 0.03},
            {"epoch": 2, "mode-coverage": 1.0, "modes_hit": 8.0, "mmd-rbf": 0.01},
            {"epoch": 3, "mode-coverage": 0.875, "modes_hit": 7.0, "mmd-rbf": 0.02}]
    run = _fake_run(tmp_path / "r", rows, {"mmd-rbf": 0.02}, reconstruction={"psnr": 21.5})
    data = compare([run])
    out = data["runs"][str(run)]
    assert data["metrics"] == ["mmd-rbf", "mode-coverage", "psnr"]
    assert out["summary"]["mode-coverage"]["best"] == 1.0
    assert out["summary"]["mode-coverage"]["best_epoch"] == 2
    assert out["summary"]["mmd-rbf"]["best"] == 0.01
    assert data["higher_is_better"] == {"mmd-rbf": False, "mode-coverage": True, "psnr": True}
    assert out["final"]["psnr"] == 21.5 and out["train_seconds"] == 3.0
    with pytest.raises(UsageError, match="unknown metric 'modes_hit'"):
        compare([run], ["modes_hit"])


def test_compare_ranks_by_distance_from_the_floor_not_by_clipping(tmp_path: Path) -> None:
    """A value below its floor's noise level is "at the floor" (excess 0), never better than
    real data; a far-off negative value of a zero-centred estimator ranks by its distance
    (here below p95: at the floor), a positive one above p95 ranks worse."""
    from diffctl.runs import compare

    floor = {"mmd-rbf": {"mean": 0.0, "p95": 0.001, "zero_centred": True, "values": []},
             "wasserstein": {"mean": 0.05, "p95": 0.06, "values": []}}
    good = _fake_run(tmp_path / "good", [], {"mmd-rbf": -0.0004, "wasserstein": 0.049}, floor)
    also = _fake_run(tmp_path / "also", [], {"mmd-rbf": 0.0008, "wasserstein": 0.0501}, floor)
    bad = _fake_run(tmp_path / "bad", [], {"mmd-rbf": 0.004, "wasserstein": 0.2}, floor)
    data = compare([bad, good, also])
    assert data["runs"][str(good)]["excess"] == {"mmd-rbf": 0.0, "wasserstein": 0.0}
    assert data["runs"][str(bad)]["excess"]["mmd-rbf"] == pytest.approx(3.0)
    assert data["ranking"]["mmd-rbf"] == [sorted([str(also), str(good)]), [str(bad)]]
    assert data["ranking"]["wasserstein"][-1] == [str(bad)]


def test_compare_table_shows_every_requested_metric(tmp_path: Path) -> None:
    """fid and kid of final reports appear in the table, and a run that lacks one says so."""
    a = _fake_run(tmp_path / "a", [], {"fid": 12.5, "kid": 0.0031},
                  {"fid": {"mean": 10.0, "p95": 11.0, "values": []}})
    _fake_run(tmp_path / "b", [], {"fid": 30.25})
    proc = diffctl("compare", "a", "b", "--metric", "fid", "--metric", "kid", cwd=tmp_path)
    table = proc.stdout
    assert "12.5" in table and "0.0031" in table and "30.25" in table
    assert "missing" in table and "b: history from" in table and "lacks kid" in table
    assert a.exists()
    proc = diffctl("compare", "a", "--metric", "nosuch", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "unknown metric 'nosuch'" in proc.stderr


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
