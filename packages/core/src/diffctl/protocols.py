"""The five component protocols. Each is small enough to implement in a few lines.

A component of kind ``metric`` follows :class:`Metric` (it compares samples with real data)
or :class:`ModelMetric` (it scores the denoiser itself on held-out data, like ``test-loss``).

Conventions (docs/design.md): images are float tensors in [-1, 1] shaped (C, H, W), 2-D points
are shaped (2,); a batch adds a leading dimension B. Timesteps are integer tensors in
[0, T-1] shaped (B,). Structural typing: any object with these attributes and methods is a
component, no base class needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

PredictionType = Literal["epsilon", "sample", "v"]


@runtime_checkable
class Dataset(Protocol):
    """Training examples of one shape.

    ``dataset[i]`` returns ``(x, label)``: ``x`` a float32 tensor of ``sample_shape`` (images
    in [-1, 1]); ``label`` an int in [0, num_classes) or -1 when the set has no labels.
    Indexing is deterministic: the same index gives the same example.
    """

    sample_shape: tuple[int, ...]
    num_classes: int | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...


@runtime_checkable
class Denoiser(Protocol):
    """A network called as ``denoiser(x_t, t, cond=None)``.

    ``x_t``: (B, *sample_shape) float; ``t``: (B,) int64 in [0, T-1]; ``cond``: (B,) int64
    class labels or None. Returns a tensor shaped like ``x_t``: the noise (``epsilon``), the
    clean sample (``sample``) or ``v``, as declared by ``prediction``. Usually a
    ``torch.nn.Module``; it must not depend on the batch composition in eval mode.
    """

    prediction: PredictionType

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor,
                 cond: torch.Tensor | None = None) -> torch.Tensor: ...


@runtime_checkable
class Scheduler(Protocol):
    """A discrete noise schedule and its forward process.

    ``betas`` and ``alphas_cumprod`` are float64 tensors of length ``num_train_timesteps``;
    alphas_cumprod is strictly decreasing in (0, 1] (its last entry may be 0 for a
    zero-terminal-SNR schedule). ``q_sample`` draws x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise;
    ``timesteps`` returns a strictly decreasing int64 grid of ``num_steps`` timesteps.
    """

    num_train_timesteps: int
    betas: torch.Tensor
    alphas_cumprod: torch.Tensor

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor,
                 noise: torch.Tensor) -> torch.Tensor: ...

    def timesteps(self, num_steps: int, spacing: str = "trailing") -> torch.Tensor: ...


@runtime_checkable
class Sampler(Protocol):
    """Integrates the reverse process from noise ``x_T`` to data in ``num_steps`` steps.

    Stateless: calling ``sample`` twice with the same inputs and generator state gives the
    same output. ``generator`` may be a ``torch.Generator`` or a per-sample generator
    (``diffctl.samplers.noise.PerSampleGenerator``) so samples do not depend on batch size.
    ``x_T`` is (B, *sample_shape) float; the result has its shape, dtype and device.
    ``callback`` receives a ``diffctl.samplers.base.Step`` after every step. The built-in
    samplers also take ``guidance_scale`` (classifier-free guidance), ``inpaint``
    (``diffctl.samplers.base.Inpaint``) and ``seed``/``offset`` (per-sample noise without a
    generator); a sampler without them simply does not offer them.
    """

    deterministic: bool

    def sample(self, denoiser: Denoiser, scheduler: Scheduler, x_T: torch.Tensor,
               num_steps: int, *, cond: torch.Tensor | None = None, generator: Any = None,
               callback: Callable[[Any], None] | None = None) -> torch.Tensor: ...


@runtime_checkable
class Metric(Protocol):
    """Compares generated samples with real ones.

    ``metric(generated, real)`` takes two (N, *sample_shape) tensors and returns named float
    values (most metrics return one, e.g. ``{"mmd-rbf": 0.002}``). ``higher_is_better`` says
    which way is good for the headline value. Deterministic for fixed inputs and config.
    """

    higher_is_better: bool

    def __call__(self, generated: torch.Tensor, real: torch.Tensor) -> dict[str, float]: ...


@runtime_checkable
class ModelMetric(Protocol):
    """A metric of the model rather than of its samples (kind ``metric``), e.g. ``test-loss``.

    ``score_model(denoiser, scheduler, data, labels, seed)`` evaluates the denoiser on held-out
    examples ``data`` (N, *sample_shape) with class ``labels`` (N,) for a conditional model,
    and returns named floats. Deterministic for a fixed ``seed``; it has no real-vs-real floor.
    """

    higher_is_better: bool

    def score_model(self, denoiser: Denoiser, scheduler: Scheduler, data: torch.Tensor,
                    labels: torch.Tensor | None = None, seed: int = 0) -> dict[str, float]: ...


@runtime_checkable
class Logger(Protocol):
    """Receives a run's records (kind ``logger``); only rank 0 of a distributed run has one.

    ``open(directory, start_step)`` before the first record: the run directory to write into
    and the step training starts from (0, or a resumed checkpoint's step: records past it
    from an interrupted run must be dropped or superseded). ``log_step`` gets the training
    record every ``train.log_every`` steps (loss, lr, steps_per_second, epoch);
    ``log_eval`` each checkpoint evaluation (every metric, epoch, times; ``floors`` None) and
    the final evaluation (every metric, with ``floors``: the real-vs-real floors, possibly
    empty); ``log_images`` sample grids ((N, C, H, W) in [-1, 1]) when the logger's
    ``wants_images`` is true. Values may include non-numbers (metadata): skip what you
    cannot store. ``close`` ends the run.
    """

    wants_images: bool

    def open(self, directory: Any, start_step: int) -> None: ...

    def log_step(self, step: int, record: dict[str, Any]) -> None: ...

    def log_eval(self, step: int, record: dict[str, Any],
                 floors: dict[str, dict[str, Any]] | None = None) -> None: ...

    def log_images(self, step: int, tag: str, images: torch.Tensor) -> None: ...

    def close(self) -> None: ...
