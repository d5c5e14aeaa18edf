"""``analyze``: the analyses of a size study, computed and written to ``<study>/analysis/``.

Parts (any subset; quality and the summary are always made):

- ``mse``: :func:`diffctl.study.predictions.prediction_errors`, MSE between each student's
  and the teacher's predictions per timestep bin (``errors.json``, ``mse.csv``);
- ``denoising``: :func:`diffctl.study.sampling.denoising_frames`, states from x_T to x_0 from
  the same x_T for the teacher and every student (``denoising.npz``);
- ``time``: sampling latency per model (:func:`~diffctl.study.sampling.sampling_latency`),
  training time from the reports, prediction error against the timestep (``timing.json``;
  the errors come from the ``mse`` pass, run for either part);
- ``trajectory``: :func:`~diffctl.study.sampling.trajectory_distances` (``trajectory.json``);
- quality per size and efficiency (:func:`diffctl.study.summary.quality`, ``quality.json``)
  and one summary row per size (``summary.json``). A part not run now is taken from its file
  of an earlier call, so the summary grows as parts are added.

The held-out data, the sampler, its step count and the seed are the teacher run's.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffctl.errors import UsageError
from diffctl.registry import Registry, get_registry
from diffctl.runs import directory as files
from diffctl.runs.components import build_sampler, num_classes
from diffctl.seeds import stream_seed
from diffctl.study import predictions, sampling, summary
from diffctl.study.models import TEACHER, StudyModel, load_models
from diffctl.study.sizes import ANALYSIS_DIR, DISTILLED, SizeStudy

PARTS = ("mse", "denoising", "time", "trajectory")
FILES = {"errors": "errors.json", "mse_csv": "mse.csv", "denoising": "denoising.npz",
         "timing": "timing.json", "trajectory": "trajectory.json", "quality": "quality.json",
         "summary": "summary.json"}

Progress = Callable[[str, int, int], None] | None

#: Timed repeats of a latency measurement, at least (their median is reported).
MIN_REPEATS = 5


@dataclass
class AnalysisResult:
    """What :func:`analyze` computed (None: a part neither run now nor found on disk)."""

    folder: Path
    parts: list[str]
    errors: dict[str, Any] | None = None
    denoising: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    trajectory: dict[str, Any] | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    summary: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)  # name, size, mode, params


def analyze(study_path: Path | str, parts: tuple[str, ...] | list[str] = PARTS, *,
            num_samples: int = 256, batch_size: int = 64, steps: int | None = None,
            bins: int | None = 10, repeats: int = 5, denoising_samples: int = 4,
            frames: int = 10,
            device: str = "auto", seed: int | None = None, metric: str | None = None,
            on_progress: Progress = None, registry: Registry | None = None) -> AnalysisResult:
    """Run ``parts`` of the analysis on the study in ``study_path`` (see the module
    docstring) and write their files; ``num_samples`` held-out examples for the prediction
    errors and samples for the trajectories, ``batch_size`` for every batch and the latency,
    ``steps`` sampler steps (default: the teacher's ``sample.num_steps``), ``bins`` timestep
    bins of the MSE (None: one per timestep, T in all, the reference's full MSE), ``device`` auto,
    cpu, cuda or mps. Noise comes from the ``study-errors`` and ``study-sample`` streams of
    ``seed`` (default: the teacher run's seed; docs/design.md, "Seeds")."""
    import torch

    registry = registry or get_registry()
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise UsageError(f"unknown analysis {unknown[0]!r}; choose from {', '.join(PARTS)}")
    for name, value, low in (("--num-samples", num_samples, 1), ("--batch-size", batch_size, 1),
                             ("--bins", 1 if bins is None else bins, 1),
                             ("--repeats", repeats, MIN_REPEATS),
                             ("--frames", frames, 2), ("denoising samples",
                                                       denoising_samples, 1)):
        if value < low:
            raise UsageError(f"{name} must be at least {low}, got {value}")
    study = SizeStudy.open(study_path, registry=registry)
    models = load_models(study, device)
    teacher = models[0].loaded
    teacher_config = _teacher_config(study)
    T = teacher.components.scheduler.num_train_timesteps
    steps = steps if steps is not None else teacher_config.sample.num_steps
    seed = teacher_config.seed if seed is None else seed
    error_seed, sample_seed = stream_seed(seed, "study-errors"), stream_seed(seed, "study-sample")
    if not 1 <= steps <= T:
        raise UsageError(f"--steps must be in [1, {T}], got {steps}")
    bins = T if bins is None else bins
    if bins > T:
        raise UsageError(f"--bins must be at most T = {T}, got {bins}")
    folder = study.path / ANALYSIS_DIR
    folder.mkdir(exist_ok=True)
    scheduler, dataset = teacher.components.scheduler, teacher.components.dataset
    shape = tuple(dataset.sample_shape)
    sampler = build_sampler(teacher_config.sampler.name, teacher_config.sampler.options(),
                            teacher.model, registry)
    named = [(m.name, m.model) for m in models]
    result = AnalysisResult(folder, list(parts), models=[_describe(m) for m in models])

    def progress(label: str) -> Callable[[int, int], None] | None:
        return (lambda done, total: on_progress(label, done, total)) if on_progress else None

    with torch.no_grad():
        if "mse" in parts or "time" in parts:
            data = dataset.test_tensor()[:num_samples]
            labels = None
            if num_classes(teacher.model) is not None:
                labels = dataset.test_labels()[:len(data)]
            result.errors = predictions.prediction_errors(
                named, scheduler, data, labels, bins=bins, seed=error_seed, batch_size=batch_size,
                teacher=TEACHER, on_progress=progress("prediction errors"))
            _write_json(folder, "errors", result.errors)
            files.write_atomic(folder / FILES["mse_csv"], _mse_csv(result.errors))
        if "denoising" in parts:
            result.denoising = sampling.denoising_frames(
                named, sampler, scheduler, shape, num_samples=denoising_samples, steps=steps,
                frames=frames, seed=sample_seed)
            np.savez(folder / FILES["denoising"], states=result.denoising["states"],
                     timesteps=np.array(result.denoising["timesteps"]),
                     models=np.array(result.denoising["models"]))
        if "time" in parts:
            one_per_size = _one_per_size(models)
            result.timing = sampling.sampling_latency(
                [(m.name, m.model) for m in one_per_size], sampler, scheduler, shape,
                batch_size=batch_size, steps=steps, repeats=repeats, seed=sample_seed)
            result.timing["training"] = {
                m.name: ((m.report or {}).get("train") or {}).get("train_seconds")
                for m in models}
            result.timing["error_vs_timestep"] = result.errors["to_target"] \
                if result.errors else None
            _write_json(folder, "timing", result.timing)
        if "trajectory" in parts:
            result.trajectory = sampling.trajectory_distances(
                named, sampler, scheduler, shape, num_samples=num_samples, steps=steps,
                seed=sample_seed, batch_size=batch_size, teacher=TEACHER,
                on_progress=progress("trajectories"))
            _write_json(folder, "trajectory", result.trajectory)
    for part in ("errors", "timing", "trajectory"):
        if getattr(result, part) is None:
            setattr(result, part, _read_json(folder, part))
    if result.denoising is None and (folder / FILES["denoising"]).is_file():
        with np.load(folder / FILES["denoising"]) as saved:
            result.denoising = {"models": saved["models"].tolist(),
                                "timesteps": saved["timesteps"].tolist(),
                                "states": saved["states"]}
    result.quality = summary.quality(
        [{**_describe(m), "report": m.report} for m in models], registry, metric)
    _write_json(folder, "quality", result.quality)
    result.summary = summary.summary_rows(study.manifest["points"], result.quality,
                                          result.errors, result.timing, result.trajectory)
    _write_json(folder, "summary", {"study": str(study.path), "rows": result.summary})
    return result


def _teacher_config(study: SizeStudy):
    from diffctl.runs.run import Run

    return Run.open(study.teacher).config


def _describe(m: StudyModel) -> dict[str, Any]:
    return {"name": m.name, "size": m.size, "mode": m.mode, "parameters": m.parameters}


def _one_per_size(models: list[StudyModel]) -> list[StudyModel]:
    """The teacher and one student per size (distilled where there is one): students of one
    size share their architecture, hence their latency."""
    chosen: dict[float, StudyModel] = {}
    for m in models[1:]:
        if m.size not in chosen or (m.mode == DISTILLED and chosen[m.size].mode != DISTILLED):
            chosen[m.size] = m
    return [models[0], *(chosen[s] for s in sorted(chosen))]


def _mse_csv(errors: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["model", *(f"{lo}-{hi - 1}" for lo, hi in errors["bins"])])
    for name, values in errors["to_teacher"].items():
        writer.writerow([name, *(f"{v:.6g}" for v in values)])
    return out.getvalue()


def _write_json(folder: Path, part: str, payload: Any) -> None:
    files.write_atomic(folder / FILES[part], json.dumps(payload, indent=1))


def _read_json(folder: Path, part: str) -> Any:
    path = folder / FILES[part]
    return files.read_json(path, f"analysis file {part}") if path.is_file() else None
