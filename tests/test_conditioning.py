"""Class conditioning, classifier-free guidance, inpainting and the pre-training checks."""

from __future__ import annotations

import types

import pytest
import torch

import diffctl
from diffctl.errors import UsageError
from diffctl.runs.components import fit_denoiser_to_data
from diffctl.runs.sampling import class_labels
from diffctl.samplers.base import DenoiserCall, Inpaint
from diffctl.training.config import TrainConfig
from diffctl.training.trainer import Trainer

SAMPLERS = ["ddim", "ancestral", "euler", "heun", "dpmpp-2m"]


class LabelShift(torch.nn.Module):
    """epsilon = x * 0 + offset[label]; label -1 (null) gives ``offset_null``."""

    prediction = "epsilon"

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.num_classes = num_classes
        self.offsets = torch.nn.Parameter(torch.arange(num_classes + 1, dtype=torch.float32))
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = []

    def forward(self, x, t, cond=None):
        self.calls.append((x.clone(), t.clone(), None if cond is None else cond.clone()))
        if cond is None:
            cond = torch.full((x.shape[0],), -1, dtype=torch.long)
        idx = torch.where(cond < 0, torch.full_like(cond, self.num_classes), cond)
        return torch.zeros_like(x) + self.offsets[idx].view(-1, *[1] * (x.dim() - 1))


def test_guidance_combines_conditional_and_null_predictions_in_one_call() -> None:
    model = LabelShift()
    x, cond = torch.randn(4, 2), torch.tensor([0, 1, 2, 1])
    for scale in (0.0, 1.0, 3.0):
        model.calls.clear()
        _, eps = DenoiserCall(model, cond, guidance_scale=scale)(x, 10, 0.5)
        u = 3.0  # the null row's offset
        expected = (u + scale * (cond.float() - u)).view(-1, 1).expand(4, 2)
        torch.testing.assert_close(eps, expected)
        assert len(model.calls) == 1  # conditional and null share one batch
        batch = model.calls[0][2]
        if scale == 1.0:
            assert torch.equal(batch, cond)
        else:
            assert torch.equal(batch, torch.cat([cond, torch.full_like(cond, -1)]))


def test_guidance_without_labels_is_a_clear_error() -> None:
    sched = diffctl.create("scheduler", "linear", num_train_timesteps=50)
    sampler = diffctl.create("sampler", "ddim", guidance_scale=2.0)
    with pytest.raises(UsageError, match="needs class labels"):
        sampler.sample(LabelShift(), sched, torch.randn(2, 2), 5)


