"""A model-size study folder: one student run per size (distilled, and optionally trained on
the data alone), run as a :class:`~diffctl.runs.sweep.Sweep`.

::

    <study>/study.json          teacher, student denoiser, size field, sizes, points
    <study>/sweep.json          the sweep manifest (base config and each point's fields)
    <study>/distilled-0.1/      a run directory per point: distilled-<size>, from-data-<size>
    <study>/analysis/           what ``analyze`` computes (diffctl.study.analysis)

A student's config is the teacher's (dataset, schedule, sampler, training, evaluation, seed)
with the student denoiser: the teacher's denoiser when it declares a ``size_field``, else the
``student`` its registration names (unet-mini -> student-unet), keeping every teacher option
the student's config has; then the study's ``set`` overrides, then the size and, for
distilled points, ``distill`` naming the teacher at its resolved checkpoint (``best`` is
pinned to the folder it pointed to, so every student learns from the same weights). The
from-data student of a size has the same seed, hence the same initial weights and batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffctl.component_info import DenoiserInfo
from diffctl.errors import UsageError
from diffctl.registry import Registry, get_registry
from diffctl.runs import directory as files
from diffctl.runs.sweep import PointResult, Sweep, SweepPoint
from diffctl.study.config import SizeStudyConfig

MANIFEST = "study.json"
ANALYSIS_DIR = "analysis"
DISTILLED, FROM_DATA = "distilled", "from-data"


@dataclass(frozen=True)
class StudyPoint:
    """One student: its run directory name, size factor and how it was trained."""

    name: str
    size: float
    mode: str  # distilled or from-data


def point_name(mode: str, size: float) -> str:
    return f"{mode}-{size:g}"


def student_denoiser(registry: Registry, teacher_denoiser: str,
                     chosen: str | None = None) -> tuple[str, str]:
    """(student denoiser, its size field): ``chosen``, else the teacher's own denoiser when
    it is width-scalable, else the student its registration declares."""
    name = chosen
    if name is None:
        info = registry.get("denoiser", teacher_denoiser).info
        if isinstance(info, DenoiserInfo) and info.size_field:
            name = teacher_denoiser
        elif isinstance(info, DenoiserInfo) and info.student:
            name = info.student
        else:
            raise UsageError(f"the teacher's denoiser '{teacher_denoiser}' is not width-"
                             "scalable and names no student; pass --denoiser with one that "
                             "declares a size field")
    info = registry.get("denoiser", name).info
    if not isinstance(info, DenoiserInfo) or not info.size_field:
        scalable = [s.name for s in registry.registered("denoiser")
                    if isinstance(s.info, DenoiserInfo) and s.info.size_field]
        raise UsageError(f"denoiser '{name}' declares no size field (width-scalable: "
                         f"{', '.join(scalable) or 'none'})")
    return name, info.size_field


class SizeStudy:
    """A study folder (module docstring): its manifest and the sweep of its students."""

    def __init__(self, path: Path | str, manifest: dict[str, Any], sweep: Sweep):
        self.path = Path(path)
        self.manifest = manifest
        self.sweep = sweep

    def __repr__(self) -> str:
        return f"SizeStudy({str(self.path)!r}, sizes {self.sizes})"

    @property
    def teacher(self) -> Path:
        return Path(self.manifest["teacher"])

    @property
    def teacher_checkpoint(self) -> str:
        return self.manifest["teacher_checkpoint"]

    @property
    def sizes(self) -> list[float]:
        return list(self.manifest["sizes"])

    @property
    def points(self) -> list[StudyPoint]:
        return [StudyPoint(p["name"], p["size"], p["mode"]) for p in self.manifest["points"]]

    def run_dir(self, point: StudyPoint | str) -> Path:
        return self.path / (point if isinstance(point, str) else point.name)

    def finished(self) -> list[StudyPoint]:
        """Points whose run has its final report."""
        return [p for p in self.points if (self.run_dir(p) / files.REPORT).is_file()]

    # -- creating, opening, running -------------------------------------------------------------
    @classmethod
    def create(cls, config: SizeStudyConfig, out: Path | str | None = None, *,
               registry: Registry | None = None) -> SizeStudy:
        """Validate the study (the teacher run and checkpoint, the student denoiser, every
        student's config, the teacher against the students); nothing is written until
        :meth:`run`. ``out`` (default ``config.out``) may hold this same study already, which
        :meth:`run` then continues."""
        from diffctl.runs.run import Run
        from diffctl.training.checkpoint import resolve_checkpoint

        registry = registry or get_registry()
        out = out if out is not None else config.out
        if out is None:
            raise UsageError("name the study folder with --out (or out: in the study config)")
        try:
            teacher = Run.open(config.teacher, registry=registry)
            checkpoint = resolve_checkpoint(teacher.dir.checkpoints, config.checkpoint).name
        except UsageError as exc:
            raise UsageError(f"teacher: {exc}") from None
        student, field = student_denoiser(registry, teacher.config.denoiser.name,
                                          config.denoiser)
        base = teacher.config.model_dump(mode="json")
        base.update(name=None, distill=None, denoiser=_student_options(
            registry, student, teacher.config.denoiser.name, base["denoiser"]))
        teacher_path = str(Path(config.teacher).resolve())
        distill = {"teacher": teacher_path, "checkpoint": checkpoint,
                   "use_ema": config.use_ema, "weight": config.weight}
        modes = [DISTILLED, FROM_DATA] if config.from_data else [DISTILLED]
        points = [{"name": point_name(mode, size), "size": size, "mode": mode}
                  for mode in modes for size in config.sizes]
        # the sweep trains the largest (slowest) students first: with several workers the
        # small ones then fill the gaps at the end instead of one large one running alone
        sweep_points = [SweepPoint(p["name"], {
            f"denoiser.{field}": p["size"],
            "distill": distill if p["mode"] == DISTILLED else None})
            for p in sorted(points, key=lambda p: -p["size"])]
        sweep = Sweep.create(base, out, points=sweep_points, overrides=config.set,
                             registry=registry)
        manifest = {"kind": "sizes", "teacher": teacher_path, "teacher_checkpoint": checkpoint,
                    "teacher_denoiser": teacher.config.denoiser.name,
                    "teacher_size": teacher.config.denoiser.options().get(field),
                    "denoiser": student, "size_field": field, "sizes": config.sizes,
                    "from_data": config.from_data, "weight": config.weight,
                    "config": config.model_dump(mode="json"), "points": points}
        study = cls(out, manifest, sweep)
        study._check_location()
        study._check_teacher(next(p for p in sweep_points if p.values["distill"]))
        return study

    @classmethod
    def open(cls, path: Path | str, *, registry: Registry | None = None) -> SizeStudy:
        """The study in ``path``, from its manifest."""
        manifest_path = Path(path) / MANIFEST
        if not manifest_path.is_file():
            raise UsageError(f"not a study folder (no {MANIFEST}): {path}")
        manifest = files.read_json(manifest_path, "study manifest")
        if not isinstance(manifest, dict) or "points" not in manifest:
            raise UsageError(f"study manifest {manifest_path} is damaged")
        return cls(path, manifest, Sweep.open(path, registry=registry))

    def run(self, *, workers: int = 1, threads: int | None = None,
            on_point=None) -> list[PointResult]:
        """Train (or finish) every student; see :meth:`Sweep.run`."""
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / MANIFEST).is_file():
            files.write_atomic(self.path / MANIFEST, json.dumps(self.manifest, indent=1))
        return self.sweep.run(workers=workers, threads=threads, on_point=on_point)

    def _check_location(self) -> None:
        path = self.path / MANIFEST
        if path.is_file():
            existing = files.read_json(path, "study manifest")
            if existing != json.loads(json.dumps(self.manifest)):
                raise UsageError(f"{self.path} holds another study (its {MANIFEST} differs); "
                                 "use another --out")

    def _check_teacher(self, point: SweepPoint) -> None:
        """The teacher against the first distilled student, before anything is written."""
        from diffctl.runs.components import build
        from diffctl.runs.teacher import load_teacher

        config = self.sweep.config_of(point)
        components = build(config, self.sweep.registry)
        load_teacher(config, components, self.sweep.registry)


def _student_options(registry: Registry, student: str, teacher: str,
                     options: dict[str, Any]) -> dict[str, Any]:
    """The teacher's denoiser options the student's config has (all of them when the student
    is the teacher's own denoiser)."""
    if student == teacher:
        return dict(options)
    fields = registry.get("denoiser", student).config.model_fields
    return {"name": student, **{k: v for k, v in options.items()
                                if k in fields and k != "name"}}
