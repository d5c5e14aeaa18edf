"""Samplers against closed-form answers for Gaussian data N(mu, s^2).

For such data the exact denoiser is linear in x_t, E[x0 | x_t] = mu + sqrt(a) s^2 /
(a s^2 + 1 - a) (x_t - sqrt(a) mu) with a = alpha_bar_t, and the probability-flow ODE has a
closed-form solution, so a sampler's output can be checked against exact numbers: its mean
and std (every sampler x schedule x prediction type), its per-sample distance to the exact
flow (higher-order solvers vs Euler), and float32 against float64 (the VP-scale solver state).
"""

from __future__ import annotations

import math

import pytest
import torch

import diffctl
from diffctl.samplers.heun import EULER_BELOW
from diffctl.samplers.noise import PerSampleGenerator, initial_noise
from diffctl.testing.sampler import normal_quantiles

MU, S = 0.5, 0.8
N = 10_000
SCHEDULES = ("linear", "cosine", "scaled-linear", "sigmoid")
PREDICTIONS = ("epsilon", "sample", "v")


@pytest.fixture(autouse=True)
def _one_thread():
    """10k-point tensors gain nothing from intra-op threads; on a busy machine the thread pool
    made these tests 10-30x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class GaussianDenoiser:
    """The exact denoiser of N(mu, s^2) over the alpha_bar ``table`` the sampler reads
    (``GridSampler.alpha_bar_table``), computed in the input's dtype; counts its calls."""

    def __init__(self, table: torch.Tensor, prediction: str):
        self.table, self.prediction, self.calls = table, prediction, 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        self.calls += 1
        a = self.table.to(x.dtype)[t].reshape(-1, *([1] * (x.ndim - 1)))
        x0 = MU + a.sqrt() * S * S / (a * S * S + 1 - a) * (x - a.sqrt() * MU)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return {"epsilon": eps, "sample": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}[
            self.prediction]


def start(table: torch.Tensor, t0: int) -> torch.Tensor:
    """x at the first grid point t0 drawn from its exact marginal N(sqrt(a) mu, a s^2 + 1 - a),
    as normal quantiles (no sampling error), so the exact reverse process returns N(mu, s^2)
    whatever alpha_bar_{t0} is (scaled-linear's is 0.0047: starting from N(0, 1) instead would
    shift an exact ODE's mean by sqrt(a) s mu = 0.027)."""
    a = float(table[t0])
    return math.sqrt(a) * MU + math.sqrt(a * S * S + 1 - a) * normal_quantiles(N)


# Steps per sampler and the tolerance on |mean - mu| and |std - s|. Measured worst cases over the
# 4 schedules x 3 predictions (trailing grid, float64):
# - deterministic samplers: x_T is exact quantiles, so there is no sampling error; every step
#   is affine and consistent, so the mean stays mu to ~1e-15, and the std error is pure
#   discretisation: ddim/euler 6.8e-3 at 250 steps, heun 5.3e-3 and dpmpp-2m 4.4e-3 at 100
#   (scaled-linear, dominated by the last, first-order step from sigma ~ 0.09 to 0: relative
#   error ~ sigma^2 / (2 s^2)).
# - ancestral draws fresh noise at every step, which carries almost all of the output's
#   variance: standard error of the mean s / sqrt(N) = 0.008, of the std s / sqrt(2N) = 0.0057.
#   Measured at 500 steps: mean +0.016 (the same noise realisation on every schedule, 2 SE),
#   std within 7.3e-3 (discretisation ~ -5e-3 plus noise). Tolerance 0.03 = 3.75 SE of the mean.
CASES = {  # name: (steps, mean tolerance, std tolerance)
    "ancestral": (500, 0.03, 0.03),
    "ddim": (250, 1e-3, 0.01),
    "euler": (250, 1e-3, 0.01),
    "heun": (100, 1e-3, 0.01),
    "dpmpp-2m": (100, 1e-3, 0.01),
}


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_gaussian_data_mean_and_std(name: str, schedule: str, prediction: str) -> None:
    steps, mean_tol, std_tol = CASES[name]
    scheduler = diffctl.create("scheduler", schedule)
    sampler = diffctl.create("sampler", name)
    table = sampler.alpha_bar_table(scheduler.alphas_cumprod, prediction)
    x_T = start(table, int(scheduler.timesteps(steps, "trailing")[0]))
    x = sampler.sample(GaussianDenoiser(table, prediction), scheduler, x_T, steps,
                       generator=torch.Generator().manual_seed(1))
    assert x.dtype == torch.float64 and bool(torch.isfinite(x).all())
    assert abs(float(x.mean()) - MU) <= mean_tol, float(x.mean())
    assert abs(float(x.std()) - S) <= std_tol, float(x.std())


