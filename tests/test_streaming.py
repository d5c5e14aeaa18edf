"""The streaming data path (issue 15): image-folder read batch by batch through DataLoader
workers; the same batches whatever the worker count, the same weights as the in-memory path,
sharded by rank, and exact when resumed mid-epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import diffctl
from diffctl.datasets import images as images_module
from diffctl.runs import Run, compose
from diffctl.training.config import TrainConfig
from diffctl.training.streaming import StreamingData
from diffctl.training.trainer import Trainer

SIZE = 8


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """36 small RGB PNGs of assorted shapes (so each is resized and cropped)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("pics")
    rng = np.random.default_rng(0)
    for i in range(36):
        h, w = 10 + i % 3, 12 + i % 5
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"{i}.png")
    return root


def folder_dataset(folder: Path, streaming: bool | str):
    return diffctl.create("dataset", "image-folder", path=str(folder), image_size=SIZE,
                          test_fraction=0.1, streaming=streaming)


class Conv(torch.nn.Module):
    """A tiny image denoiser with dropout (torch's global RNG)."""

    def __init__(self):
        super().__init__()
        self.prediction = "epsilon"
        self.inp = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.drop = torch.nn.Dropout(0.1)
        self.out = torch.nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x, t, cond=None):
        time = (t.to(x.dtype) / 1000)[:, None, None, None].expand(-1, 1, *x.shape[2:])
        return self.out(self.drop(torch.nn.functional.silu(self.inp(torch.cat([x, time], 1)))))


def cfg(**kw) -> TrainConfig:
    base = {"epochs": 2, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 1, "device": "cpu"}
    return TrainConfig(**(base | kw))


class Logged:
    """An item source that records which examples it decoded (in this process)."""

    def __init__(self, source):
        self.source, self.loaded = source, []

    def __len__(self) -> int:
        return len(self.source)

    def load(self, index: int) -> torch.Tensor:
        self.loaded.append(index)
        return self.source.load(index)


def flip_and_jitter():
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomHorizontalFlip(), v2.RandomErasing(p=0.5, value=0.0)])


def epoch_batches(data: StreamingData, epoch: int, **kw) -> list[torch.Tensor]:
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
    return list(data.batches(order, 8, 4, epoch=epoch, seed=3, **kw))


# -- the data set ------------------------------------------------------------------------------
def test_a_streamed_folder_decodes_nothing_up_front_and_the_same_values(folder: Path) -> None:
    eager, lazy = folder_dataset(folder, False), folder_dataset(folder, True)
    assert not eager.streaming and lazy.streaming
    assert isinstance(lazy._raw["train"], images_module.LazyImages)
    assert lazy.sample_shape == eager.sample_shape and len(lazy) == len(eager)
    source = lazy.stream_source()
    for i in (0, 7, len(lazy) - 1):
        assert torch.equal(source.load(i), eager.train_tensor()[i])
        assert torch.equal(lazy[i][0], eager[i][0])
    assert torch.equal(lazy.reference(3, 1), eager.reference(3, 1))
    assert torch.equal(lazy.test_tensor(), eager.test_tensor())


def test_auto_streams_when_the_split_would_crowd_memory(folder: Path, monkeypatch) -> None:
    # 32 training images of 3x8x8 float32: 24 KiB
    monkeypatch.setattr(images_module, "available_memory", lambda: 1 << 30)
    assert not folder_dataset(folder, "auto").streaming
    monkeypatch.setattr(images_module, "available_memory", lambda: 64 << 10)
    assert folder_dataset(folder, "auto").streaming


# -- the loader --------------------------------------------------------------------------------
def test_the_same_batches_with_0_or_2_workers_and_run_after_run(folder: Path) -> None:
    """Augmentation keyed by (seed, epoch, example): the worker count and the process that
    decodes change nothing; another epoch draws other augmentations."""
    source = folder_dataset(folder, True).stream_source()
    inline = StreamingData(source, num_workers=0, transform=flip_and_jitter())
    workers = StreamingData(source, num_workers=2, transform=flip_and_jitter())
    try:
        first = epoch_batches(workers, 0)
        for a, b, c in zip(epoch_batches(inline, 0), first, epoch_batches(workers, 0),
                           strict=True):
            assert torch.equal(a, b) and torch.equal(b, c)
        # the next epoch (the persistent workers are reused) draws other augmentations
        order = torch.randperm(len(source), generator=torch.Generator().manual_seed(0))
        again = list(workers.batches(order, 8, 4, epoch=1, seed=3))
        assert not all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    finally:
        workers.close()
    assert len(first) == 4 and first[0].shape == (8, 3, SIZE, SIZE)


def test_each_rank_streams_its_share_of_every_batch(folder: Path) -> None:
    data = StreamingData(folder_dataset(folder, True).stream_source(), num_workers=0)
    whole = epoch_batches(data, 2)
    ranks = [epoch_batches(data, 2, rank=r, world_size=2) for r in (0, 1)]
    for batch, even, odd in zip(whole, *ranks, strict=True):
        assert torch.equal(batch[0::2], even) and torch.equal(batch[1::2], odd)
    # a later start yields exactly the remaining batches
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(2))
    rest = list(data.batches(order, 8, 4, epoch=2, seed=3, start=3))
    assert len(rest) == 1 and torch.equal(rest[0], whole[3])


