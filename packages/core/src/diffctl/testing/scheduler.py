"""Conformance of a noise schedule (kind ``scheduler``): tables, forward process, time grids."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import BaseModel

from diffctl.testing._support import (
    Builder,
    Checks,
    default_devices,
    label_for,
    max_diff,
    require,
    same,
)
from diffctl.testing.config import CONFIG_CHECKS, config_checks

SCHEDULER_CHECKS = (*CONFIG_CHECKS, "build", "protocol", "tables", "q-sample", "timesteps",
                    "deterministic")
SPACINGS = ("leading", "trailing", "linspace")


def check_scheduler(factory: str | Callable[[Any], Any], config: type[BaseModel],
                    options: Mapping[str, Any] | None = None, *,
                    devices: Collection[str] | None = None, label: str | None = None,
                    skip: Collection[str] = ()) -> list[str]:
    """Check a scheduler built as ``factory(config(**options))``; returns the passed sub-checks.

    Beyond the config checks: ``protocol``; ``tables`` (``betas`` and ``alphas_cumprod``
    float64 of length T, alpha-bar strictly decreasing in [0, 1] with a positive first entry
    and equal to the cumulative product of 1 - beta); ``q-sample`` (the closed form
    sqrt(ab) x0 + sqrt(1 - ab) noise, keeping shape, dtype and device, for vectors and images,
    on each of ``devices``, default CPU plus CUDA when available); ``timesteps`` (every spacing
    gives a strictly decreasing int64 grid of the requested length in [0, T-1]; ``trailing``
    starts at T-1); ``deterministic`` (two builds give the same tables). ``skip=["build"]``
    checks the config only.
    """
    import torch

    from diffctl.protocols import Scheduler

    checks = Checks(label_for("scheduler", factory, label), SCHEDULER_CHECKS, skip)
    config_checks(checks, config, options)
    builder = Builder(factory, config, options)
    if "build" in checks.skip:
        return checks.passed
    sched = checks.run("build", builder.build)

    def protocol() -> None:
        require(isinstance(sched, Scheduler), "missing members of diffctl.protocols.Scheduler "
                "(num_train_timesteps, betas, alphas_cumprod, q_sample, timesteps)")
        T = sched.num_train_timesteps
        require(isinstance(T, int) and T >= 2, f"num_train_timesteps must be an int >= 2, got "
                f"{T!r}")

    def tables() -> None:
        T = sched.num_train_timesteps
        for name in ("betas", "alphas_cumprod"):
            table = getattr(sched, name)
            require(isinstance(table, torch.Tensor) and table.dtype == torch.float64
                    and tuple(table.shape) == (T,),
                    f"{name} must be a float64 tensor of shape ({T},), got "
                    f"{getattr(table, 'dtype', type(table).__name__)} "
                    f"{tuple(getattr(table, 'shape', ()))}")
            require(bool(torch.isfinite(table).all()), f"{name} has non-finite values")
        ab, betas = sched.alphas_cumprod, sched.betas
        require(float(ab[0]) > 0 and float(ab.max()) <= 1 and float(ab.min()) >= 0,
                f"alphas_cumprod must lie in [0, 1] with a positive first entry, got "
                f"[{float(ab.min()):g}, {float(ab.max()):g}], first {float(ab[0]):g}")
        require(bool((ab[1:] < ab[:-1]).all()), "alphas_cumprod is not strictly decreasing")
        require(float(betas.min()) > 0 and float(betas.max()) <= 1,
                f"betas must lie in (0, 1], got [{float(betas.min()):g}, "
                f"{float(betas.max()):g}]")
        expected = torch.cumprod(1 - betas, 0)
        require(torch.allclose(ab, expected, rtol=1e-6, atol=1e-12),
                f"alphas_cumprod differs from cumprod(1 - betas) by up to "
                f"{max_diff(ab, expected):.3g}")

    def q_sample() -> None:
        T = sched.num_train_timesteps
        gen = torch.Generator().manual_seed(0)
        for device in default_devices(devices):
            for shape in ((5, 2), (3, 1, 4, 4)):
                x0 = torch.randn(shape, generator=gen).to(device)
                noise = torch.randn(shape, generator=gen).to(device)
                t = torch.tensor([0, T - 1, T // 2, 1, T - 2][:shape[0]], device=device)
                out = sched.q_sample(x0, t, noise)
                require(isinstance(out, torch.Tensor) and out.shape == x0.shape
                        and out.dtype == x0.dtype and out.device == x0.device,
                        f"q_sample on {shape} float32 {device} gave "
                        f"{getattr(out, 'dtype', type(out).__name__)} "
                        f"{tuple(getattr(out, 'shape', ()))} on {getattr(out, 'device', '?')}")
                a = sched.alphas_cumprod.to(device)[t].float().view(-1, *[1] * (len(shape) - 1))
                expected = a.sqrt() * x0 + (1 - a).sqrt() * noise
                require(torch.allclose(out, expected, atol=1e-5, rtol=1e-5),
                        f"q_sample differs from sqrt(ab) x0 + sqrt(1 - ab) noise by "
                        f"{max_diff(out, expected):.3g}")

    def timesteps() -> None:
        T = sched.num_train_timesteps
        for spacing in SPACINGS:
            for n in sorted({1, min(10, T), T}):
                grid = sched.timesteps(n, spacing)
                where = f"timesteps({n}, {spacing!r})"
                require(isinstance(grid, torch.Tensor) and grid.dtype == torch.int64
                        and tuple(grid.shape) == (n,),
                        f"{where} must be an int64 tensor of shape ({n},), got "
                        f"{getattr(grid, 'dtype', type(grid).__name__)} "
                        f"{tuple(getattr(grid, 'shape', ()))}")
                require(int(grid.min()) >= 0 and int(grid.max()) <= T - 1,
                        f"{where} leaves [0, {T - 1}]: {grid.tolist()[:12]}")
                require(bool((grid[1:] < grid[:-1]).all()),
                        f"{where} is not strictly decreasing: {grid.tolist()[:12]}")
                if spacing == "trailing":
                    require(int(grid[0]) == T - 1, f"{where} must start at T-1 = {T - 1}")

    def deterministic() -> None:
        other = builder.build()
        require(same(sched.betas, other.betas)
                and same(sched.alphas_cumprod, other.alphas_cumprod),
                "two builds from one config give different tables")

    checks.run("protocol", protocol)
    checks.run("tables", tables)
    checks.run("q-sample", q_sample)
    checks.run("timesteps", timesteps)
    checks.run("deterministic", deterministic)
    return checks.passed
