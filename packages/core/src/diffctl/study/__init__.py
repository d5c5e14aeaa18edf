"""Model-size studies: students of several widths distilled from one teacher (and, for
comparison, trained on the data alone), then analysed against the teacher.

::

    from diffctl.study import SizeStudy, SizeStudyConfig, analyze

    study = SizeStudy.create(SizeStudyConfig(teacher="runs/teacher",
                                             sizes=[0.1, 0.25, 0.5, 1.0], from_data=True),
                             "runs/sizes")
    study.run(workers=2)                          # a sweep: one run directory per student
    result = analyze("runs/sizes", parts=("mse", "time"))
    result.summary                                # one row per size

Modules: ``config`` (the study config), ``sizes`` (the study folder and its sweep),
``models`` (loading teacher and students), ``predictions`` (prediction errors against the
teacher and the data per timestep), ``sampling`` (denoising frames, trajectories, latency),
``summary`` (quality, efficiency, the table), ``analysis`` (running the parts, writing their
files). Numbers only: the plots are drawn by the ``diffctl analyze`` command.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SizeStudy": "diffctl.study.sizes", "SizeStudyConfig": "diffctl.study.config",
    "analyze": "diffctl.study.analysis", "AnalysisResult": "diffctl.study.analysis",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'diffctl.study' has no attribute {name!r}")
