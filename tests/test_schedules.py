"""Noise schedules against diffusers (test-only oracle) and the published formulas."""

from __future__ import annotations

import math

import pytest
import torch

import diffctl

diffusers = pytest.importorskip("diffusers")

# our registry name -> (diffusers beta_schedule, extra kwargs matching our defaults)
SCHEDULES = {
    "linear": ("linear", {"beta_start": 1e-4, "beta_end": 0.02}),
    "scaled-linear": ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    "sigmoid": ("sigmoid", {"beta_start": 1e-4, "beta_end": 0.02}),
    "cosine": ("squaredcos_cap_v2", {}),
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize("T", [1000, 250])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_alphas_cumprod_match_diffusers_ddpm(name: str, T: int, zero_snr: bool) -> None:
    beta_schedule, kwargs = SCHEDULES[name]
    ref = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=beta_schedule,
                                  rescale_betas_zero_snr=zero_snr, **kwargs)
    ours = diffctl.create("scheduler", name, num_train_timesteps=T,
                          rescale_zero_terminal_snr=zero_snr)
    ref_ab = ref.alphas_cumprod.double()
    assert ours.alphas_cumprod.shape == ref_ab.shape
    torch.testing.assert_close(ours.alphas_cumprod, ref_ab, atol=1e-6, rtol=0)
    if not zero_snr:
        torch.testing.assert_close(ours.betas, ref.betas.double(), atol=1e-6, rtol=0)
        return
    # With rescaling the last betas are ratios of tiny alpha-bars, which diffusers forms in
    # float32 (off by up to ~1e-5 there). Its rescale function run in float64 on our raw
    # betas must reproduce ours exactly.
    from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

    raw = diffctl.create("scheduler", name, num_train_timesteps=T).betas
    torch.testing.assert_close(ours.betas, rescale_zero_terminal_snr(raw.clone()),
                               atol=1e-12, rtol=0)


def test_linear_schedule_is_the_ddpm_papers() -> None:
    s = diffctl.create("scheduler", "linear")
    assert s.num_train_timesteps == 1000
    assert float(s.betas[0]) == pytest.approx(1e-4)
    assert float(s.betas[-1]) == pytest.approx(0.02)
    # alpha_bar_T of the DDPM schedule is about 4e-5 (Ho et al. 2020: L_T ~ 1e-5 bits/dim)
    assert 1e-5 < float(s.alphas_cumprod[-1]) < 1e-4


def test_cosine_follows_nichol_dhariwal_eq17() -> None:
    T, s_off = 1000, 0.008
    sched = diffctl.create("scheduler", "cosine", num_train_timesteps=T)

    def f(t: float) -> float:
        return math.cos((t / T + s_off) / (1 + s_off) * math.pi / 2) ** 2

    # away from the clipped end, alpha_bar_t = f(t+1) / f(0) (index t is time (t+1)/T)
    for t in (0, 10, 500, 900):
        assert float(sched.alphas_cumprod[t]) == pytest.approx(f(t + 1) / f(0), rel=1e-9)
    assert float(sched.betas.max()) == pytest.approx(0.999)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("T", [10, 50, 999, 1000, 1001])
def test_time_grid_matches_diffusers_ddim_for_every_step_count(spacing: str, T: int) -> None:
    """Every n in 1..T: our grid equals DDIMScheduler.timesteps (0.8 s for the whole sweep).

    ``trailing`` is diffusers' float ``np.arange(T, 0, -T/n)``, which for some (T, n) has n + 1
    entries (e.g. T = 1000, n = 914; T = 999, n = 13), the extra one being -1 after t = 0;
    there the first n are the grid. T = 999/1000/1001 each have n whose ties round differently
    from T - k * (T/n) (e.g. T = 1000, n = 48).
    """
    ref = diffusers.DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing)
    sched = diffctl.create("scheduler", "linear", num_train_timesteps=T)
    extra = []
    for n in range(1, T + 1):
        ref.set_timesteps(n)
        expected = ref.timesteps.tolist()
        if len(expected) == n + 1:
            assert spacing == "trailing" and expected[-1] == -1, (n, expected[-3:])
            extra.append(n)
            expected = expected[:n]
        ours = sched.timesteps(n, spacing)
        assert ours.dtype == torch.int64
        assert ours.tolist() == expected, (T, n, spacing)
    if spacing == "trailing" and T == 1000:
        assert 914 in extra  # the sweep does reach the n + 1 case
    if spacing == "trailing" and T == 999:
        assert 13 in extra


