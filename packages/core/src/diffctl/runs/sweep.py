"""Sweeps: runs that differ in a few config fields, each point a normal run directory.

::

    from diffctl.runs.config import load_yaml
    from diffctl.runs.sweep import Sweep

    sweep = Sweep.create(load_yaml("configs/gmm-ring.yaml"), out="runs/batch",
                         grid={"train.batch_size": [128, 1280]})
    results = sweep.run(workers=2)          # one PointResult per point

The sweep folder holds ``sweep.json`` (the manifest: the base config data, the ``--set``
overrides and every point's name and field values) and one run directory per point,
``<sweep>/<point name>``. A point's config is the base, then the overrides, then its own
values (:func:`diffctl.runs.config.compose`); all are validated by :meth:`Sweep.create`
before anything is written.

A sweep is resumable: :meth:`Sweep.run` skips finished points (those with ``metrics.json``),
resumes started ones from their newest intact checkpoint (``Run.open(p).resume()``; a point
killed before its first checkpoint starts again) and trains the rest. With ``workers`` > 1
points run in that many spawned processes with ``cores // workers`` torch threads each; a
worker whose parent dies exits, so a killed sweep leaves no process behind that could write
into a point the next run resumes.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diffctl.errors import DiffctlError, UsageError
from diffctl.registry import Registry, get_registry
from diffctl.runs import directory as files
from diffctl.runs.config import RunConfig, compose, parse_value

MANIFEST = "sweep.json"

#: What :meth:`Sweep.status` says about a point.
DONE, STARTED, PENDING = "done", "started", "pending"


@dataclass(frozen=True)
class SweepPoint:
    """One point: its folder name and the config fields it sets (dotted keys, parsed
    values; a value may be a whole section or None)."""

    name: str
    values: dict[str, Any]


@dataclass
class PointResult:
    """What running one point did: ``trained``, ``resumed``, ``skipped`` (already finished)
    or ``failed`` (``error`` says why, in one line)."""

    name: str
    status: str
    path: str
    seconds: float = 0.0
    train: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


# -- grids ---------------------------------------------------------------------------------------
def split_values(text: str) -> list[str]:
    """``0.1,0.5`` -> ["0.1", "0.5"]; commas inside brackets or braces stay (``[1,2],[1,2,2]``
    is two lists)."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_grid(items: list[str] | tuple[str, ...]) -> dict[str, list[Any]]:
    """``["denoiser.size_factor=0.1,0.5", "train.batch_size=128,1280"]`` -> a grid of parsed
    values (YAML scalars and lists, as ``--set``)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or not text.strip():
            raise UsageError(f"--grid expects field=value,value,..., got {item!r}")
        if key in grid:
            raise UsageError(f"--grid names {key} twice")
        grid[key] = [parse_value(v) for v in split_values(text)]
    return grid


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "x".join(_text(v) for v in value)
    if isinstance(value, dict):
        return "-".join(_text(v) for v in value.values())
    return "none" if value is None else str(value)


def grid_points(grid: dict[str, list[Any]]) -> list[SweepPoint]:
    """Every combination of the grid's values, named ``<field>-<value>_...`` by the last part
    of each dotted key (the whole key where two keys share a last part)."""
    if not grid:
        raise UsageError("a sweep needs at least one --grid field")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"grid field {key} needs a non-empty list of values")
    lasts = [k.rsplit(".", 1)[-1] for k in grid]
    short = {k: (k.rsplit(".", 1)[-1] if lasts.count(k.rsplit(".", 1)[-1]) == 1 else k)
             for k in grid}
    points = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo, strict=True))
        name = "_".join(f"{short[k]}-{_text(v)}" for k, v in values.items())
        points.append(SweepPoint(_safe_name(name), values))
    return points


def _safe_name(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_.=" else "-" for c in name)
    return keep.strip(".") or "point"


# -- the sweep -----------------------------------------------------------------------------------
class Sweep:
    """A sweep folder: the manifest and one run directory per point (module docstring)."""

    def __init__(self, path: Path | str, base: dict[str, Any] | None, overrides: list[str],
                 points: list[SweepPoint], registry: Registry | None = None):
        self.path = Path(path)
        self.base = base
        self.overrides = list(overrides)
        self.points = list(points)
        self.registry = registry or get_registry()

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}, {len(self.points)} points)"

    @classmethod
    def create(cls, base: dict[str, Any] | None, out: Path | str, *,
               grid: dict[str, list[Any]] | None = None,
               points: list[SweepPoint] | None = None, overrides: list[str] | tuple = (),
               registry: Registry | None = None) -> Sweep:
        """A sweep of ``base`` (a config file's data; None: the embedded default with the
        components' recipes) with ``overrides`` (``--set``) over ``grid`` or explicit
        ``points``. Every point's config is validated now. ``out`` may hold the same sweep
        already (then :meth:`run` continues it), not another one; nothing is written here."""
        if (grid is None) == (points is None):
            raise UsageError("a sweep takes a grid or a list of points")
        points = grid_points(grid) if grid is not None else list(points or [])
        if not points:
            raise UsageError("a sweep needs at least one point")
        names = [p.name for p in points]
        if len(set(names)) != len(names):
            twice = sorted(n for n in set(names) if names.count(n) > 1)
            raise UsageError(f"sweep point names repeat: {', '.join(twice)}")
        sweep = cls(out, copy.deepcopy(base), list(overrides), points, registry)
        sweep._check_location()
        for point in points:
            sweep.config_of(point)
        return sweep

    @classmethod
    def open(cls, path: Path | str, *, registry: Registry | None = None) -> Sweep:
        """The sweep in ``path``, from its manifest."""
        manifest = Path(path) / MANIFEST
        if not manifest.is_file():
            raise UsageError(f"not a sweep folder (no {MANIFEST}): {path}")
        data = files.read_json(manifest, "sweep manifest")
        try:
            points = [SweepPoint(p["name"], dict(p["values"])) for p in data["points"]]
            return cls(path, data.get("base"), list(data.get("overrides") or []), points,
                       registry)
        except (KeyError, TypeError) as exc:
            raise UsageError(f"sweep manifest {manifest} is damaged ({exc})") from None

    def manifest(self) -> dict[str, Any]:
        return {"base": self.base, "overrides": self.overrides,
                "points": [asdict(p) for p in self.points]}

    def _check_location(self) -> None:
        if (self.path / MANIFEST).is_file():
            existing = files.read_json(self.path / MANIFEST, "sweep manifest")
            mine = self.manifest()
            if {k: existing.get(k) for k in mine} != json.loads(json.dumps(mine)):
                raise UsageError(f"{self.path} holds another sweep (its {MANIFEST} differs); "
                                 "use another --out, or resume that sweep")
            return
        files.check_output_dir(self.path)

    # -- points ------------------------------------------------------------------------------
    def point(self, name: str) -> SweepPoint:
        for p in self.points:
            if p.name == name:
                return p
        raise UsageError(f"sweep {self.path} has no point {name!r}")

    def point_dir(self, point: SweepPoint | str) -> Path:
        return self.path / (point if isinstance(point, str) else point.name)

    def config_of(self, point: SweepPoint) -> RunConfig:
        """The resolved config of ``point``: base, overrides, then the point's values."""
        values = list(point.values.items())
        if "name" not in point.values:
            values.insert(0, ("name", point.name))
        try:
            return compose(copy.deepcopy(self.base), registry=self.registry,
                           overrides=self.overrides, values=values)
        except UsageError as exc:
            raise UsageError(f"sweep point {point.name}: {exc}") from None

    def status(self) -> dict[str, str]:
        """``done`` (metrics.json written), ``started`` (a run directory) or ``pending``."""
        out = {}
        for p in self.points:
            d = files.RunDirectory(self.point_dir(p))
            out[p.name] = DONE if d.file(files.REPORT).is_file() else \
                STARTED if d.exists() else PENDING
        return out

    def reports(self) -> dict[str, dict[str, Any] | None]:
        """Each point's final report (metrics.json), None where it has none yet."""
        return {p.name: files.RunDirectory(self.point_dir(p)).report() for p in self.points}

    # -- running -----------------------------------------------------------------------------
    def run(self, *, workers: int = 1, threads: int | None = None,
            on_point: Callable[[PointResult], None] | None = None) -> list[PointResult]:
        """Run every point that has not finished (skipping, resuming or training it, see the
        module docstring) in ``workers`` processes; ``on_point`` sees each result as it
        comes (and ``status="started"`` before an in-process point begins). A failed point
        does not stop the others. Returns the results in the points' order."""
        if workers < 1:
            raise UsageError("--workers must be at least 1")
        if threads is not None and threads < 1:
            raise UsageError("--threads must be at least 1")
        self.path.mkdir(parents=True, exist_ok=True)
        if not (self.path / MANIFEST).is_file():
            files.write_atomic(self.path / MANIFEST, json.dumps(self.manifest(), indent=1))
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        status = self.status()
        results: dict[str, PointResult] = {}

        def report(result: PointResult) -> None:
            if result.status != "started":
                results[result.name] = result
            if on_point is not None:
                on_point(result)

        todo = []
        for p in self.points:
            if status[p.name] == DONE:
                report(PointResult(p.name, "skipped", str(self.point_dir(p))))
            else:
                todo.append(p.name)
        if workers == 1 or len(todo) <= 1:
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                for name in todo:
                    report(PointResult(name, "started", str(self.point_dir(name))))
                    report(PointResult(**run_point(str(self.path), name)))
            finally:
                torch.set_num_threads(before)
        else:
            self._run_pool(todo, workers, threads, report)
        return [results[p.name] for p in self.points if p.name in results]

    def _run_pool(self, names: list[str], workers: int, threads: int,
                  report: Callable[[PointResult], None]) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from concurrent.futures.process import BrokenProcessPool

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(names)), mp_context=ctx,
                                 initializer=_init_point_worker,
                                 initargs=(threads, os.getpid())) as pool:
            futures = {pool.submit(run_point, str(self.path), n): n for n in names}
            for future in as_completed(futures):
                name = futures[future]
                try:
                    report(PointResult(**future.result()))
                except BrokenProcessPool:
                    report(PointResult(name, "failed", str(self.point_dir(name)),
                                       error="its worker process died (out of memory or "
                                       "killed?); run the sweep again to resume it"))


