"""The image denoisers (diffctl-models): unet-mini, student-unet and the DiTs."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError

import diffctl
from diffctl import protocols
from diffctl.errors import ConfigError
from diffctl.schedules.configs import LinearScheduleConfig
from diffctl.schedules.noise_schedule import NoiseSchedule
from diffctl.testing import check_denoiser
from diffctl.training.objective import diffusion_loss
from diffctl_models.dit import AdaLNZeroBlock, GroupedQueryAttention
from diffctl_models.embeddings import ClassEmbedding, sincos_position_embedding_2d
from diffctl_models.image_configs import (
    DiTConfig,
    StudentUNetConfig,
    UNetConfig,
)
from diffctl_models.unet import scaled_width
from diffctl_models.utils import count_parameters

IMAGE_MODELS = ("unet-mini", "student-unet", "dit", "dit-tiny", "dit-s", "dit-b")
#: Small variants of each architecture, quick on a CPU.
SMALL = {
    "unet": ("unet-mini", {"base_channels": 16, "time_dim": 32}),
    "student": ("student-unet", {"base_channels": 32, "time_dim": 32, "size_factor": 0.5}),
    "dit-token": ("dit", {"hidden": 32, "depth": 2, "heads": 4, "kv_heads": 2}),
    "dit-adaln": ("dit", {"hidden": 32, "depth": 2, "heads": 4, "kv_heads": 2,
                          "conditioning": "adaln-zero", "pos_embed": "learned"}),
}


def make(key: str, seed: int = 0, **overrides):
    name, options = SMALL[key]
    torch.manual_seed(seed)
    return diffctl.create("denoiser", name, **{**options, **overrides})


def batch(channels: int, size: int, n: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, size, size, generator=gen)
    t = torch.randint(0, 1000, (n,), generator=gen)
    return x, t


def perturb(model: torch.nn.Module, seed: int = 1, scale: float = 0.05) -> None:
    """Small random changes to every weight (moves an adaln-zero DiT off its zero init)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen))


# -- registry, defaults, shapes ---------------------------------------------------------------
def test_registered_with_default_parameter_counts() -> None:
    registry = diffctl.get_registry()
    names = {s.name for s in registry.specs("denoiser")}
    assert set(IMAGE_MODELS) <= names
    torch.manual_seed(0)
    counts = {n: count_parameters(diffctl.create("denoiser", n))
              for n in ("unet-mini", "student-unet", "dit-tiny")}
    assert 1e6 < counts["unet-mini"] < 1e7
    assert counts["dit-tiny"] < counts["unet-mini"]
    assert counts["student-unet"] < counts["unet-mini"]


def test_create_dit_with_shape_from_the_caller() -> None:
    torch.manual_seed(0)
    model = diffctl.create("denoiser", "dit", image_size=16, in_channels=1)
    assert (model.in_channels, model.image_size, model.num_patches) == (1, 16, 16)
    assert (model.config.hidden, model.config.depth, model.config.heads,
            model.config.kv_heads) == (384, 12, 8, 2)
    presets = {n: diffctl.get_registry().get("denoiser", n).make_config()
               for n in ("dit-tiny", "dit-s", "dit-b")}
    assert [(c.hidden, c.depth, c.heads) for c in presets.values()] == \
        [(128, 4, 4), (384, 12, 6), (768, 12, 12)]
    assert all(c.heads % c.kv_heads == 0 and c.kv_heads < c.heads for c in presets.values())


@pytest.mark.parametrize("key", list(SMALL))
def test_standalone_defaults_and_protocol(key: str) -> None:
    model = make(key)
    assert isinstance(model, protocols.Denoiser)
    assert (model.prediction, model.in_channels, model.image_size, model.num_classes) == \
        ("epsilon", 1, 32, None)
    assert make(key, prediction="v").prediction == "v"


