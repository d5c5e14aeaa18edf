"""Samplers against diffusers (test-only oracle) and against closed-form Gaussian answers."""

from __future__ import annotations

import math

import pytest
import torch

import diffctl
from diffctl.samplers.base import Trajectory, sampling_alpha_bars
from diffctl.samplers.noise import initial_noise

SAMPLERS = ["ancestral", "ddim", "euler", "heun", "dpmpp-2m"]


class ToyDenoiser:
    """A fixed nonlinear model, the same for us and for diffusers: the exact denoiser of
    N(0, 0.5^2) data plus a smooth perturbation, so sample values stay O(1) like a trained
    model's."""

    def __init__(self, prediction: str, schedule: str = "linear"):
        self.prediction = prediction
        self.table = sampling_alpha_bars(diffctl.create("scheduler", schedule).alphas_cumprod)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        a = self.table[t].to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        x0 = a.sqrt() * 0.25 / (a * 0.25 + 1 - a) * x + 0.05 * torch.sin(3 * x)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return {"epsilon": eps, "sample": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}[
            self.prediction]


class GaussianDenoiser:
    """The exact denoiser for data N(mu, s^2): E[x0 | x_t] is linear in x_t."""

    def __init__(self, scheduler, mu: float, s: float, prediction: str = "epsilon"):
        self.table = sampling_alpha_bars(scheduler.alphas_cumprod)
        self.mu, self.s, self.prediction = mu, s, prediction

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        a = self.table[t].to(x.dtype).reshape(-1, 1)
        mu, s2 = self.mu, self.s**2
        x0 = mu + a.sqrt() * s2 / (a * s2 + 1 - a) * (x - a.sqrt() * mu)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return {"epsilon": eps, "sample": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}[
            self.prediction]


# --- diffusers oracle -------------------------------------------------------------------------
diffusers = pytest.importorskip("diffusers")
DIFFUSERS_PREDICTION = {"epsilon": "epsilon", "sample": "sample", "v": "v_prediction"}


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize(("num_steps", "eta"), [(50, 0.0), (10, 0.0), (20, 0.5), (25, 1.0)])
def test_ddim_matches_diffusers_loop(prediction, spacing, schedule, num_steps, eta) -> None:
    """Same model, same noise: DDIM's output equals diffusers' DDIMScheduler loop (1e-5).

    With ``linspace`` spacing diffusers steps to ``t - T // n``, which is not the next grid
    point (its stride assumption); we walk the true grid, so that spacing is not compared.
    """
    beta = {"linear": "linear", "cosine": "squaredcos_cap_v2"}[schedule]
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=1000, beta_schedule=beta, clip_sample=False, set_alpha_to_one=True,
        timestep_spacing=spacing, prediction_type=DIFFUSERS_PREDICTION[prediction])
    ref.set_timesteps(num_steps)
    model = ToyDenoiser(prediction, schedule)
    x_T = torch.randn(16, 3, 4, 4, generator=torch.Generator().manual_seed(0))

    x = x_T.clone()
    gen = torch.Generator().manual_seed(1)
    for t in ref.timesteps:
        out = model(x, t.repeat(x.shape[0]))
        x = ref.step(out, int(t), x, eta=eta, generator=gen).prev_sample

    ours = diffctl.create("scheduler", schedule)
    sampler = diffctl.create("sampler", "ddim", eta=eta, spacing=spacing)
    y = sampler.sample(model, ours, x_T.clone(), num_steps,
                       generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_ancestral_matches_diffusers_ddpm_loop() -> None:
    """All T steps of ancestral sampling equal diffusers' DDPMScheduler with the same noise."""
    T = 100
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, clip_sample=False,
                                  variance_type="fixed_small")
    ref.set_timesteps(T)
    model = ToyDenoiser("epsilon")
    x_T = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    x, gen = x_T.clone(), torch.Generator().manual_seed(3)
    for t in ref.timesteps:
        x = ref.step(model(x, t.repeat(8)), int(t), x, generator=gen).prev_sample

    sampler = diffctl.create("sampler", "ancestral", spacing="leading")
    y = sampler.sample(model, diffctl.create("scheduler", "linear", num_train_timesteps=T),
                       x_T.clone(), T, generator=torch.Generator().manual_seed(3))
    # diffusers forms the posterior coefficients in float32 with 1 - alpha_bar ~ 1e-4 early on
    torch.testing.assert_close(y, x, atol=2e-4, rtol=0)


# --- closed-form Gaussian checks --------------------------------------------------------------
MU, S = 0.5, 0.8
# enough steps for each sampler to be within the tolerance below on the linear schedule
STEPS = {"ancestral": 1000, "ddim": 1000, "euler": 1000, "heun": 250, "dpmpp-2m": 100}


