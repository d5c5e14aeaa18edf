"""The teacher of a distilled run: loaded from its run directory and checked against the
student before any training (docs/design.md, "Distillation").

A teacher is any trained run: ``Run.open(distill.teacher).load_model(distill.checkpoint,
use_ema=distill.use_ema)`` in eval mode, with gradients off; the trainer moves it to the
student's device, and its bf16 autocast (when ``train.precision`` is bf16) covers both
models. The student must share what makes the two outputs the same quantity: the number of
training timesteps T and the noise schedule, the prediction type, the shape of a sample and
the classes (a class-conditional teacher needs a conditional student with the same number
of classes, whose labels are passed through). Each mismatch is a one-line ``UsageError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from diffctl.errors import UsageError
from diffctl.registry import Registry
from diffctl.runs.components import Components, num_classes
from diffctl.runs.config import RunConfig


@dataclass
class Teacher:
    """A loaded teacher and where it came from (recorded in the student's report)."""

    model: torch.nn.Module
    run: Path
    checkpoint: str
    weight: float

    def describe(self) -> dict[str, Any]:
        return {"teacher": str(self.run), "checkpoint": self.checkpoint,
                "weight": self.weight,
                "teacher_parameters": sum(p.numel() for p in self.model.parameters())}


def load_teacher(config: RunConfig, student: Components, registry: Registry,
                 student_dir: Path | None = None) -> Teacher | None:
    """The teacher named by ``config.distill`` (None when the run is not distilled), checked
    against the student's built ``components``; loaded on the CPU (the trainer moves it)."""
    from diffctl.runs.run import Run  # the run module imports this one

    spec = config.distill
    if spec is None:
        return None
    path = Path(spec.teacher)
    if student_dir is not None and path.resolve() == Path(student_dir).resolve():
        raise UsageError(f"distill.teacher {path} is the student's own run directory")
    try:
        run = Run.open(path, registry=registry)
        loaded = run.load_model(spec.checkpoint, use_ema=spec.use_ema, device="cpu")
    except UsageError as exc:
        raise UsageError(f"distill.teacher: {exc}") from None
    check_teacher(loaded.components, student, path)
    model = loaded.model.eval().requires_grad_(False)
    return Teacher(model, path, loaded.checkpoint.name, spec.weight)


def check_teacher(teacher: Components, student: Components, where: Path | str = "") -> None:
    """One-line errors for every way the teacher's outputs would not be the quantity the
    student predicts."""
    name = f"the teacher ({where})" if where else "the teacher"
    t_sched, s_sched = teacher.scheduler, student.scheduler
    t_T, s_T = t_sched.num_train_timesteps, s_sched.num_train_timesteps
    if t_T != s_T:
        raise UsageError(f"{name} has T = {t_T} training timesteps, the student {s_T}; "
                         "distillation needs the same schedule")
    if not torch.allclose(t_sched.alphas_cumprod.double(), s_sched.alphas_cumprod.double(),
                          rtol=1e-6, atol=1e-9):
        mine, theirs = _schedule_difference(t_sched, s_sched)
        raise UsageError(f"{name} uses another noise schedule ({mine}) than the student "
                         f"({theirs}); distillation needs the same one")
    t_pred = getattr(teacher.denoiser, "prediction", "epsilon")
    s_pred = getattr(student.denoiser, "prediction", "epsilon")
    if t_pred != s_pred:
        raise UsageError(f"{name} predicts {t_pred}, the student {s_pred}; set the student's "
                         f"denoiser.prediction to {t_pred}")
    t_shape = tuple(teacher.dataset.sample_shape)
    s_shape = tuple(student.dataset.sample_shape)
    if t_shape != s_shape:
        raise UsageError(f"{name} was trained on samples shaped {t_shape}, the student's data "
                         f"is shaped {s_shape}")
    t_k, s_k = num_classes(teacher.denoiser), num_classes(student.denoiser)
    if t_k != s_k:
        if t_k is None:
            raise UsageError(f"{name} is unconditional and the student has num_classes "
                             f"{s_k}; distil an unconditional student")
        raise UsageError(f"{name} is class-conditional with {t_k} classes; the student needs "
                         f"denoiser.num_classes {t_k} (it has {s_k})")


def _schedule_difference(a: Any, b: Any) -> tuple[str, str]:
    """The config fields in which two schedules differ, as two short texts."""
    da = a.config.model_dump() if getattr(a, "config", None) is not None else {}
    db = b.config.model_dump() if getattr(b, "config", None) is not None else {}
    keys = [k for k in dict.fromkeys([*da, *db]) if da.get(k) != db.get(k)]
    if not keys:
        return "its own beta table", "another"

    def text(d: dict[str, Any]) -> str:
        return ", ".join(f"{k} {d[k]}" for k in keys if k in d) or "-"

    return text(da), text(db)