@pytest.mark.parametrize("key", list(SMALL))
@pytest.mark.parametrize(("channels", "size"), [(1, 16), (3, 32)])
@pytest.mark.parametrize("num_classes", [None, 10])
def test_output_shape(key: str, channels: int, size: int, num_classes: int | None) -> None:
    model = make(key, in_channels=channels, image_size=size, num_classes=num_classes).eval()
    x, t = batch(channels, size)
    cond = None if num_classes is None else torch.tensor([0, 9, -1])
    with torch.no_grad():
        out = model(x, t, cond=cond)
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
        assert model(x, torch.tensor(5)).shape == x.shape  # a scalar t is broadcast


def test_dit_patch_sizes_and_head_layouts() -> None:
    for options in ({"patch_size": 2, "image_size": 16}, {"patch_size": 8, "image_size": 32},
                    {"kv_heads": 1}, {"kv_heads": 4}):
        model = make("dit-token", **options).eval()
        x, t = batch(1, model.image_size, n=2)
        with torch.no_grad():
            assert model(x, t).shape == x.shape


@pytest.mark.parametrize("key", ["unet", "dit-token"])
def test_bad_inputs_are_clear_errors(key: str) -> None:
    model = make(key, image_size=16, num_classes=3).eval()
    x, t = batch(1, 16)
    with pytest.raises(ValueError, match=r"expected x_t of shape \(B, 1, 16, 16\)"):
        model(torch.randn(3, 1, 32, 32), t)
    with pytest.raises(ValueError, match="expected t of shape"):
        model(x, t[:2])
    with pytest.raises(ValueError, match="class label 3 out of range"):
        model(x, t, cond=torch.tensor([0, 3, 1]))
    unconditional = make(key, image_size=16).eval()
    with pytest.raises(ValueError, match="unconditional"):
        unconditional(x, t, cond=torch.tensor([0, 1, 2]))
    with torch.no_grad():  # all -1 is the same as no labels
        assert torch.equal(unconditional(x, t, cond=torch.full((3,), -1)), unconditional(x, t))


@pytest.mark.parametrize("key", list(SMALL))
def test_conformance_kit(key: str) -> None:
    name, options = SMALL[key]
    spec = diffctl.get_registry().get("denoiser", name)
    passed = check_denoiser(spec.factory, spec.config,
                            {**options, "image_size": 16, "in_channels": 1, "num_classes": 3})
    assert {"conditional", "deterministic", "batch-independent", "train-step"} <= set(passed)


# -- the student family ------------------------------------------------------------------------
def test_scaled_width_rounds_up_to_a_multiple_with_a_floor() -> None:
    assert scaled_width(64, 1.0, 8, 8) == 64
    assert scaled_width(64, 0.5, 8, 8) == 32
    assert scaled_width(64, 0.3, 8, 8) == 24  # 19.2 -> 24
    assert scaled_width(128, 0.01, 8, 8) == 8
    assert scaled_width(128, 0.01, 8, 16) == 16
    assert scaled_width(96, 0.1, 32, 32) == 32


def test_student_sizes_build_run_and_grow() -> None:
    x, t = batch(1, 16, n=2)
    counts = []
    for factor in (0.01, 0.1, 0.5, 1.0):
        torch.manual_seed(0)
        model = diffctl.create("denoiser", "student-unet", size_factor=factor, image_size=16)
        assert all(c % model.config.groups == 0 and c >= model.config.groups
                   for c in model.channels)
        assert model.time_dim >= 16
        with torch.no_grad():
            assert model.eval()(x, t).shape == x.shape
        counts.append(count_parameters(model))
    assert counts == sorted(counts) and len(set(counts)) == 4
    torch.manual_seed(0)
    teacher = diffctl.create("denoiser", "unet-mini", image_size=16)
    assert counts[-1] == count_parameters(teacher)
    assert teacher.channels == [64, 128, 128] and teacher.time_dim == 128
    assert teacher.size_factor == 1.0


def test_student_at_factor_one_is_the_teacher() -> None:
    torch.manual_seed(0)
    teacher = diffctl.create("denoiser", "unet-mini", image_size=16, base_channels=16)
    torch.manual_seed(0)
    student = diffctl.create("denoiser", "student-unet", image_size=16, base_channels=16,
                             size_factor=1.0)
    assert teacher.state_dict().keys() == student.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(teacher.state_dict().values(),
                                                 student.state_dict().values(), strict=True))


