"""Distillation: the objective, the frozen teacher in the trainer, the teacher checks of the
run layer, and a distilled run through the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from study_helpers import TINY, cli, sets

import diffctl
from diffctl.errors import UsageError
from diffctl.runs import Run, compose
from diffctl.runs.teacher import check_teacher
from diffctl.training.config import TrainConfig
from diffctl.training.distill import distillation_loss
from diffctl.training.objective import diffusion_loss
from diffctl.training.trainer import Trainer


class Tiny(torch.nn.Module):
    def __init__(self, prediction: str = "epsilon", width: int = 16):
        super().__init__()
        self.prediction = prediction
        self.net = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.SiLU(),
                                       torch.nn.Linear(width, 2))

    def forward(self, x, t, cond=None):
        return self.net(torch.cat([x, t[:, None].float() / 1000], dim=1))


def batch(n: int = 64):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(n, 2, generator=g), torch.randint(0, 1000, (n,), generator=g),
            torch.randn(n, 2, generator=g))


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v"])
def test_a_student_equal_to_its_teacher_has_zero_distillation_loss(prediction: str) -> None:
    sched = diffctl.create("scheduler", "cosine")
    teacher = Tiny(prediction)
    student = copy.deepcopy(teacher)
    x0, t, noise = batch()
    loss = distillation_loss(student, teacher, sched, x0, t, noise)
    assert float(loss.detach()) == 0.0
    # and a different student has a positive loss
    assert float(distillation_loss(Tiny(prediction), teacher, sched, x0, t, noise).detach()) > 0


@torch.no_grad()
def test_the_weight_mixes_teacher_and_data_terms() -> None:
    sched = diffctl.create("scheduler", "linear")
    teacher, student = Tiny(), Tiny()
    x0, t, noise = batch()
    data = float(diffusion_loss(student, sched, x0, t, noise))
    to_teacher = float(distillation_loss(student, teacher, sched, x0, t, noise, weight=1.0))
    assert float(distillation_loss(student, teacher, sched, x0, t, noise, weight=0.0)) == \
        pytest.approx(data, rel=1e-6)
    mixed = float(distillation_loss(student, teacher, sched, x0, t, noise, weight=0.25))
    assert mixed == pytest.approx(0.25 * to_teacher + 0.75 * data, rel=1e-6)
    with pytest.raises(ValueError, match="predicts 'sample'"):
        distillation_loss(Tiny("epsilon"), Tiny("sample"), sched, x0, t, noise)


def test_gradients_reach_only_the_student(tmp_path: Path) -> None:
    sched = diffctl.create("scheduler", "linear")
    teacher, student = Tiny(width=32), Tiny()
    before_teacher = copy.deepcopy(teacher.state_dict())
    before_student = copy.deepcopy(student.state_dict())
    x0, t, noise = batch()
    distillation_loss(student, teacher, sched, x0, t, noise).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    student.zero_grad()
    g = torch.Generator().manual_seed(0)
    data = torch.randn(256, 2, generator=g)
    cfg = TrainConfig(epochs=2, batch_size=64, lr=1e-2, checkpoint_every=2, device="cpu")
    trainer = Trainer(student, sched, data, cfg, seed=0, teacher=teacher)
    trainer.fit()
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before_teacher[key]), key
    assert any(not torch.equal(v, before_student[k]) for k, v in student.state_dict().items())


def test_the_student_moves_towards_its_teacher() -> None:
    sched = diffctl.create("scheduler", "linear")
    teacher = Tiny(width=32)
    student = Tiny()
    x0, t, noise = batch(512)
    start = float(distillation_loss(student, teacher, sched, x0, t, noise).detach())
    cfg = TrainConfig(epochs=20, batch_size=64, lr=1e-2, checkpoint_every=20, device="cpu",
                      ema_decay=None)
    Trainer(student, sched, x0, cfg, seed=0, teacher=teacher).fit()
    assert float(distillation_loss(student, teacher, sched, x0, t, noise).detach()) < 0.5 * start


def _components(shape=(2,), classes=None, prediction="epsilon", schedule="linear", T=1000):
    model = SimpleNamespace(prediction=prediction, num_classes=classes)
    return SimpleNamespace(
        dataset=SimpleNamespace(sample_shape=shape), denoiser=model,
        scheduler=diffctl.create("scheduler", schedule, num_train_timesteps=T))


@pytest.mark.parametrize(("student", "message"), [
    (_components(T=500), "T = 1000 training timesteps, the student 500"),
    (_components(schedule="cosine"), "another noise schedule (kind linear"),
    (_components(prediction="v"), "predicts epsilon, the student v"),
    (_components(shape=(1, 16, 16)), "samples shaped (2,), the student's data is shaped"),
    (_components(classes=10), "is unconditional and the student has num_classes 10"),
])
def test_teacher_and_student_mismatches_are_one_line(student, message) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")) \
            as info:
        check_teacher(_components(), student, "runs/t")
    assert len(str(info.value).splitlines()) == 1
    conditional = _components(classes=10)
    with pytest.raises(UsageError, match="class-conditional with 10 classes"):
        check_teacher(conditional, _components(classes=None))
    check_teacher(conditional, _components(classes=10))  # same classes: fine


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """A tiny trained residual-MLP teacher on two-moons (the library API)."""
    folder = tmp_path_factory.mktemp("teacher")
    run = Run.create(compose(overrides=TINY), folder / "teacher")
    run.train()
    run.finalize()
    return folder / "teacher"


@pytest.mark.parametrize(("extra", "message"), [
    ("denoiser.prediction=sample", "predicts epsilon, the student sample"),
    ("scheduler.name=sigmoid", "another noise schedule"),
    ("scheduler.num_train_timesteps=500", "T = 1000 training timesteps"),
    ("distill.checkpoint=epoch-0099", "epoch-0099"),
    ("distill.teacher=nowhere", "distill.teacher: not a run directory"),
])
def test_mismatched_teachers_stop_before_anything_is_written(tmp_path: Path, teacher_dir: Path,
                                                              extra, message) -> None:
    config = compose(overrides=[*TINY, f"distill.teacher={teacher_dir}", extra])
    with pytest.raises(UsageError, match=message) as info:
        Run.create(config, tmp_path / "student").train()
    assert len(str(info.value).splitlines()) == 1
    assert not (tmp_path / "student").exists()


def test_a_mismatched_teacher_on_the_command_line_is_one_line_exit_2(tmp_path: Path,
                                                                      teacher_dir: Path) -> None:
    for extra, message in (("denoiser.prediction=v", "predicts epsilon, the student v"),
                           ("distill.weight=2", "distill.weight")):
        proc = cli("run", *sets(*TINY, f"distill.teacher={teacher_dir}", extra),
                   "--out", "student", cwd=tmp_path, check=False)
        assert proc.returncode == 2, proc.stderr
        err = proc.stderr.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
        assert not (tmp_path / "student").exists()


def test_a_distilled_run_through_the_cli(tmp_path: Path, teacher_dir: Path) -> None:
    cli("run", *sets(*TINY, "denoiser.size_factor=0.5", f"distill.teacher={teacher_dir}",
                     "distill.checkpoint=last", "distill.weight=0.8"),
        "--out", "student", "--no-plots", cwd=tmp_path)
    report = json.loads((tmp_path / "student/metrics.json").read_text())
    source = report["train"]["distilled_from"]
    assert source["checkpoint"] == "epoch-0002" and source["weight"] == 0.8
    assert source["teacher_parameters"] > report["train"]["parameters"]
    config = yaml.safe_load((tmp_path / "student/config.yaml").read_text())
    assert config["distill"] == {"teacher": str(teacher_dir), "checkpoint": "last",
                                 "use_ema": True, "weight": 0.8}
    assert config["denoiser"]["size_factor"] == 0.5
    # resuming a distilled run loads the teacher again and continues to the end
    cli("run", "--resume", "student", "--epochs", "3", "--no-plots", cwd=tmp_path)
    assert json.loads((tmp_path / "student/metrics.json").read_text())["train"]["epoch"] == 3
