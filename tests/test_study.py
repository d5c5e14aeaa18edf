"""Size studies: students of several sizes against a teacher, and every analysis on a tiny
study (2-D data; one image study for the image paths)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from study_helpers import TINY, cli

import diffctl
from diffctl.errors import UsageError
from diffctl.runs import Run, compose
from diffctl.study import SizeStudy, SizeStudyConfig, analyze
from diffctl.study.predictions import timestep_bins

STEPS = 8


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A residual-MLP teacher and students at sizes 0.25 and 1.0, distilled and from data."""
    folder = tmp_path_factory.mktemp("study")
    teacher = Run.create(compose(overrides=TINY), folder / "teacher")
    teacher.train()
    teacher.finalize()
    config = SizeStudyConfig(teacher=str(folder / "teacher"), sizes=[1.0, 0.25],
                             from_data=True, checkpoint="last")
    # the teacher's thread count: the same float rounding, so the from-data student at the
    # teacher's size retrains the teacher bit for bit
    SizeStudy.create(config, folder / "sizes").run(threads=torch.get_num_threads())
    return folder / "sizes"


def test_the_study_trains_one_student_per_size_and_mode(study: Path) -> None:
    opened = SizeStudy.open(study)
    assert opened.sizes == [0.25, 1.0]
    names = [p.name for p in opened.points]
    assert names == ["distilled-0.25", "distilled-1", "from-data-0.25", "from-data-1"]
    assert [p.name for p in opened.finished()] == names
    manifest = json.loads((study / "study.json").read_text())
    assert manifest["denoiser"] == "residual-mlp" and manifest["size_field"] == "size_factor"
    assert manifest["teacher_checkpoint"] == "epoch-0002"  # "last" pinned to its folder
    distilled = yaml.safe_load((study / "distilled-0.25/config.yaml").read_text())
    data_only = yaml.safe_load((study / "from-data-0.25/config.yaml").read_text())
    assert distilled["distill"]["checkpoint"] == "epoch-0002"
    assert data_only["distill"] is None
    assert distilled["denoiser"]["size_factor"] == 0.25 and distilled["seed"] == 0
    teacher = yaml.safe_load((study.parent / "teacher/config.yaml").read_text())
    for section in ("dataset", "scheduler", "sampler", "train", "sample"):
        assert distilled[section] == teacher[section], section


def test_the_analyses_on_a_tiny_study(study: Path) -> None:
    result = analyze(study, num_samples=48, batch_size=32, steps=STEPS, bins=4,
                     denoising_samples=3, frames=5)
    students = ["distilled-0.25", "distilled-1", "from-data-0.25", "from-data-1"]
    # mse: one row per student and bin; from data at the teacher's size with the teacher's
    # config and seed retrains the teacher itself
    errors = result.errors
    assert errors["bins"] == [[0, 250], [250, 500], [500, 750], [750, 1000]]
    assert list(errors["to_teacher"]) == students
    assert errors["to_teacher"]["from-data-1"] == [0.0] * 4
    assert min(errors["to_teacher"]["distilled-0.25"]) > 1e-4
    assert errors["to_target"]["teacher"] == errors["to_target"]["from-data-1"]
    csv_rows = (study / "analysis/mse.csv").read_text().splitlines()
    assert csv_rows[0] == "model,0-249,250-499,500-749,750-999" and len(csv_rows) == 5
    # denoising: same x_T for every model, frames from x_T to x_0
    states = result.denoising["states"]
    assert states.shape == (5, 5, 3, 2)
    assert result.denoising["timesteps"][-1] == -1
    assert all(np.array_equal(states[0, 0], states[i, 0]) for i in range(5))
    assert not np.array_equal(states[0, -1], states[1, -1])
    # time: a latency per size (one model per size) and training time of every model
    timing = result.timing
    assert list(timing["models"]) == ["teacher", "distilled-0.25", "distilled-1"]
    assert all(len(m["seconds"]) == 5 and m["ms_per_sample"] > 0
               for m in timing["models"].values())
    assert set(timing["training"]) == {"teacher", *students}
    assert timing["error_vs_timestep"] == errors["to_target"]
    # trajectory: distance 0 at the shared x_T, per step after it
    traj = result.trajectory
    assert len(traj["models"]["distilled-0.25"]["mean"]) == STEPS + 1
    assert traj["models"]["distilled-0.25"]["mean"][0] == 0.0
    assert traj["models"]["distilled-0.25"]["final"]["mean"] > 0
    assert traj["models"]["from-data-1"]["mean"] == [0.0] * (STEPS + 1)
    assert traj["reference"]["mean"] > 0
    # quality and the summary: one row per size after the teacher
    assert result.quality["metric"] == "mmd-rbf"
    rows = result.summary
    assert [r["size"] for r in rows] == [1.0, 0.25, 1.0] and rows[0]["mode"] == "teacher"
    assert rows[1]["params"] < rows[2]["params"] == rows[0]["params"]
    assert rows[2]["value_from_data"] == rows[0]["value_teacher"]
    assert rows[2]["mse_to_teacher_from_data"] == 0.0
    assert rows[1]["distillation_helps"] in (True, False, None)
    for name in ("errors.json", "timing.json", "trajectory.json", "quality.json",
                 "summary.json", "denoising.npz"):
        assert (study / "analysis" / name).is_file(), name