def run_point(sweep_dir: str, name: str) -> dict[str, Any]:
    """Finish one point (in this process): skip it when finished, resume it when started,
    else train it; then the final evaluation. Returns a :class:`PointResult` as a dict (a
    failure is a result, not an exception)."""
    from diffctl.runs.run import Run
    from diffctl.training.checkpoint import list_checkpoints, list_partial_checkpoints

    started = time.perf_counter()
    path = Path(sweep_dir) / name
    try:
        sweep = Sweep.open(sweep_dir)
        point = sweep.point(name)
        directory = files.RunDirectory(path)
        if directory.file(files.REPORT).is_file():
            return asdict(PointResult(name, "skipped", str(path)))
        status = "trained"
        if directory.exists() and (list_checkpoints(directory.checkpoints) or
                                   list_partial_checkpoints(directory.checkpoints)):
            run = Run.open(path, registry=sweep.registry)
            train = run.resume()
            status = "resumed"
        else:
            if directory.exists():  # killed before its first checkpoint: nothing to keep
                shutil.rmtree(path)
            run = Run.create(sweep.config_of(point), path, registry=sweep.registry)
            train = run.train()
        report = run.finalize()
    except (DiffctlError, OSError, ValueError, RuntimeError) as exc:
        return asdict(PointResult(name, "failed", str(path),
                                  round(time.perf_counter() - started, 3),
                                  error=_one_line(exc)))
    summary = {k: v for k, v in train.items() if k != "losses"}
    return asdict(PointResult(name, status, str(path), round(time.perf_counter() - started, 3),
                              summary, dict(report["eval"]["metrics"])))


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    return text if isinstance(exc, DiffctlError) else f"{type(exc).__name__}: {text}"


def _init_point_worker(threads: int, parent: int) -> None:
    """A sweep worker: its share of the cores, and an exit when the sweep process dies (a
    killed sweep must not leave a worker training a point the next run resumes)."""
    from diffctl.runs.checkpoint_eval import _init_worker

    _init_worker(threads)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