# -- attention -----------------------------------------------------------------------------------
def naive_attention(attn: GroupedQueryAttention, x: torch.Tensor) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V written out, with each key/value head repeated for its
    group of consecutive query heads, on the module's own weights."""
    b, n, dim = x.shape
    h, kv, d = attn.heads, attn.kv_heads, attn.head_dim
    w, bias = attn.qkv.weight, attn.qkv.bias
    q = (x @ w[:dim].T + bias[:dim]).view(b, n, h, d).transpose(1, 2)
    k = (x @ w[dim:dim + kv * d].T + bias[dim:dim + kv * d]).view(b, n, kv, d).transpose(1, 2)
    v = (x @ w[dim + kv * d:].T + bias[dim + kv * d:]).view(b, n, kv, d).transpose(1, 2)
    k, v = k.repeat_interleave(h // kv, dim=1), v.repeat_interleave(h // kv, dim=1)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(b, n, dim)
    return out @ attn.out.weight.T + attn.out.bias


@pytest.mark.parametrize("kv_heads", [1, 2, 4, 8])
def test_grouped_query_attention_matches_the_naive_computation(kv_heads: int) -> None:
    torch.manual_seed(0)
    attn = GroupedQueryAttention(64, heads=8, kv_heads=kv_heads).eval()
    assert attn.qkv.out_features == 64 + 2 * kv_heads * 8
    x = torch.randn(3, 10, 64)
    with torch.no_grad():
        assert torch.allclose(attn(x), naive_attention(attn, x), atol=1e-5, rtol=0)


def test_kv_heads_equal_to_heads_is_plain_multi_head_attention() -> None:
    torch.manual_seed(0)
    attn = GroupedQueryAttention(32, heads=4, kv_heads=4).eval()
    mha = torch.nn.MultiheadAttention(32, 4, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.out.weight)
        mha.out_proj.bias.copy_(attn.out.bias)
        x = torch.randn(2, 7, 32)
        expected, _ = mha(x, x, x, need_weights=False)
        assert torch.allclose(attn(x), expected, atol=1e-5, rtol=0)


def test_sincos_position_embedding_layout() -> None:
    emb = sincos_position_embedding_2d(4, 16)
    assert emb.shape == (16, 16)
    assert torch.equal(emb[0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))
    assert torch.equal(emb[1, :8], emb[0, :8])  # same row, next column
    assert torch.equal(emb[4, 8:], emb[0, 8:])  # next row, same column
    assert len({tuple(r.tolist()) for r in emb}) == 16
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_embedding_2d(4, 18)


# -- adaLN-Zero ----------------------------------------------------------------------------------
def test_adaln_zero_starts_at_zero_output_and_identity_blocks() -> None:
    model = make("dit-adaln", num_classes=5).eval()
    x, t = batch(1, 32)
    with torch.no_grad():
        assert torch.equal(model(x, t, cond=torch.tensor([0, 4, -1])), torch.zeros_like(x))
        tokens, c = torch.randn(3, model.num_patches, 32), torch.randn(3, 32)
        for block in model.blocks:
            assert isinstance(block, AdaLNZeroBlock)
            assert torch.equal(block(tokens, c), tokens)
    assert not model.head.weight.any() and not model.final_modulation[-1].weight.any()
    # the token-conditioned DiT has an ordinary head: non-zero output from the start
    with torch.no_grad():
        assert make("dit-token").eval()(x, t).abs().sum() > 0


# -- class conditioning ------------------------------------------------------------------------
@pytest.mark.parametrize("key", list(SMALL))
def test_labels_change_the_output_and_minus_one_is_none(key: str) -> None:
    model = make(key, num_classes=4, image_size=16).eval()
    perturb(model)
    assert model.class_embed.table.num_embeddings == 5  # 4 classes + the null row
    x, t = batch(1, 16, n=1)
    x, t = x.expand(4, -1, -1, -1), t.expand(4)
    with torch.no_grad():
        out = model(x, t, cond=torch.tensor([0, 1, 2, 3]))
        assert all(not torch.allclose(out[i], out[j]) for i in range(4) for j in range(i))
        assert torch.equal(model(x, t, cond=torch.full((4,), -1)), model(x, t))
        mixed = model(x, t, cond=torch.tensor([1, -1, 3, -1]))
        assert torch.equal(mixed[0], out[1]) and torch.equal(mixed[2], out[3])
        assert torch.allclose(mixed[1], model(x[:1], t[:1])[0], atol=1e-5)


def test_class_embedding_maps_minus_one_and_drops_labels_only_in_training() -> None:
    emb = ClassEmbedding(3, 8, dropout=0.5)
    cond = torch.tensor([0, 1, 2, -1] * 50)
    emb.eval()
    assert torch.equal(emb.labels(cond, 200, torch.device("cpu")),
                       torch.tensor([0, 1, 2, 3] * 50))
    assert torch.equal(emb.labels(None, 2, torch.device("cpu")), torch.tensor([3, 3]))
    emb.train()
    torch.manual_seed(0)
    dropped = emb.labels(cond, 200, torch.device("cpu"))
    torch.manual_seed(0)
    assert torch.equal(emb.labels(cond, 200, torch.device("cpu")), dropped)  # global RNG
    kept = dropped == torch.tensor([0, 1, 2, 3] * 50)
    assert not kept.all() and 0.3 < kept.float().mean() < 0.8
    assert ((dropped == 3) | kept).all()
    assert torch.equal(ClassEmbedding(3, 8, dropout=0.0).train().labels(cond, 200, "cpu"),
                       torch.tensor([0, 1, 2, 3] * 50))


@pytest.mark.parametrize("key", ["unet", "dit-token"])
def test_class_dropout_acts_in_train_mode_only(key: str) -> None:
    model = make(key, num_classes=3, image_size=16, class_dropout=0.5, dropout=0.0)
    perturb(model)
    x, t = batch(1, 16, n=16)
    cond = torch.arange(16) % 3
    with torch.no_grad():
        model.eval()
        labelled, null = model(x, t, cond=cond), model(x, t)
        assert torch.equal(model(x, t, cond=cond), labelled)
        model.train()
        torch.manual_seed(0)
        trained = model(x, t, cond=cond)
        torch.manual_seed(0)
        assert torch.equal(model(x, t, cond=cond), trained)
    as_labelled = [torch.allclose(trained[i], labelled[i], atol=1e-5) for i in range(16)]
    as_null = [torch.allclose(trained[i], null[i], atol=1e-5) for i in range(16)]
    assert all(a != b for a, b in zip(as_labelled, as_null, strict=True))
    assert any(as_labelled) and any(as_null)


# -- training -------------------------------------------------------------------------------
@pytest.mark.parametrize("key", list(SMALL))
def test_optimisation_steps_reach_every_parameter(key: str) -> None:
    model = make(key, num_classes=3, image_size=16).train()
    sched = NoiseSchedule(LinearScheduleConfig())
    x0, t = batch(1, 16, n=8)
    x0 = x0.clamp(-1, 1)
    cond = torch.tensor([0, 1, 2, -1, 0, 1, 2, -1])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    names = [n for n, _ in model.named_parameters()]
    reached: list[set[str]] = []
    torch.manual_seed(0)
    for _ in range(3):
        before = [p.detach().clone() for p in model.parameters()]
        optimizer.zero_grad(set_to_none=True)
        loss = diffusion_loss(model, sched, x0, t, torch.randn_like(x0), cond)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        reached.append({n for n, p in model.named_parameters() if p.grad.any()})
        optimizer.step()
        assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(),
                                                         strict=True))
    if getattr(model, "adaln", False):
        # adaLN-Zero: at first only the zero head learns (everything behind it sees a zero
        # weight), then the modulations, then the blocks' layers through the opened gates
        assert reached[0] == {"head.weight", "head.bias"}
        assert "blocks.0.modulation.1.weight" in reached[1] - reached[0]
    else:
        assert reached[0] == set(names)
    assert set().union(*reached) == set(names)


