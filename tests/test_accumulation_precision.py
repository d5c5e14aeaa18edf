"""Gradient accumulation, fp16 with a gradient scaler, and mid-epoch checkpoints of the
in-memory path (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_harness import assert_clean_error, invoke, tiny_sets
from pydantic import ValidationError

import diffctl
from diffctl.training.config import TrainConfig
from diffctl.training.trainer import Trainer


class Tiny(torch.nn.Module):
    """A small denoiser in the dtype of its input, with dropout (torch's global RNG)."""

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        self.prediction = "epsilon"
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.SiLU(),
                                       torch.nn.Dropout(dropout), torch.nn.Linear(32, 2))

    def forward(self, x, t, cond=None):
        return self.net(torch.cat([x, (t[:, None] / 1000).to(x.dtype)], dim=1))


def data(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, 2, generator=g) * 0.3 + torch.tensor([1.0, -1.0])).to(dtype)


def cfg(**kw) -> TrainConfig:
    base = {"epochs": 2, "batch_size": 32, "lr": 1e-2, "checkpoint_every": 1, "device": "cpu"}
    return TrainConfig(**(base | kw))


def train(config: TrainConfig, n: int, *, dtype=torch.float32, dropout: float = 0.0,
          **kw) -> Trainer:
    torch.manual_seed(0)
    model = Tiny(dropout).to(dtype)
    trainer = Trainer(model, diffctl.create("scheduler", "linear"), data(n, dtype), config,
                      seed=5, **kw)
    if trainer.ema is not None:
        trainer.ema.shadow.to(dtype)
    trainer.fit()
    return trainer