def exact_flow(x_T: torch.Tensor, table: torch.Tensor, t0: int) -> torch.Tensor:
    """Where the probability-flow ODE takes x_T (at t0) at sigma = 0: in VE form x - mu scales
    as sqrt(s^2 + sigma^2)."""
    a = float(table[t0])
    sigma0 = math.sqrt((1 - a) / a)
    return MU + S / math.sqrt(S * S + sigma0 * sigma0) * (x_T / math.sqrt(a) - MU)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_higher_order_samplers_beat_euler_at_10_steps(schedule: str, prediction: str) -> None:
    """Mean distance to the exact flow at 10 steps. Measured heun / euler: linear 0.19, cosine
    0.045, scaled-linear 0.41, sigmoid 0.42; dpmpp-2m / euler: 0.45, 0.18, 0.53, 0.16."""
    scheduler = diffctl.create("scheduler", schedule)
    err = {}
    for name in ("euler", "heun", "dpmpp-2m"):
        sampler = diffctl.create("sampler", name)
        table = sampler.alpha_bar_table(scheduler.alphas_cumprod, prediction)
        t0 = int(scheduler.timesteps(10, "trailing")[0])
        x_T = start(table, t0)
        x = sampler.sample(GaussianDenoiser(table, prediction), scheduler, x_T, 10)
        err[name] = float((x - exact_flow(x_T, table, t0)).abs().mean())
    assert err["heun"] < 0.6 * err["euler"], err
    assert err["dpmpp-2m"] < 0.6 * err["euler"], err


def test_solvers_converge_to_the_exact_flow() -> None:
    scheduler = diffctl.create("scheduler", "cosine")
    for name, steps in (("euler", 1000), ("heun", 250), ("dpmpp-2m", 250)):
        sampler = diffctl.create("sampler", name)
        table = sampler.alpha_bar_table(scheduler.alphas_cumprod, "v")
        x_T = start(table, 999)
        x = sampler.sample(GaussianDenoiser(table, "v"), scheduler, x_T, steps)
        assert float((x - exact_flow(x_T, table, 999)).abs().max()) < 0.005, name


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
@pytest.mark.parametrize("steps", [10, 20, 50])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_heun_takes_euler_steps_only_where_the_ratio_is_tiny(schedule: str, steps: int,
                                                             spacing: str) -> None:
    """The threshold's claims (samplers/heun.py): on linear, scaled-linear and sigmoid grids of
    >= 10 steps every step but the last is second order (2n - 1 evaluations); on cosine the
    trailing/linspace grids' first step (sigma 2.0e4 -> ~6, ratio 3e-4 at 10 steps) is an Euler
    step (2n - 2), and Heun's std stays right there (the trapezoid step gave std 20)."""
    scheduler = diffctl.create("scheduler", schedule)
    sampler = diffctl.create("sampler", "heun", spacing=spacing)
    table = sampler.alpha_bar_table(scheduler.alphas_cumprod, "epsilon")
    ts = scheduler.timesteps(steps, spacing)
    sigmas = [math.sqrt((1 - float(a)) / float(a)) for a in table[ts]]
    small = [i for i in range(steps - 1) if sigmas[i + 1] / sigmas[i] < EULER_BELOW]
    model = GaussianDenoiser(table, "epsilon")
    x = sampler.sample(model, scheduler, start(table, int(ts[0])), steps)
    assert model.calls == 2 * steps - 1 - len(small)
    if schedule == "cosine" and spacing != "leading":
        assert small == [0]
    else:
        assert small == []
    euler = diffctl.create("sampler", "euler", spacing=spacing).sample(
        GaussianDenoiser(table, "epsilon"), scheduler, start(table, int(ts[0])), steps)
    # measured |std - s| heun vs euler, worst at 10 steps: 0.085 vs 0.139 (sigmoid, linspace)
    assert abs(float(x.std()) - S) < abs(float(euler.std()) - S)


