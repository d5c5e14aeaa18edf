"""Floors computed while a 2-D model trains (diffctl.runs.floor_prefetch): the same floors as
the final evaluation computes itself, a failed floor process costs nothing but time, and 2-D
runs on a CPU train on one thread whether or not a floor process runs."""

from __future__ import annotations

from pathlib import Path

import torch

from diffctl.registry import get_registry
from diffctl.runs import Run
from diffctl.runs.components import build_dataset
from diffctl.runs.config import apply_overrides, default_config_data, resolve
from diffctl.runs.evaluation import metric_floors, metric_options_on
from diffctl.runs.floor_prefetch import FloorPrefetch, trains_on_one_thread
from diffctl.training.trainer import Trainer

SMALL = ["dataset.n=1000", "denoiser.name=mlp", "train.epochs=2", "train.batch_size=128",
         "sample.num_samples=300", "sample.num_steps=5", "eval.floor_draws=5",
         "eval.metrics=[c2st, mmd-rbf]", "seed=11"]


def small_config():
    return resolve(apply_overrides(default_config_data(), SMALL))


def test_prefetched_floors_equal_the_in_process_ones() -> None:
    config = small_config()
    prefetched = FloorPrefetch(config.model_dump(mode="json")).result(timeout=300)
    registry = get_registry()
    expected = metric_floors(registry, ["c2st", "mmd-rbf", "test-loss"],
                             metric_options_on(config, registry, torch.device("cpu")),
                             build_dataset(config, registry), 300, 5, 11)
    assert prefetched == expected
    assert prefetched["mmd-rbf"]["zero_centred"] is True
    assert len(prefetched["mmd-rbf"]["values"]) == 20


def test_a_failed_floor_process_gives_none() -> None:
    assert FloorPrefetch({"dataset": {"name": "no-such-dataset"}}).result(timeout=300) is None


def test_a_run_whose_floor_process_failed_computes_its_floors(tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.setattr(FloorPrefetch, "result", lambda self, timeout=None: self.close())
    run = Run.create(small_config(), tmp_path / "run")
    run.train()
    report = run.finalize()
    assert set(report["eval"]["floors"]) >= {"c2st", "mmd-rbf"}
    assert len(report["eval"]["floors"]["mmd-rbf"]["values"]) == 20


def test_2d_runs_on_a_cpu_train_on_one_thread(tmp_path: Path, monkeypatch) -> None:
    seen: list[int] = []
    fit = Trainer.fit

    def recording_fit(self):
        seen.append(torch.get_num_threads())
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", recording_fit)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        Run.create(small_config(), tmp_path / "run").train(evaluate_after=False)
        assert seen == [1] and torch.get_num_threads() == 2  # restored after training
    finally:
        torch.set_num_threads(before)
    cpu = torch.device("cpu")
    assert trains_on_one_thread(False, cpu, False)
    assert not trains_on_one_thread(True, cpu, False)  # images use every thread
    assert not trains_on_one_thread(False, cpu, True)  # DDP ranks keep their own setting
