"""Built-in components satisfy the protocols; minimal third-party ones do too."""

from __future__ import annotations

import torch

import diffctl
from diffctl import protocols


def test_builtin_schedulers_and_samplers_satisfy_protocols() -> None:
    for name in diffctl.components("scheduler"):
        assert isinstance(diffctl.create("scheduler", name), protocols.Scheduler), name
    for name in diffctl.components("sampler"):
        assert isinstance(diffctl.create("sampler", name), protocols.Sampler), name


def test_a_few_line_denoiser_is_a_denoiser_and_samples() -> None:
    class Zero(torch.nn.Module):
        prediction = "epsilon"

        def forward(self, x_t, t, cond=None):
            return torch.zeros_like(x_t)

    model = Zero()
    assert isinstance(model, protocols.Denoiser)
    sched = diffctl.create("scheduler", "linear")
    x = diffctl.create("sampler", "ddim").sample(model, sched, torch.ones(3, 2), 5)
    # a zero noise prediction means x0 = x_t / sqrt(alpha_bar) at the first step
    assert x.shape == (3, 2) and torch.isfinite(x).all()


def test_objects_missing_members_are_not_components() -> None:
    class NotASampler:
        pass

    assert not isinstance(NotASampler(), protocols.Sampler)
    assert not isinstance(object(), protocols.Scheduler)
