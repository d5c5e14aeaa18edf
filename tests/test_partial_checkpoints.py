"""Mid-epoch (partial) checkpoints of a run: ``train.checkpoint_every_steps``."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffctl.runs import Run, compose
from diffctl.training.checkpoint import CheckpointError, select_checkpoints

# 540 training examples at batch 32: 17 steps an epoch; a partial checkpoint every 4 steps
TINY = ["dataset.n=600", "denoiser.name=mlp", "denoiser.hidden=16", "train.epochs=3",
        "train.batch_size=32", "train.checkpoint_every=1", "train.log_every=1",
        "train.checkpoint_every_steps=4", "train.device=cpu", "sample.num_samples=50",
        "sample.num_steps=4", "eval.metrics=[mmd-rbf, test-loss]", "eval.floor_draws=0",
        "sample.progression_samples=0"]
STOP = 22  # interrupted at this step of epoch 2 (steps 18-34): the newest partial is step 20


def config():
    return compose(overrides=TINY)


def read_log(path: Path) -> list[tuple]:
    """train.jsonl without the rate, which depends on the clock."""
    return [(r["step"], r["epoch"], r["loss"], r["lr"])
            for r in map(json.loads, path.read_text().splitlines())]


def tensor_files(run: Path, checkpoint: str = "epoch-0003") -> dict[str, bytes]:
    folder = run / "checkpoints" / checkpoint
    return {name: (folder / name).read_bytes()
            for name in ("model.safetensors", "ema.safetensors", "optimizer.safetensors")}


class Stop(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An uninterrupted run, and the same run stopped at step STOP (as Ctrl-C or a kill after
    the partial checkpoint would leave it)."""
    base = tmp_path_factory.mktemp("partial")
    Run.create(config(), base / "straight").train(evaluate_after=False)

    def stop(event) -> None:
        if event.step == STOP:
            raise Stop

    with pytest.raises(Stop):
        Run.create(config(), base / "stopped").train(on_step=stop, evaluate_after=False)
    return {"straight": base / "straight", "stopped": base / "stopped"}


def copy(runs: dict[str, Path], tmp_path: Path) -> Path:
    shutil.copytree(runs["stopped"], tmp_path / "r")
    return tmp_path / "r"


def test_the_stopped_run_keeps_one_partial_checkpoint(runs: dict[str, Path]) -> None:
    checkpoints = runs["stopped"] / "checkpoints"
    assert sorted(p.name for p in (checkpoints / "partial").iterdir()) == ["step-00000020"]
    state = json.loads((checkpoints / "partial/step-00000020/state.json").read_text())
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == (20, 1, 3)
    assert "rng.safetensors" in state["files"]
    # the epoch checkpoints and pointers are as an epoch-only run has them
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best", "epoch-0001", "last",
                                                             "partial"]
    assert (checkpoints / "last").read_text().strip() == "epoch-0001"
    # what an interrupted `diffctl run` says it will continue from
    from diffctl_cli.commands.run import _interrupted

    assert "the last checkpoint is partial/step-00000020 (epoch 1, step 20)" in \
        _interrupted(Run.open(runs["stopped"]))
    # a finished run has no partial checkpoint left: each epoch checkpoint removes them
    assert not (runs["straight"] / "checkpoints/partial").exists()


def test_resume_from_the_partial_checkpoint_is_exact(runs: dict[str, Path],
                                                     tmp_path: Path) -> None:
    run = copy(runs, tmp_path)
    assert max(s for s, *_ in read_log(run / "train.jsonl")) == STOP  # lines past step 20
    steps: list[int] = []
    summary = Run.open(run).resume(on_step=lambda event: steps.append(event.step))
    assert steps[0] == 21 and summary["step"] == 51 and summary["epoch"] == 3
    assert tensor_files(run) == tensor_files(runs["straight"])
    assert read_log(run / "train.jsonl") == read_log(runs["straight"] / "train.jsonl")
    history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    straight = [json.loads(x) for x in (runs["straight"] / "metrics.jsonl").read_text()
                .splitlines()]
    assert [(h["step"], h["test-loss"]) for h in history] == \
        [(h["step"], h["test-loss"]) for h in straight]
    assert not (run / "checkpoints/partial").exists()