# -- gradient accumulation -----------------------------------------------------------------------
@pytest.mark.parametrize("n", [256, 263])  # 263: a short last batch of 7, split 2+2+2+1
def test_four_micro_batches_train_the_weights_of_one_batch_in_float64(n: int) -> None:
    one = train(cfg(), n, dtype=torch.float64)
    four = train(cfg(grad_accum_steps=4), n, dtype=torch.float64)
    # steps, logged losses, EMA updates: one optimiser step per batch either way
    assert four.state.step == one.state.step == 2 * one.steps_per_epoch
    assert [s for s, _ in four.state.losses] == [s for s, _ in one.state.losses]
    assert four.ema.updates == one.ema.updates
    for (_, a), (_, b) in zip(one.state.losses, four.state.losses, strict=True):
        assert a == pytest.approx(b, rel=1e-12)
    for a, b in zip(one.model.parameters(), four.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(one.ema.shadow.parameters(), four.ema.shadow.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_each_micro_batch_is_one_forward_pass_of_a_quarter_batch() -> None:
    sizes: list[int] = []

    class Counting(Tiny):
        def forward(self, x, t, cond=None):
            if self.training and torch.is_grad_enabled():
                sizes.append(len(x))
            return super().forward(x, t, cond)

    torch.manual_seed(0)
    trainer = Trainer(Counting(), diffctl.create("scheduler", "linear"), data(64),
                      cfg(epochs=1, grad_accum_steps=4), seed=5)
    trainer.check_memory()
    assert sizes == [8]  # the memory check tries one micro-batch
    sizes.clear()
    trainer.fit()
    assert sizes == [8] * 8 and trainer.state.step == 2


def test_a_batch_that_does_not_split_into_micro_batches_is_refused() -> None:
    with pytest.raises(ValidationError, match="batch_size 30 is not divisible by "
                                              "grad_accum_steps 4"):
        cfg(batch_size=30, grad_accum_steps=4)
    cfg(batch_size="auto", grad_accum_steps=4)  # auto picks a multiple


def test_the_cli_refuses_an_indivisible_batch_in_one_line(tmp_path: Path) -> None:
    result = invoke("run", "--out", tmp_path / "r", "--no-plots",
                    *tiny_sets("train.batch_size=30", "train.grad_accum_steps=4"))
    assert_clean_error(result, (2,), "grad_accum_steps")
    assert not (tmp_path / "r").exists()


# -- fp16 ----------------------------------------------------------------------------------------
def test_fp16_trains_under_autocast_with_a_scaler_that_survives_resume(tmp_path: Path) -> None:
    seen: list[torch.dtype] = []

    class Watching(Tiny):
        def forward(self, x, t, cond=None):
            out = super().forward(x, t, cond)
            seen.append(out.dtype)
            return out

    def make(epochs: int, folder: str, scaler: bool = True) -> Trainer:
        torch.manual_seed(0)
        trainer = Trainer(Watching(), diffctl.create("scheduler", "linear"), data(128),
                          cfg(epochs=epochs, precision="fp16"), seed=5,
                          checkpoint_dir=tmp_path / folder)
        if scaler:  # a scale that overflows at first and grows every 3 good steps
            trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**18, growth_interval=3)
        return trainer

    straight = make(4, "a")
    straight.fit()
    assert straight.scaler is not None and set(seen) == {torch.float16}
    first = make(2, "b")
    first.fit()
    saved = json.loads((tmp_path / "b/epoch-0002/state.json").read_text())["grad_scaler"]
    assert saved == first.scaler.state_dict()
    # the scale backed off (fp16 overflow), then grew; the tracker counts good steps
    assert saved["scale"] != 2.0**18 and saved["growth_interval"] == 3
    assert saved["_growth_tracker"] > 0

    resumed = make(4, "b", scaler=False)  # the default scaler, then the checkpoint's state
    resumed.resume(tmp_path / "b/epoch-0002")
    assert resumed.scaler.get_scale() == saved["scale"]
    assert resumed.scaler.state_dict()["_growth_tracker"] == saved["_growth_tracker"]
    resumed.fit()
    assert resumed.scaler.state_dict() == straight.scaler.state_dict()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_teacher_runs_under_the_students_autocast() -> None:
    seen: list[tuple[bool, torch.dtype]] = []

    class Teacher(Tiny):
        def forward(self, x, t, cond=None):
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            return super().forward(x, t, cond)

    torch.manual_seed(0)
    trainer = Trainer(Tiny(), diffctl.create("scheduler", "linear"), data(64),
                      cfg(epochs=1, precision="fp16"), seed=5, teacher=Teacher())
    trainer.fit()
    assert seen and set(seen) == {(True, torch.float16)}


# -- mid-epoch checkpoints -----------------------------------------------------------------------
class Interrupt(Exception):
    pass


def test_a_mid_epoch_checkpoint_resumes_exactly(tmp_path: Path) -> None:
    """Save at step 5 of an 8-step epoch, stop as a kill would, resume: the same weights as
    an uninterrupted run, with dropout (global RNG) and accumulation."""
    config = cfg(epochs=2, grad_accum_steps=2)
    straight = train(config, 256, dropout=0.2)

    def stop_at_5(event) -> None:
        if event.step == 5:
            interrupted.save("step-5")
            raise Interrupt

    torch.manual_seed(0)
    interrupted = Trainer(Tiny(0.2), diffctl.create("scheduler", "linear"), data(256), config,
                          seed=5, checkpoint_dir=tmp_path, on_step=stop_at_5)
    with pytest.raises(Interrupt):
        interrupted.fit()
    state = json.loads((tmp_path / "step-5/state.json").read_text())
    assert state["batch_in_epoch"] == 5 and state["rng"]["next_batch"] == 5
    assert "rng.safetensors" in state["files"]

    torch.manual_seed(99)  # everything must come from the checkpoint
    resumed = Trainer(Tiny(0.2), diffctl.create("scheduler", "linear"), data(256), config,
                      seed=5, checkpoint_dir=tmp_path)
    resumed.resume(tmp_path / "step-5")
    torch.manual_seed(1234)  # nor from the global RNG as it stands
    resumed.fit()
    assert resumed.state.step == straight.state.step
    for a, b in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(straight.ema.shadow.parameters(), resumed.ema.shadow.parameters(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