# -- configs ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("config", "values", "message"), [
    (DiTConfig, {"image_size": 30}, "image_size 30 is not divisible by patch_size 4"),
    (DiTConfig, {"kv_heads": 3}, "kv_heads 3 does not divide heads 8"),
    (DiTConfig, {"hidden": 100}, "hidden 100 is not divisible by heads 8"),
    (DiTConfig, {"hidden": 66, "heads": 6, "kv_heads": 3},
     "pos_embed sincos needs hidden divisible by 4"),
    (DiTConfig, {"conditioning": "cross-attention"}, "token"),
    (StudentUNetConfig, {"size_factor": 0}, "greater than 0"),
    (StudentUNetConfig, {"size_factor": 1.5}, "less than or equal to 1"),
    (UNetConfig, {"image_size": 20}, "image_size 20 is not divisible by 8"),
    (UNetConfig, {"base_channels": 60}, "60 is not divisible by groups 8"),
    (UNetConfig, {"channel_mults": []}, "at least 1 item"),
    (UNetConfig, {"channel_mults": [1, 0]}, "greater than or equal to 1"),
    (UNetConfig, {"class_dropout": 1.0}, "less than 1"),
    (UNetConfig, {"num_classes": 0}, "greater than or equal to 1"),
    (UNetConfig, {"size_factor": 0.5}, "Extra inputs are not permitted"),
])
def test_bad_configs_are_rejected(config, values, message) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**values)


