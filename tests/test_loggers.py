"""Loggers as plugins (issue 16 item 1): jsonl always on, csv, tensorboard read back with
tensorboard's own event reader, resume without duplicated steps, the conformance kit."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from diffctl.errors import UsageError
from diffctl.runs import Run, compose
from diffctl.testing import check_component

SMALL = ["dataset.n=1500", "denoiser.name=mlp", "denoiser.hidden=32", "train.epochs=4",
         "train.checkpoint_every=1", "train.log_every=5", "train.batch_size=128",
         "sample.num_samples=200", "sample.num_steps=5", "eval.floor_draws=5",
         "sample.progression_samples=0"]


def scalars(folder: Path) -> dict[str, list[int]]:
    """Steps of every scalar tag, as TensorBoard reads them (purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("name", ["jsonl", "csv", "tensorboard"])
def test_builtin_loggers_conform(name: str) -> None:
    passed = check_component("logger", name)
    assert {"protocol", "records", "images", "resume", "stays-inside"} <= set(passed)


def test_unknown_logger_is_a_config_error() -> None:
    with pytest.raises(UsageError, match="did you mean 'tensorboard'"):
        compose(overrides=[*SMALL, "train.loggers=[tensorbord]"])


def test_a_real_run_writes_tensorboard_events_and_csv(tmp_path: Path) -> None:
    run = Run.create(compose(overrides=[*SMALL, "train.loggers=[tensorboard, csv]"]),
                     tmp_path / "r")
    run.train()
    run.finalize()
    tags = scalars(tmp_path / "r" / "tensorboard")
    assert tags["train/loss"] == [1, 5, 10, 15, 20, 25, 30, 35, 40]
    assert tags["eval/test-loss"] == [11, 22, 33, 44]  # 11 steps an epoch, one record each
    assert tags["final/mmd-rbf"] == [44] and tags["floor/mmd-rbf_p95"] == [44]
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").read_text().splitlines()))
    assert [int(r["step"]) for r in rows] == [11, 22, 33, 44] and float(rows[0]["test-loss"]) > 0
    final = {r["metric"]: r for r in csv.DictReader(
        (tmp_path / "r" / "final.csv").read_text().splitlines())}
    assert float(final["mmd-rbf"]["floor_p95"]) > 0 and final["test-loss"]["floor_p95"] == ""
    assert (tmp_path / "r" / "metrics.jsonl").exists()  # jsonl is always on


def test_resume_continues_the_same_tensorboard_run_without_duplicates(tmp_path: Path) -> None:
    import shutil

    run = Run.create(compose(overrides=[*SMALL, "train.loggers=[tensorboard, csv]"]),
                     tmp_path / "r")
    run.train(evaluate_after=False)
    # as if killed after epoch 4 was logged but before its checkpoint landed
    shutil.rmtree(tmp_path / "r/checkpoints/epoch-0004")
    (tmp_path / "r/checkpoints/last").write_text("epoch-0003\n")
    Run.open(tmp_path / "r").resume()
    tags = scalars(tmp_path / "r" / "tensorboard")
    for tag, steps in tags.items():
        assert steps == sorted(set(steps)), (tag, steps)  # no step twice
    assert tags["eval/test-loss"] == [11, 22, 33, 44]
    rows = list(csv.DictReader((tmp_path / "r" / "train.csv").read_text().splitlines()))
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 40  # logged every 5 of 44 steps


def test_tensorboard_without_its_package_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    import builtins

    from diffctl.loggers.tensorboard import TensorBoardLogger

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("tensorboard."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(UsageError, match=r'pip install "diffctl-core\[tensorboard\]"'):
        TensorBoardLogger().open(tmp_path, 0)
    assert not (tmp_path / "tensorboard").exists()