# -- training ----------------------------------------------------------------------------------
def train(data, config: TrainConfig, **kw) -> Trainer:
    torch.manual_seed(0)
    trainer = Trainer(Conv(), diffctl.create("scheduler", "linear"), data, config, seed=9, **kw)
    trainer.fit()
    return trainer


def test_streaming_trains_the_weights_of_the_in_memory_path(folder: Path) -> None:
    ds = folder_dataset(folder, True)
    memory = train(folder_dataset(folder, False).train_tensor(), cfg(grad_accum_steps=2))
    streamed = train(StreamingData(ds.stream_source(), num_workers=1), cfg(grad_accum_steps=2))
    assert streamed.state.step == memory.state.step == 8
    for a, b in zip(memory.model.parameters(), streamed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class Interrupt(Exception):
    pass


def test_a_mid_epoch_resume_streams_exactly_the_remaining_batches(folder: Path,
                                                                  tmp_path: Path) -> None:
    source = folder_dataset(folder, True).stream_source()
    straight_source = Logged(source)
    torch.manual_seed(0)
    straight = Trainer(Conv(), diffctl.create("scheduler", "linear"),
                       StreamingData(straight_source, num_workers=0), cfg(), seed=9)
    straight.check_memory()
    straight_source.loaded.clear()  # the memory check's trial batch
    straight.fit()

    logged = Logged(source)

    def stop_at_6(event) -> None:  # step 6 = batch 2 of the second epoch
        if event.step == 6:
            interrupted.save("step-6")
            raise Interrupt

    torch.manual_seed(0)
    interrupted = Trainer(Conv(), diffctl.create("scheduler", "linear"),
                          StreamingData(logged, num_workers=0), cfg(), seed=9,
                          checkpoint_dir=tmp_path, on_step=stop_at_6)
    interrupted.check_memory()
    logged.loaded.clear()
    with pytest.raises(Interrupt):
        interrupted.fit()
    before = list(logged.loaded)
    state = json.loads((tmp_path / "step-6/state.json").read_text())
    assert (state["epoch"], state["batch_in_epoch"], state["step"]) == (1, 2, 6)

    torch.manual_seed(5)
    rest = Logged(source)
    resumed = Trainer(Conv(), diffctl.create("scheduler", "linear"),
                      StreamingData(rest, num_workers=1), cfg(), seed=9, checkpoint_dir=tmp_path)
    resumed.resume(tmp_path / "step-6")
    resumed.check_memory()
    # with a worker the loads happen in another process: check the order in this one
    check = Trainer(Conv(), diffctl.create("scheduler", "linear"),
                    StreamingData(rest, num_workers=0), cfg(), seed=9)
    check.resume(tmp_path / "step-6")
    check.check_memory()
    rest.loaded.clear()
    check.fit()
    assert before + rest.loaded == straight_source.loaded
    assert len(rest.loaded) == 2 * 8  # batches 2 and 3 of the second epoch

    resumed.fit()
    for a, b, c in zip(straight.model.parameters(), resumed.model.parameters(),
                       check.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)


def test_a_streaming_run_writes_what_an_in_memory_run_writes(folder: Path,
                                                             tmp_path: Path) -> None:
    """Through the run layer: dataset.streaming true or false, the same checkpoint weights;
    the flag and the worker count stay out of the config fingerprint."""
    settings = ["dataset.name=image-folder", f"dataset.path={folder}",
                f"dataset.image_size={SIZE}", "denoiser.name=dit", "denoiser.hidden=16",
                "denoiser.depth=1", "denoiser.heads=2", "denoiser.kv_heads=1",
                "denoiser.patch_size=4", "train.epochs=1", "train.batch_size=8",
                "sample.num_samples=4", "eval.during_training_samples=4",
                "eval.metrics=[test-loss]", "eval.during_training=[test-loss]",
                "eval.metric_options.test-loss.examples=4",
                "eval.metric_options.test-loss.timesteps=2"]
    weights = []
    for streaming, workers in (("false", 1), ("true", 0)):
        out = tmp_path / f"run-{streaming}"
        run = Run.create(compose(overrides=[*settings, f"dataset.streaming={streaming}",
                                            f"train.num_workers={workers}"]), out)
        assert run.train(evaluate_after=False)["step"] == 4
        weights.append(load_file(out / "checkpoints/epoch-0001/model.safetensors"))
        fingerprint = json.loads((out / "checkpoints/epoch-0001/state.json").read_text())[
            "config_sha256"]
        assert run._trainer.streaming == (streaming == "true")
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    assert fingerprint == json.loads((tmp_path / "run-false/checkpoints/epoch-0001/"
                                      "state.json").read_text())["config_sha256"]