def exact_flow(x_T: torch.Tensor, scheduler, mu: float, s: float) -> torch.Tensor:
    """Where the probability-flow ODE takes x_T for Gaussian data (VE form: x - mu scales as
    sqrt(s^2 + sigma^2)), starting at the first grid point t = T-1."""
    a0 = float(sampling_alpha_bars(scheduler.alphas_cumprod)[-1])
    sigma0 = math.sqrt((1 - a0) / a0)
    x_ve = x_T / math.sqrt(a0)
    return mu + s / math.sqrt(s * s + sigma0 * sigma0) * (x_ve - mu)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_gaussian_data_mean_and_std(name: str, prediction: str) -> None:
    scheduler = diffctl.create("scheduler", "linear")
    model = GaussianDenoiser(scheduler, MU, S, prediction)
    x_T, gen = initial_noise((10_000, 1), seed=0)
    x = diffctl.create("sampler", name).sample(model, scheduler, x_T.double(), STEPS[name],
                                               generator=gen)
    assert float(x.mean()) == pytest.approx(MU, abs=0.02)
    assert float(x.std()) == pytest.approx(S, abs=0.02)


def test_higher_order_samplers_beat_euler_at_10_steps() -> None:
    scheduler = diffctl.create("scheduler", "linear")
    model = GaussianDenoiser(scheduler, MU, S)
    x_T, _ = initial_noise((10_000, 1), seed=0)
    x_T = x_T.double()
    target = exact_flow(x_T, scheduler, MU, S)
    err = {name: float((diffctl.create("sampler", name).sample(model, scheduler, x_T, 10)
                        - target).abs().mean())
           for name in ("euler", "heun", "dpmpp-2m")}
    assert err["heun"] < 0.5 * err["euler"], err
    assert err["dpmpp-2m"] < 0.5 * err["euler"], err
    # and every solver converges to the exact flow as steps grow
    fine = diffctl.create("sampler", "dpmpp-2m").sample(model, scheduler, x_T, 500)
    assert float((fine - target).abs().max()) < 0.01


def test_ddim_eta0_is_euler() -> None:
    """DDIM without noise is Euler's method on the ODE in sigma (Karras et al. 2022, Sec. 4)."""
    scheduler = diffctl.create("scheduler", "cosine")
    model = ToyDenoiser("v", "cosine")
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = diffctl.create("sampler", "ddim").sample(model, scheduler, x_T, 20)
    b = diffctl.create("sampler", "euler").sample(model, scheduler, x_T, 20)
    torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v"])
def test_zero_terminal_snr_is_finite_for_every_sampler(name: str, prediction: str) -> None:
    scheduler = diffctl.create("scheduler", "scaled-linear", rescale_zero_terminal_snr=True)
    assert float(scheduler.alphas_cumprod[-1]) == 0.0
    model = GaussianDenoiser(scheduler, MU, S, prediction)
    x_T, gen = initial_noise((2000, 1), seed=1)
    x = diffctl.create("sampler", name).sample(model, scheduler, x_T.double(), 50,
                                               generator=gen)
    assert torch.isfinite(x).all()
    assert float(x.mean()) == pytest.approx(MU, abs=0.1)


@pytest.mark.parametrize("name", SAMPLERS)
def test_trajectory_callback_sees_every_step(name: str) -> None:
    scheduler = diffctl.create("scheduler", "linear")
    traj = Trajectory()
    x_T, gen = initial_noise((4, 2), seed=0)
    x = diffctl.create("sampler", name).sample(ToyDenoiser("epsilon"), scheduler, x_T, 12,
                                               generator=gen, callback=traj)
    assert len(traj.xs) == len(traj.x0s) == 12
    assert traj.timesteps == scheduler.timesteps(12, "trailing").tolist()
    torch.testing.assert_close(traj.xs[-1], x)


def test_trajectory_every_k_keeps_the_final_state() -> None:
    scheduler = diffctl.create("scheduler", "linear")
    traj = Trajectory(every=5)
    x = diffctl.create("sampler", "ddim").sample(ToyDenoiser("epsilon"), scheduler,
                                                 torch.randn(4, 2), 12, callback=traj)
    grid = scheduler.timesteps(12, "trailing").tolist()
    assert traj.timesteps == [grid[0], grid[5], grid[10], grid[11]]
    torch.testing.assert_close(traj.xs[-1], x)


@pytest.mark.parametrize("name", SAMPLERS)
def test_samples_do_not_depend_on_batch_size(name: str) -> None:
    scheduler = diffctl.create("scheduler", "linear")
    sampler = diffctl.create("sampler", name, **({"s_churn": 2.0} if name in ("euler", "heun")
                                                 else {"eta": 1.0} if name == "ddim" else {}))
    model = ToyDenoiser("epsilon")
    x_T, gen = initial_noise((10, 2), seed=7)
    whole = sampler.sample(model, scheduler, x_T, 15, generator=gen)
    parts = []
    for offset, size in ((0, 3), (3, 7)):
        xb, gb = initial_noise((size, 2), seed=7, offset=offset)
        parts.append(sampler.sample(model, scheduler, xb, 15, generator=gb))
    torch.testing.assert_close(torch.cat(parts), whole, atol=1e-6, rtol=0)


def test_unknown_sampler_suggests_closest() -> None:
    from diffctl.errors import UnknownComponentError

    with pytest.raises(UnknownComponentError, match="did you mean 'ddim'"):
        diffctl.create("sampler", "dim")
