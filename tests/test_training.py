"""Trainer pieces: objective targets and weights, EMA, LR schedule, checkpoints, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import diffctl
from diffctl.training.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    read_pointer,
    save_checkpoint,
)
from diffctl.training.config import TrainConfig
from diffctl.training.ema import EMA
from diffctl.training.lr_schedule import lr_multiplier, scaled_lr
from diffctl.training.objective import diffusion_loss, snr_weight
from diffctl.training.trainer import Trainer, TrainingDiverged


class Tiny(torch.nn.Module):
    def __init__(self, prediction: str = "epsilon"):
        super().__init__()
        self.prediction = prediction
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.SiLU(),
                                       torch.nn.Linear(32, 2))

    def forward(self, x, t, cond=None):
        return self.net(torch.cat([x, t[:, None].float() / 1000], dim=1))


def data(n: int = 512) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=g) * 0.3 + torch.tensor([1.0, -1.0])


def cfg(**kw) -> TrainConfig:
    base = {"epochs": 4, "batch_size": 64, "lr": 1e-2, "checkpoint_every": 2, "device": "cpu"}
    return TrainConfig(**(base | kw))


# --- objective ---------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v"])
def test_loss_is_zero_for_the_perfect_model(prediction: str) -> None:
    """A model that outputs the exact target of its prediction type has zero loss."""
    sched = diffctl.create("scheduler", "cosine")
    x0, noise = data(16).double(), torch.randn(16, 2, dtype=torch.float64)
    t = torch.arange(16) * 60

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.prediction = prediction

        def forward(self, x_t, t, cond=None):
            a = sched.alpha_bar(t, x_t)
            return {"epsilon": noise, "sample": x0,
                    "v": a.sqrt() * noise - (1 - a).sqrt() * x0}[prediction]

    for weighting in ("uniform", "min-snr"):
        loss = diffusion_loss(Oracle(), sched, x0, t, noise, weighting=weighting)
        assert float(loss) == pytest.approx(0.0, abs=1e-20)


def test_min_snr_weights_follow_hang_et_al() -> None:
    snr = torch.tensor([0.1, 1.0, 5.0, 50.0])
    torch.testing.assert_close(snr_weight(snr, "epsilon", "min-snr", 5.0),
                               torch.tensor([1.0, 1.0, 1.0, 0.1]))
    torch.testing.assert_close(snr_weight(snr, "sample", "min-snr", 5.0),
                               torch.tensor([0.1, 1.0, 5.0, 5.0]))
    torch.testing.assert_close(snr_weight(snr, "v", "min-snr", 5.0),
                               torch.tensor([0.1 / 1.1, 0.5, 5 / 6, 5 / 51]))
    assert torch.equal(snr_weight(snr, "v", "uniform", 5.0), torch.ones(4))


# --- EMA and learning rate --------------------------------------------------------------------
def test_ema_tracks_weights_with_warmup() -> None:
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.9, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    with torch.no_grad():
        model.weight.fill_(1.0)
    before = ema.shadow.weight.clone()
    ema.update(model)
    torch.testing.assert_close(ema.shadow.weight, 0.1 * before + 0.9 * torch.ones(2, 2))
    for _ in range(200):
        ema.update(model)
    torch.testing.assert_close(ema.shadow.weight, torch.ones(2, 2))
    assert ema.current_decay() == 0.9


def test_lr_schedules_and_large_batch_scaling() -> None:
    assert lr_multiplier(0, 100, "constant", 10) == pytest.approx(0.1)
    assert lr_multiplier(9, 100, "constant", 10) == 1.0
    assert lr_multiplier(10, 100, "cosine", 10) == pytest.approx(1.0)
    assert lr_multiplier(55, 100, "cosine", 10) == pytest.approx(0.5)
    assert lr_multiplier(100, 100, "cosine", 10) == pytest.approx(0.0, abs=1e-12)
    assert scaled_lr(1e-4, 1280, 128, "sqrt") == pytest.approx(1e-4 * math.sqrt(10))
    assert scaled_lr(1e-4, 1280, 128, "linear") == pytest.approx(1e-3)
    assert scaled_lr(1e-4, 1280, 128, "none") == 1e-4


# --- checkpoints ------------------------------------------------------------------------------
def test_checkpoint_round_trip_with_optimizer_and_ema(tmp_path: Path) -> None:
    model = Tiny()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long)).sum().backward()
    opt.step()
    ema = EMA(model).shadow
    path = save_checkpoint(tmp_path, "epoch-0001", model, opt, {"step": 3, "epoch": 1}, ema)
    assert read_pointer(tmp_path / "last") == path
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir() if p.is_dir())
    other, other_opt, other_ema = Tiny(), None, Tiny()
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-3)
    state = load_checkpoint(path, other, other_opt, other_ema)
    assert state["step"] == 3
    for a, b in zip(model.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)
    sa, sb = opt.state_dict(), other_opt.state_dict()
    assert torch.equal(sa["state"][0]["exp_avg"], sb["state"][0]["exp_avg"])
    assert sa["param_groups"][0]["lr"] == sb["param_groups"][0]["lr"]


def test_corrupted_checkpoint_names_the_file(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, "epoch-0001", Tiny(), None, {"step": 0, "epoch": 1})
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_checkpoint(path, Tiny())
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope", Tiny())


# --- the loop ---------------------------------------------------------------------------------
def test_training_reduces_loss_and_checkpoints(tmp_path: Path) -> None:
    sched = diffctl.create("scheduler", "linear")
    evals = []
    trainer = Trainer(Tiny(), sched, data(), cfg(epochs=6, log_every=1), seed=1,
                      checkpoint_dir=tmp_path / "ck", evaluate=lambda m, s: {"test-loss": 1.0},
                      on_eval=lambda s, v: evals.append(s.epoch))
    state = trainer.fit()
    assert state.epoch == 6 and state.step == 6 * 8
    assert evals == [2, 4, 6]
    assert [p.name for p in list_checkpoints(tmp_path / "ck")] == \
        ["epoch-0002", "epoch-0004", "epoch-0006"]
    first, last = state.losses[0][1], state.losses[-1][1]
    assert last < first


def test_resume_continues_exactly(tmp_path: Path) -> None:
    """4 epochs straight == 2 epochs, then a new process-like trainer resumed for 2 more."""
    sched = diffctl.create("scheduler", "linear")
    torch.manual_seed(0)
    straight = Trainer(Tiny(), sched, data(), cfg(epochs=4), seed=3,
                       checkpoint_dir=tmp_path / "a")
    straight.fit()

    torch.manual_seed(0)
    first = Trainer(Tiny(), sched, data(), cfg(epochs=2), seed=3, checkpoint_dir=tmp_path / "b")
    first.fit()
    torch.manual_seed(123)  # a fresh model: everything must come from the checkpoint
    second = Trainer(Tiny(), sched, data(), cfg(epochs=4), seed=3,
                     checkpoint_dir=tmp_path / "b")
    assert second.resume(tmp_path / "b" / "epoch-0002")["epoch"] == 2
    assert second.state.epoch == 2
    second.fit()
    for a, b in zip(straight.model.parameters(), second.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    for a, b in zip(straight.ema.shadow.parameters(), second.ema.shadow.parameters(),
                    strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    sched = diffctl.create("scheduler", "linear")

    class Exploding(Tiny):
        calls = 0

        def forward(self, x, t, cond=None):
            Exploding.calls += 1
            out = super().forward(x, t, cond)
            return out * float("nan") if Exploding.calls > 20 else out

    trainer = Trainer(Exploding(), sched, data(), cfg(epochs=4, checkpoint_every=1), seed=0,
                      checkpoint_dir=tmp_path)
    trainer.check_memory()  # the trial step before training is not a training step
    Exploding.calls = 0
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 20.*epoch-0002"):
        trainer.fit()
    kept = read_pointer(tmp_path / "last")
    assert kept is not None and kept.name == "epoch-0002"
    load_checkpoint(kept, Tiny())  # still readable


def test_best_checkpoint_and_early_stopping(tmp_path: Path) -> None:
    sched = diffctl.create("scheduler", "linear")
    values = iter([3.0, 1.0, 2.0, 2.5, 2.7, 2.9])
    trainer = Trainer(Tiny(), sched, data(), cfg(epochs=6, checkpoint_every=1,
                                                 early_stopping_patience=2),
                      seed=0, checkpoint_dir=tmp_path,
                      evaluate=lambda m, s: {"test-loss": next(values)})
    state = trainer.fit()
    assert read_pointer(tmp_path / "best").name == "epoch-0002"
    assert state.best_value == 1.0 and state.best_epoch == 2
    assert state.stopped_early and state.epoch == 4


# --- the remaining trainer options ---------------------------------------------------------------
def test_device_choice() -> None:
    from diffctl.errors import UsageError
    from diffctl.training.trainer import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert pick_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            pick_device("cuda")


def test_grad_clip_bounds_the_update(tmp_path: Path) -> None:
    """The optimiser sees gradients whose global norm is at most grad_clip (large data makes
    the unclipped norm exceed it)."""
    sched = diffctl.create("scheduler", "linear")
    seen: list[float] = []

    def run(clip):
        torch.manual_seed(0)
        trainer = Trainer(Tiny(), sched, data(64) * 100, cfg(epochs=1, grad_clip=clip), seed=0)
        original = trainer.optimizer.step

        def step(*a, **k):
            seen.append(float(torch.norm(torch.stack(
                [p.grad.norm() for p in trainer.model.parameters()]))))
            return original(*a, **k)

        trainer.optimizer.step = step
        trainer.fit()

    run(None)
    unclipped = seen.pop()
    run(0.5)
    assert unclipped > 0.5 and seen[-1] <= 0.5 + 1e-5


def test_optimizer_choice_and_weight_decay() -> None:
    sched = diffctl.create("scheduler", "linear")
    adam = Trainer(Tiny(), sched, data(), cfg(optimizer="adam"), seed=0)
    adamw = Trainer(Tiny(), sched, data(), cfg(optimizer="adamw", weight_decay=0.1), seed=0)
    assert type(adam.optimizer) is torch.optim.Adam
    assert type(adamw.optimizer) is torch.optim.AdamW
    assert adamw.optimizer.param_groups[0]["weight_decay"] == 0.1


def test_log_every_time_and_rng_state_in_checkpoints(tmp_path: Path) -> None:
    import json

    sched = diffctl.create("scheduler", "linear")
    events = []
    trainer = Trainer(Tiny(), sched, data(), cfg(epochs=2, log_every=3), seed=7,
                      checkpoint_dir=tmp_path, on_step=events.append)
    state = trainer.fit()
    assert [s for s, _ in state.losses] == [1, 3, 6, 9, 12, 15]  # 16 steps, every 3 + first
    assert len(events) == 16 and events[-1].step == 16 and events[-1].steps_per_second > 0
    assert state.train_seconds > 0
    saved = json.loads((tmp_path / "epoch-0002" / "state.json").read_text())
    assert saved["rng"]["seed"] == 7 and saved["rng"]["next_epoch"] == 2
    assert saved["train_seconds"] == pytest.approx(state.train_seconds)
    other = Trainer(Tiny(), sched, data(), cfg(epochs=4), seed=8, checkpoint_dir=tmp_path)
    from diffctl.errors import UsageError

    with pytest.raises(UsageError, match="seed 7"):
        other.resume(tmp_path / "epoch-0002")
