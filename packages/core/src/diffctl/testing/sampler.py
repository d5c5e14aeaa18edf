"""Conformance of a sampler, anchored by the analytic Gaussian test.

For data x0 ~ N(mu, s^2) the exact denoiser is linear in x_t (:class:`GaussianDenoiser`), so a
sampler that integrates the reverse process correctly must turn pure noise into samples with
mean mu and standard deviation s, up to its discretisation error. A deterministic sampler must
moreover follow the probability-flow ODE, whose solution is known in closed form for Gaussian
data (:meth:`GaussianDenoiser.flow`). A sampler that ignores the model, misreads its prediction
type, mis-scales a step or adds a bias fails this test.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import BaseModel

from diffctl.testing._support import (
    Builder,
    Checks,
    NotApplicable,
    default_devices,
    label_for,
    max_diff,
    preserved_rng,
    require,
    same,
    single_thread,
)
from diffctl.testing.config import CONFIG_CHECKS, config_checks

SAMPLER_CHECKS = (*CONFIG_CHECKS, "build", "protocol", "shapes-dtypes-devices", "callback",
                  "deterministic", "batch-independent", "gaussian", "probability-flow",
                  "prediction-types", "zero-terminal-snr")
PREDICTIONS = ("epsilon", "sample", "v")


class GaussianDenoiser:
    """The exact denoiser of data N(mu, s^2) (each coordinate) under ``scheduler``.

    E[x0 | x_t] = mu + sqrt(ab) s^2 / (ab s^2 + 1 - ab) (x_t - sqrt(ab) mu) with ab the
    schedule's alpha-bar at t; returned as ``prediction`` (``epsilon``, ``sample`` or ``v``).
    Works for any sample shape and device. Use it in your own tests of a sampler.
    """

    def __init__(self, scheduler: Any, mu: float = 0.5, s: float = 0.8,
                 prediction: str = "epsilon"):
        from diffctl.samplers.base import sampling_alpha_bars

        self.table = sampling_alpha_bars(scheduler.alphas_cumprod)
        self.mu, self.s, self.prediction = mu, s, prediction
        self.calls = 0

    def __call__(self, x_t: Any, t: Any, cond: Any = None) -> Any:
        self.calls += 1
        a = self.table.to(x_t.device)[t].to(x_t.dtype).reshape(-1, *[1] * (x_t.ndim - 1))
        mu, s2 = self.mu, self.s**2
        x0 = mu + a.sqrt() * s2 / (a * s2 + 1 - a) * (x_t - a.sqrt() * mu)
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        if self.prediction == "epsilon":
            return eps
        if self.prediction == "sample":
            return x0
        return a.sqrt() * eps - (1 - a).sqrt() * x0

    def flow(self, x_T: Any) -> Any:
        """Where the probability-flow ODE takes ``x_T`` (at t = T-1) to at alpha-bar = 1.

        In variance-exploding coordinates y = x / sqrt(ab) = x0 + sigma eps with
        sigma^2 = (1 - ab) / ab, the ODE's flow for Gaussian data keeps
        (y - mu) / sqrt(s^2 + sigma^2) constant, so x0 = mu + s (y_T - mu) / sqrt(s^2 + sigma_T^2)
        = mu + s (x_T - sqrt(ab_T) mu) / sqrt(ab_T s^2 + 1 - ab_T). A grid that starts below
        T-1 changes this by O(ab_T) (4e-5 on the linear schedule).
        """
        a = float(self.table[-1])
        return self.mu + self.s * (x_T - a**0.5 * self.mu) / (a * self.s**2 + 1 - a) ** 0.5


def normal_quantiles(n: int) -> Any:
    """(n, 1) float64 standard-normal quantiles at (i + 1/2) / n: noise without sampling error,
    so a deterministic sampler's output statistics show only its own error."""
    import torch

    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.special.ndtri(u).reshape(n, 1)