def test_a_later_call_keeps_the_parts_it_did_not_repeat(study: Path) -> None:
    analyze(study, ["trajectory"], num_samples=16, batch_size=16, steps=STEPS)
    again = analyze(study, ["mse"], num_samples=16, batch_size=16, bins=2)
    assert again.trajectory is not None and again.trajectory["samples"] == 16
    assert len(again.errors["bins"]) == 2
    assert again.summary[1]["final_distance_distilled"] is not None


def test_analyze_through_the_cli_prints_the_table_and_draws_the_figures(study: Path) -> None:
    out = cli("analyze", str(study), "--all", "--num-samples", "32", "--batch-size", "32",
              "--steps", str(STEPS), "--bins", "4", "--verbose", cwd=study.parent).stdout
    assert "size study" in out and "distil helps" in out and "latency teacher" in out
    for png in ("mse_heatmap.png", "denoising.png", "time.png", "trajectory.png",
                "efficiency.png"):
        assert (study / "analysis" / png).stat().st_size > 5000, png
    data = json.loads(cli("analyze", str(study), "--mse", "--json", "--no-plots",
                          "--num-samples", "16", cwd=study.parent).stdout)
    assert data["parts"] == ["mse"] and len(data["summary"]) == 3
    # --full-mse: one bin per timestep of the teacher's schedule, every size
    cli("analyze", str(study), "--full-mse", "--json", "--no-plots", "--num-samples", "8",
        cwd=study.parent)
    errors = json.loads((study / "analysis" / "errors.json").read_text())
    T = errors["bins"][-1][1]
    assert [tuple(b) for b in errors["bins"]] == [(t, t + 1) for t in range(T)]


@pytest.mark.parametrize(("args", "message"), [
    (["--sizes", "0.5,2"], "size factors must be in (0, 1]"),
    (["--sizes", "0.5,x"], "--sizes expects numbers"),
    (["--sizes", "0.5", "--denoiser", "unet-mini"], "denoiser 'unet-mini' declares no size"),
    (["--sizes", "0.5", "--set", "train.lr=-1"], "train.lr"),
    (["--sizes", "0.5", "--set", "denoiser.prediction=v"], "predicts epsilon, the student v"),
])
def test_bad_studies_are_one_line_errors_and_write_nothing(study: Path, args, message) -> None:
    proc = cli("study", "sizes", "--teacher", "teacher", *args, "--out", "bad",
               cwd=study.parent, check=False)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (study.parent / "bad").exists()


def test_analysis_input_errors(study: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--repeats must be at least 5"):
        analyze(study, ["time"], repeats=3)
    with pytest.raises(UsageError, match="not a study folder"):
        analyze(tmp_path)
    with pytest.raises(UsageError, match="unknown analysis 'speed'"):
        analyze(study, ["speed"])
    assert timestep_bins(10, 3) == [(0, 3), (3, 7), (7, 10)]


def test_a_study_on_images_uses_the_size_field_of_the_student_family(tmp_path: Path) -> None:
    """A unet-mini teacher on the bundled digits gets student-unet students (its declared
    student), and the analysis draws image frames."""
    tiny = ["denoiser.base_channels=8", "denoiser.channel_mults=[1, 2]", "denoiser.time_dim=16",
            "train.epochs=1", "train.batch_size=64", "dataset.limit=128",
            "train.checkpoint_every=1", "sample.num_samples=40", "sample.num_steps=4",
            "eval.metrics=[mmd-rbf]", "eval.floor_draws=0"]
    teacher = Run.create(compose(denoiser="unet-mini", overrides=tiny), tmp_path / "teacher")
    teacher.train()
    teacher.finalize()
    config = SizeStudyConfig(teacher=str(tmp_path / "teacher"), sizes=[0.5], checkpoint="last")
    created = SizeStudy.create(config, tmp_path / "sizes")
    assert created.manifest["denoiser"] == "student-unet"
    created.run()
    student = yaml.safe_load((tmp_path / "sizes/distilled-0.5/config.yaml").read_text())
    assert student["denoiser"]["name"] == "student-unet"
    assert student["denoiser"]["base_channels"] == 8 and student["denoiser"]["size_factor"] == 0.5
    result = analyze(tmp_path / "sizes", ["denoising", "mse"], num_samples=16, batch_size=16,
                     bins=2, denoising_samples=2, frames=3)
    assert result.denoising["states"].shape == (2, 3, 2, 1, 16, 16)
    from diffctl_cli.study_plots import plot_denoising, plot_mse_heatmap

    assert plot_denoising(result.denoising, tmp_path / "d.png").stat().st_size > 1000
    assert plot_mse_heatmap(result.errors, tmp_path / "m.png").stat().st_size > 1000
    params = [diffctl.create("denoiser", "student-unet", size_factor=s, in_channels=1,
                             image_size=16) for s in (0.25, 1.0)]
    assert sum(p.numel() for p in params[0].parameters()) < \
        sum(p.numel() for p in params[1].parameters())


def test_distillation_verdict_needs_a_difference_beyond_the_noise() -> None:
    from diffctl.study.summary import distillation_verdict

    floor = {"mean": 17.0, "p95": 19.0}
    assert distillation_verdict(821.4, 824.5, False, floor) is None  # 0.4%: noise
    assert distillation_verdict(19.4, 25.9, False, {"mean": 2.4, "p95": 2.8}) is True
    assert distillation_verdict(30.0, 28.5, False, floor) is None  # within the floor spread
    assert distillation_verdict(30.0, 25.0, False, floor) is False
    assert distillation_verdict(0.9, 0.8, True, None) is True  # higher is better
    assert distillation_verdict(None, 0.8, True, None) is None
