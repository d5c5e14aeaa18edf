"""The memory check before training, the automatic batch size (with simulated
out-of-memory errors), and the early-stopping message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from study_helpers import TINY

import diffctl
from diffctl.errors import UsageError
from diffctl.runs import Run, compose
from diffctl.training.config import TrainConfig
from diffctl.training.trainer import BatchTooLarge, Trainer


class Tiny(torch.nn.Module):
    """A small denoiser with BatchNorm (running statistics) and dropout (global RNG)."""

    def __init__(self):
        super().__init__()
        self.prediction = "epsilon"
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.BatchNorm1d(32),
                                       torch.nn.Dropout(0.1), torch.nn.SiLU(),
                                       torch.nn.Linear(32, 2))

    def forward(self, x, t, cond=None):
        return self.net(torch.cat([x, t[:, None].float() / 1000], dim=1))


def runs_out_above(limit: int, error: type[Exception] = torch.OutOfMemoryError,
                   message: str = "CUDA out of memory. Tried to allocate 2.00 GiB"):
    """A Tiny whose forward fails like an allocator would for batches above ``limit``."""

    class Limited(Tiny):
        calls: ClassVar[list[int]] = []

        def forward(self, x, t, cond=None):
            Limited.calls.append(len(x))
            if len(x) > limit:
                raise error(message)
            return super().forward(x, t, cond)

    return Limited()


def data(n: int = 1000) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0))


def cfg(**kw) -> TrainConfig:
    base = {"epochs": 1, "batch_size": 64, "lr": 1e-2, "checkpoint_every": 1, "device": "cpu"}
    return TrainConfig(**(base | kw))


@pytest.mark.parametrize(("error", "message"), [
    (torch.OutOfMemoryError, "CUDA out of memory. Tried to allocate 2.00 GiB"),
    (RuntimeError, "CUDA out of memory. Tried to allocate 2.00 GiB"),
    (RuntimeError, "[enforce fail at alloc_cpu.cpp:116] DefaultCPUAllocator: can't allocate "
                   "memory: you tried to allocate 1073741824 bytes"),
])
def test_a_batch_that_does_not_fit_is_a_one_line_error_naming_it(error, message) -> None:
    model = runs_out_above(32, error, message)
    trainer = Trainer(model, diffctl.create("scheduler", "linear"), data(), cfg(), seed=0)
    with pytest.raises(BatchTooLarge, match="batch size 64 does not fit") as info:
        trainer.check_memory()
    assert len(str(info.value).splitlines()) == 1
    assert "lower train.batch_size or set it to auto" in str(info.value)
    with pytest.raises(BatchTooLarge):  # fit checks memory first too
        Trainer(runs_out_above(32), diffctl.create("scheduler", "linear"), data(), cfg(),
                seed=0).fit()


def test_other_errors_of_the_trial_step_are_not_taken_for_out_of_memory() -> None:
    model = runs_out_above(8, ValueError, "shape mismatch")
    with pytest.raises(ValueError, match="shape mismatch"):
        Trainer(model, diffctl.create("scheduler", "linear"), data(), cfg(), seed=0).fit()


def test_auto_halves_the_batch_until_a_step_fits_and_records_it(tmp_path: Path) -> None:
    model = runs_out_above(100)
    trainer = Trainer(model, diffctl.create("scheduler", "linear"), data(),
                      cfg(batch_size="auto", max_batch_size=512), seed=0,
                      checkpoint_dir=tmp_path)
    assert trainer.check_memory() == 64  # 512, 256, 128 fail; 64 fits
    assert type(model).calls[:4] == [512, 256, 128, 64]
    assert trainer.batch_size == 64 and trainer.steps_per_epoch == 1000 // 64 + 1
    state = trainer.fit()
    assert state.batch_size == 64
    assert max(type(model).calls[4:]) <= 64  # training never tries a larger batch
    assert json.loads((tmp_path / "epoch-0001/state.json").read_text())["batch_size"] == 64
    # capped at the training split: 300 examples start at 300, not at max_batch_size
    small = Trainer(Tiny(), diffctl.create("scheduler", "linear"), data(300),
                    cfg(batch_size="auto", max_batch_size=1024), seed=0)
    assert small.check_memory() == 300


def test_the_trial_step_changes_no_weight_buffer_gradient_or_random_state() -> None:
    model = Tiny()
    trainer = Trainer(model, diffctl.create("scheduler", "linear"), data(), cfg(), seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    trainer.check_memory()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_runs_check_memory_before_writing_and_resume_with_the_recorded_batch(
        tmp_path: Path, monkeypatch) -> None:
    from diffctl_models.residual_mlp import ResidualMLPDenoiser

    original = ResidualMLPDenoiser.forward

    def limited(self, x_t, t, cond=None):
        if len(x_t) > 128:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return original(self, x_t, t, cond)

    monkeypatch.setattr(ResidualMLPDenoiser, "forward", limited)
    with pytest.raises(UsageError, match="batch size 256 does not fit") as info:
        Run.create(compose(overrides=[*TINY, "train.batch_size=256"]), tmp_path / "r").train()
    assert len(str(info.value).splitlines()) == 1 and not (tmp_path / "r").exists()
    run = Run.create(compose(overrides=[*TINY, "train.batch_size=auto",
                                        "train.max_batch_size=512"]), tmp_path / "auto")
    assert run.train()["batch_size"] == 128
    # with memory to spare later, resuming still trains with the batch the run started with
    monkeypatch.setattr(ResidualMLPDenoiser, "forward", original)
    again = Run.open(tmp_path / "auto")
    summary = again.resume(epochs=3)
    assert summary["batch_size"] == 128 and summary["epoch"] == 3
    assert again.finalize()["train"]["batch_size"] == 128


def test_early_stopping_says_that_it_stopped_and_why(tmp_path: Path) -> None:
    values = iter([3.0, 1.0, 2.0, 2.5, 2.7, 2.9])
    trainer = Trainer(Tiny(), diffctl.create("scheduler", "linear"), data(256),
                      cfg(epochs=6, early_stopping_patience=2), seed=0, checkpoint_dir=tmp_path,
                      evaluate=lambda m, s: {"test-loss": next(values)})
    state = trainer.fit()
    assert state.stopped_early and state.epoch == 4
    assert state.stop_reason == ("stopped early at epoch 4 of 6: test-loss did not improve for "
                                 "2 evaluation(s) in a row (best 1 at epoch 2)")