@pytest.mark.parametrize("name", SAMPLERS)
def test_inpainting_keeps_known_pixels_and_feeds_the_noised_reference(name: str) -> None:
    sched = diffctl.create("scheduler", "linear", num_train_timesteps=100)
    sampler = diffctl.create("sampler", name)
    model = LabelShift()
    ref = torch.randn(3, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1  # left half known
    x_T = torch.randn(3, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    out = sampler.sample(model, sched, x_T, 6, generator=gen, inpaint=Inpaint(mask, ref))
    torch.testing.assert_close(out[..., :2], ref[..., :2], rtol=0, atol=1e-6)
    assert not torch.allclose(out[..., 2:], ref[..., 2:])
    for x_in, t, _ in model.calls:  # known pixels as the model sees them: noised reference
        a = float(sched.alphas_cumprod[int(t[0])])
        noised = a**0.5 * ref + (1 - a) ** 0.5 * x_T
        if name in ("ddim", "ancestral"):  # grid samplers evaluate exactly at table points
            torch.testing.assert_close(x_in[..., :2], noised[..., :2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", SAMPLERS)
def test_an_empty_mask_changes_nothing(name: str) -> None:
    sched = diffctl.create("scheduler", "cosine", num_train_timesteps=100)
    sampler = diffctl.create("sampler", name)
    x_T = torch.randn(2, 1, 4, 4)
    plain = sampler.sample(LabelShift(), sched, x_T, 5,
                           generator=torch.Generator().manual_seed(1))
    masked = sampler.sample(LabelShift(), sched, x_T, 5,
                            generator=torch.Generator().manual_seed(1),
                            inpaint=Inpaint(torch.zeros(1, 1, 4, 4), torch.ones(2, 1, 4, 4)))
    torch.testing.assert_close(plain, masked)


def test_generated_labels_depend_on_the_sample_index_only() -> None:
    model = LabelShift(num_classes=10)
    whole = class_labels(model, 0, 25, torch.device("cpu"))
    parts = torch.cat([class_labels(model, s, 5, torch.device("cpu")) for s in range(0, 25, 5)])
    assert torch.equal(whole, parts) and torch.equal(whole[:12], torch.arange(12) % 10)
    assert class_labels(torch.nn.Linear(2, 2), 0, 5, torch.device("cpu")) is None


def _dataset(shape, num_classes=None):
    return types.SimpleNamespace(sample_shape=shape, num_classes=num_classes)


@pytest.mark.parametrize(("options", "shape", "classes", "guidance", "message"), [
    ({"in_channels": 3, "image_size": None}, (1, 32, 32), 10, 1.0, "channel mismatch"),
    ({"in_channels": None, "image_size": None, "num_classes": 10}, (1, 32, 32), None, 1.0,
     "needs labels"),
    ({"in_channels": None, "image_size": None, "num_classes": 5}, (1, 32, 32), 10, 1.0,
     "has 10 classes"),
    ({"in_channels": None, "image_size": None, "num_classes": None}, (1, 32, 32), 10, 3.0,
     "needs a class-conditional denoiser"),
    ({"in_channels": None, "image_size": 28}, (1, 32, 32), None, 1.0, "image_size 28"),
    ({"in_channels": None, "image_size": None}, (2,), None, 1.0, "works on images"),
    ({"data_dim": 2}, (1, 32, 32), None, 1.0, "works on vectors"),
    ({"data_dim": 3}, (2,), None, 1.0, "data_dim 3"),
])
def test_mismatches_are_one_line_errors(options, shape, classes, guidance, message) -> None:
    with pytest.raises(UsageError, match=message) as info:
        fit_denoiser_to_data(options, "model", _dataset(shape, classes), "data", guidance)
    assert "\n" not in str(info.value)


def test_shape_fields_are_filled_from_the_dataset() -> None:
    filled = fit_denoiser_to_data({"in_channels": None, "image_size": None, "num_classes": 10},
                                  "unet", _dataset((3, 16, 16), 10), "data", 2.0)
    assert filled == {"in_channels": 3, "image_size": 16, "num_classes": 10}


class TinyConditional(torch.nn.Module):
    """A small conditional epsilon model on 2-D points, for trainer plumbing tests."""

    prediction = "epsilon"
    num_classes = 2

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.SiLU(),
                                       torch.nn.Linear(32, 2))
        self.embed = torch.nn.Embedding(3, 1)
        self.seen: set[int] = set()

    def forward(self, x, t, cond=None):
        if cond is None:
            cond = torch.full((x.shape[0],), -1, dtype=torch.long)
        self.seen.update(cond.tolist())
        idx = torch.where(cond < 0, torch.full_like(cond, 2), cond)
        h = torch.cat([x, t.float().unsqueeze(1) / 1000, self.embed(idx)], dim=1)
        return self.net(h)


@pytest.mark.parametrize("extra", [{}, {"precision": "bf16"}, {"compile": True}])
def test_trainer_passes_labels_and_supports_bf16_and_compile(extra, tmp_path) -> None:
    """bf16 autocast and torch.compile must not break training (CPU: a smoke test)."""
    if extra.get("compile"):
        pytest.importorskip("torch._inductor")
    sched = diffctl.create("scheduler", "linear", num_train_timesteps=100)
    data = torch.randn(256, 2)
    labels = (data[:, 0] > 0).long()
    model = TinyConditional()
    config = TrainConfig(epochs=2, batch_size=64, lr=1e-3, checkpoint_every=1, device="cpu",
                         **extra)
    trainer = Trainer(model, sched, data, config, seed=0, labels=labels,
                      checkpoint_dir=tmp_path / "ck")
    state = trainer.fit()
    assert state.step == 8 and all(torch.isfinite(torch.tensor(v)) for _, v in state.losses)
    assert {0, 1} <= model.seen
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "ck" / "epoch-0002" / "model.safetensors")
    assert set(saved) == set(model.state_dict())  # no "_orig_mod." prefixes from compile


@pytest.mark.parametrize("name", SAMPLERS)
def test_clip_denoised_clamps_the_x0_estimate(name: str) -> None:
    """A model whose x0 estimate is far outside [-1, 1] ends inside it when clipping is on."""

    class Far(torch.nn.Module):
        prediction = "sample"

        def forward(self, x, t, cond=None):
            return torch.full_like(x, 7.0)

    sched = diffctl.create("scheduler", "linear", num_train_timesteps=100)
    x_T = torch.randn(4, 1, 4, 4)
    plain = diffctl.create("sampler", name).sample(Far(), sched, x_T, 5,
                                                   generator=torch.Generator().manual_seed(0))
    clipped = diffctl.create("sampler", name, clip_denoised=1.0).sample(
        Far(), sched, x_T, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(plain, torch.full_like(plain, 7.0), rtol=0, atol=1e-4)
    torch.testing.assert_close(clipped, torch.ones_like(clipped), rtol=0, atol=1e-4)
