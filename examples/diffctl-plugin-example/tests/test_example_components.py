"""The example plugin's own tests: diffctl's conformance kit, then what is special to each part."""

from __future__ import annotations

import json
import math

import diffctl_plugin_example.plugin as plugin
import numpy as np
import pytest
import torch
from diffctl_plugin_example.configs import EulerMaruyamaConfig, SpiralConfig
from diffctl_plugin_example.energy import EnergyDistance
from diffctl_plugin_example.sampler import EulerMaruyamaSampler
from diffctl_plugin_example.spiral import Spiral

import diffctl
from diffctl.samplers.base import DenoiserCall
from diffctl.testing import GaussianDenoiser, check_component, check_plugin


def test_plugin_and_every_component_conform() -> None:
    """Loads next to the core, imports nothing heavy, and each component passes its checks."""
    report = check_plugin(plugin)
    assert report["plugin"] == ["loads", "registers", "lazy-imports", "commands"]
    assert set(report) == {"plugin", "dataset:spiral", "sampler:euler-maruyama",
                           "metric:energy-distance", "logger:markdown"}
    assert "gaussian" in report["sampler:euler-maruyama"]
    assert {"records", "resume", "stays-inside"} <= set(report["logger:markdown"])
    assert "symmetric" in report["metric:energy-distance"]


def test_one_step_lands_on_the_model_clean_estimate() -> None:
    """From sigma to 0 the drift coefficient d / sigma^2 is 1 and no noise is added."""
    sched = diffctl.create("scheduler", "linear")
    model = GaussianDenoiser(sched, mu=0.5, s=0.8, prediction="v")
    x_T = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = EulerMaruyamaSampler(EulerMaruyamaConfig()).sample(model, sched, x_T, 1)
    t = sched.num_train_timesteps - 1
    x0, _ = DenoiserCall(model)(x_T, t, float(sched.alphas_cumprod[t]))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-9)


def test_noise_comes_from_the_generator_only(diffctl_registry) -> None:
    """Stochastic, yet reproducible: check_sampler's ``deterministic`` sub-check, by hand.

    The isolated registry holds the core and this plugin only, whatever else is installed."""
    diffctl_registry.register_plugin(plugin, name="example")
    assert diffctl.get_registry().get("sampler", "euler-maruyama").plugin == "example"
    sched = diffctl.create("scheduler", "cosine")
    sampler = diffctl.create("sampler", "euler-maruyama")
    model = GaussianDenoiser(sched)
    runs = [sampler.sample(model, sched, torch.zeros(8, 2), 20,
                           generator=torch.Generator().manual_seed(seed)) for seed in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_registered_components_through_the_isolated_registry(diffctl_registry) -> None:
    assert "spiral" not in diffctl.components("dataset")  # installed, but not loaded here
    diffctl_registry.register_plugin(plugin, name="example")
    spiral = diffctl.create("dataset", "spiral", n=2000, arms=3)
    check_component("metric", "energy-distance", reference=spiral.reference)
    assert diffctl.create("sampler", "euler-maruyama", spacing="leading").deterministic is False


def test_spiral_points_lie_on_their_arms() -> None:
    ds = Spiral(SpiralConfig(n=4000, noise=0.0, arms=2, turns=1.0, radius=2.0))
    x = ds.train_tensor().double()
    r = x.norm(dim=1)
    assert float(r.max()) <= 2.0 + 1e-6
    # angle = 2 pi (turns * r / radius + arm / arms): recover the arm and check it is whole
    angle = torch.atan2(x[:, 1], x[:, 0])
    arm = ((angle / (2 * math.pi) - r / 2.0) * 2) % 2
    nearest = arm.round()
    assert float((arm - nearest).abs().max()) < 1e-6
    counts = torch.bincount(nearest.long() % 2)
    assert abs(int(counts[0]) - int(counts[1])) < 0.1 * len(x)


def test_energy_distance_against_a_direct_formula() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2)), rng.normal(0.5, 1.2, size=(31, 2))

    def mean_dist(a, b):
        return np.linalg.norm(a[:, None] - b[None], axis=-1).mean()

    expected = 2 * mean_dist(x, y) - mean_dist(x, x) - mean_dist(y, y)
    metric = EnergyDistance()
    assert metric(x, y)["energy-distance"] == pytest.approx(expected, rel=1e-12)
    assert metric(torch.from_numpy(x), torch.from_numpy(x))["energy-distance"] == 0.0
    blocked = diffctl.create("metric", "energy-distance", block_size=7)
    assert blocked(x, y)["energy-distance"] == pytest.approx(expected, rel=1e-12)


def test_energy_distance_command(tmp_path, diffctl_registry) -> None:
    """The command added by the plugin, run through the real CLI app."""
    pytest.importorskip("diffctl_cli")
    from typer.testing import CliRunner

    from diffctl_cli.app import create_app

    diffctl_registry.register_plugin(plugin, name="example")
    a, b = torch.randn(200, 2), torch.randn(150, 2) + 1.0
    np.save(tmp_path / "a.npy", a.numpy())
    torch.save(b, tmp_path / "b.pt")
    result = CliRunner().invoke(create_app(), ["energy-distance", str(tmp_path / "a.npy"),
                                               str(tmp_path / "b.pt"), "--json"])
    assert result.exit_code == 0, result.output
    value = json.loads(result.stdout)["energy-distance"]
    assert value == pytest.approx(EnergyDistance()(a, b)["energy-distance"], rel=1e-12)
    result = CliRunner().invoke(create_app(), ["energy-distance", str(tmp_path / "a.npy"),
                                               str(tmp_path / "nope.npy")])
    assert result.exit_code != 0 and "no such file" in str(result.exception)
