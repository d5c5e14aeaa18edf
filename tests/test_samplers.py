"""Samplers against diffusers (test-only oracle) and against closed-form Gaussian answers."""

from __future__ import annotations

import pytest
import torch

import diffctl
from diffctl.samplers.base import Step, Trajectory, frame_indices, sampling_alpha_bars
from diffctl.samplers.noise import initial_noise

SAMPLERS = ["ancestral", "ddim", "euler", "heun", "dpmpp-2m"]


class ToyDenoiser:
    """A fixed nonlinear model, the same for us and for diffusers: the exact denoiser of
    N(0, 0.5^2) data plus a smooth perturbation, so sample values stay O(1) like a trained
    model's."""

    def __init__(self, prediction: str, schedule: str = "linear", **options):
        self.prediction = prediction
        alphas_cumprod = diffctl.create("scheduler", schedule, **options).alphas_cumprod
        # sample and v models are well defined at a zero-SNR alpha_bar = 0 (DDIM and ancestral
        # keep the exact 0 there); epsilon models see the samplers' stand-in
        self.table = (sampling_alpha_bars(alphas_cumprod) if prediction == "epsilon"
                      else alphas_cumprod.to(torch.float64))

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        a = self.table[t].to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        x0 = a.sqrt() * 0.25 / (a * 0.25 + 1 - a) * x + 0.05 * torch.sin(3 * x)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return {"epsilon": eps, "sample": x0, "v": a.sqrt() * eps - (1 - a).sqrt() * x0}[
            self.prediction]


class GaussianDenoiser:
    """The exact denoiser for data N(mu, s^2): E[x0 | x_t] is linear in x_t."""

    def __init__(self, scheduler, mu: float, s: float, prediction: str = "epsilon",
                 table: torch.Tensor | None = None):
        self.table = sampling_alpha_bars(scheduler.alphas_cumprod) if table is None else table
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


ZERO_SNR = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
            "rescale_betas_zero_snr": True}


@pytest.mark.parametrize("prediction", ["v", "sample"])
@pytest.mark.parametrize(("num_steps", "eta"), [(50, 0.0), (10, 0.0), (20, 1.0)])
def test_ddim_matches_diffusers_on_a_zero_terminal_snr_schedule(prediction, num_steps,
                                                                eta) -> None:
    """Scaled-linear rescaled to alpha_bar_{T-1} = 0, trailing grid (which starts at T-1):
    for sample and v models DDIM uses the exact alpha_bar = 0 there (x0 = -v, eps = x_t), as
    diffusers does. With the 2**-24 stand-in this was 1.1e-5 off at 50 steps and 2.8e-5 at 10
    (3.2e-4 with eta = 1); now about 1e-6.

    Both run in float64: at alpha_bar = 0 with eta = 1 the exact coefficient of diffusers'
    "direction to x_t", sqrt(1 - a' - sigma²), is 0, and in float32 its own rounding can make
    the radicand an ulp negative, so the oracle itself returns NaN (seen with diffusers 0.41
    and 0.42 on torch 2.14)."""
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True,
        timestep_spacing="trailing", prediction_type=DIFFUSERS_PREDICTION[prediction],
        **ZERO_SNR)
    ref.set_timesteps(num_steps)
    ref.alphas_cumprod = ref.alphas_cumprod.double()
    ref.final_alpha_cumprod = ref.final_alpha_cumprod.double()
    ours = diffctl.create("scheduler", "scaled-linear", rescale_zero_terminal_snr=True)
    assert float(ours.alphas_cumprod[int(ref.timesteps[0])]) == 0.0
    model = ToyDenoiser(prediction, "scaled-linear", rescale_zero_terminal_snr=True)
    x_T = torch.randn(16, 3, 4, 4, generator=torch.Generator().manual_seed(0),
                      dtype=torch.float64)
    x, gen = x_T.clone(), torch.Generator().manual_seed(1)
    for t in ref.timesteps:
        x = ref.step(model(x, t.repeat(16)), int(t), x, eta=eta, generator=gen).prev_sample
    y = diffctl.create("sampler", "ddim", eta=eta).sample(
        model, ours, x_T.clone(), num_steps, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("schedule", "prediction", "options"), [
    ("linear", "epsilon", {}), ("cosine", "v", {}),
    ("scaled-linear", "v", {"rescale_zero_terminal_snr": True})])