def check_sampler(factory: str | Callable[[Any], Any], config: type[BaseModel],
                  options: Mapping[str, Any] | None = None, *, num_steps: int = 1000,
                  tolerance: float = 0.02, num_samples: int = 40_000,
                  flow_tolerance: float = 0.02, devices: Collection[str] | None = None,
                  label: str | None = None, skip: Collection[str] = ()) -> list[str]:
    """Check a sampler built as ``factory(config(**options))``; returns the passed sub-checks.

    Beyond the config checks: ``protocol``; ``shapes-dtypes-devices`` (vectors and images,
    float32 and float64, on each of ``devices``: default CPU plus CUDA when available);
    ``callback`` (called once per step with a ``Step``, the last one holding the output);
    ``deterministic`` (same x_T and generator state give identical samples whatever the global
    RNG; x_T is not modified; the ``deterministic`` flag tells the truth about using the
    generator); ``batch-independent`` (per-sample generators: a batch split in two gives the
    same samples); ``gaussian`` (data N(0.5, 0.8^2) with its exact denoiser: ``num_samples``
    samples in ``num_steps`` steps have mean and std within ``tolerance``, see below);
    ``probability-flow`` (when ``sampler.deterministic``: every one of those samples is within
    ``flow_tolerance`` of the exact probability-flow ODE solution, :meth:`GaussianDenoiser.flow`;
    skip it for a deterministic sampler that is not an ODE solver); ``prediction-types`` (epsilon,
    sample and v versions of one model give the same samples); ``zero-terminal-snr`` (finite,
    right mean on a schedule whose last alpha-bar is 0). ``skip=["build"]`` checks the config
    only.

    The ``gaussian`` tolerance is honest at the default sizes: x_T is the ``num_samples``
    standard-normal quantiles, so a deterministic sampler's statistics carry no sampling error
    at all; a stochastic sampler's are at worst those of ``num_samples`` independent draws from
    N(0.5, 0.8^2), whose standard errors are 0.8 / sqrt(n) = 0.004 for the mean and
    0.8 / sqrt(2 n) = 0.0028 for the std at n = 40,000. The default 0.02 is thus at least five
    standard errors, leaving room for a correct sampler's discretisation bias at 1000 steps
    (the core's ancestral sampler is about 0.006 low in std) while a bias above 0.02 fails. With
    a smaller ``num_samples`` scale ``tolerance`` by sqrt(40,000 / n) to keep that margin.
    """
    checks = Checks(label_for("sampler", factory, label), SAMPLER_CHECKS, skip)
    config_checks(checks, config, options)
    builder = Builder(factory, config, options)
    if "build" in checks.skip:
        return checks.passed
    sampler = checks.run("build", builder.build)
    with single_thread(), preserved_rng():
        _sampler_checks(checks, sampler, num_steps, tolerance, num_samples, flow_tolerance,
                        devices)
    return checks.passed


