"""The MLP denoisers (diffctl-models): mlp and residual-mlp."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import pytest
import torch

import diffctl
from diffctl import protocols
from diffctl.errors import ConfigError
from diffctl_models.embeddings import TimeEmbedding, sinusoidal_embedding
from diffctl_models.utils import count_parameters

NAMES = ("mlp", "residual-mlp")
SMALL = {"mlp": {"hidden": 32, "num_layers": 2},
         "residual-mlp": {"hidden": 32, "num_blocks": 2, "time_dim": 16}}


def make(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return diffctl.create("denoiser", name, **overrides)


# -- embeddings -----------------------------------------------------------------------------
def test_sinusoidal_embedding_formula() -> None:
    t = torch.tensor([0, 1, 17, 999])
    emb = sinusoidal_embedding(t, 8)
    assert emb.shape == (4, 8) and emb.dtype == torch.float32
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    freqs = torch.tensor([10_000 ** (-i / 4) for i in range(4)], dtype=torch.float64)
    args = t.double()[:, None] * freqs
    expected = torch.cat([args.sin(), args.cos()], dim=1).float()
    assert torch.allclose(emb, expected, atol=1e-4)
    odd = sinusoidal_embedding(t, 7)
    assert odd.shape == (4, 7) and torch.equal(odd[:, -1], torch.zeros(4))
    assert emb.abs().max() <= 1


@pytest.mark.parametrize("kind", ["learned", "sinusoidal"])
def test_time_embedding_module(kind: str) -> None:
    torch.manual_seed(0)
    emb = TimeEmbedding(16, kind, num_train_timesteps=1000, activation="silu")
    out = emb(torch.tensor([0, 500, 999]))
    assert out.shape == (3, 16) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[2])
    with pytest.raises(ValueError):
        TimeEmbedding(16, "fourier")


# -- construction and shapes ----------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_registry_create_defaults_and_protocol(name: str) -> None:
    model = make(name)
    assert isinstance(model, torch.nn.Module) and isinstance(model, protocols.Denoiser)
    assert model.prediction == "epsilon"
    c = model.config
    assert (c.data_dim, c.num_train_timesteps, c.activation) == (2, 1000, "relu")
    if name == "mlp":  # the plain predictor: learned time embedding, 3 x 128, ReLU
        assert (c.hidden, c.num_layers, c.time_embedding) == (128, 3, "learned")
    else:
        assert (c.hidden, c.num_blocks, c.time_dim, c.dropout, c.time_embedding) == \
            (512, 5, 64, 0.0, "sinusoidal")
    for prediction in ("sample", "v"):
        assert make(name, prediction=prediction, **SMALL[name]).prediction == prediction


@pytest.mark.parametrize("name", NAMES)
def test_configs_reject_unknown_and_invalid_fields(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown field"):
        diffctl.create("denoiser", name, hiden=64)
    with pytest.raises(ConfigError):
        diffctl.create("denoiser", name, activation="tanh")
    with pytest.raises(ConfigError):
        diffctl.create("denoiser", name, time_embedding="fourier")
    with pytest.raises(ConfigError):
        diffctl.create("denoiser", name, prediction="x0")


def test_configs_and_plugin_do_not_import_torch() -> None:
    code = ("import sys, diffctl_models.plugin, diffctl_models.configs; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("name", "embedding", "activation"),
                         list(itertools.product(NAMES, ["learned", "sinusoidal"],
                                           ["relu", "silu", "gelu"])))
def test_output_shape_for_every_option(name: str, embedding: str, activation: str) -> None:
    model = make(name, time_embedding=embedding, activation=activation, **SMALL[name])
    gen = torch.Generator().manual_seed(0)
    model.train()
    x, t = torch.randn(7, 2, generator=gen), torch.randint(0, 1000, (7,), generator=gen)
    out = model(x, t)
    assert out.shape == (7, 2) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.square().mean().backward()  # differentiable end to end
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    for b in (1, 7):
        assert model(x[:b], t[:b]).shape == (b, 2)


@pytest.mark.parametrize("name", NAMES)
def test_other_data_dims_scalar_t_and_bad_inputs(name: str) -> None:
    model = make(name, data_dim=5, **SMALL[name]).eval()
    x = torch.randn(4, 5)
    assert model(x, torch.tensor([1, 2, 3, 4])).shape == (4, 5)
    assert torch.equal(model(x, torch.tensor(3)), model(x, torch.full((4,), 3)))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        model(x, torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional"):
        model(x, torch.zeros(4, dtype=torch.long), cond=torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("name", NAMES)
def test_init_is_deterministic_under_manual_seed(name: str) -> None:
    a, b, c = make(name, 0), make(name, 0), make(name, 1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_count_parameters() -> None:
    model = make("mlp", time_embedding="sinusoidal")
    d, h, e = 2, 128, 32
    time = 2 * (e * e + e)  # sinusoidal features -> Linear -> act -> Linear
    net = ((d + e) * h + h) + 2 * (h * h + h) + (h * d + d)
    assert count_parameters(model) == time + net == 39_874
    model.time_embed.requires_grad_(False)
    assert count_parameters(model) == net
    assert count_parameters(model, trainable_only=False) == time + net
    assert count_parameters(make("residual-mlp")) > 2_000_000
    learned = (1 * e + e) + (e * e + e)  # t / T -> Linear -> act -> Linear
    assert count_parameters(make("mlp")) == learned + net


# -- behaviour ------------------------------------------------------------------------------
def test_residual_mlp_in_eval_mode_is_batch_independent() -> None:
    model = make("residual-mlp", dropout=0.1, **SMALL["residual-mlp"])
    gen = torch.Generator().manual_seed(0)
    x, t = torch.randn(64, 2, generator=gen) * 3, torch.randint(0, 1000, (64,), generator=gen)
    model.train()
    with torch.no_grad():  # move the BatchNorm running statistics away from their init
        for _ in range(5):
            model(x, t)
        assert not torch.allclose(model(x[:4], t[:4]), model(x, t)[:4])  # train: batch stats
    model.eval()
    with torch.no_grad():
        full = model(x, t)
        assert torch.allclose(model(x[:1], t[:1]), full[:1], atol=1e-6)
        assert torch.allclose(model(x[10:17], t[10:17]), full[10:17], atol=1e-6)
        assert torch.equal(model(x, t), full)  # dropout off in eval


def _fixed_regression(seed: int = 0):
    """gmm-ring x0, noised at a few fixed timesteps of the linear schedule: predict the noise."""
    ds = diffctl.create("dataset", "gmm-ring", n=100)
    sched = diffctl.create("scheduler", "linear")
    gen = torch.Generator().manual_seed(seed)
    x0 = ds.reference(256, seed=seed)
    t = torch.tensor([20, 100, 300])[torch.randint(0, 3, (256,), generator=gen)]
    noise = torch.randn(256, 2, generator=gen)
    return sched.q_sample(x0, t, noise).float(), t, noise


@pytest.mark.parametrize(("name", "embedding"),
                         list(itertools.product(NAMES, ["learned", "sinusoidal"])))
def test_a_few_hundred_adam_steps_reduce_the_loss(name: str, embedding: str) -> None:
    x_t, t, noise = _fixed_regression()
    config = {"mlp": {}, "residual-mlp": {"hidden": 128, "num_blocks": 2}}[name]
    model = make(name, time_embedding=embedding, **config).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(300):
        loss = (model(x_t, t) - noise).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    model.eval()
    with torch.no_grad():
        final = float((model(x_t, t) - noise).square().mean())
    baseline = float(noise.square().mean())  # the loss of predicting zero, about 1
    assert math.isfinite(final) and losses[-1] < 0.5 * losses[0]
    assert final < 0.45 * baseline, (losses[0], final)
