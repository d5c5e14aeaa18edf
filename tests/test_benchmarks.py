"""Smoke runs of the benchmark scripts at toy sizes: they must keep working as the code moves.

The timings themselves are not checked here (noisy machines); only that each script runs to
the end and prints the comparison it exists for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DIFFCTL_DATA"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_train_throughput_compares_trainer_and_bare_loop() -> None:
    out = bench("train_throughput.py", "--models", "dit-tiny", "--steps", "2", "--warmup", "1",
                "--batch", "4", "--repeats", "1")
    assert "bare" in out and "trainer" in out and "ratio" in out


@pytest.mark.slow
def test_precision_compile_runs_on_cpu() -> None:
    out = bench("precision_compile.py", "--model", "dit-tiny", "--device", "cpu", "--steps", "2",
                "--warmup", "1", "--batch", "4", "--variants", "fp32", "bf16")
    assert "fp32:" in out and "bf16:" in out and "x1.00 vs fp32" in out


@pytest.mark.slow
def test_fid_speed_on_random_images(tmp_path: Path) -> None:
    out = bench("fid_speed.py", "--n", "200", "--repeats", "1")
    assert "median" in out and "target < 30 s" in out


@pytest.mark.slow
def test_eval_workers_compares_one_and_two_workers() -> None:
    out = bench("eval_workers.py", "--checkpoints", "2", "--num-samples", "100", "--steps",
                "10", "--workers", "2")
    assert "2 checkpoints" in out and "workers=1 threads=1:" in out and "speed-up" in out


@pytest.mark.slow
def test_hardware_fraction_quick() -> None:
    out = bench("hardware_fraction.py", "--quick")
    lines = [line for line in out.splitlines() if line.startswith("dit-tiny")]
    assert len(lines) == 1 and "fraction" in out
    fraction = float(lines[0].split()[-1])
    assert 0 < fraction < 10  # a ratio was computed (its size on a noisy machine is not)


@pytest.mark.slow
def test_gpu_check_quick_on_the_cpu() -> None:
    out = bench("gpu_check.py", "--quick", "--device", "cpu")
    assert "diffctl GPU check" in out and "dit-tiny   fp32" in out
    assert "FID (lenet-mnist" in out and "DDP 2 processes:" in out


def test_size_study_runs_every_stage_and_times_it(tmp_path: Path) -> None:
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(
        "dataset: {name: two-moons, n: 1000}\n"
        "denoiser: {name: residual-mlp, hidden: 32, num_blocks: 2}\n"
        "train: {epochs: 2, batch_size: 128, checkpoint_every: 1}\n"
        "sample: {num_samples: 200, num_steps: 5}\n"
        "eval: {metrics: [mmd-rbf], floor_draws: 0}\n")
    study = tmp_path / "study.yaml"
    study.write_text("teacher: unused\nsizes: [0.25, 1.0]\nfrom_data: true\n")
    out = bench("size_study.py", "--teacher-config", str(teacher), "--study-config", str(study),
                "--out", str(tmp_path / "s"), "--analyze-arg=--num-samples=32",
                "--analyze-arg=--steps=5")
    assert "[teacher]" in out and "[students]" in out and "[analyze]" in out
    assert "target 600 s" in out and "distil helps" in out
    timings = json.loads((tmp_path / "s/timings.json").read_text())
    assert {"teacher", "students", "analyze", "total_seconds"} <= set(timings)


@pytest.mark.slow
def test_streaming_quick_prints_memory_and_the_speed_ratio() -> None:
    out = bench("streaming.py", "--quick")
    assert "peak resident memory" in out and "would need" in out
    ratio = [line for line in out.splitlines() if "ratio streaming / in-memory" in line]
    assert len(ratio) == 1 and float(ratio[0].split(":")[1].split()[0]) > 0


def test_grad_accum_quick_prints_the_ratio() -> None:
    out = bench("grad_accum.py", "--quick")
    line = next(line for line in out.splitlines() if line.startswith("dit-tiny"))
    assert "whole" in line and "accumulated" in line and float(line.split("ratio")[1].split()[0])
