"""Hypothesis property tests of the noise schedules and of the samplers that walk them.

Schedules are drawn at random (recipe, T, beta range, cosine offset, zero-terminal-SNR
rescaling). Each test checks one invariant of the discrete VP process (Ho et al. 2020),
its parametrizations (Salimans & Ho 2022), DDIM (Song et al. 2021), the rescaling of
Lin et al. 2024, the sampling grids, or the per-sample noise streams, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import diffctl
from diffctl.errors import UsageError
from diffctl.samplers.base import Step, sampling_alpha_bars
from diffctl.samplers.ddim import ddim_eps_scale, ddim_sigma
from diffctl.samplers.noise import PerSampleGenerator, initial_noise
from diffctl.schedules.noise_schedule import NoiseSchedule, posterior_from_alpha_bars
from diffctl.schedules.parametrization import PREDICTIONS, convert, target_from, x0_and_eps
from diffctl.schedules.timesteps import SPACINGS

F64 = torch.float64
KINDS = ("linear", "cosine", "scaled-linear", "sigmoid")
SEEDS = st.integers(0, 2**32 - 1)
# Conversions divide by sqrt(alpha_bar) (epsilon -> x0) or sqrt(1 - alpha_bar) (x0 -> epsilon):
# at most 100x and 1000x error amplification on this range.
WELL_CONDITIONED = (1e-4, 1 - 1e-6)
Options = tuple[str, dict[str, Any]]
DETERMINISTIC: list[Options] = [("ddim", {"eta": 0.0}), ("euler", {}), ("heun", {}),
                                ("dpmpp-2m", {})]
STOCHASTIC: list[Options] = [("ancestral", {}), ("ancestral", {"variance": "beta"}),
                             ("ddim", {"eta": 1.0}), ("euler", {"s_churn": 2.0}),
                             ("heun", {"s_churn": 2.0})]


@dataclass(frozen=True)
class Params:
    """A drawn schedule; ``build`` makes it through the registry."""

    kind: str
    T: int
    beta_start: float
    beta_end: float
    s: float
    rescale: bool

    def build(self, rescale: bool | None = None) -> NoiseSchedule:
        extra: dict[str, float] = (
            {"s": self.s} if self.kind == "cosine"
            else {"beta_start": self.beta_start, "beta_end": self.beta_end})
        return diffctl.create("scheduler", self.kind, num_train_timesteps=self.T,
                              rescale_zero_terminal_snr=self.rescale if rescale is None
                              else rescale, **extra)


@st.composite
def schedules(draw: st.DrawFn, max_T: int = 2000, max_start: float = 0.05,
              max_end: float = 0.5) -> Params:
    start = draw(st.floats(1e-5, max_start))
    return Params(kind=draw(st.sampled_from(KINDS)), T=draw(st.integers(2, max_T)),
                  beta_start=start, beta_end=draw(st.floats(start, max_end, exclude_min=True)),
                  s=draw(st.floats(0.0, 0.5)), rescale=draw(st.booleans()))


def randn(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=F64)


def column(values: torch.Tensor, ndim: int = 2) -> torch.Tensor:
    """(B,) -> (B, 1, ...) to broadcast against (B, ...) data."""
    return values.reshape(-1, *([1] * (ndim - 1)))


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-9) -> None:
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


# -- 1-3: the tables -----------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(schedules())
def test_betas_in_open_unit_interval(p: Params) -> None:
    betas = p.build().betas
    assert betas.dtype == F64 and betas.shape == (p.T,)
    assert bool(((betas[:-1] > 0) & (betas[:-1] < 1)).all())
    if p.rescale:
        assert betas[-1].item() == 1.0
    else:
        assert 0 < betas[-1].item() < 1


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_alphas_cumprod_strictly_decreasing_in_unit_interval(p: Params) -> None:
    ab = p.build().alphas_cumprod
    assert bool((ab[1:] < ab[:-1]).all())
    assert 0 < ab[0].item() <= 1 and bool((ab[:-1] > 0).all())
    if p.rescale:
        assert ab[-1].item() == 0.0
    else:
        assert ab[-1].item() > 0


@settings(max_examples=60, deadline=None)
@given(schedules())
def test_snr_strictly_decreasing(p: Params) -> None:
    snr = p.build().snr
    assert bool(torch.isfinite(snr).all()) and bool((snr[:-1] > 0).all())
    assert bool((snr[1:] < snr[:-1]).all())
    assert (snr[-1].item() == 0) == p.rescale


# -- 4: forward process --------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(p=schedules(), batch=st.integers(1, 6), extra=st.lists(st.integers(1, 4), max_size=2),
       dtype=st.sampled_from([torch.float32, F64]), seed=SEEDS)
def test_q_sample_without_noise_scales_x0(p: Params, batch: int, extra: list[int],
                                          dtype: torch.dtype, seed: int) -> None:
    sched, gen = p.build(), torch.Generator().manual_seed(seed)
    x0 = randn(gen, batch, *extra).to(dtype)
    t = torch.randint(0, p.T, (batch,), generator=gen)
    out = sched.q_sample(x0, t, torch.zeros_like(x0))
    assert out.dtype == dtype and out.shape == x0.shape
    expected = column(sched.alphas_cumprod[t].sqrt(), x0.ndim) * x0.to(F64)
    tol = 1e-12 if dtype == F64 else 1e-6
    torch.testing.assert_close(out.to(F64), expected, rtol=tol, atol=tol)


# -- 5: prediction parametrizations --------------------------------------------------------
def check_conversions(x0: torch.Tensor, eps: torch.Tensor, a: torch.Tensor,
                      conv: Any, other: torch.Tensor) -> None:
    """All source/target pairs of ``conv(output, x_t, source, target)`` at alpha_bar ``a``."""
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    targets = {p: target_from(x0, eps, a, p) for p in PREDICTIONS}
    close(targets["sample"], x0)
    close(targets["epsilon"], eps)
    for source in PREDICTIONS:
        x0_hat, eps_hat = x0_and_eps(targets[source], x_t, a, source)
        close(x0_hat, x0)
        close(eps_hat, eps)
        for target in PREDICTIONS:
            close(conv(targets[source], x_t, source, target), targets[target])
            # Round trips hold for any output, not only the one consistent with (x0, eps).
            there = conv(other, x_t, source, target)
            close(conv(there, x_t, target, source), other)


@settings(max_examples=40, deadline=None)
@given(alpha_bars=st.lists(st.floats(*WELL_CONDITIONED), min_size=1, max_size=5),
       dim=st.integers(1, 4), seed=SEEDS)
def test_parametrization_functions_are_mutual_inverses(alpha_bars: list[float], dim: int,
                                                       seed: int) -> None:
    gen, b = torch.Generator().manual_seed(seed), len(alpha_bars)
    a = column(torch.tensor(alpha_bars, dtype=F64))

    def conv(out: torch.Tensor, x_t: torch.Tensor, source: str, target: str) -> torch.Tensor:
        return convert(out, x_t, a, source, target)

    check_conversions(randn(gen, b, dim), randn(gen, b, dim), a, conv, 3 * randn(gen, b, dim))


@settings(max_examples=40, deadline=None)
@given(p=schedules(), data=st.data())
def test_schedule_convert_round_trips(p: Params, data: st.DataObject) -> None:
    sched = p.build()
    ab = sched.alphas_cumprod
    valid = torch.nonzero((ab >= WELL_CONDITIONED[0]) & (ab <= WELL_CONDITIONED[1])).flatten()
    assume(len(valid) > 0)
    picks = data.draw(st.lists(st.sampled_from(valid.tolist()), min_size=1, max_size=5))
    t = torch.tensor(picks)
    gen = torch.Generator().manual_seed(data.draw(SEEDS))
    x0, eps, other = randn(gen, len(picks), 3), randn(gen, len(picks), 3), randn(gen, len(picks), 3)
    x_t = sched.q_sample(x0, t, eps)

    def conv(out: torch.Tensor, x: torch.Tensor, source: str, target: str) -> torch.Tensor:
        return sched.convert(out, x, t, source, target)

    check_conversions(x0, eps, column(ab[t]), conv, other)
    close(x_t, column(ab[t]).sqrt() * x0 + column(1 - ab[t]).sqrt() * eps, 1e-12)


@settings(max_examples=30, deadline=None)
@given(alpha_bars=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5), seed=SEEDS)
def test_v_is_a_rotation_of_x0_and_eps_at_every_alpha_bar(alpha_bars: list[float],
                                                          seed: int) -> None:
    """(x_t, v) is (x0, eps) rotated by the angle atan(sqrt((1-a)/a)); fine even at a in {0, 1}."""
    gen = torch.Generator().manual_seed(seed)
    a = column(torch.tensor(alpha_bars, dtype=F64))
    x0, eps = randn(gen, len(alpha_bars), 3), randn(gen, len(alpha_bars), 3)
    x_t, v = a.sqrt() * x0 + (1 - a).sqrt() * eps, target_from(x0, eps, a, "v")
    close(x_t**2 + v**2, x0**2 + eps**2)
    x0_hat, eps_hat = x0_and_eps(v, x_t, a, "v")
    close(x0_hat, x0)
    close(eps_hat, eps)


# -- 6: the posterior q(x_{t-1} | x_t, x0) -------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(p=schedules(), seed=SEEDS)
def test_posterior_variance_bounded_and_mean_closed_form(p: Params, seed: int) -> None:
    sched, gen = p.build(), torch.Generator().manual_seed(seed)
    t = torch.arange(p.T)  # every timestep at once, one row each
    x0, x_t = randn(gen, p.T, 2), randn(gen, p.T, 2)
    mean, var = sched.posterior(x0, x_t, t)
    var = var.flatten()
    beta, alpha = sched.betas, sched.alphas
    ab, ab_prev = sched.alphas_cumprod, sched.alphas_cumprod_prev
    assert bool((var >= 0).all()) and bool((var <= beta * (1 + 1e-12)).all())
    assert var[0].item() == 0.0
    close(mean[0], x0[0], 1e-12)
    expected = (column(ab_prev.sqrt() * beta / (1 - ab)) * x0
                + column(alpha.sqrt() * (1 - ab_prev) / (1 - ab)) * x_t)
    close(mean, expected)
    close(var, (1 - ab_prev) / (1 - ab) * beta, 1e-12)


# -- 7: zero-terminal-SNR rescaling --------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(schedules())
def test_zero_terminal_snr_rescaling(p: Params) -> None:
    ab = p.build(rescale=False).alphas_cumprod
    ab_r = p.build(rescale=True).alphas_cumprod
    assert ab_r[-1].item() < 1e-12
    assert abs(ab_r[0].item() - ab[0].item()) <= 1e-9 * ab[0].item()
    # Lin et al. Alg. 1: sqrt(alpha_bar) is shifted and scaled, so never raised.
    first, last = ab[0].sqrt(), ab[-1].sqrt()
    close(ab_r.sqrt(), (ab.sqrt() - last) * first / (first - last))
    assert bool((ab_r <= ab * (1 + 1e-12)).all())


# -- 8: sampling time grids ----------------------------------------------------------------
@settings(max_examples=12, deadline=None)
@given(T=st.integers(2, 2000))
@example(T=2000)
@example(T=999)
def test_every_time_grid_is_strictly_decreasing_in_range(T: int) -> None:
    sched = diffctl.create("scheduler", "linear", num_train_timesteps=T)
    for spacing in SPACINGS:
        for n in range(1, T + 1):
            grid = sched.timesteps(n, spacing)
            assert grid.dtype == torch.int64 and grid.shape == (n,), (spacing, n)
            g = grid.numpy()
            assert (np.diff(g) < 0).all() and g[-1] >= 0 and g[0] <= T - 1, (spacing, n, g)
            if spacing == "trailing":
                assert g[0] == T - 1
            elif spacing == "linspace":
                assert g[-1] == 0 and (n == 1 or g[0] == T - 1)
            else:
                assert g[-1] == 0 and (g % (T // n) == 0).all()
        for n in (0, -1, T + 1, 2 * T):
            with pytest.raises(UsageError, match="num_steps must be in"):
                sched.timesteps(n, spacing)


# -- 9: DDIM with eta = 1 is DDPM's posterior ----------------------------------------------
@settings(max_examples=40, deadline=None)
@given(p=schedules(), data=st.data())
def test_ddim_eta_one_has_the_posterior_variance(p: Params, data: st.DataObject) -> None:
    ab = p.build().alphas_cumprod.tolist()
    with_clean = [1.0, *ab]  # index s + 1: s = -1 is clean data
    strided = data.draw(st.lists(st.tuples(st.integers(0, p.T - 1), st.integers(1, p.T)),
                                 max_size=20))
    pairs = [(t, t - 1) for t in range(p.T)] + [(t, max(t - k, -1)) for t, k in strided]
    eta = data.draw(st.floats(0.0, 1.0))
    one = torch.ones(1, dtype=F64)
    for t, s in pairs:
        a, a_next = ab[t], with_clean[s + 1]
        _, var = posterior_from_alpha_bars(one, one, torch.tensor(a, dtype=F64),
                                           torch.tensor(a_next, dtype=F64))
        sigma = ddim_sigma(a, a_next, 1.0)
        assert sigma**2 == pytest.approx(var.item(), rel=1e-9, abs=1e-300), (t, s)
        assert ddim_sigma(a, a_next, eta) == pytest.approx(eta * sigma, rel=1e-12, abs=1e-300)
        # the eps weight: sqrt(1 - a' - sigma^2), formed without cancellation
        residual = 1 - a_next - ddim_sigma(a, a_next, eta) ** 2
        assert ddim_eps_scale(a, a_next, eta) ** 2 == pytest.approx(residual, abs=1e-12)
        if a == 0:  # zero terminal SNR: eta = 1 keeps nothing of eps (ancestral's coef_xt = 0)
            assert ddim_eps_scale(a, a_next, 1.0) == 0.0


class RowModel:
    """A fixed row-wise model of any prediction type (no batch interaction)."""

    def __init__(self, prediction: str):
        self.prediction = prediction

    def __call__(self, x: torch.Tensor, t: torch.Tensor,
                 cond: torch.Tensor | None = None) -> torch.Tensor:
        return 0.5 * torch.tanh(x) + 1e-3 * column(t.to(x.dtype), x.ndim)


@settings(max_examples=60, deadline=None)
@given(p=schedules(max_T=1000), data=st.data())
def test_ddim_eta_one_is_ancestral_sampling(p: Params, data: st.DataObject) -> None:
    """The sampler-level statement: DDIM with eta = 1 and ancestral sampling, same model, same
    grid, same per-sample noise streams, give the same samples (the means agree algebraically,
    the noise scales are the check above, and both draw noise exactly on the steps with a
    positive variance). Measured: |ddim - ancestral| <= 3e-14 (1 + |x|) over 800 random
    draws, epsilon models at alpha_bar ~ 1e-30 included (that needs DDIM's cancellation-free
    eps weight, ``ddim_eps_scale``: 1 - a' - sigma^2 left sqrt(rounding) ~ 4e-9), and ~3e-12
    where 1 - alpha_bar ~ 1e-5 (T = 4, betas 1e-5: 1 - a carries 1e-16 absolute rounding). With
    final_alpha_one=False they differ on purpose: ancestral's last step adds no noise, DDIM's
    adds its sigma."""
    sched = p.build()
    spacing = data.draw(st.sampled_from(SPACINGS))
    n = data.draw(st.integers(1, min(p.T, 30)))
    model = RowModel(data.draw(st.sampled_from(PREDICTIONS)))
    seed = data.draw(SEEDS)
    x_T, _ = initial_noise((6, 3), seed)
    x_T = x_T.to(F64)
    outs, steps = [], []
    for name, options in (("ddim", {"eta": 1.0}), ("ancestral", {})):
        trace: list[Step] = []
        sampler = diffctl.create("sampler", name, spacing=spacing, **options)
        outs.append(sampler.sample(model, sched, x_T, n, generator=PerSampleGenerator(seed, 6),
                                   callback=trace.append))
        steps.append(trace)
    assert bool(torch.isfinite(outs[0]).all())
    for a, b in zip(*steps, strict=True):
        close(a.x, b.x, 1e-10)
    close(outs[0], outs[1], 1e-10)
    # and the noise did matter (exactly: an epsilon model at alpha_bar ~ 1e-17 makes |x| ~ 1e5,
    # where allclose's relative tolerance would hide a small noise term). Where |x| passes
    # ~1e15 (an epsilon model at alpha_bar ~ 1e-34, e.g. T = 246 linear betas 0.031..0.5) the
    # O(1) noise is below float64's resolution of x itself, so no test can see it there.
    if n > 1 and float(outs[1].abs().max()) < 1e14:
        other = diffctl.create("sampler", "ancestral", spacing=spacing).sample(
            model, sched, x_T, n, generator=PerSampleGenerator(seed + 1, 6))
        assert not torch.equal(other, outs[1])


# -- 10: samplers with the exact denoiser of a point ---------------------------------------
class PointDenoiser:
    """The exact denoiser when the data is the point ``point`` (one point per batch row).

    It reads alpha_bar from the sampler's own ``table`` (``GridSampler.alpha_bar_table``: for
    epsilon models and the sigma-space solvers exact zeros are replaced by a 2**-24 stand-in;
    DDIM and ancestral keep them for sample and v models), so the x0 the sampler recovers from
    its output is ``point`` for every prediction type, also at a zero-SNR t = T-1. (A blanket
    ``clamp_min(2**-24)`` would disagree with the sampler wherever a positive alpha_bar lies
    below 2**-24, e.g. cosine's alpha_bar_{T-1} ~ 2e-9 at T = 1000.)
    """

    def __init__(self, point: torch.Tensor, table: torch.Tensor, prediction: str):
        self.point, self.prediction = point, prediction
        self.table = table

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor,
                 cond: torch.Tensor | None = None) -> torch.Tensor:
        a = column(self.table[t].to(x_t.dtype), x_t.ndim)
        eps = (x_t - a.sqrt() * self.point) / (1 - a).sqrt()
        return target_from(self.point.expand_as(x_t), eps, a, self.prediction)


# Schedules whose smallest positive alpha_bar stays above ~1e-11: at alpha_bar ~ 1e-30 an
# epsilon prediction fixes x0 only to ~1e-16 * |x_t| / sqrt(alpha_bar), so no sampler can
# recover the point there (an ill-conditioned problem, not a sampler bug).
@settings(max_examples=100, deadline=None)
@given(p=schedules(max_T=1000, max_start=0.02, max_end=0.03), data=st.data())
def test_samplers_return_the_point_of_an_exact_point_denoiser(p: Params,
                                                              data: st.DataObject) -> None:
    sched = p.build()
    # Not the churned Euler/Heun: they query the discrete model at sigma_hat, off the grid,
    # where it answers for the nearest timestep, so even an exact discrete denoiser is off.
    name, options = data.draw(st.sampled_from(DETERMINISTIC + STOCHASTIC[:3]))
    spacing = data.draw(st.sampled_from(SPACINGS))
    final_alpha_one = data.draw(st.booleans())
    n = data.draw(st.integers(1, min(p.T, 25)))
    prediction = data.draw(st.sampled_from(PREDICTIONS))
    gen = torch.Generator().manual_seed(data.draw(SEEDS))
    sampler = diffctl.create("sampler", name, spacing=spacing, final_alpha_one=final_alpha_one,
                             **options)
    deterministic = (name, options) in DETERMINISTIC
    assert sampler.deterministic == deterministic
    ts = sched.timesteps(n, spacing)
    table = sampler.alpha_bar_table(sched.alphas_cumprod, prediction)

    point, x_T = 2 * randn(gen, 4, 3), randn(gen, 4, 3)
    steps: list[Step] = []
    out = sampler.sample(PointDenoiser(point, table, prediction), sched, x_T, n,
                         generator=gen, callback=steps.append)
    assert len(steps) == n and out.dtype == F64
    for step in steps:
        close(step.x0, point, 1e-6)
    if deterministic:
        # Every deterministic step keeps x on the ray sqrt(a) p + sqrt(1 - a) eps_T through x_T.
        a_T = table[ts[0]]
        eps_T = (x_T - a_T.sqrt() * point) / (1 - a_T).sqrt()
        final = 1.0 if final_alpha_one else table[0].item()
        a_next = [*table[ts[1:]].tolist(), final]
        for step, a in zip(steps, a_next, strict=True):
            close(step.x, a**0.5 * point + (1 - a) ** 0.5 * eps_T, 1e-6)
        close(out, final**0.5 * point + (1 - final) ** 0.5 * eps_T, 1e-6)
    elif final_alpha_one:
        # The stochastic samplers must land on the point too: their last step targets
        # alpha_bar = 1, where the posterior mean is sqrt(1) (1 - a) / (1 - a) x0_hat
        # + sqrt(a) (1 - 1) / (1 - a) x_t = x0_hat, the posterior variance is 0 and no noise
        # is added (ancestral); DDIM's sigma has the factor (1 - a') = 0 and its eps term
        # sqrt(1 - a' - sigma^2) = 0 (ddim, eta = 1). An exact point denoiser gives
        # x0_hat = p from any x, so the noise added before the last step cannot show.
        close(out, point, 1e-6)


@pytest.mark.parametrize("spacing", ["leading", "linspace"])
def test_dpmpp_2m_survives_a_grid_that_ends_where_it_stops(spacing: str) -> None:
    sched = diffctl.create("scheduler", "linear", num_train_timesteps=100)
    sampler = diffctl.create("sampler", "dpmpp-2m", spacing=spacing, final_alpha_one=False)
    point, x_T = torch.ones(2, 3, dtype=F64), torch.zeros(2, 3, dtype=F64)
    out = sampler.sample(PointDenoiser(point, sampling_alpha_bars(sched.alphas_cumprod),
                                       "sample"), sched, x_T, 5)
    assert bool(torch.isfinite(out).all())
    # With a constant clean estimate the probability-flow ODE is solved exactly: in VE form
    # x(sigma) = point + (sigma / sigma_T) (x_T_ve - point). The grid stops at alpha_bar_0
    # (final_alpha_one=False); x_T = 0 makes x_T_ve = 0. Back in VP form, times sqrt(alpha_bar_0).
    table = sampling_alpha_bars(sched.alphas_cumprod).to(F64)
    t_first = int(sched.timesteps(5, spacing)[0])
    sigma = ((1 - table) / table).sqrt()
    expected = point * (1 - sigma[0] / sigma[t_first]) * table[0].sqrt()
    close(out, expected, 1e-9)


# -- 11: per-sample noise ------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), offset=st.integers(0, 10_000), split=st.integers(1, 7),
       shape=st.sampled_from([(1,), (3,), (2, 5), (700,), (5000,)]))
def test_initial_noise_does_not_depend_on_the_batching(seed: int, offset: int, split: int,
                                                        shape: tuple[int, ...]) -> None:
    full, gen = initial_noise((8, *shape), seed, offset)
    head, _ = initial_noise((split, *shape), seed, offset)
    tail, _ = initial_noise((8 - split, *shape), seed, offset + split)
    assert full.shape == (8, *shape) and len(gen) == 8
    assert torch.equal(torch.cat([head, tail]), full)
    assert not torch.equal(full[:4], full[4:])  # one stream per sample, not one shared


class ToyDenoiser:
    """A fixed, row-wise v-prediction model (no batch interaction)."""

    prediction = "v"

    def __call__(self, x: torch.Tensor, t: torch.Tensor,
                 cond: torch.Tensor | None = None) -> torch.Tensor:
        return 0.5 * torch.tanh(x) + 1e-3 * column(t.to(x.dtype), x.ndim)


@settings(max_examples=30, deadline=None)
@given(p=schedules(max_T=400), data=st.data())
def test_stochastic_samples_do_not_depend_on_the_batching(p: Params,
                                                           data: st.DataObject) -> None:
    sched = p.build()
    name, options = data.draw(st.sampled_from(STOCHASTIC))
    spacing = data.draw(st.sampled_from(SPACINGS))
    n = data.draw(st.integers(1, min(p.T, 12)))
    split = data.draw(st.integers(1, 7))
    dim = data.draw(st.sampled_from([2, 1500]))  # 1500: the noise buffer refills every 10 draws
    seed = data.draw(SEEDS)
    sampler = diffctl.create("sampler", name, spacing=spacing, **options)
    assert not sampler.deterministic

    def run(lo: int, hi: int) -> torch.Tensor:
        x_T, gen = initial_noise((hi - lo, dim), seed, lo)
        return sampler.sample(ToyDenoiser(), sched, x_T, n, generator=gen)

    full = run(0, 8)
    assert bool(torch.isfinite(full).all())
    torch.testing.assert_close(torch.cat([run(0, split), run(split, 8)]), full)
    if n > 1:  # the noise after x_T comes from the generator
        x_T, _ = initial_noise((8, dim), seed)
        other = sampler.sample(ToyDenoiser(), sched, x_T, n,
                               generator=PerSampleGenerator(seed + 1, 8))
        assert not torch.allclose(other, full)
