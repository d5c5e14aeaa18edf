"""Runs as a library: compose a config, create or open a run, train, sample, evaluate, compare.

::

    from diffctl.runs import Run, compare, compose

    run = Run.create(compose(dataset="gmm-ring"), "runs/gmm")
    run.train()
    report = run.finalize()

Modules, one job each: ``config`` (the run config, defaults and validation), ``components``
(building them), ``directory`` (every file of a run directory), ``sampling``, ``evaluation``
(metrics and floors), ``checkpoint_eval`` (parallel checkpoint sweeps), ``comparison``,
``sampler_comparison`` (several samplers from one x_T), ``run`` (the :class:`Run` object),
``teacher`` (the teacher of a distilled run) and ``sweep`` (grids of runs, :class:`Sweep`).
See docs/design.md. The names below are imported on first use, so ``import
diffctl.runs.config`` never pulls in torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Run": "diffctl.runs.run", "SampleResult": "diffctl.runs.results",
    "InpaintResult": "diffctl.runs.results", "EvalResult": "diffctl.runs.results",
    "compare": "diffctl.runs.comparison",
    "SamplerComparison": "diffctl.runs.sampler_comparison",
    "SamplerSpec": "diffctl.runs.sampler_comparison",
    "RunConfig": "diffctl.runs.config", "compose": "diffctl.runs.config",
    "resolve": "diffctl.runs.config",
    "Sweep": "diffctl.runs.sweep", "SweepPoint": "diffctl.runs.sweep",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'diffctl.runs' has no attribute {name!r}")
