"""diffctl.testing: every built-in passes its conformance check, and deliberately broken
components fail the right sub-check with a message that says what to fix."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict, Field, field_serializer

import diffctl
from diffctl import hookimpl
from diffctl.config import ComponentConfig
from diffctl.datasets.configs import Points2DConfig
from diffctl.datasets.toy2d import Points2D
from diffctl.errors import UnknownComponentError
from diffctl.samplers.base import GridSampler, Step
from diffctl.samplers.configs import AncestralConfig, DDIMConfig
from diffctl.samplers.ddim import DDIMSampler
from diffctl.schedules.configs import LinearScheduleConfig
from diffctl.schedules.noise_schedule import NoiseSchedule
from diffctl.testing import (
    CHECKS,
    ConformanceError,
    GaussianDenoiser,
    check_component,
    check_config,
    check_dataset,
    check_denoiser,
    check_metric,
    check_plugin,
    check_sampler,
    check_scheduler,
    isolated_registry,
    use_registry,
)

BUILTINS = ("diffctl-core", "diffctl-models", "diffctl-metrics")
SCHEDULERS = ["cosine", "linear", "scaled-linear", "sigmoid"]
SAMPLERS = ["ancestral", "ddim", "dpmpp-2m", "euler", "heun"]
STOCHASTIC = [("ddim", {"eta": 1.0}), ("euler", {"s_churn": 1.0}), ("heun", {"s_churn": 1.0}),
              ("ancestral", {"variance": "beta", "spacing": "leading"})]
DATASETS = ["gmm-ring", "two-moons"]
DENOISERS = ["mlp", "residual-mlp"]
# metric -> (real data, symmetric, samples); the two-moons metrics need 2000 samples to tell a
# collapsed sample from real data (at 1000, moons-hist-mse scores the collapse better)
METRICS = {
    "c2st": (None, True, 500),  # same folds for both orders: symmetric
    "mmd-rbf": (None, False, 500), "mmd-linear": (None, True, 500),  # rbf: bandwidth from real
    "wasserstein": (None, True, 500), "sliced-wasserstein": (None, True, 500),
    "sample-stats": (None, True, 500), "mode-coverage": ("gmm-ring", False, 500),
    "moons-distance": ("two-moons", False, 500), "moons-hist-mse": ("two-moons", True, 2000),
    "moons-shape": ("two-moons", False, 500), "moons-overall": ("two-moons", False, 2000),
}
#: not 0 for identical inputs: unbiased estimators (centred on zero, negative for identical
#: inputs), c2st (chance is 0.5; x against its copy is below it) and moons-overall, whose mean
#: includes moons-shape
NOT_ZERO_FOR_IDENTICAL = {"c2st", "mmd-rbf", "moons-overall"}
#: a function of the generated sample alone: identical inputs say nothing about it
GENERATED_ONLY = {"moons-shape"}


@pytest.fixture
def builtins():
    """The first-party components only (not the example plugin or anything else installed)."""
    with use_registry(isolated_registry(builtins=BUILTINS)) as reg:
        yield reg


# -- the built-ins conform ---------------------------------------------------------------------
def test_the_parametrisations_cover_the_builtins(builtins) -> None:
    """Every scheduler and sampler, the 2-D datasets, vector denoisers and 2-D metrics."""
    assert builtins.components("scheduler") == SCHEDULERS
    assert builtins.components("sampler") == SAMPLERS
    assert [s.name for s in builtins.specs("dataset")
            if issubclass(s.config, Points2DConfig)] == DATASETS
    assert [s.name for s in builtins.specs("denoiser")
            if "data_dim" in s.config.model_fields] == DENOISERS
    assert set(METRICS) <= set(builtins.components("metric"))


@pytest.mark.parametrize("name", SCHEDULERS)
def test_builtin_schedulers_conform(builtins, name: str) -> None:
    assert "q-sample" in check_component("scheduler", name)
    check_component("scheduler", name, {"rescale_zero_terminal_snr": True,
                                        "num_train_timesteps": 50})


@pytest.mark.parametrize(("name", "options"), [(n, {}) for n in SAMPLERS] + STOCHASTIC)
def test_builtin_samplers_conform(builtins, name: str, options: dict) -> None:
    passed = check_component("sampler", name, options)
    assert {"build", "gaussian", "deterministic", "prediction-types"} <= set(passed)
    # the exact ODE solution is the reference for deterministic samplers only
    deterministic = diffctl.create("sampler", name, **options).deterministic
    assert ("probability-flow" in passed) == deterministic


@pytest.mark.parametrize("name", DATASETS)
def test_builtin_datasets_conform(builtins, name: str) -> None:
    assert "reference" in check_component("dataset", name, {"n": 1000})


@pytest.mark.parametrize("name", DENOISERS)
@pytest.mark.parametrize("options", [{}, {"prediction": "v", "time_embedding": "sinusoidal"}])
def test_builtin_denoisers_conform(builtins, name: str, options: dict) -> None:
    options = {"hidden": 32, **options}
    assert "train-step" in check_component("denoiser", name, options)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_builtin_2d_metrics_conform(builtins, name: str) -> None:
    data, symmetric, n = METRICS[name]
    reference = diffctl.create("dataset", data).reference if data else None
    zero = {"zero_for_identical": False} if name in NOT_ZERO_FOR_IDENTICAL else {}
    passed = check_component("metric", name, reference=reference, symmetric=symmetric,
                             num_samples=n, **zero)
    assert "sensitivity" in passed
    assert ("identical-inputs" in passed) == (name not in GENERATED_ONLY)
    assert ("symmetric" in passed) == symmetric


def test_an_unbiased_estimator_is_not_zero_for_identical_inputs(builtins) -> None:
    """Unbiased MMD² of x against itself is negative: the default for a distance fails it,
    and with zero_for_identical=False it is held to the floor's 95th percentile instead."""
    with pytest.raises(ConformanceError, match=r"metric 'mmd-rbf' .*: identical-inputs: "
                                               r"metric\(x, x\) = -0.0\d+, expected 0 .*pass "
                                               r"zero_for_identical=False"):
        check_component("metric", "mmd-rbf")


