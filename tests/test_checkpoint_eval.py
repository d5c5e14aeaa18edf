"""Checkpoint sweeps across devices and through dying workers (issue 15 item 3)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from diffctl.runs.checkpoint_eval import assign_devices, evaluate_checkpoints

#: a task for the worker processes: dies the first time it sees checkpoint "b" (a marker file
#: records that), and reports its device otherwise
FLAKY = '''
import os
from pathlib import Path

def task(run_dir, checkpoint, metrics, n, steps, seed, threads, ema, overrides, device,
         keep=0):
    marker = Path(run_dir) / f"died-{checkpoint}"
    if checkpoint in ("b", "c") and not marker.exists():
        marker.write_text("once")
        os._exit(1)  # a worker killed mid-evaluation (out of memory, SIGKILL)
    if checkpoint == "c":
        os._exit(1)  # dies every time
    return {"checkpoint": checkpoint, "epoch": ord(checkpoint), "step": 1, "device": device}
'''


def test_checkpoints_go_round_robin_over_devices() -> None:
    placed = assign_devices(["a", "b", "c", "d", "e"], ["cuda:0", "cuda:1"])
    assert placed == {"a": "cuda:0", "b": "cuda:1", "c": "cuda:0", "d": "cuda:1",
                      "e": "cuda:0"}
    assert assign_devices(["a", "b"], None, "cpu") == {"a": "cpu", "b": "cpu"}


@pytest.mark.slow
def test_a_dead_worker_is_reported_and_its_checkpoints_retried_once(tmp_path: Path,
                                                                  monkeypatch) -> None:
    (tmp_path / "flaky_task.py").write_text(FLAKY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{':'.join(sys.path)}")
    import flaky_task

    import diffctl.runs.checkpoint_eval as module

    monkeypatch.setattr(module, "prepare_references", lambda *a, **k: ({}, {}))
    run = tmp_path / "run"
    run.mkdir()
    rows, failures = evaluate_checkpoints(run, ["a", "b", "c", "d"], [], 10, 2, 0, workers=2,
                                          devices=["cpu", "cpu"], task=flaky_task.task)
    assert [r["checkpoint"] for r in rows] == ["a", "b", "d"]  # b survived its retry
    assert all(r["device"] == "cpu" for r in rows)
    assert failures == [{"checkpoint": "c", "error": "its worker process died twice (out of "
                         "memory or killed?)"}]
