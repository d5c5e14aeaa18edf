"""The models a study analysis compares: the teacher at the checkpoint its students learned
from, and every finished student at its final weights (those its report scored)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from diffctl.errors import UsageError
from diffctl.runs.results import LoadedModel
from diffctl.study.sizes import SizeStudy

TEACHER = "teacher"


@dataclass
class StudyModel:
    """One model of the comparison: ``mode`` is teacher, distilled or from-data."""

    name: str
    size: float
    mode: str
    loaded: LoadedModel
    report: dict[str, Any] | None

    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.loaded.model.parameters())


def load_models(study: SizeStudy, device: str = "auto") -> list[StudyModel]:
    """Teacher first, then the finished students in the manifest's order, on ``device``
    (EMA weights where each run samples from them), in eval mode."""
    from diffctl.runs.run import Run

    try:
        teacher_run = Run.open(study.teacher)
        teacher = teacher_run.load_model(study.teacher_checkpoint,
                                         use_ema=bool(study.manifest["config"]["use_ema"]),
                                         device=device)
    except UsageError as exc:
        raise UsageError(f"teacher of study {study.path}: {exc}") from None
    size = study.manifest.get("teacher_size") or 1.0
    models = [StudyModel(TEACHER, float(size), TEACHER, teacher, teacher_run.dir.report())]
    finished = study.finished()
    if not finished:
        raise UsageError(f"study {study.path} has no finished student yet; run "
                         "`diffctl study sizes` to train them")
    for point in finished:
        run = Run.open(study.run_dir(point))
        loaded = run.load_model("last", use_ema=run.config.sample.use_ema, device=device)
        models.append(StudyModel(point.name, point.size, point.mode, loaded,
                                 run.dir.report()))
    return models
