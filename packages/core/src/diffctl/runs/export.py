"""Leaving the run directory: samples as PNG files, and a trained model as one file.

**PNG folders.** ``write_pngs`` writes one 8-bit PNG per image (``000000.png`` ...), plus
``labels.csv`` for class-conditional samples, so external tools (torch-fidelity's command
line, clean-fid) can read them; ``read_pngs`` reads such a folder back. Pixels are
``round((x + 1) * 127.5)``, the exact inverse of the datasets' ``x / 127.5 - 1``, which is
also what the image metrics feed their extractors: a folder scores the same as the tensors it
was written from.

**Model files.** ``export_model`` writes a checkpoint's weights (EMA by default) into one
safetensors file whose metadata holds the run's resolved config and the sample shape;
``load_model`` builds the denoiser, schedule and sampler from it with no run directory, and
its ``sample`` draws exactly what the run would for the same seed (the same ``sample`` stream,
docs/design.md "Seeds").
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from diffctl.errors import StorageError, UsageError
from diffctl.registry import Registry, get_registry
from diffctl.runs.components import Components, build_sampler, fit_denoiser_to_data, num_classes
from diffctl.runs.config import RunConfig, dump, resolve, sampler_options_for
from diffctl.runs.sampling import default_batch_size, generate
from diffctl.seeds import stream_seed

FORMAT = "diffctl-model-1"
PNG_SUFFIX = ".png"


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) floats in [-1, 1] -> uint8 ``round((x + 1) * 127.5)``, clamped."""
    return ((images.detach().cpu().float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def write_pngs(images: torch.Tensor, folder: Path | str,
               labels: torch.Tensor | None = None) -> list[Path]:
    """One PNG per image in ``folder`` (created; it must not hold PNGs already), and
    ``labels.csv`` (file, label) when labels are given."""
    from PIL import Image

    folder = Path(folder)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise UsageError(f"PNG export needs (N, 1 or 3, H, W) images, got {tuple(images.shape)}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {folder}: {exc.strerror or exc}") from None
    if any(folder.glob(f"*{PNG_SUFFIX}")):
        raise UsageError(f"{folder} already holds PNG files; choose an empty folder")
    pixels = to_uint8(images).permute(0, 2, 3, 1).numpy()
    width = max(6, len(str(len(pixels) - 1)))
    paths = []
    try:
        for i, image in enumerate(pixels):
            path = folder / f"{i:0{width}d}{PNG_SUFFIX}"
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
            paths.append(path)
        if labels is not None:
            with open(folder / "labels.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["file", "label"])
                writer.writerows((p.name, int(y)) for p, y in zip(paths, labels, strict=True))
    except OSError as exc:
        raise StorageError(f"writing PNGs into {folder} failed: {exc.strerror or exc}") from None
    return paths


def read_pngs(folder: Path | str, shape: tuple[int, int, int]) -> torch.Tensor:
    """The PNGs of ``folder`` (sorted by name) as (N, C, H, W) floats in [-1, 1]; every image
    must have ``shape``."""
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"not a folder of PNG images: {folder}")
    files = sorted(folder.glob(f"*{PNG_SUFFIX}"))
    if not files:
        raise UsageError(f"{folder} holds no {PNG_SUFFIX} files")
    channels, height, width = shape
    mode = "L" if channels == 1 else "RGB"
    out = torch.empty((len(files), channels, height, width))
    for i, path in enumerate(files):
        try:
            with Image.open(path) as image:
                if image.size != (width, height):
                    raise UsageError(f"{path} is {image.size[0]}x{image.size[1]}, the run's "
                                     f"images are {width}x{height}")
                array = np.asarray(image.convert(mode), dtype=np.float32)
        except OSError as exc:
            raise UsageError(f"cannot read image {path}: {exc}") from None
        array = array[None] if channels == 1 else array.transpose(2, 0, 1)
        out[i] = torch.from_numpy(array.copy()) / 127.5 - 1.0
    return out


def read_png_labels(folder: Path | str, n: int) -> torch.Tensor | None:
    """The labels.csv of a PNG folder (in file-name order), None when there is none."""
    path = Path(folder) / "labels.csv"
    if not path.exists():
        return None
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
        labels = [int(r["label"]) for r in sorted(rows, key=lambda r: r["file"])]
    except (KeyError, ValueError, UnicodeDecodeError):
        raise UsageError(f"{path} is not a 'file,label' table of integers") from None
    if len(labels) != n:
        raise UsageError(f"{path} has {len(labels)} labels for {n} images")
    return torch.tensor(labels)


@dataclass
class ExportedModel:
    """A trained denoiser with its schedule and sampler, loaded from one model file."""

    config: RunConfig
    components: Components
    metadata: dict[str, str]

    @property
    def model(self) -> torch.nn.Module:
        return self.components.denoiser

    def sample(self, num_samples: int, *, steps: int | None = None, seed: int | None = None,
               sampler: str | None = None, sampler_options: dict[str, Any] | None = None,
               label: int | None = None, batch_size: int | None = None,
               registry: Registry | None = None) -> torch.Tensor:
        """Draw ``num_samples`` as the run would: noise from the ``sample`` stream of
        ``seed`` (default: the run's), the run's sampler and steps unless given."""
        cfg = self.config
        k = num_classes(self.model)
        if label is not None and not (k and 0 <= label < k):
            raise UsageError(f"--label needs a class-conditional model and a label in "
                             f"[0, {k or 0}); got {label}")
        name = sampler or cfg.sampler.name
        options = {**sampler_options_for(cfg, name, registry), **(sampler_options or {})}
        sampler_obj = build_sampler(name, options, self.model, registry)
        labels = torch.full((num_samples,), label, dtype=torch.long) \
            if label is not None else None
        shape = tuple(self.components.dataset.sample_shape)
        return generate(self.components, self.model, num_samples,
                        steps or cfg.sample.num_steps,
                        stream_seed(cfg.seed if seed is None else seed, "sample"),
                        batch_size or cfg.sample.batch_size or default_batch_size(shape),
                        labels=labels, sampler=sampler_obj)


def export_model(run: Any, out: Path | str, *, checkpoint: str = "best",
                 use_ema: bool = True) -> Path:
    """Write ``run``'s ``checkpoint`` (EMA weights by default) into one safetensors file at
    ``out`` with the run's config in its metadata; returns the path."""
    from safetensors.torch import save_file

    from diffctl.runs.directory import write_atomic

    loaded = run.load_model(checkpoint, use_ema=use_ema, device="cpu", strict=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in loaded.model.state_dict().items()}
    metadata = {"format": FORMAT, "config": dump(run.config),
                "sample_shape": json.dumps(list(loaded.components.dataset.sample_shape)),
                "checkpoint": loaded.checkpoint.name, "run": str(run.path),
                "weights": "ema" if use_ema and (loaded.checkpoint / "ema.safetensors").exists()
                else "model"}
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(tmp), metadata=metadata)
        write_atomic(out, tmp.read_bytes())
    except OSError as exc:
        raise StorageError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out


def load_model(path: Path | str, *, device: str | None = None,
               registry: Registry | None = None) -> ExportedModel:
    """The model of an exported file, ready to sample (see :class:`ExportedModel`)."""
    import yaml
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from diffctl.training.trainer import pick_device

    registry = registry or get_registry()
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable safetensors file: "
                         f"{str(exc).splitlines()[0]}") from None
    if metadata.get("format") != FORMAT:
        raise UsageError(f"{path} is not a diffctl model file (no '{FORMAT}' metadata; "
                         "write one with 'diffctl export')")
    config = resolve(yaml.safe_load(metadata["config"]), registry)
    shape = tuple(json.loads(metadata["sample_shape"]))
    data = SimpleNamespace(sample_shape=shape,
                           num_classes=config.denoiser.options().get("num_classes"))
    scheduler = registry.create("scheduler", config.scheduler.name, config.scheduler.options())
    options = fit_denoiser_to_data(config.denoiser.options(), config.denoiser.name, data,
                                   config.dataset.name)
    if "num_train_timesteps" in options:
        options["num_train_timesteps"] = scheduler.num_train_timesteps
    model = registry.create("denoiser", config.denoiser.name, options)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise UsageError(f"{path}: the weights do not fit denoiser '{config.denoiser.name}': "
                         f"{str(exc).splitlines()[0]}") from None
    model = model.to(pick_device(device or config.train.device)).eval()
    sampler = registry.create("sampler", config.sampler.name, config.sampler.options())
    return ExportedModel(config, Components(data, model, scheduler, sampler), metadata)
