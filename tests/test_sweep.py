"""Sweeps: grids, validation before anything is written, parallel points, and a killed sweep
that continues where it stopped."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from study_helpers import TINY, cli, command, sets

from diffctl.errors import UsageError
from diffctl.runs.config import compose
from diffctl.runs.sweep import Sweep, SweepPoint, grid_points, parse_grid, split_values


def test_grids_parse_and_name_their_points() -> None:
    assert split_values("[1,2],[1, 2, 2]") == ["[1,2]", "[1, 2, 2]"]
    grid = parse_grid(["denoiser.size_factor=0.1,0.5", "train.batch_size=128,1280",
                       "denoiser.channel_mults=[1,2],[1,2,2]"])
    assert grid == {"denoiser.size_factor": [0.1, 0.5], "train.batch_size": [128, 1280],
                    "denoiser.channel_mults": [[1, 2], [1, 2, 2]]}
    points = grid_points(grid)
    assert len(points) == 8
    assert points[0] == SweepPoint("size_factor-0.1_batch_size-128_channel_mults-1x2",
                                   {"denoiser.size_factor": 0.1, "train.batch_size": 128,
                                    "denoiser.channel_mults": [1, 2]})
    # two keys with one last part are named in full
    names = [p.name for p in grid_points({"train.lr": [1], "eval.lr": [2]})]
    assert names == ["train.lr-1_eval.lr-2"]
    for bad in (["train.lr"], ["train.lr="], ["=1,2"]):
        with pytest.raises(UsageError, match="--grid expects"):
            parse_grid(bad)


def test_every_point_is_validated_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"sweep point lr-0.*train\.lr") as info:
        Sweep.create(None, tmp_path / "s", grid={"train.lr": [0.001, 0]}, overrides=TINY)
    assert len(str(info.value).splitlines()) == 1
    assert not (tmp_path / "s").exists()
    proc = cli("sweep", "--grid", "denoiser.hiddn=3,4", *sets(*TINY), "--out", "s",
               cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "unknown field" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


def test_points_are_normal_runs_and_the_same_sweep_continues(tmp_path: Path) -> None:
    sweep = Sweep.create(None, tmp_path / "s", overrides=[*TINY, "train.epochs=1"],
                         grid={"denoiser.size_factor": [0.25, 1.0]})
    results = sweep.run(workers=2, threads=1)
    assert [(r.name, r.status) for r in results] == [("size_factor-0.25", "trained"),
                                                     ("size_factor-1", "trained")]
    assert results[0].train["parameters"] < results[1].train["parameters"]
    assert "mmd-rbf" in results[0].metrics
    config = yaml.safe_load((tmp_path / "s/size_factor-0.25/config.yaml").read_text())
    assert config["denoiser"]["size_factor"] == 0.25 and config["name"] == "size_factor-0.25"
    assert config == compose(yaml.safe_load(
        (tmp_path / "s/size_factor-0.25/config.yaml").read_text())).model_dump(mode="json")
    manifest = json.loads((tmp_path / "s/sweep.json").read_text())
    assert [p["name"] for p in manifest["points"]] == ["size_factor-0.25", "size_factor-1"]
    again = Sweep.create(None, tmp_path / "s", overrides=[*TINY, "train.epochs=1"],
                         grid={"denoiser.size_factor": [0.25, 1.0]})
    assert {r.status for r in again.run()} == {"skipped"}
    with pytest.raises(UsageError, match="holds another sweep"):
        Sweep.create(None, tmp_path / "s", overrides=TINY, grid={"train.lr": [0.1]})
    out = cli("sweep", "--resume", "s", cwd=tmp_path).stdout
    assert "skip    size_factor-0.25 (finished before)" in out and "sweep s" in out
    proc = cli("sweep", "--resume", "s", "--grid", "train.lr=1", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "does not take --grid" in proc.stderr


def _mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file()}


def test_a_killed_sweep_continues_where_it_stopped(tmp_path: Path) -> None:
    """SIGKILL a sweep while its second point trains; running the same command again keeps
    the finished point untouched, resumes the started one and trains the rest."""
    args = ["sweep", "--grid", "denoiser.size_factor=0.25,0.5,1.0",
            *sets(*TINY, "train.epochs=12", "dataset.n=2000"), "--out", "s"]
    proc = subprocess.Popen(command(*args), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = tmp_path / "s/size_factor-0.25/metrics.json"
    second_checkpoint = tmp_path / "s/size_factor-0.5/checkpoints/last"
    deadline = time.time() + 300
    while time.time() < deadline and not second_checkpoint.exists():
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first.exists() and second_checkpoint.exists(), "killed too early"
    assert not (tmp_path / "s/size_factor-0.5/metrics.json").exists(), \
        "the second point finished before the kill; make it longer"
    done_before = _mtimes(tmp_path / "s/size_factor-0.25")
    killed_at = json.loads((second_checkpoint.parent / second_checkpoint.read_text().strip()
                            / "state.json").read_text())["epoch"]
    out = cli(*args, cwd=tmp_path).stdout
    assert "skip    size_factor-0.25" in out
    assert "resumed size_factor-0.5" in out and "trained size_factor-1" in out
    assert _mtimes(tmp_path / "s/size_factor-0.25") == done_before
    for name in ("size_factor-0.5", "size_factor-1"):
        report = json.loads((tmp_path / "s" / name / "metrics.json").read_text())
        assert report["train"]["epoch"] == 12
    epochs = [json.loads(x)["epoch"] for x in
              (tmp_path / "s/size_factor-0.5/metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 13)) and killed_at in epochs