def test_heun_is_at_least_as_accurate_as_euler_on_cosine_with_few_steps() -> None:
    scheduler = diffctl.create("scheduler", "cosine")
    stds = {}
    for name in ("euler", "heun"):
        sampler = diffctl.create("sampler", name)
        table = sampler.alpha_bar_table(scheduler.alphas_cumprod, "epsilon")
        for steps in (3, 5, 10):
            x = sampler.sample(GaussianDenoiser(table, "epsilon"), scheduler,
                               start(table, 999), steps)
            stds[name, steps] = float(x.std())
    for steps in (3, 5, 10):
        assert abs(stds["heun", steps] - S) <= abs(stds["euler", steps] - S), stds


# -- float32 against float64 ---------------------------------------------------------------
@pytest.mark.parametrize("steps", [10, 50])
@pytest.mark.parametrize("prediction", ["sample", "v"])
@pytest.mark.parametrize(("name", "options"), [
    ("ddim", {}), ("euler", {}), ("heun", {}), ("dpmpp-2m", {}), ("euler", {"s_churn": 2.0}),
    ("heun", {"s_churn": 2.0})])
def test_float32_runs_agree_with_float64_on_cosine(name: str, options: dict, prediction: str,
                                                   steps: int) -> None:
    """The sigma-space solvers step the VP state (O(1) values), not the VE one (|x| ~ 2e4 at
    t = T-1 on cosine, where float32 lost 2-7e-4); now all are within ~3e-6 like DDIM."""
    scheduler = diffctl.create("scheduler", "cosine")
    sampler = diffctl.create("sampler", name, **options)
    table = sampler.alpha_bar_table(scheduler.alphas_cumprod, prediction)
    x_T, _ = initial_noise((4096, 1), seed=0)
    out = {}
    for dtype in (torch.float32, torch.float64):
        out[dtype] = sampler.sample(GaussianDenoiser(table, prediction), scheduler, x_T.to(dtype),
                                    steps, generator=PerSampleGenerator(5, 4096))
        assert out[dtype].dtype == dtype
    diff = float((out[torch.float32].double() - out[torch.float64]).abs().max())
    assert diff < 1e-5, diff


@pytest.mark.parametrize("steps", [10, 50])
def test_float32_epsilon_models_lose_no_more_in_the_ode_solvers_than_in_ddim(steps: int) -> None:
    """A float32 epsilon model at cosine's alpha_bar_{T-1} ~ 2e-9 fixes x0 only to ~6e-8 /
    sqrt(2e-9) ~ 1e-3 (x0 = (x - sqrt(1 - a) eps) / sqrt(a)): DDIM ends 3.3e-4 (10 steps) and
    7e-5 (50) away from float64. That is the model's conditioning; the ODE solvers must not add
    to it (measured: within 1.12x of DDIM)."""
    scheduler = diffctl.create("scheduler", "cosine")
    x_T, _ = initial_noise((4096, 1), seed=0)
    diffs = {}
    for name in ("ddim", "euler", "heun", "dpmpp-2m"):
        sampler = diffctl.create("sampler", name)
        table = sampler.alpha_bar_table(scheduler.alphas_cumprod, "epsilon")
        runs = [sampler.sample(GaussianDenoiser(table, "epsilon"), scheduler, x_T.to(dtype),
                               steps).double() for dtype in (torch.float32, torch.float64)]
        diffs[name] = float((runs[0] - runs[1]).abs().max())
    assert all(diffs[name] < 1.5 * diffs["ddim"] for name in diffs), diffs


# -- DPM-Solver++(2M) on grids that stop at alpha_bar[0] ---------------------------------------
def exact_flow_to(x_T: torch.Tensor, table: torch.Tensor, t0: int, a_end: float) -> torch.Tensor:
    """Where the probability-flow ODE takes x_T (at t0) at alpha_bar ``a_end`` (VP state):
    in VE coordinates y - mu scales as sqrt(s^2 + sigma^2)."""
    a = float(table[t0])
    sigma0, sigma1 = math.sqrt((1 - a) / a), math.sqrt((1 - a_end) / a_end)
    y_end = MU + math.sqrt(S * S + sigma1 * sigma1) / math.sqrt(S * S + sigma0 * sigma0) * (
        x_T / math.sqrt(a) - MU)
    return math.sqrt(a_end) * y_end


