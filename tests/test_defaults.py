"""Defaults follow the components a user names (docs/design.md, "Defaults follow the
components"): the dataset, denoiser, recipe, sampler options and metrics that
``diffctl run`` fills in, always under what the user chose."""

from __future__ import annotations

import pytest

from diffctl.errors import ConfigError
from diffctl.runs.config import compose


def test_the_embedded_default_is_two_moons_with_its_recipe() -> None:
    config = compose()
    assert (config.dataset.name, config.denoiser.name) == ("two-moons", "residual-mlp")
    assert config.eval.metrics[0] == "c2st"  # the headline of 2-D data
    assert {"mmd-rbf", "moons-overall"} <= set(config.eval.metrics)
    assert config.sample.num_samples == 5000
    assert config.sampler.name == "ddim" and config.sampler.options()["eta"] == 1.0
    assert config.sample.num_steps == 200


def test_an_image_denoiser_alone_picks_the_bundled_digits_and_its_recipe() -> None:
    config = compose(denoiser="dit", sampler="ddim")
    assert config.dataset.name == "digits"
    denoiser = config.denoiser.options()
    assert (denoiser["hidden"], denoiser["depth"], denoiser["conditioning"]) == (
        128, 4, "adaln-zero")
    assert config.eval.metrics == ["c2st", "mmd-rbf", "fid"]
    assert config.eval.metric_options["fid"]["feature_extractor"] == "lenet-mnist"
    assert config.sample.num_samples == 500
    unet = compose(denoiser="unet-mini")
    assert unet.dataset.name == "digits" and unet.denoiser.options()["base_channels"] == 16
    student = compose(denoiser="student-unet")
    assert student.denoiser.options()["size_factor"] == 0.25


def test_a_conditional_image_run_also_measures_class_accuracy() -> None:
    config = compose(denoiser="unet-mini", overrides=["denoiser.num_classes=10"])
    assert config.eval.metrics[-1] == "class-accuracy"


def test_a_dataset_alone_picks_a_fitting_denoiser() -> None:
    assert compose(dataset="gmm-ring").denoiser.name == "residual-mlp"
    assert compose(dataset="digits").denoiser.name == "unet-mini"


def test_what_the_user_sets_wins_over_every_recipe() -> None:
    config = compose(denoiser="dit", overrides=["train.epochs=3", "denoiser.hidden=64",
                                                "sample.num_samples=50"])
    assert config.train.epochs == 3 and config.denoiser.options()["hidden"] == 64
    assert config.sample.num_samples == 50
    assert compose(steps=7).sample.num_steps == 7
    assert compose(overrides=["sample.num_steps=9"]).sample.num_steps == 9


def test_a_recipes_sampler_options_only_go_with_their_sampler() -> None:
    for config in (compose(sampler="heun"), compose(overrides=["sampler.name=heun"])):
        assert config.sampler.name == "heun" and "eta" not in config.sampler.options()
    assert compose(overrides=["sampler.eta=0.5"]).sampler.options()["eta"] == 0.5


def test_a_recipes_grid_goes_with_any_sampler() -> None:
    """The two-moons recipe's leading grid (the cosine schedule's first trailing step is
    ill-conditioned, docs/design.md) applies whatever the sampler; its eta only to ddim; a
    --set spacing wins; a dataset without that recipe keeps the default grid."""
    assert compose().sampler.options()["spacing"] == "leading"
    for config in (compose(sampler="dpmpp-2m"), compose(overrides=["sampler.name=heun"])):
        options = config.sampler.options()
        assert options["spacing"] == "leading" and "eta" not in options, config.sampler.name
    mine = compose(sampler="heun", overrides=["sampler.spacing=trailing"])
    assert mine.sampler.options()["spacing"] == "trailing"
    assert compose(dataset="gmm-ring", sampler="heun").sampler.options()["spacing"] == "trailing"


@pytest.mark.parametrize("override", ["sampler.name=5", "sampler.name=[a, b]", "sampler=5",
                                      "sampler.name=null", "scheduler.name=7",
                                      "dataset.name=[1]", "denoiser=3"])
def test_a_malformed_component_section_is_a_config_error(override: str) -> None:
    """A component section that is not a mapping, or names no component by a string, is a
    one-line config error before any recipe is looked up (not a TypeError)."""
    with pytest.raises(ConfigError):
        compose(overrides=[override])


def test_a_recipes_schedule_applies_unless_the_user_names_another() -> None:
    assert compose().scheduler.name == "cosine"  # the residual MLP's two-moons recipe
    assert compose(dataset="gmm-ring").scheduler.name == "linear"  # its points recipe: none
    assert compose(denoiser="dit").scheduler.name == "linear"
    for config in (compose(scheduler="linear"), compose(overrides=["scheduler.name=linear"])):
        assert config.scheduler.name == "linear"
    assert compose(overrides=["scheduler.s=0.01"]).scheduler.options()["s"] == 0.01


def test_a_config_file_gets_no_recipe() -> None:
    config = compose({"dataset": {"name": "two-moons"}, "denoiser": {"name": "residual-mlp"}})
    assert config.denoiser.options()["hidden"] == 512  # the field default, no recipe
    with pytest.raises(ConfigError):
        compose({"denoiser": "dit"})