def test_eval_and_sample_ignore_the_partial_checkpoint(runs: dict[str, Path],
                                                      tmp_path: Path) -> None:
    run = Run.open(copy(runs, tmp_path))
    assert [p.name for p in select_checkpoints(run.dir.checkpoints, "all")] == ["epoch-0001"]
    with pytest.raises(CheckpointError, match="only resuming uses"):
        select_checkpoints(run.dir.checkpoints, "partial")
    result = run.evaluate(checkpoints="all", metrics=["mmd-rbf"], num_samples=50,
                          floors=False)
    assert [r["checkpoint"] for r in result.rows] == ["epoch-0001"] and not result.failures
    sample = run.sample(num_samples=20, metrics=False, save=False)
    assert sample.checkpoint == "epoch-0001"


def test_a_damaged_partial_checkpoint_falls_back_to_the_epoch_checkpoint(
        runs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = copy(runs, tmp_path)
    (run / "checkpoints/partial/step-00000020/model.safetensors").write_bytes(b"\0" * 64)
    with pytest.raises(CheckpointError, match="step-00000020"):
        Run.open(run).resume(strict=True)
    steps: list[int] = []
    with caplog.at_level(logging.WARNING, logger="diffctl"):
        Run.open(run).resume(on_step=lambda event: steps.append(event.step))
    assert "skipping damaged checkpoint partial/step-00000020" in caplog.text
    assert steps[0] == 18  # from epoch-0001
    # from epoch 1 the run is just as exact, and its log counts no step twice
    assert tensor_files(run) == tensor_files(runs["straight"])
    assert read_log(run / "train.jsonl") == read_log(runs["straight"] / "train.jsonl")


def test_a_partial_checkpoint_older_than_the_epoch_checkpoints_is_ignored(
        runs: dict[str, Path], tmp_path: Path) -> None:
    """Left over by a kill between an epoch checkpoint and the removal of ``partial/``."""
    run = tmp_path / "r"
    shutil.copytree(runs["straight"], run)
    shutil.copytree(runs["stopped"] / "checkpoints/partial", run / "checkpoints/partial")
    steps: list[int] = []
    Run.open(run).resume(epochs=4, on_step=lambda event: steps.append(event.step))
    assert steps[0] == 52 and not (run / "checkpoints/partial").exists()


def test_a_step_count_due_at_the_end_of_an_epoch_saves_at_the_boundary(tmp_path: Path) -> None:
    """Step 17 ends epoch 1, which has no epoch checkpoint (checkpoint_every 2): the partial
    checkpoint is taken at the boundary, with no generator states to keep."""
    sets = [*TINY, "train.epochs=2", "train.checkpoint_every=2",
            "train.checkpoint_every_steps=17"]
    Run.create(compose(overrides=sets), tmp_path / "straight").train(evaluate_after=False)

    def stop(event) -> None:
        if event.step == 20:
            raise Stop

    with pytest.raises(Stop):
        Run.create(compose(overrides=sets), tmp_path / "r").train(on_step=stop,
                                                                  evaluate_after=False)
    state = json.loads((tmp_path / "r/checkpoints/partial/step-00000017/state.json")
                       .read_text())
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 0)
    assert "rng.safetensors" not in state["files"]
    Run.open(tmp_path / "r").resume()
    assert tensor_files(tmp_path / "r", "epoch-0002") == \
        tensor_files(tmp_path / "straight", "epoch-0002")

def test_a_killed_cli_run_resumes_from_its_partial_checkpoint(tmp_path: Path) -> None:
    """SIGKILL ``diffctl train`` once a partial checkpoint exists (no epoch checkpoint yet),
    then resume it: the weights of a run never interrupted."""
    sets = [*TINY, "dataset.n=3000", "train.epochs=4", "train.checkpoint_every=4",
            "train.checkpoint_every_steps=10", "train.log_every=10"]
    Run.create(compose(overrides=sets), tmp_path / "straight").train(evaluate_after=False)
    args = [arg for item in sets for arg in ("--set", item)]
    cmd = [sys.executable, "-c", "from diffctl_cli.app import main; main()", "train", *args,
           "--out", "r"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    partial = tmp_path / "r/checkpoints/partial"
    deadline = time.time() + 120
    while time.time() < deadline and not any(partial.glob("step-*/state.json")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert any(partial.glob("step-*/state.json")), "no partial checkpoint before the kill"
    assert not (tmp_path / "r/checkpoints/epoch-0004").exists(), "finished before the kill"
    steps: list[int] = []
    Run.open(tmp_path / "r").resume(on_step=lambda event: steps.append(event.step))
    assert steps[0] > 10 and steps[0] % 10 == 1  # after a partial checkpoint
    assert tensor_files(tmp_path / "r", "epoch-0004") == \
        tensor_files(tmp_path / "straight", "epoch-0004")