def test_class_accuracy_config_conforms(builtins) -> None:
    """class-accuracy scores labelled images through a classifier: the kit's sample checks
    (2-D points, no labels) do not apply, its config checks do (tests/test_metrics_images.py
    checks the metric itself)."""
    passed = check_component("metric", "class-accuracy", skip=["build"])
    assert {"config-model", "config-defaults", "config-descriptions"} <= set(passed)


def test_an_asymmetric_builtin_metric_fails_the_symmetry_check(builtins) -> None:
    moons = diffctl.create("dataset", "two-moons").reference
    with pytest.raises(ConformanceError, match=r"metric 'moons-distance' .*: symmetric: "
                                               r"metric\(a, b\) = .* but metric\(b, a\)"):
        check_component("metric", "moons-distance", reference=moons)


# -- broken configs -----------------------------------------------------------------------------
class LooseConfig(BaseModel):
    """Accepts unknown fields: a typo would be silently ignored."""

    steps: int = Field(10, description="Steps.")


class UndocumentedConfig(ComponentConfig):
    steps: int = 10


class RequiredConfig(ComponentConfig):
    steps: int = Field(description="Steps, without a default.")


class LossyConfig(ComponentConfig):
    scale: float = Field(0.5, description="Written rounded to an int.")

    @field_serializer("scale")
    def _rounded(self, value: float) -> int:
        return round(value)