def test_ddim_with_all_T_steps_is_diffusers_deterministic_ddpm(schedule, prediction,
                                                               options) -> None:
    """n = T (the "deterministic DDPM" sampler) in float64 against DDIMScheduler's loop.

    diffusers keeps alphas_cumprod in float32; over 1000 steps that table rounding alone moves
    the result by ~1.7e-5 in float64 (and float32 accumulation by ~2e-5 more), which is rounding,
    not a different method. With our float64 table (equal to diffusers' within 1e-6, see
    test_schedules.py) put into diffusers' scheduler, both loops agree to ~5e-15.
    """
    beta = {"linear": "linear", "cosine": "squaredcos_cap_v2", "scaled-linear": "scaled_linear"}
    extra = ({"beta_start": 0.00085, "beta_end": 0.012} if schedule == "scaled-linear" else {})
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=1000, beta_schedule=beta[schedule], clip_sample=False,
        set_alpha_to_one=True, prediction_type=DIFFUSERS_PREDICTION[prediction],
        rescale_betas_zero_snr=bool(options), **extra)
    ref.set_timesteps(1000)
    ours = diffctl.create("scheduler", schedule, **options)
    ref.alphas_cumprod = ours.alphas_cumprod.clone()
    assert ref.timesteps.tolist() == list(range(999, -1, -1))
    model = ToyDenoiser(prediction, schedule, **options)
    x_T = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x_T.clone()
    for t in ref.timesteps:
        x = ref.step(model(x, t.repeat(8)), int(t), x).prev_sample
    y = diffctl.create("sampler", "ddim").sample(model, ours, x_T.clone(), 1000)
    assert y.dtype == x.dtype == torch.float64
    torch.testing.assert_close(y, x, atol=1e-10, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("num_steps", [10, 50])
@pytest.mark.parametrize(("schedule", "prediction", "options"), [
    ("linear", "epsilon", {}), ("cosine", "v", {}),
    ("scaled-linear", "v", {"rescale_zero_terminal_snr": True})])
def test_ancestral_matches_diffusers_ddpm_on_strided_grids(schedule, prediction, options,
                                                           num_steps, spacing, dtype) -> None:
    """DDPMScheduler steps to the next entry of its own timesteps, so strided grids compare
    for every spacing, zero terminal SNR included. float32: diffusers' float32 tables, 5e-6
    apart. float64: our tables put into diffusers', 4e-10 apart (diffusers clamps the variance
    at 1e-20, so its last step on a trailing grid, at t > 0, adds 1e-10 z)."""
    beta = {"linear": "linear", "cosine": "squaredcos_cap_v2", "scaled-linear": "scaled_linear"}
    extra = ({"beta_start": 0.00085, "beta_end": 0.012} if schedule == "scaled-linear" else {})
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_schedule=beta[schedule], clip_sample=False,
        variance_type="fixed_small", prediction_type=DIFFUSERS_PREDICTION[prediction],
        rescale_betas_zero_snr=bool(options), timestep_spacing=spacing, **extra)
    ref.set_timesteps(num_steps)
    ours = diffctl.create("scheduler", schedule, **options)
    assert ref.timesteps.tolist() == ours.timesteps(num_steps, spacing).tolist()
    if dtype == torch.float64:
        ref.betas, ref.alphas = ours.betas.clone(), ours.alphas.clone()
        ref.alphas_cumprod = ours.alphas_cumprod.clone()
    model = ToyDenoiser(prediction, schedule, **options)
    x_T = torch.randn(16, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=dtype)
    x, gen = x_T.clone(), torch.Generator().manual_seed(3)
    for t in ref.timesteps:
        x = ref.step(model(x, t.repeat(16)), int(t), x, generator=gen).prev_sample
    y = diffctl.create("sampler", "ancestral", spacing=spacing).sample(
        model, ours, x_T.clone(), num_steps, generator=torch.Generator().manual_seed(3))
    assert y.dtype == dtype
    torch.testing.assert_close(y, x, atol=1e-5 if dtype == torch.float32 else 1e-9, rtol=0)


# --- closed-form Gaussian checks (more in test_sampler_gaussian.py) -------------------------
MU, S = 0.5, 0.8


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


