"""A whole model-size study, timed stage by stage: teacher, students, analysis.

Each stage is the ``diffctl`` command a user would type (run in a subprocess, so the timings
include start-up as they would for a user):

    diffctl run --config <teacher config> --out <out>/teacher
    diffctl study sizes --config <study config> --teacher <out>/teacher --out <out>/students
    diffctl analyze <out>/students --all <analysis options>

Presets hold the configs of the issue's targets::

    python benchmarks/size_study.py --preset digits      # target: all of it in <= 10 min
    DIFFCTL_DATA=/path/to/data python benchmarks/size_study.py --preset mnist
                                                          # target: students + analysis <= 30 min

A teacher that already finished in ``<out>/teacher`` is reused (and its stage reported as
such); a killed study continues where it stopped when the command is repeated. The timings
go to ``<out>/timings.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRESETS = {
    "digits": {"teacher": "configs/study-digits-teacher.yaml",
               "study": "configs/study-digits.yaml", "out": "runs/study-digits",
               "analyze": ["--num-samples", "256", "--batch-size", "64"],
               "target_seconds": 600, "teacher_counts": True},
    "mnist": {"teacher": "configs/study-mnist-teacher.yaml",
              "study": "configs/study-mnist.yaml", "out": "runs/study-mnist",
              "analyze": ["--num-samples", "256", "--batch-size", "64"],
              "target_seconds": 1800, "teacher_counts": False},
}


def stage(name: str, args: list[str], log: Path, threads: int | None = None) -> float:
    """Run ``diffctl args`` with its output in ``log`` (``threads``: OMP_NUM_THREADS of the
    command); return the wall time."""
    print(f"[{name}] diffctl {' '.join(args)}", flush=True)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "diffctl_cli", *args], stdout=out,
                              stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"[{name}] failed (exit {proc.returncode}); see {log}")
    print(f"[{name}] {seconds:.1f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    parser.add_argument("--teacher-config", help="Run config of the teacher.")
    parser.add_argument("--study-config", help="Study config (diffctl study sizes --config).")
    parser.add_argument("--out", help="Folder of the teacher, the students and the logs.")
    parser.add_argument("--workers", type=int, help="Students trained in parallel.")
    parser.add_argument("--study-set", action="append", default=[],
                        help="Extra --set of every student (repeatable).")
    parser.add_argument("--teacher-set", action="append", default=[],
                        help="Extra --set of the teacher (repeatable).")
    parser.add_argument("--analyze-arg", action="append", default=[],
                        help="Extra argument of diffctl analyze (repeatable).")
    parser.add_argument("--threads", type=int,
                        help="Torch threads of the teacher and the analysis (default: torch's, "
                        "one per core). On a machine other jobs share, 1 can be much faster.")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    out = Path(args.out or preset["out"])
    out = out if out.is_absolute() else ROOT / out
    out.mkdir(parents=True, exist_ok=True)
    teacher = out / "teacher"
    timings: dict[str, float | str] = {}
    if (teacher / "metrics.json").is_file():
        print(f"[teacher] reusing the finished teacher in {teacher}")
        timings["teacher"] = "reused"
    else:
        timings["teacher"] = stage("teacher", [
            "run", "--config", args.teacher_config or preset["teacher"], "--out", str(teacher),
            *[x for s in args.teacher_set for x in ("--set", s)]], out / "teacher.log",
            args.threads)
    study = ["study", "sizes", "--config", args.study_config or preset["study"], "--teacher",
             str(teacher), "--out", str(out / "students"),
             *[x for s in args.study_set for x in ("--set", s)]]
    if args.workers:
        study += ["--workers", str(args.workers)]
    timings["students"] = stage("students", study, out / "students.log")
    timings["analyze"] = stage("analyze", ["analyze", str(out / "students"), "--all",
                                           *preset["analyze"], *args.analyze_arg],
                               out / "analyze.log", args.threads)
    counted = [v for k, v in timings.items() if isinstance(v, float) and
               (k != "teacher" or preset["teacher_counts"])]
    total = sum(counted)
    target = preset["target_seconds"]
    what = "teacher, students and analysis" if preset["teacher_counts"] else \
        "students and analysis (teacher excluded)"
    if preset["teacher_counts"] and timings["teacher"] == "reused":
        what = "students and analysis (the teacher was reused: add its own time)"
    timings |= {"total_seconds": total, "counted": what, "target_seconds": target}
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    print(f"total {total:.1f} s for {what}; target {target} s: "
          f"{'met' if total <= target else 'missed'}")
    print((out / "analyze.log").read_text())


if __name__ == "__main__":
    main()