def test_bad_configs_through_the_registry_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="image_size 30 is not divisible by patch_size 4"):
        diffctl.create("denoiser", "dit-s", image_size=30)
    with pytest.raises(ConfigError, match="kv_heads 4 does not divide heads 6"):
        diffctl.create("denoiser", "dit-s", kv_heads=4)
    # students round channel counts up instead of rejecting them
    assert diffctl.get_registry().get("denoiser", "student-unet").make_config(
        base_channels=60, size_factor=1.0)
    with pytest.raises(ValueError, match="image_size 32 is not divisible by patch_size 3"):
        diffctl.create("denoiser", "dit-tiny", patch_size=3)  # checked again at build time


def test_listing_the_image_models_never_imports_torch() -> None:
    code = ("import sys\nimport diffctl\nimport diffctl_models.plugin\n"
            "import diffctl_models.image_configs\n"
            "reg = diffctl.get_registry()\n"
            "for n in ('unet-mini', 'student-unet', 'dit', 'dit-tiny', 'dit-s', 'dit-b'):\n"
            "    reg.get('denoiser', n).make_config(image_size=16)\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "TORCH False" in out.stdout, out.stdout[-500:] + out.stderr[-500:]


@pytest.mark.parametrize("key", ["dit-token", "dit-adaln"])
def test_activation_checkpointing_keeps_outputs_and_gradients(key: str, monkeypatch) -> None:
    """Recomputing each block in the backward pass (dropout masks replayed) gives the same
    output and the same gradients as storing the activations."""
    import diffctl_models.dit as dit_module

    calls: list[bool] = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return torch.utils.checkpoint.checkpoint(*args, **kwargs)

    monkeypatch.setattr(dit_module, "checkpoint", counted)
    grads, outputs = [], []
    for recompute in (False, True):
        model = make(key, num_classes=3, image_size=16, dropout=0.2,
                     activation_checkpointing=recompute).train()
        perturb(model)
        x, t = batch(1, 16, n=4)
        torch.manual_seed(7)
        out = model(x, t, cond=torch.tensor([0, 1, 2, -1]))
        out.pow(2).mean().backward()
        outputs.append(out.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        # evaluation (no autograd) takes the plain path
        with torch.no_grad():
            model.eval()(x, t)
    assert calls == [False, False]  # two blocks, in training only, non-reentrant
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-6, atol=1e-7,
                                   msg=name)
