"""Metrics refuse what they cannot measure, at validation time (issue 13 item 4): one line,
exit 2, nothing written, before any training."""

from __future__ import annotations

from pathlib import Path

import pytest

from diffctl.errors import ConfigError
from diffctl.runs import compose
from diffctl_cli.app import main

IMAGE_METRICS = ["fid", "kid", "isc", "prc", "class-accuracy"]
PAIRED = ["psnr", "ssim", "lpips"]


def refused(*overrides: str, denoiser: str | None = None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        compose(denoiser=denoiser, overrides=list(overrides))


@pytest.mark.parametrize("metric", [*IMAGE_METRICS, *PAIRED])
def test_image_metrics_on_points_are_refused(metric: str) -> None:
    refused(f"eval.metrics=[{metric}]", match=f"metric '{metric}' measures images, but "
            "dataset 'two-moons' has points")
    refused(f"eval.during_training=[{metric}]", match="dataset 'two-moons' has points")


@pytest.mark.parametrize("metric", ["moons-overall", "moons-distance", "moons-shape",
                                    "mode-coverage"])
def test_point_metrics_on_images_are_refused(metric: str) -> None:
    refused(f"eval.metrics=[{metric}]", denoiser="unet-mini",
            match=f"metric '{metric}' measures points, but dataset 'digits' has images")


@pytest.mark.parametrize("metric", PAIRED)
def test_paired_metrics_only_compare_reconstructions(metric: str) -> None:
    refused(f"eval.metrics=[{metric}]", denoiser="unet-mini",
            match=f"metric '{metric}' compares paired images")
    compose(denoiser="unet-mini", overrides=[f"eval.reconstruction_metrics=[{metric}]"])


def test_sample_metrics_are_not_reconstruction_metrics() -> None:
    refused("eval.reconstruction_metrics=[mmd-rbf]", denoiser="unet-mini",
            match="does not compare paired images")


def test_mode_coverage_needs_modes() -> None:
    refused("eval.metrics=[mode-coverage]", match="needs the mixture modes")
    compose(overrides=["eval.metrics=[mode-coverage]",
                       "eval.metric_options={mode-coverage: {modes: [[1, 0], [-1, 0]]}}"])
    compose(dataset="gmm-ring", overrides=["eval.metrics=[mode-coverage]"])


def test_class_accuracy_needs_a_conditional_model() -> None:
    refused("eval.metrics=[class-accuracy]", denoiser="unet-mini",
            match="needs class-conditional samples")
    config = compose(denoiser="unet-mini", overrides=["eval.metrics=[class-accuracy]",
                                                       "denoiser.num_classes=10"])
    assert config.eval.metrics == ["class-accuracy"]


@pytest.mark.parametrize(("args", "message"), [
    (["--metric", "psnr"], "measures images"),
    (["--metric", "mode-coverage"], "needs the mixture modes"),
    (["--denoiser", "unet-mini", "--metric", "ssim"], "compares paired images"),
    (["--denoiser", "unet-mini", "--metric", "class-accuracy"], "class-conditional"),
])
def test_the_cli_refuses_before_writing_anything(tmp_path: Path, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_eval_of_a_run_refuses_paired_metrics(tmp_path: Path, capsys) -> None:
    """``diffctl eval --metric psnr`` on generated samples would compare unpaired images."""
    from diffctl.runs import Run

    run = Run.create(compose(overrides=["dataset.n=500", "denoiser.name=mlp",
                                        "denoiser.hidden=8", "train.epochs=1",
                                        "sample.num_samples=20", "sample.num_steps=2"]),
                     tmp_path / "r")
    run.train(evaluate_after=False)
    before = sorted(p.name for p in (tmp_path / "r").rglob("*"))
    for metric in ("psnr", "fid"):
        with pytest.raises(SystemExit) as info:
            main(["eval", "--run", str(tmp_path / "r"), "--metric", metric])
        assert info.value.code == 2
        assert "measures images" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "r").rglob("*")) == before