@pytest.mark.parametrize(("config", "message"), [
    (LooseConfig, "config-rejects-unknown: an unknown field was accepted; set extra='forbid'"),
    (UndocumentedConfig, "config-descriptions: every field needs a description .* steps"),
    (RequiredConfig, "config-defaults: every field needs a default .* steps"),
    (LossyConfig, "config-yaml-round-trip: dump -> YAML -> validate changed the config"),
    (dict, "config-model: config must be a pydantic model class"),
])
def test_broken_configs_fail_with_the_reason(config, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_config(config)


def test_a_sampler_with_a_config_that_accepts_unknown_fields_fails() -> None:
    class LooseDDIMConfig(DDIMConfig):
        model_config = ConfigDict(extra="ignore")

    with pytest.raises(ConformanceError, match=r"sampler .*DDIMSampler: config-rejects-unknown"):
        check_sampler(DDIMSampler, LooseDDIMConfig)


# -- broken samplers ----------------------------------------------------------------------------
class IgnoresTheModel(GridSampler):
    """Walks the grid and reports every step, but never uses the model's prediction."""

    def solve(self, model, scheduler, grid, x, generator, callback):
        for i, t in enumerate(grid.timesteps.tolist()):
            if callback is not None:
                callback(Step(i, t, x, x, len(grid)))
        return x


class GlobalRNG(DDIMSampler):
    """DDIM with eta = 1 whose noise comes from the global RNG, not the generator."""

    deterministic = False

    def solve(self, model, scheduler, grid, x, generator, callback):
        return super().solve(model, scheduler, grid, x, None, callback)


class AlwaysEpsilon(GridSampler):
    """Reads every model output as epsilon, whatever the model's ``prediction`` says."""

    def solve(self, model, scheduler, grid, x, generator, callback):
        for i, t in enumerate(grid.timesteps.tolist()):
            a, a_next = float(grid.alpha_bars[i]), float(grid.alpha_bars_next[i])
            eps = model.denoiser(x, torch.full((len(x),), t), cond=None)
            x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
            x = math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * eps
            if callback is not None:
                callback(Step(i, t, x, x0, len(grid)))
        return x


class ClaimsStochastic(DDIMSampler):
    deterministic = False  # but eta = 0 draws no noise


@pytest.mark.parametrize(("sampler", "options", "message"), [
    (IgnoresTheModel, {}, r"gaussian: data N\(0.5, 0.8\^2\) with its exact denoiser: 1000 "
                          r"steps gave mean -?0.00\d+, std (0.99|1.00)\d+ .*ignores or misuses "
                          r"the model"),
    (GlobalRNG, {"eta": 1.0}, "deterministic: same x_T and generator state gave different "
                              "samples: draw noise only from `generator`"),
    (AlwaysEpsilon, {}, "prediction-types: a 'sample'-predicting model gave samples"),
    (ClaimsStochastic, {}, "deterministic: deterministic is False but the samples do not "
                           "depend on the generator"),
])
def test_broken_samplers_fail_with_the_reason(sampler, options, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_sampler(sampler, DDIMConfig, options)


class Overdispersed(DDIMSampler):
    """DDIM started from x_T scaled by 1.03: std 3% (0.024) too high, mean right. The old
    tolerance of 0.04 let it pass; 0.02, five standard errors at 40,000 samples, does not."""

    def solve(self, model, scheduler, grid, x, generator, callback):
        return super().solve(model, scheduler, grid, 1.03 * x, generator, callback)


class Mirrored(DDIMSampler):
    """DDIM from -x_T: the right distribution (the noise is symmetric), the wrong ODE."""

    def solve(self, model, scheduler, grid, x, generator, callback):
        return super().solve(model, scheduler, grid, -x, generator, callback)


def test_a_biased_sampler_fails_the_gaussian_test() -> None:
    with pytest.raises(ConformanceError, match=r"Overdispersed: gaussian: .* 1000 steps gave "
                                               r"mean 0.49\d+, std 0.82\d+ \(tolerance 0.02\)"):
        check_sampler(Overdispersed, DDIMConfig)
    # the same sampler within the old tolerance: the gaussian check alone would pass it
    passed = check_sampler(Overdispersed, DDIMConfig, tolerance=0.04, flow_tolerance=1.0,
                           skip=["zero-terminal-snr"])
    assert {"gaussian", "probability-flow"} <= set(passed)


def test_a_deterministic_sampler_must_follow_the_probability_flow() -> None:
    with pytest.raises(ConformanceError, match=r"Mirrored: probability-flow: a deterministic "
                                               r"sampler must solve the probability-flow ODE: "
                                               r"1000 steps took x_T = "):
        check_sampler(Mirrored, DDIMConfig, skip=["zero-terminal-snr"])
    passed = check_sampler(Mirrored, DDIMConfig, skip=["probability-flow", "zero-terminal-snr"])
    assert "gaussian" in passed  # mean and std alone cannot see it


def test_the_exact_flow_of_gaussian_data_is_what_fine_solvers_converge_to() -> None:
    linear = NoiseSchedule(LinearScheduleConfig())
    model = GaussianDenoiser(linear)
    x_T = torch.linspace(-3, 3, 61, dtype=torch.float64).reshape(-1, 1)
    exact = model.flow(x_T)
    fine = diffctl.create("sampler", "dpmpp-2m").sample(model, linear, x_T, 500)
    assert float((fine - exact).abs().max()) < 2e-3
    # affine in x_T with slope s / sqrt(ab s^2 + 1 - ab) ~ s: x0 ~ mu + s x_T
    assert float((exact - (0.5 + 0.8 * x_T)).abs().max()) < 0.01


def test_too_few_steps_fail_the_gaussian_test_and_say_so() -> None:
    with pytest.raises(ConformanceError, match=r"ancestral:AncestralSampler: gaussian: .* 10 "
                                               r"steps .* needs more steps \(num_steps=...\)"):
        check_sampler("diffctl.samplers.ancestral:AncestralSampler", AncestralConfig,
                      num_steps=10)


# -- broken datasets ----------------------------------------------------------------------------
class UnseededMoons(Points2D):
    """Draws its training data from an unseeded generator."""

    def draw(self, n, rng):
        return np.random.default_rng().normal(size=(n, 2))


class IgnoresTheSeed(Points2D):
    def draw(self, n, rng):
        return np.linspace(0, 1, 2 * n).reshape(n, 2)


class GaussianPoints(Points2D):
    def draw(self, n, rng):
        return rng.normal(size=(n, 2))


class Float64Points(GaussianPoints):
    def __getitem__(self, index):
        return self.train_tensor()[index].double(), -1


@pytest.mark.parametrize(("dataset", "message"), [
    (UnseededMoons, "deterministic: two builds from one config differ at index 0: draw with a "
                    "generator seeded from the config"),
    (IgnoresTheSeed, "seed-is-used: changing the config's seed does not change the data"),
    (Float64Points, r"items: ds\[0\]\[0\] is torch.float64 \(2,\), expected float32"),
])
def test_broken_datasets_fail_with_the_reason(dataset, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_dataset(dataset, Points2DConfig, {"n": 200})
    assert "seed-is-used" in check_dataset(GaussianPoints, Points2DConfig, {"n": 200})


# -- broken denoisers ---------------------------------------------------------------------------
class DenoiserConfig(ComponentConfig):
    data_dim: int = Field(2, description="Dimension of x.")


class BatchNormalised(torch.nn.Module):
    """Centres each batch on its own mean, in eval mode too."""

    prediction = "epsilon"

    def __init__(self, config):
        super().__init__()
        self.linear = torch.nn.Linear(config.data_dim, config.data_dim)

    def forward(self, x, t, cond=None):
        return self.linear(x - x.mean(0))


class DropsAColumn(BatchNormalised):
    def forward(self, x, t, cond=None):
        return self.linear(x)[:, :1]


class BadPrediction(BatchNormalised):
    prediction = "noise"

    def forward(self, x, t, cond=None):
        return self.linear(x)


class Frozen(BatchNormalised):
    """Its output does not depend on its weights."""

    def forward(self, x, t, cond=None):
        return self.linear(x) * 0.0


@pytest.mark.parametrize(("denoiser", "message"), [
    (BatchNormalised, "batch-independent: in eval mode a row's output depends on the rest"),
    (DropsAColumn, r"shapes-dtypes-devices: input torch.float32 \(4, 2\) on cpu gave "
                   r"torch.float32 \(4, 1\)"),
    (BadPrediction, "protocol: prediction must be one of .* got 'noise'"),
    (Frozen, "train-step: no parameter received a gradient"),
])
def test_broken_denoisers_fail_with_the_reason(denoiser, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_denoiser(denoiser, DenoiserConfig)


class HardcodedDtype(BatchNormalised):
    """Returns float32 whatever the input's dtype."""

    def forward(self, x, t, cond=None):
        return self.linear(x).float()


class CpuNoise(BatchNormalised):
    """Adds a tensor it creates on the CPU: fine on the CPU, wrong on any other device."""

    def forward(self, x, t, cond=None):
        return self.linear(x) + torch.zeros(x.shape, dtype=x.dtype)


class CpuOutput(BatchNormalised):
    """Returns a fresh CPU tensor when its input is elsewhere (an output buffer made on the
    default device)."""

    def forward(self, x, t, cond=None):
        out = self.linear(x)
        return out if out.device.type == "cpu" else torch.zeros(out.shape, dtype=out.dtype)


class PlainLinear(BatchNormalised):
    def forward(self, x, t, cond=None):
        return self.linear(x)


def test_float64_is_checked_by_default() -> None:
    passed = check_denoiser(HardcodedDtype, DenoiserConfig, dtypes=("float32",))
    assert "shapes-dtypes-devices" in passed  # a float32-only model can opt out
    with pytest.raises(ConformanceError, match=r"shapes-dtypes-devices: input torch.float64 "
                                               r"\(4, 2\) on cpu gave torch.float32"):
        check_denoiser(HardcodedDtype, DenoiserConfig)
    assert "shapes-dtypes-devices" in check_denoiser(PlainLinear, DenoiserConfig,
                                                     dtypes=[torch.float32, torch.float64])
    with pytest.raises(ConformanceError, match="dtypes must be floating torch dtypes"):
        check_denoiser(PlainLinear, DenoiserConfig, dtypes=["int64"])


@pytest.mark.parametrize(("denoiser", "message"), [
    (CpuNoise, r"shapes-dtypes-devices: raised RuntimeError: Tensor on device cpu is not on "
               r"the expected device meta"),
    (CpuOutput, r"shapes-dtypes-devices: input torch.float32 \(4, 2\) on meta gave "
                r"torch.float32 \(4, 2\) on cpu"),
])
def test_the_devices_logic_runs_without_an_accelerator(denoiser, message: str) -> None:
    """The meta device stands in for CUDA: a device bug shows on a CPU-only machine."""
    assert "shapes-dtypes-devices" in check_denoiser(denoiser, DenoiserConfig, devices=["cpu"])
    with pytest.raises(ConformanceError, match=message):
        check_denoiser(denoiser, DenoiserConfig, devices=["cpu", "meta"])
    # the model under test was not moved: the later sub-checks ran on the CPU copy
    assert "train-step" in check_denoiser(PlainLinear, DenoiserConfig, devices=["cpu", "meta"])


@pytest.mark.parametrize("name", DENOISERS)
def test_builtin_vector_denoisers_pass_on_the_meta_device(builtins, name: str) -> None:
    passed = check_component("denoiser", name, {"hidden": 16}, devices=["cpu", "meta"])
    assert {"shapes-dtypes-devices", "train-step"} <= set(passed)


def test_the_default_devices_come_from_the_machine(monkeypatch) -> None:
    from diffctl.testing._support import default_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_devices(None) == ["cpu", "cuda"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_devices(None) == ["cpu"]
    assert default_devices(("cpu", "meta")) == ["cpu", "meta"]


def test_a_denoiser_without_a_known_shape_asks_for_it() -> None:
    class NoShape(ComponentConfig):
        width: int = Field(4, description="Width.")

    with pytest.raises(ValueError, match="pass sample_shape"):
        check_denoiser(lambda cfg: BatchNormalised(DenoiserConfig()), NoShape)
    passed = check_denoiser(lambda cfg: DropsAColumn(DenoiserConfig(data_dim=1)), NoShape,
                            sample_shape=(1,))
    assert "train-step" in passed and "conditional" not in passed  # no classes: not applicable


# -- broken schedulers --------------------------------------------------------------------------
class Increasing(NoiseSchedule):
    def __init__(self, config):
        super().__init__(config)
        self.alphas_cumprod = self.alphas_cumprod.flip(0)


class Float32Tables(NoiseSchedule):
    def __init__(self, config):
        super().__init__(config)
        self.betas = self.betas.float()


@pytest.mark.parametrize(("scheduler", "message"), [
    (Increasing, "tables: alphas_cumprod is not strictly decreasing"),
    (Float32Tables, r"tables: betas must be a float64 tensor of shape \(1000,\), got "
                    "torch.float32"),
])
def test_broken_schedulers_fail_with_the_reason(scheduler, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_scheduler(scheduler, LinearScheduleConfig)


# -- broken metrics -----------------------------------------------------------------------------
class MetricConfig(ComponentConfig):
    pass


class NearestReal:
    """Mean distance from each generated point to its nearest real point: asymmetric."""

    higher_is_better = False

    def __init__(self, config):
        pass

    def __call__(self, generated, real):
        d = torch.cdist(torch.as_tensor(generated).double(), torch.as_tensor(real).double())
        return {"nearest": float(d.min(dim=1).values.mean())}


class WrongDirection(NearestReal):
    higher_is_better = True

    def __call__(self, generated, real):
        g, r = torch.as_tensor(generated).double(), torch.as_tensor(real).double()
        return {"mean-gap": float((g.mean(0) - r.mean(0)).norm())}


class TensorValued(NearestReal):
    def __call__(self, generated, real):
        return {"nearest": torch.cdist(generated, real).min(dim=1).values.mean()}


class Blind(NearestReal):
    def __call__(self, generated, real):
        return {"blind": 0.0}


class OffsetDistance:
    """The distance between the sample means plus a constant 0.5: never 0, yet metric(x, x)
    is below every real-vs-real floor draw."""

    higher_is_better = False

    def __init__(self, config):
        pass

    def __call__(self, generated, real):
        gap = (torch.as_tensor(generated).double().mean(0)
               - torch.as_tensor(real).double().mean(0)).norm()
        return {"offset-distance": float(gap) + 0.5}


def test_an_asymmetric_metric_fails_unless_declared_so() -> None:
    with pytest.raises(ConformanceError, match=r"symmetric: metric\(a, b\) = .* but "
                                               r"metric\(b, a\) = .*pass symmetric=False"):
        check_metric(NearestReal, MetricConfig)
    assert "symmetric" not in check_metric(NearestReal, MetricConfig, symmetric=False)


@pytest.mark.parametrize(("metric", "message"), [
    (WrongDirection, r"identical-inputs: metric\(x, x\) = 0, expected at least as good as two "
                     r"independent real samples \(>= "),
    (TensorValued, "output: values must be finite Python floats"),
    (Blind, "sensitivity: a sample collapsed to a point off the data scores 0, not worse"),
])
def test_broken_metrics_fail_with_the_reason(metric, message: str) -> None:
    with pytest.raises(ConformanceError, match=message):
        check_metric(metric, MetricConfig)


def test_a_distance_with_an_offset_is_not_zero_for_identical_inputs() -> None:
    with pytest.raises(ConformanceError, match=r"OffsetDistance: identical-inputs: metric\(x, "
                                               r"x\) = 0.5, expected 0 for identical inputs"):
        check_metric(OffsetDistance, MetricConfig)
    # opting out holds it to the floor's 95th percentile, which 0.5 is below
    passed = check_metric(OffsetDistance, MetricConfig, zero_for_identical=False)
    assert "identical-inputs" in passed
    passed = check_metric(OffsetDistance, MetricConfig, identical_tolerance=0.5)
    assert "identical-inputs" in passed


def test_identical_inputs_beyond_the_floors_p95_fail() -> None:
    """Not held to zero, metric(x, x) must still beat the floor's 95th percentile."""
    class Inflated(OffsetDistance):
        def __call__(self, generated, real):
            value = super().__call__(generated, real)["offset-distance"]
            return {"inflated": value + (1.0 if generated is real or torch.equal(
                torch.as_tensor(generated), torch.as_tensor(real)) else 0.0)}

    with pytest.raises(ConformanceError, match=r"identical-inputs: metric\(x, x\) = 1.5, "
                                               r"expected at least as good as two independent "
                                               r"real samples \(<= the floor's p95 0.5\d+"):
        check_metric(Inflated, MetricConfig, zero_for_identical=False)


# -- plugins, dispatch, skipping ---------------------------------------------------------------
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str):
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return __import__(name)


PLUGIN = '''
{imports}
from diffctl import hookimpl
from diffctl.samplers.configs import AncestralConfig, DDIMConfig


@hookimpl
def register_components(registry):
    registry.add("sampler", "{name}", factory="diffctl.samplers.ddim:DDIMSampler",
                 config=DDIMConfig, summary="DDIM again, under another name.")
'''


def test_check_plugin_reports_every_component(tmp_path, monkeypatch) -> None:
    module = write_module(tmp_path, monkeypatch, "kit_good_plugin",
                          PLUGIN.format(imports="", name="ddim-copy"))
    report = check_plugin(module, components={"sampler:ddim-copy": {"options": {"eta": 0.5}}})
    assert report["plugin"] == ["loads", "registers", "lazy-imports"]  # no command hook
    assert "gaussian" in report["sampler:ddim-copy"]
    with pytest.raises(ValueError, match="does not register: sampler:nope"):
        check_plugin(module, components={"sampler:nope": {}})


@pytest.mark.parametrize(("imports", "name", "message"), [
    ("import numpy", "ddim-heavy", "lazy-imports: importing it imports numpy; give factories "
                                   "as 'module:attribute' strings"),
    ("", "ddim", "loads: plugin 'kit_bad_plugin_1' .* duplicate sampler 'ddim'"),
])
def test_check_plugin_fails_heavy_imports_and_duplicates(tmp_path, monkeypatch, imports, name,
                                                         message) -> None:
    module = write_module(tmp_path, monkeypatch, f"kit_bad_plugin_{len(imports) == 0:d}",
                          PLUGIN.format(imports=imports, name=name))
    with pytest.raises(ConformanceError, match=message):
        check_plugin(module)


class HijackPlugin:
    @hookimpl
    def register_commands(self, app) -> None:
        @app.command("run")
        def run() -> None:
            """Replace the built-in run."""


def test_check_plugin_fails_a_command_that_replaces_a_built_in() -> None:
    pytest.importorskip("diffctl_cli")
    with pytest.raises(ConformanceError, match=r"commands: .*cannot replace built-in command"):
        check_plugin(HijackPlugin())  # an object, not a module: lazy-imports does not apply


def test_check_component_dispatches_and_covers_other_kinds() -> None:
    assert set(CHECKS) == {"dataset", "denoiser", "scheduler", "sampler", "metric", "logger"}

    class Widgets:
        @hookimpl
        def register_components(self, registry) -> None:
            registry.add("widget", "gizmo", factory=lambda cfg: object(), config=MetricConfig,
                         summary="A kind the toolkit does not compose.")

    reg = isolated_registry(Widgets())
    assert check_component("widget", "gizmo", registry=reg)[-1] == "build"
    with pytest.raises(ConformanceError, match=r"widget 'gizmo' .*: config-yaml-round-trip: "
                                               r"raised ValidationError"):
        check_component("widget", "gizmo", {"n": 1}, registry=reg)  # not a field
    with pytest.raises(UnknownComponentError, match="did you mean 'ddim'"):
        check_component("sampler", "dim", registry=reg)


def test_skip_leaves_out_named_sub_checks_and_rejects_unknown_names() -> None:
    passed = check_sampler(IgnoresTheModel, DDIMConfig,
                           skip=["gaussian", "probability-flow", "zero-terminal-snr"])
    assert "gaussian" not in passed and "deterministic" in passed
    with pytest.raises(ValueError, match=r"unknown sub-check.*gausian"):
        check_sampler(DDIMSampler, DDIMConfig, skip=["gausian"])


class Unbuildable:
    """A component whose factory cannot run here (say, it needs a GPU or a download)."""

    def __init__(self, config):
        raise RuntimeError("needs hardware this machine does not have")


@pytest.mark.parametrize(("check", "config"), [
    (check_sampler, DDIMConfig), (check_metric, MetricConfig), (check_dataset, Points2DConfig),
    (check_scheduler, LinearScheduleConfig), (check_denoiser, DenoiserConfig),
])
def test_every_check_reports_build_and_can_skip_it(check, config) -> None:
    """``build`` is a sub-check like any other: listed, reported, skippable (config only)."""
    with pytest.raises(ConformanceError, match=r"Unbuildable: build: raised RuntimeError: needs "
                                               r"hardware"):
        check(Unbuildable, config)
    passed = check(Unbuildable, config, skip=["build"])
    assert passed == ["config-model", "config-defaults", "config-descriptions",
                      "config-yaml-round-trip", "config-rejects-unknown", "config-json-schema"]


def test_build_is_reported_and_skippable_for_other_kinds_too() -> None:
    class Gadgets:
        @hookimpl
        def register_components(self, registry) -> None:
            registry.add("gadget", "broken", factory=Unbuildable, config=MetricConfig,
                         summary="Cannot be built here.")

    reg = isolated_registry(Gadgets())
    with pytest.raises(ConformanceError, match=r"gadget 'broken' .*: build: raised"):
        check_component("gadget", "broken", registry=reg)
    assert "build" not in check_component("gadget", "broken", registry=reg, skip=["build"])
    assert "build" in check_component("sampler", "ddim", registry=reg,
                                      skip=["gaussian", "probability-flow"])


def test_checks_leave_the_global_rng_and_threads_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    check_sampler(DDIMSampler, DDIMConfig, {"eta": 1.0}, skip=["gaussian"])
    assert torch.equal(torch.rand(3), expected) and torch.get_num_threads() == threads


# -- the pytest plugin --------------------------------------------------------------------------
def test_the_fixture_isolates_the_registry(diffctl_registry, request) -> None:
    assert diffctl.get_registry() is diffctl_registry
    assert [p.name for p in diffctl_registry.plugins()] == ["core"]
    assert diffctl.components("denoiser") == []  # installed elsewhere, not loaded here
    plugin = request.config.pluginmanager.get_plugin("diffctl")
    assert plugin is not None and plugin.__name__ == "diffctl.testing.pytest_plugin"


def test_use_registry_restores_the_previous_default() -> None:
    before = diffctl.get_registry()
    reg = isolated_registry(builtins=())
    with use_registry(reg):
        assert diffctl.get_registry() is reg and diffctl.components("sampler") == []
    assert diffctl.get_registry() is before


def test_importing_the_kit_and_its_pytest_plugin_is_cheap() -> None:
    code = ("import sys, diffctl.testing, diffctl.testing.pytest_plugin\n"
            "print([m for m in ('torch', 'numpy', 'yaml') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_model_metrics_get_their_own_checks() -> None:
    """test-loss scores a model (ModelMetric): protocol, finite output and determinism are
    checked on a small denoiser; a model metric with a non-finite or seed-ignoring value fails."""
    from diffctl.testing.config import CONFIG_CHECKS

    assert check_component("metric", "test-loss")[-4:] == [
        "build", "protocol", "output", "deterministic"]
    assert set(CONFIG_CHECKS) & set(check_component("metric", "test-loss"))

    class Unstable:
        higher_is_better = False
        calls = 0

        def __init__(self, config=None):
            pass

        def score_model(self, denoiser, scheduler, data, labels=None, seed=0):
            Unstable.calls += 1
            return {"unstable": float(Unstable.calls)}

    with pytest.raises(ConformanceError, match="deterministic: the same inputs and seed"):
        check_metric(Unstable, DenoiserConfig)

    class NotFinite(Unstable):
        def score_model(self, denoiser, scheduler, data, labels=None, seed=0):
            return {"loss": float("nan")}

    with pytest.raises(ConformanceError, match="output: values must be finite"):
        check_metric(NotFinite, DenoiserConfig)