def test_trailing_grid_rounds_like_diffusers_at_ties() -> None:
    """T = 1000, n = 48: T - k * (T/n) has exact .5 ties (k = 3: 937.5, rounded to 938) where
    numpy's arange fill T + k * ((T - T/n) - T) gives 937.4999999999999 (rounded to 937);
    diffusers' values are the arange's."""
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
    ref.set_timesteps(48)
    naive = torch.round(1000 - torch.arange(48, dtype=torch.float64) * (1000 / 48)).long() - 1
    ours = diffctl.create("scheduler", "linear").timesteps(48, "trailing")
    assert naive.tolist() != ref.timesteps.tolist()  # the case is a real tie case
    assert ours.tolist() == ref.timesteps.tolist()


def test_q_sample_and_posterior_match_ddpm_formulas() -> None:
    sched = diffctl.create("scheduler", "linear", num_train_timesteps=100)
    ref = diffusers.DDPMScheduler(num_train_timesteps=100, variance_type="fixed_small",
                                  prediction_type="sample", clip_sample=False)
    ref.set_timesteps(100)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 1, 50, 99])
    torch.testing.assert_close(
        sched.q_sample(x0, t, noise),
        ref.add_noise(x0.float(), noise.float(), t).double(), atol=1e-6, rtol=0)
    x_t = sched.q_sample(x0, t, noise)
    mean, var = sched.posterior(x0, x_t, t)
    for i, ti in enumerate(t.tolist()):
        # diffusers' DDPM step with the true x0 as "sample" prediction gives the posterior mean
        step = ref.step(x0[i : i + 1].float(), ti, x_t[i : i + 1].float(),
                        generator=torch.Generator().manual_seed(1))
        if ti == 0:
            torch.testing.assert_close(mean[i], x0[i])
            assert float(var[i].squeeze()) == 0.0
        else:
            ref_var = ref._get_variance(ti).double()
            # diffusers forms 1 - alpha_bar in float32: ~1e-4 relative error at small t
            assert float(var[i].squeeze()) == pytest.approx(float(ref_var), rel=1e-3)
            ab, ab_prev = sched.alphas_cumprod[ti], sched.alphas_cumprod[ti - 1]
            exact = (1 - ab_prev) / (1 - ab) * sched.betas[ti]  # Ho et al. 2020, eq. 7
            assert float(var[i].squeeze()) == pytest.approx(float(exact), rel=1e-12)
            # remove the noise diffusers added, using the same generator stream
            z = torch.randn(1, 3, generator=torch.Generator().manual_seed(1))
            ref_mean = step.prev_sample.double() - ref_var.sqrt() * z.double()
            # float32 coefficients with 1 - alpha_bar ~ 4e-4 in a denominator at t = 1
            torch.testing.assert_close(mean[i : i + 1], ref_mean, atol=5e-4, rtol=0)


def test_schedule_config_rejects_bad_input() -> None:
    from diffctl.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown field"):
        diffctl.create("scheduler", "linear", num_train_timestep=10)
    with pytest.raises(ConfigError, match="num_train_timesteps"):
        diffctl.create("scheduler", "cosine", num_train_timesteps=0)
    with pytest.raises(ConfigError, match="beta_end must be greater"):
        diffctl.create("scheduler", "linear", beta_start=0.02, beta_end=0.01)


@pytest.mark.parametrize("n", [0, -3, 1001])
def test_time_grid_rejects_bad_step_counts_with_a_usage_error(n: int) -> None:
    from diffctl.errors import UsageError

    with pytest.raises(UsageError, match=r"num_steps must be in \[1, 1000\]") as info:
        diffctl.create("scheduler", "linear").timesteps(n, "trailing")
    assert "\n" not in str(info.value) and info.value.exit_code == 2
    with pytest.raises(UsageError, match="unknown spacing 'middle'"):
        diffctl.create("scheduler", "linear").timesteps(10, "middle")