def dpmpp_final_alpha_bar0(schedule: str, steps: int, lower_order_final: bool,
                           prediction: str = "epsilon") -> tuple[torch.Tensor, torch.Tensor]:
    """(dpmpp-2m's output, the exact answer) on a trailing grid that ends at alpha_bar[0]."""
    scheduler = diffctl.create("scheduler", schedule)
    sampler = diffctl.create("sampler", "dpmpp-2m", final_alpha_one=False,
                             lower_order_final=lower_order_final)
    table = sampler.alpha_bar_table(scheduler.alphas_cumprod, prediction)
    t0 = int(scheduler.timesteps(steps, "trailing")[0])
    x_T = start(table, t0)
    x = sampler.sample(GaussianDenoiser(table, prediction), scheduler, x_T, steps)
    return x, exact_flow_to(x_T, table, t0, float(table[0]))


@pytest.mark.parametrize("schedule", ["linear", "cosine", "scaled-linear"])
def test_dpmpp_first_order_final_step_on_grids_that_stop_at_alpha_bar_0(schedule: str) -> None:
    """Mean |x - exact| with the last step second order (off) and first order (on, the
    default), measured at 10 / 14 / 20 steps:

    - linear: off 0.217 / 0.150 / 0.0887, on 0.0512 / 0.0175 / 0.00205;
    - cosine: off 0.0905 / 0.0505 / 0.0254, on 0.0130 / 0.00334 / 0.000187;
    - scaled-linear: off 0.113 / 0.0772 / 0.0486, on 0.0429 / 0.0248 / 0.0145.

    The last step (t = T/n - 1 to t = 0) is many times longer in log-SNR than the one before
    it, and the second-order extrapolation overshoots there."""
    errors = {}
    for steps in (10, 14, 20):
        for on in (True, False):
            x, exact = dpmpp_final_alpha_bar0(schedule, steps, on)
            errors[steps, on] = float((x - exact).abs().mean())
    for steps in (10, 14, 20):
        assert errors[steps, True] < 0.5 * errors[steps, False], errors
    assert errors[10, True] > errors[14, True] > errors[20, True], errors
    assert diffctl.create("sampler", "dpmpp-2m").config.lower_order_final is True


def test_dpmpp_lower_order_final_changes_nothing_when_the_grid_ends_at_clean_data() -> None:
    """With final_alpha_one (the default) the last step goes to sigma = 0 and is first order
    anyway."""
    scheduler = diffctl.create("scheduler", "linear")
    outs = []
    for on in (True, False):
        sampler = diffctl.create("sampler", "dpmpp-2m", lower_order_final=on)
        table = sampler.alpha_bar_table(scheduler.alphas_cumprod, "epsilon")
        x_T = start(table, 999)
        outs.append(sampler.sample(GaussianDenoiser(table, "epsilon"), scheduler, x_T, 10))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("steps", [10, 14, 20])
def test_dpmpp_equals_diffusers_multistep_scheduler(steps: int) -> None:
    """diffusers' DPMSolverMultistepScheduler (dpmsolver++, order 2, trailing, final sigma of
    alpha_bar[0]) as the oracle: on = its euler_at_final, off = neither euler_at_final nor
    lower_order_final; its default (lower_order_final below 15 steps only) is on at 10 and 14
    steps and off at 20. Measured agreement 1.2e-6 to 3.0e-5 (diffusers' float32 sigmas),
    while on and off differ by more than 0.01."""
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffctl.create("scheduler", "linear")
    ours = {on: dpmpp_final_alpha_bar0("linear", steps, on) for on in (True, False)}
    table = diffctl.create("sampler", "dpmpp-2m").alpha_bar_table(scheduler.alphas_cumprod,
                                                                   "epsilon")
    x_T = start(table, int(scheduler.timesteps(steps, "trailing")[0]))

    def oracle(**options) -> torch.Tensor:
        ref = diffusers.DPMSolverMultistepScheduler(
            num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
            algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="trailing",
            final_sigmas_type="sigma_min", prediction_type="epsilon", **options)
        ref.set_timesteps(steps)
        model, x = GaussianDenoiser(table, "epsilon"), x_T.clone()
        for t in ref.timesteps:
            x = ref.step(model(x, t.reshape(1).expand(len(x))), t, x).prev_sample
        return x.double()

    on = oracle(lower_order_final=True, euler_at_final=True)
    off = oracle(lower_order_final=False, euler_at_final=False)
    default = oracle()
    assert float((ours[True][0] - on).abs().max()) < 1e-4
    assert float((ours[False][0] - off).abs().max()) < 1e-4
    assert float((on - off).abs().max()) > 1e-2
    assert torch.equal(default, on if steps < 15 else off)
