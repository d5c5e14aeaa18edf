"""Conformance of a denoiser: the call contract, determinism, batch independence, training."""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import BaseModel

from diffctl.testing._support import (
    Builder,
    CheckFailed,
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

DENOISER_CHECKS = (*CONFIG_CHECKS, "build", "protocol", "shapes-dtypes-devices", "conditional",
                   "deterministic", "batch-independent", "train-step")
PREDICTIONS = ("epsilon", "sample", "v")
#: The floating dtypes a denoiser is called with by default: float32 (what training and
#: sampling use) and float64 (what exactness tests use); pass ``dtypes=("float32",)`` for a
#: model that cannot run in float64.
DTYPES = ("float32", "float64")


def infer_sample_shape(config: BaseModel) -> tuple[int, ...] | None:
    """The sample shape a denoiser config describes: ``data_dim`` for vectors, ``in_channels``
    with ``image_size`` (or ``sample_size``) for images; None when it says neither."""
    values = config.model_dump()
    if isinstance(values.get("data_dim"), int):
        return (values["data_dim"],)
    size = values.get("image_size", values.get("sample_size"))
    if isinstance(values.get("in_channels"), int) and isinstance(size, int):
        return (values["in_channels"], size, size)
    return None


def check_denoiser(factory: str | Callable[[Any], Any], config: type[BaseModel],
                   options: Mapping[str, Any] | None = None, *,
                   sample_shape: tuple[int, ...] | None = None,
                   num_train_timesteps: int | None = None,
                   devices: Collection[str] | None = None,
                   dtypes: Collection[Any] = DTYPES, label: str | None = None,
                   skip: Collection[str] = ()) -> list[str]:
    """Check a denoiser built as ``factory(config(**options))``; returns the passed sub-checks.

    ``sample_shape`` defaults to what the config says (``data_dim``, or ``in_channels`` and
    ``image_size``); T (``num_train_timesteps``) to the config's field of that name, else 1000.
    Beyond the config checks: ``protocol`` (``prediction`` is epsilon, sample or v);
    ``shapes-dtypes-devices`` (``denoiser(x_t, t, cond=None)`` returns a finite tensor shaped,
    typed and placed like ``x_t`` for t from 0 to T-1, for each of ``dtypes`` (default float32
    and float64) on each of ``devices`` (default CPU plus CUDA when
    available); a ``torch.nn.Module`` is called as a copy moved with ``.to(device, dtype)``, so
    the model under test stays on the CPU; on the ``meta`` device, which computes no values,
    only shape, dtype and placement are checked, so ``devices=["cpu", "meta"]`` exercises
    device handling on a machine without an accelerator); ``conditional`` (with
    ``num_classes``: labels and the null label -1 work); ``deterministic`` (same seed, same
    weights; same input, same output);
    ``batch-independent`` (in eval mode a row's output does not depend on the rest of the
    batch); ``train-step`` (for a ``torch.nn.Module``: one optimiser step on the diffusion loss
    gives a finite loss, gradients and changed weights). ``skip=["build"]`` checks the config
    only.
    """
    checks = Checks(label_for("denoiser", factory, label), DENOISER_CHECKS, skip)
    config_checks(checks, config, options)
    builder = Builder(factory, config, options)
    if "build" in checks.skip:
        return checks.passed
    with single_thread(), preserved_rng():
        _denoiser_checks(checks, builder, sample_shape, num_train_timesteps, devices, dtypes)
    return checks.passed


def _denoiser_checks(checks: Checks, builder: Builder, sample_shape: tuple[int, ...] | None,
                     num_train_timesteps: int | None, devices: Collection[str] | None,
                     dtypes: Collection[Any]) -> None:
    import torch

    from diffctl.protocols import Denoiser
    from diffctl.schedules.configs import LinearScheduleConfig
    from diffctl.schedules.noise_schedule import NoiseSchedule
    from diffctl.training.objective import diffusion_loss

    def build() -> Any:
        torch.manual_seed(0)
        return builder.build()

    model = checks.run("build", build)
    cfg = builder.config()
    shape = tuple(sample_shape or infer_sample_shape(cfg) or ())
    if not shape:
        raise ValueError(f"{checks.label}: pass sample_shape=...; the config has no data_dim "
                         "or in_channels/image_size to infer it from")
    T = int(num_train_timesteps or getattr(cfg, "num_train_timesteps", 1000))
    is_module = isinstance(model, torch.nn.Module)
    num_classes = getattr(model, "num_classes", None) or getattr(cfg, "num_classes", None)
    gen = torch.Generator().manual_seed(0)

    def inputs(batch: int, device: str = "cpu", dtype: Any = torch.float32) -> tuple[Any, Any]:
        x = torch.randn((batch, *shape), generator=gen).to(device=device, dtype=dtype)
        t = torch.randint(0, T, (batch,), generator=gen)
        t[:2] = torch.tensor([0, T - 1])[: min(2, batch)]
        return x, t.to(device)

    def call(x: Any, t: Any, cond: Any = None, subject: Any = None) -> Any:
        out = (model if subject is None else subject)(x, t, cond=cond)
        require(isinstance(out, torch.Tensor) and out.shape == x.shape
                and out.dtype == x.dtype and out.device == x.device,
                f"input {x.dtype} {tuple(x.shape)} on {x.device} gave "
                f"{getattr(out, 'dtype', type(out).__name__)} "
                f"{tuple(getattr(out, 'shape', ()))} on {getattr(out, 'device', '?')}")
        if out.device.type != "meta":  # meta tensors carry no values
            require(bool(torch.isfinite(out).all()), f"non-finite {x.dtype} output on {x.device}")
        return out

    def protocol() -> None:
        require(isinstance(model, Denoiser), "missing members of diffctl.protocols.Denoiser "
                "(prediction, __call__)")
        require(model.prediction in PREDICTIONS,
                f"prediction must be one of {PREDICTIONS}, got {model.prediction!r}")

    def shapes() -> None:
        wanted = [getattr(torch, d) if isinstance(d, str) else d for d in dtypes]
        require(wanted and all(isinstance(d, torch.dtype) and d.is_floating_point
                               for d in wanted), f"dtypes must be floating torch dtypes (or "
                f"their names), got {list(dtypes)!r}")
        for device in default_devices(devices):
            for dtype in wanted:
                subject = model
                if is_module:
                    subject = copy.deepcopy(model).to(device=device, dtype=dtype)
                call(*inputs(4, device, dtype), subject=subject)

    def conditional() -> None:
        if not num_classes:
            raise NotApplicable
        x, t = inputs(4)
        labels = torch.tensor([0, num_classes - 1, -1, 0])
        call(x, t, labels)

    def deterministic() -> None:
        if is_module:
            a, b = build().state_dict(), build().state_dict()
            require(a.keys() == b.keys() and all(same(a[k], b[k]) for k in a),
                    "two builds under torch.manual_seed(0) have different weights: initialise "
                    "from torch's global RNG (or a seeded generator) only")
            model.eval()
        x, t = inputs(6)
        with torch.no_grad():
            require(same(call(x, t), call(x, t)), "the same input gave different outputs")

    def batch_independent() -> None:
        if is_module:
            model.eval()
        x, t = inputs(6)
        with torch.no_grad():
            whole = call(x, t)
            rows = torch.cat([call(x[i:i + 1], t[i:i + 1]) for i in range(len(x))])
        diff = max_diff(whole, rows)
        require(diff <= 1e-5, f"in eval mode a row's output depends on the rest of its batch "
                f"(max difference {diff:.3g}); e.g. BatchNorm must use running statistics")

    def train_step() -> None:
        if not is_module:
            raise NotApplicable
        params = [p for p in model.parameters() if p.requires_grad]
        require(params, "a torch.nn.Module denoiser without trainable parameters")
        model.train()
        before = [p.detach().clone() for p in params]
        sched = NoiseSchedule(LinearScheduleConfig(num_train_timesteps=T))
        optimizer = torch.optim.Adam(params, lr=1e-3)
        x0, t = inputs(16)
        loss = diffusion_loss(model, sched, x0, t, torch.randn(x0.shape, generator=gen))
        require(loss.ndim == 0 and bool(torch.isfinite(loss)), f"loss is {loss}")
        loss.backward()
        grads = [p.grad for p in params]
        if all(g is None or not bool(g.abs().sum() > 0) for g in grads):
            raise CheckFailed("no parameter received a gradient from the diffusion loss")
        optimizer.step()
        require(any(not same(b, p.detach()) for b, p in zip(before, params, strict=True)),
                "an optimiser step changed no weight")
        model.zero_grad(set_to_none=True)
        model.eval()

    checks.run("protocol", protocol)
    checks.run("shapes-dtypes-devices", shapes)
    checks.run("conditional", conditional)
    checks.run("deterministic", deterministic)
    checks.run("batch-independent", batch_independent)
    checks.run("train-step", train_step)