@pytest.mark.parametrize("name", SAMPLERS)
def test_trajectory_frames_keep_x_T_and_x_0_evenly_spaced(name: str) -> None:
    scheduler = diffctl.create("scheduler", "linear")
    options = {"s_churn": 2.0} if name in ("euler", "heun") else {}  # churn: x_prev is pre-churn
    sampler = diffctl.create("sampler", name, **options)
    x_T, gen = initial_noise((4, 2), seed=0)
    every = Trajectory()
    ref = sampler.sample(ToyDenoiser("epsilon"), scheduler, x_T, 12, generator=gen,
                         callback=every)
    frames = Trajectory(frames=5)
    _, gen = initial_noise((4, 2), seed=0)
    x = sampler.sample(ToyDenoiser("epsilon"), scheduler, x_T, 12, generator=gen,
                       callback=frames)
    torch.testing.assert_close(x, ref, rtol=0, atol=0)
    assert frame_indices(12, 5) == [0, 3, 6, 9, 12]
    grid = scheduler.timesteps(12, "trailing").tolist()
    assert frames.timesteps == [grid[0], grid[3], grid[6], grid[9], -1]
    assert len(frames.xs) == len(frames.x0s) == 5
    assert torch.equal(frames.xs[0], x_T)  # the starting noise itself
    assert torch.equal(frames.xs[-1], x) and torch.equal(frames.x0s[-1], x)
    for j, k in enumerate([3, 6, 9]):  # state after k steps; the estimate made from it
        assert torch.equal(frames.xs[j + 1], every.xs[k - 1])
        assert torch.equal(frames.x0s[j + 1], every.x0s[k])
    assert torch.equal(frames.x0s[0], every.x0s[0])


def test_trajectory_frames_edge_cases() -> None:
    assert frame_indices(9, 10) == list(range(10))  # exactly every state
    assert frame_indices(3, 10) == [0, 1, 2, 3]  # more frames than states: all of them
    assert frame_indices(1000, 2) == [0, 1000]
    for n in (1, 7, 50, 999):
        for k in (2, 3, 10, 11):
            idx = frame_indices(n, k)
            assert len(idx) == min(k, n + 1) and idx[0] == 0 and idx[-1] == n
            assert idx == sorted(set(idx))  # strictly increasing
    scheduler = diffctl.create("scheduler", "linear")
    traj = Trajectory(frames=10)
    x_T = torch.randn(3, 2, generator=torch.Generator().manual_seed(0))
    x = diffctl.create("sampler", "ddim").sample(ToyDenoiser("v"), scheduler, x_T, 1,
                                                 callback=traj)
    assert traj.timesteps == [999, -1]
    assert torch.equal(traj.xs[0], x_T) and torch.equal(traj.xs[1], x)
    with pytest.raises(ValueError, match="at least 2"):
        Trajectory(frames=1)
    # a third-party sampler that does not fill Step.x_prev: x_T comes from start(), the
    # later states from the steps' results
    steps = [Step(i, t, x_T + i + 1, x_T, 3) for i, t in enumerate([999, 666, 333])]
    with pytest.raises(ValueError, match=r"Trajectory.start\(x_T\)"):
        Trajectory(frames=3)(steps[0])
    traj = Trajectory(frames=3)
    traj.start(x_T)
    for step in steps:
        traj(step)
    assert traj.timesteps == [999, 333, -1]  # states 0, 2 (rounded half up) and 3
    assert torch.equal(traj.xs[0], x_T) and torch.equal(traj.xs[1], x_T + 2)
    assert torch.equal(traj.xs[2], x_T + 3)
    Trajectory()(steps[0])  # keeping every step needs neither


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


@pytest.mark.parametrize("name", ["ancestral", "ddim"])
def test_seed_gives_per_sample_noise_without_a_generator(name: str) -> None:
    """``seed=`` (and ``offset``) make a stochastic sampler's rows independent of the batch."""
    scheduler = diffctl.create("scheduler", "linear")
    sampler = diffctl.create("sampler", name, **({"eta": 1.0} if name == "ddim" else {}))
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    whole = sampler.sample(ToyDenoiser("epsilon"), scheduler, x_T, 8, seed=3)
    parts = torch.cat([sampler.sample(ToyDenoiser("epsilon"), scheduler, x_T[:2], 8, seed=3),
                       sampler.sample(ToyDenoiser("epsilon"), scheduler, x_T[2:], 8, seed=3,
                                      offset=2)])
    torch.testing.assert_close(whole, parts, rtol=0, atol=0)
    other = sampler.sample(ToyDenoiser("epsilon"), scheduler, x_T, 8, seed=4)
    assert not torch.equal(whole, other)