def _sampler_checks(checks: Checks, sampler: Any, num_steps: int, tolerance: float,
                    num_samples: int, flow_tolerance: float,
                    devices: Collection[str] | None) -> None:
    import torch

    from diffctl.protocols import Sampler
    from diffctl.samplers.noise import PerSampleGenerator, initial_noise
    from diffctl.schedules.configs import LinearScheduleConfig, ScaledLinearScheduleConfig
    from diffctl.schedules.noise_schedule import NoiseSchedule

    linear = NoiseSchedule(LinearScheduleConfig())
    model = GaussianDenoiser(linear)

    def protocol() -> None:
        require(isinstance(sampler, Sampler), "missing members of diffctl.protocols.Sampler "
                "(deterministic, sample)")
        require(isinstance(sampler.deterministic, bool),
                f"deterministic must be a bool, got {sampler.deterministic!r}")

    def shapes() -> None:
        for device in default_devices(devices):
            for shape, dtype in (((8, 2), torch.float32), ((2, 1, 4, 4), torch.float32),
                                 ((8, 2), torch.float64)):
                x_T, gen = initial_noise(shape, seed=0, device=device)
                x_T = x_T.to(dtype)
                out = sampler.sample(model, linear, x_T, 5, generator=gen)
                require(isinstance(out, torch.Tensor) and out.shape == x_T.shape
                        and out.dtype == dtype and out.device == x_T.device,
                        f"x_T {dtype} {shape} on {device} gave "
                        f"{getattr(out, 'dtype', type(out).__name__)} "
                        f"{tuple(getattr(out, 'shape', ()))} on {getattr(out, 'device', '?')}")
                require(bool(torch.isfinite(out).all()), f"non-finite samples for {shape}")

    def callback() -> None:
        steps: list[Any] = []
        x_T, gen = initial_noise((4, 2), seed=0)
        out = sampler.sample(model, linear, x_T, 7, generator=gen, callback=steps.append)
        require(len(steps) == 7, f"callback called {len(steps)} times in 7 steps, expected 7")
        require(all(hasattr(s, a) for s in steps for a in ("index", "timestep", "x", "x0")),
                "callback must receive diffctl.samplers.base.Step objects")
        require([s.index for s in steps] == list(range(7)),
                f"Step.index runs {[s.index for s in steps]}, expected 0..6")
        require(all(s.x.shape == x_T.shape for s in steps), "Step.x is not shaped like x_T")
        require(torch.allclose(steps[-1].x, out, atol=1e-6, rtol=0),
                "the last Step.x is not the returned sample")

    def deterministic() -> None:
        def run(noise_seed: int, global_seed: int) -> Any:
            x_T, _ = initial_noise((16, 2), seed=3)
            gen = PerSampleGenerator(noise_seed, 16)
            torch.manual_seed(global_seed)
            kept = x_T.clone()
            out = sampler.sample(model, linear, x_T, 10, generator=gen)
            require(same(x_T, kept), "sample() modified x_T in place")
            return out

        first, again = run(4, global_seed=1), run(4, global_seed=2)
        require(same(first, again), "same x_T and generator state gave different samples: draw "
                "noise only from `generator` (diffctl.samplers.noise.randn_like), never from "
                "the global RNG")
        x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(5))
        outs = [sampler.sample(model, linear, x_T, 10, generator=torch.Generator().manual_seed(5))
                for _ in range(2)]
        require(same(*outs), "a torch.Generator with the same seed gave different samples")
        other = run(5, global_seed=1)
        if sampler.deterministic:
            require(same(first, other), "deterministic is True but the samples depend on the "
                    "generator: set deterministic = False")
        else:
            require(not same(first, other), "deterministic is False but the samples do not "
                    "depend on the generator (or it draws no noise after x_T)")

    def batch_independent() -> None:
        x_T, gen = initial_noise((10, 2), seed=7)
        whole = sampler.sample(model, linear, x_T, 10, generator=gen)
        parts = []
        for offset, size in ((0, 3), (3, 7)):
            xb, gb = initial_noise((size, 2), seed=7, offset=offset)
            parts.append(sampler.sample(model, linear, xb, 10, generator=gb))
        diff = max_diff(torch.cat(parts), whole)
        require(diff <= 1e-6, f"samples depend on the batch they are drawn in (max difference "
                f"{diff:.3g}); draw noise with diffctl.samplers.noise.randn_like")

    gaussian_samples: dict[str, Any] = {}

    def gaussian_run() -> tuple[Any, Any]:
        """(x_T, samples) of the analytic test, computed once for both sub-checks."""
        if not gaussian_samples:
            x_T = normal_quantiles(num_samples)
            gen = PerSampleGenerator(1, num_samples)
            gaussian_samples.update(x_T=x_T, out=sampler.sample(model, linear, x_T, num_steps,
                                                                generator=gen))
        return gaussian_samples["x_T"], gaussian_samples["out"]

    def gaussian() -> None:
        _, out = gaussian_run()
        mean, std = float(out.mean()), float(out.std())
        require(abs(mean - model.mu) <= tolerance and abs(std - model.s) <= tolerance,
                f"data N({model.mu}, {model.s}^2) with its exact denoiser: {num_steps} steps "
                f"gave mean {mean:.4f}, std {std:.4f} (tolerance {tolerance}); the sampler "
                "ignores or misuses the model, or needs more steps (num_steps=...)")

    def probability_flow() -> None:
        if not getattr(sampler, "deterministic", False):
            raise NotApplicable
        x_T, out = gaussian_run()
        exact = model.flow(x_T)
        diff = max_diff(out, exact)
        worst = int((out.double() - exact).abs().argmax())
        require(diff <= flow_tolerance,
                f"a deterministic sampler must solve the probability-flow ODE: {num_steps} steps "
                f"took x_T = {float(x_T.flatten()[worst]):.4f} to {float(out.flatten()[worst]):.4f}"
                f", the exact solution is {float(exact.flatten()[worst]):.4f} (max difference "
                f"{diff:.3g}, tolerance {flow_tolerance}); skip 'probability-flow' if the "
                "sampler is deterministic but not an ODE solver")

    def prediction_types() -> None:
        outs = {}
        for prediction in PREDICTIONS:
            x_T, gen = initial_noise((256, 1), seed=2)
            outs[prediction] = sampler.sample(GaussianDenoiser(linear, prediction=prediction),
                                              linear, x_T.double(), 20, generator=gen)
        for prediction in PREDICTIONS[1:]:
            diff = max_diff(outs[prediction], outs["epsilon"])
            require(diff <= 1e-2, f"a {prediction!r}-predicting model gave samples "
                    f"{diff:.3g} away from the same model predicting 'epsilon'; read the "
                    "model's `prediction` (diffctl.schedules.parametrization.x0_and_eps)")

    def zero_terminal_snr() -> None:
        sched = NoiseSchedule(ScaledLinearScheduleConfig(rescale_zero_terminal_snr=True))
        for prediction in PREDICTIONS:
            x_T, gen = initial_noise((2000, 1), seed=1)
            out = sampler.sample(GaussianDenoiser(sched, prediction=prediction), sched,
                                 x_T.double(), 50, generator=gen)
            require(bool(torch.isfinite(out).all()),
                    f"non-finite samples with a {prediction!r} model on a zero-terminal-SNR "
                    "schedule (alphas_cumprod[-1] = 0)")
            require(abs(float(out.mean()) - 0.5) <= 0.1,
                    f"mean {float(out.mean()):.3f} instead of 0.5 with a {prediction!r} model "
                    "on a zero-terminal-SNR schedule")

    checks.run("protocol", protocol)
    checks.run("shapes-dtypes-devices", shapes)
    checks.run("callback", callback)
    checks.run("deterministic", deterministic)
    checks.run("batch-independent", batch_independent)
    checks.run("gaussian", gaussian)
    checks.run("probability-flow", probability_flow)
    checks.run("prediction-types", prediction_types)
    checks.run("zero-terminal-snr", zero_terminal_snr)
