"""Plumbing shared by the samplers: the time grid, the model call and the trajectory.

A sampler is stateless: ``sample`` computes the whole grid up front (timesteps and alpha_bar
at each point and at the next one) and the solver walks it. Nothing recomputes a "previous
timestep" from a stride.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from diffctl.errors import UsageError
from diffctl.samplers.noise import Generator
from diffctl.schedules.parametrization import x0_and_eps

#: Stand-in for alpha_bar = 0. A zero-terminal-SNR schedule has alpha_bar = 0 at t = T-1,
#: where an epsilon prediction says nothing about x0 and sigma is infinite; diffusers' Euler
#: scheduler uses the same 2**-24 there. Used only where it is needed: for epsilon models and
#: for the sigma-space solvers (and any sampler that does not declare
#: ``GridSampler.exact_zero_alpha_bar``); DDIM and ancestral sampling of a sample- or
#: v-predicting model keep the exact alpha_bar = 0, where x0 = -v (or the output) and
#: eps = x_t are well defined.
MIN_ALPHA_BAR = 2.0**-24


def sampling_alpha_bars(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """alpha_bar table (float64) with exact zeros replaced by a tiny positive value.

    Only zeros change: min(2**-24, half the smallest positive value), so the table stays
    strictly decreasing (cosine's own alpha_bar_{T-1} ~ 2e-9 is kept as it is).
    """
    table = alphas_cumprod.to(torch.float64)
    zero = table <= 0
    if not bool(zero.any()):
        return table
    stand_in = min(MIN_ALPHA_BAR, float(table[~zero].min()) / 2)
    return torch.where(zero, torch.full_like(table, stand_in), table)


@dataclass(frozen=True)
class SamplingGrid:
    """Timesteps t_0 > ... > t_{n-1}, alpha_bar at each, and alpha_bar of the step's target."""

    timesteps: torch.Tensor  # (n,) int64
    alpha_bars: torch.Tensor  # (n,) float64, zeros replaced unless the sampler keeps them
    alpha_bars_next: torch.Tensor  # (n,) float64; last is 1 (or alpha_bar[0])

    def __len__(self) -> int:
        return int(self.timesteps.shape[0])


def sampling_grid(scheduler: Any, num_steps: int, spacing: str = "trailing",
                  final_alpha_one: bool = True, table: torch.Tensor | None = None
                  ) -> SamplingGrid:
    """The grid an ``num_steps``-step sampler walks over an alpha_bar table: ``table``
    (e.g. :meth:`GridSampler.alpha_bar_table`), default ``scheduler``'s with zeros replaced
    by the stand-in (see MIN_ALPHA_BAR)."""
    ts = scheduler.timesteps(num_steps, spacing)
    if table is None:
        table = sampling_alpha_bars(scheduler.alphas_cumprod)
    final = 1.0 if final_alpha_one else float(table[0])
    a = table[ts]
    a_next = torch.cat([a[1:], a.new_tensor([final])])
    return SamplingGrid(timesteps=ts, alpha_bars=a, alpha_bars_next=a_next)


@dataclass(frozen=True)
class Inpaint:
    """Known pixels for masked generation: ``mask`` is 1 where ``reference`` is kept.

    ``mask`` and ``reference`` broadcast against the batch, e.g. (B, C, H, W) or (1, 1, H, W)
    for the mask. Samplers use the replacement method (Song et al. 2021, "Score-Based
    Generative Modeling through SDEs", app. I.2; RePaint without resampling): before every
    model call the known pixels of x_t are set to the reference noised to t, so the model
    fills the rest consistently; the result keeps the reference's pixels exactly.
    """

    mask: torch.Tensor
    reference: torch.Tensor


class DenoiserCall:
    """Calls ``denoiser(x_t, t, cond)`` at one timestep and returns (x0, eps) estimates.

    Classifier-free guidance (Ho & Salimans 2022): with ``guidance_scale`` s != 1 the model is
    also called with the null label -1 and the prediction becomes u + s (c - u); s = 0 is the
    unconditional model. The two calls share one batch. ``clip_denoised`` c clamps the x0
    estimate to [-c, c] and re-derives eps from it (diffusers' ``clip_sample``). Inpainting:
    see :class:`Inpaint`; ``noise`` is the per-sample noise that noises the reference (the
    run's x_T).
    """

    def __init__(self, denoiser: Callable[..., torch.Tensor], cond: torch.Tensor | None = None,
                 guidance_scale: float = 1.0, inpaint: Inpaint | None = None,
                 noise: torch.Tensor | None = None, clip_denoised: float | None = None):
        self.denoiser = denoiser
        self.cond = cond
        self.guidance_scale = float(guidance_scale)
        self.inpaint = inpaint
        self.noise = noise
        self.clip_denoised = clip_denoised
        self.prediction = getattr(denoiser, "prediction", "epsilon")

    def known(self, x: torch.Tensor, alpha_bar: float) -> torch.Tensor:
        """``x`` with the known pixels replaced by the reference at noise level alpha_bar."""
        if self.inpaint is None:
            return x
        mask = self.inpaint.mask.to(x.device, x.dtype)
        ref = self.inpaint.reference.to(x.device, x.dtype)
        noise = self.noise if self.noise is not None else torch.zeros_like(x)
        noised = math.sqrt(alpha_bar) * ref + math.sqrt(max(1.0 - alpha_bar, 0.0)) * noise
        return mask * noised + (1 - mask) * x

    def __call__(self, x: torch.Tensor, t: int, alpha_bar: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.known(x, alpha_bar)
        t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
        if self.guidance_scale != 1.0 and self.cond is not None:
            null = torch.full_like(self.cond, -1)
            both = self.denoiser(torch.cat([x, x]), torch.cat([t_batch, t_batch]),
                                 cond=torch.cat([self.cond, null]))
            c, u = both.chunk(2)
            output = u + self.guidance_scale * (c - u)
        else:
            output = self.denoiser(x, t_batch, cond=self.cond)
        a = torch.tensor(alpha_bar, dtype=x.dtype, device=x.device)
        x0, eps = x0_and_eps(output, x, a, self.prediction)
        if self.clip_denoised is not None:  # diffusers' clip_sample: clamp x0, re-derive eps
            x0 = x0.clamp(-self.clip_denoised, self.clip_denoised)
            eps = (x - a.sqrt() * x0) / (1 - a).clamp_min(1e-20).sqrt()
        return x0, eps


@dataclass(frozen=True)
class Step:
    """What a callback sees after each step: the new state and the clean-data estimate."""

    index: int  # 0 .. n-1
    timestep: int  # the timestep the step started from
    x: torch.Tensor  # state after the step, in the x_t (variance-preserving) scale
    x0: torch.Tensor  # the model's clean-data estimate used by the step
    num_steps: int  # steps in the whole run, so index == num_steps - 1 is the last
    #: state the step started from (x_T for index 0), before any churn, in the x_t scale;
    #: None from samplers that do not report it
    x_prev: torch.Tensor | None = None


Callback = Callable[[Step], None] | None


def frame_indices(num_steps: int, frames: int) -> list[int]:
    """``frames`` state indices evenly spaced over 0 (x_T) .. num_steps (x_0), rounded half up.

    State k is the state after k steps. With frames > num_steps + 1 every state is kept.
    """
    if frames >= num_steps + 1:
        return list(range(num_steps + 1))
    return [(2 * j * num_steps + frames - 1) // (2 * (frames - 1)) for j in range(frames)]


@dataclass
class Trajectory:
    """A callback that keeps intermediate states (on the CPU) for progression plots and
    trajectory analysis.

    ``frames=K`` keeps exactly K evenly spaced states including the start x_T and the final
    x_0 (all n + 1 states if K > n + 1). ``timesteps[j]`` is the timestep the kept state is
    at (t_0 for x_T, -1 for the final state) and ``x0s[j]`` the model's clean-data estimate
    at that state (the final state is its own). State k >= 1 is the result of step k - 1,
    labelled when step k starts from it; x_T comes from ``Step.x_prev`` of the first step
    (every built-in sampler fills it) or from :meth:`start`, which
    :func:`diffctl.runs.sampling.generate` calls, so any sampler works.

    Without ``frames``: every step's result, with ``timesteps`` the timestep each step started
    from and ``x0s`` its estimate; x_T is not kept.
    """

    frames: int | None = None
    timesteps: list[int] = field(default_factory=list)
    xs: list[torch.Tensor] = field(default_factory=list)
    x0s: list[torch.Tensor] = field(default_factory=list)
    _x_T: torch.Tensor | None = field(default=None, repr=False)
    _pending: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 2:
            raise ValueError(f"Trajectory(frames=...) keeps x_T and x_0, so it must be at "
                             f"least 2, got {self.frames}")

    def start(self, x_T: torch.Tensor) -> None:
        """The starting noise of the next sampling call (for samplers whose steps do not
        report ``x_prev``)."""
        self._x_T = x_T

    def _keep(self, timestep: int, x: torch.Tensor, x0: torch.Tensor) -> None:
        self.timesteps.append(timestep)
        self.xs.append(x.detach().cpu().clone())
        self.x0s.append(x0.detach().cpu().clone())

    def __call__(self, step: Step) -> None:
        if self.frames is None:
            self._keep(step.timestep, step.x, step.x0)
            return
        wanted = frame_indices(step.num_steps, self.frames)
        if step.index == 0:
            x_T = step.x_prev if step.x_prev is not None else self._x_T
            if x_T is None:
                raise ValueError("Trajectory(frames=...) needs the starting noise: this "
                                 "sampler does not report Step.x_prev, so call "
                                 "Trajectory.start(x_T) before sampling")
            self._pending = None
            self._keep(step.timestep, x_T, step.x0)
        elif self._pending is not None:  # the previous step's result is where this one starts
            self._keep(step.timestep, self._pending, step.x0)
            self._pending = None
        if step.index + 1 in wanted:
            if step.index == step.num_steps - 1:
                self._keep(-1, step.x, step.x)
            else:
                self._pending = step.x.detach().cpu().clone()


class GridSampler:
    """Base of the built-in samplers: builds the grid, disables autograd, calls ``solve``."""

    #: True when the output is a deterministic function of x_T (no noise after x_T).
    deterministic: bool = True
    #: True when ``solve`` handles alpha_bar = 0 on the grid (zero terminal SNR) for sample
    #: and v models; otherwise the grid carries the MIN_ALPHA_BAR stand-in there.
    exact_zero_alpha_bar: bool = False

    def __init__(self, config: Any):
        self.config = config

    def sample(
        self,
        denoiser: Callable[..., torch.Tensor],
        scheduler: Any,
        x_T: torch.Tensor,
        num_steps: int,
        *,
        cond: torch.Tensor | None = None,
        generator: Generator = None,
        callback: Callback = None,
        guidance_scale: float | None = None,
        inpaint: Inpaint | None = None,
        seed: int | None = None,
        offset: int = 0,
    ) -> torch.Tensor:
        """Integrate from pure noise ``x_T`` to data in ``num_steps`` grid steps.

        ``guidance_scale`` (default: the config's) needs ``cond`` and a class-conditional
        denoiser; ``inpaint`` keeps the known pixels of a reference (see :class:`Inpaint`).
        Stochastic steps draw from ``generator``; without one, ``seed`` gives row i of the
        batch the stream of sample ``offset + i`` (:class:`PerSampleGenerator`), so a sample
        does not change with the batch it is drawn in. With neither, torch's global RNG.
        """
        if generator is None and seed is not None:
            from diffctl.samplers.noise import PerSampleGenerator

            generator = PerSampleGenerator(seed, x_T.shape[0], offset)
        scale = self.config.guidance_scale if guidance_scale is None else guidance_scale
        if scale != 1.0 and cond is None:
            raise UsageError(f"guidance_scale {scale} needs class labels (cond) and a "
                             "class-conditional denoiser")
        model = DenoiserCall(denoiser, cond, scale, inpaint, noise=x_T,
                             clip_denoised=self.config.clip_denoised)
        grid = sampling_grid(scheduler, num_steps, self.config.spacing,
                             self.config.final_alpha_one,
                             self.alpha_bar_table(scheduler.alphas_cumprod, model.prediction))
        with torch.no_grad():
            x = model.known(x_T, float(grid.alpha_bars[0]))
            out = self.solve(model, scheduler, grid, x, generator, callback)
            return model.known(out, float(grid.alpha_bars_next[-1]))

    def keeps_zero_alpha_bar(self, prediction: str) -> bool:
        """Whether the grid keeps an exact alpha_bar = 0 for a model of this prediction type
        (an epsilon model there says nothing about x0, so it always gets the stand-in)."""
        return self.exact_zero_alpha_bar and prediction != "epsilon"

    def alpha_bar_table(self, alphas_cumprod: torch.Tensor, prediction: str) -> torch.Tensor:
        """The float64 alpha_bar table this sampler's grid reads for such a model."""
        if self.keeps_zero_alpha_bar(prediction):
            return alphas_cumprod.to(torch.float64)
        return sampling_alpha_bars(alphas_cumprod)

    def solve(self, model: DenoiserCall, scheduler: Any, grid: SamplingGrid, x: torch.Tensor,
              generator: Generator, callback: Callback) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"
