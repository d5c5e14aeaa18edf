"""Compose a run from the registry, train it, sample, evaluate, and write the run directory.

Run directory (DESIGN.md, "Runs"): ``config.yaml`` (resolved), ``checkpoints/``,
``metrics.jsonl`` (one line per evaluation), ``metrics.json`` (final, with floors),
``samples.npy``, ``trajectory.npz`` (states along the sampling path), ``losses.json``.
Plots are drawn by the CLI from these files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffctl.errors import UsageError
from diffctl.registry import Registry, get_registry
from diffctl.runs.compare import metric_direction
from diffctl.runs.config import RunConfig, dump
from diffctl.samplers.base import Trajectory
from diffctl.samplers.noise import initial_noise
from diffctl.training.checkpoint import list_checkpoints, load_checkpoint, read_pointer
from diffctl.training.distributed import dist_info
from diffctl.training.trainer import Trainer, TrainState


@dataclass
class Components:
    dataset: Any
    denoiser: torch.nn.Module
    scheduler: Any
    sampler: Any


def num_classes(model: Any) -> int | None:
    """Classes a denoiser is conditioned on (None: unconditional)."""
    return getattr(model, "num_classes", None) or None


def fit_denoiser_to_data(options: dict[str, Any], denoiser: str, dataset: Any,
                         dataset_name: str, guidance_scale: float = 1.0) -> dict[str, Any]:
    """Check a denoiser config against the dataset and fill the shape fields left empty.

    Vector denoisers declare ``data_dim``, image denoisers ``in_channels`` / ``image_size``
    (null: taken from the dataset). Every mismatch is a one-line error before any training.
    """
    shape = tuple(dataset.sample_shape)
    options = dict(options)
    if "data_dim" in options:
        if len(shape) != 1:
            raise UsageError(f"denoiser '{denoiser}' works on vectors but dataset "
                             f"'{dataset_name}' has samples shaped {shape}; use an image "
                             "denoiser (e.g. unet-mini or dit)")
        if options["data_dim"] != shape[0]:
            raise UsageError(f"denoiser data_dim {options['data_dim']} does not match the "
                             f"dataset's sample shape {shape}")
    if "in_channels" in options:
        if len(shape) != 3:
            raise UsageError(f"denoiser '{denoiser}' works on images but dataset "
                             f"'{dataset_name}' has samples shaped {shape}")
        channels, height, width = shape
        if options["in_channels"] not in (None, channels):
            raise UsageError(f"channel mismatch: denoiser '{denoiser}' has in_channels "
                             f"{options['in_channels']} but dataset '{dataset_name}' has "
                             f"{channels}")
        if height != width:
            raise UsageError(f"dataset '{dataset_name}' has {height}x{width} images; the "
                             "image denoisers need square images")
        if options.get("image_size") not in (None, height):
            raise UsageError(f"denoiser '{denoiser}' has image_size {options['image_size']} "
                             f"but dataset '{dataset_name}' has {height}x{width} images")
        options["in_channels"], options["image_size"] = channels, height
    classes = options.get("num_classes")
    if classes:
        if not getattr(dataset, "num_classes", None):
            raise UsageError(f"class conditioning (denoiser num_classes={classes}) needs "
                             f"labels, and dataset '{dataset_name}' has none")
        if classes != dataset.num_classes:
            raise UsageError(f"denoiser num_classes {classes} but dataset '{dataset_name}' "
                             f"has {dataset.num_classes} classes")
    if guidance_scale != 1.0 and not classes:
        raise UsageError(f"guidance_scale {guidance_scale} needs a class-conditional "
                         "denoiser (set denoiser.num_classes)")
    return options


def build(config: RunConfig, registry: Registry | None = None) -> Components:
    """Instantiate the four components of a resolved config (seeded model init)."""
    registry = registry or get_registry()
    dataset = registry.create("dataset", config.dataset.name, config.dataset.options())
    scheduler = registry.create("scheduler", config.scheduler.name, config.scheduler.options())
    sampler_options = config.sampler.options()
    options = fit_denoiser_to_data(config.denoiser.options(), config.denoiser.name, dataset,
                                   config.dataset.name,
                                   float(sampler_options.get("guidance_scale", 1.0)))
    if "num_train_timesteps" in options:
        options["num_train_timesteps"] = scheduler.num_train_timesteps
    torch.manual_seed(config.seed)
    denoiser = registry.create("denoiser", config.denoiser.name, options)
    sampler = registry.create("sampler", config.sampler.name, sampler_options)
    return Components(dataset, denoiser, scheduler, sampler)


def default_run_dir(config: RunConfig, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = config.name or f"{config.dataset.name}-{config.denoiser.name}"
    return root / f"{stamp}-{name}"


def sample_batch_size(config: RunConfig, components: Components) -> int:
    """``sample.batch_size``, or a default that fits the data: 5000 vectors, 250 images."""
    if config.sample.batch_size:
        return config.sample.batch_size
    return 5000 if len(components.dataset.sample_shape) == 1 else 250


def class_labels(model: Any, start: int, size: int, device: torch.device,
                 labels: torch.Tensor | None = None) -> torch.Tensor | None:
    """Labels of samples ``start .. start + size - 1``: given ones, else i mod num_classes
    (equal class counts; a sample's label depends on its index only)."""
    k = num_classes(model)
    if k is None:
        return None
    if labels is not None:
        return labels[start:start + size].to(device)
    return torch.arange(start, start + size, device=device) % k


def generate(components: Components, model: torch.nn.Module, n: int, num_steps: int,
             seed: int, batch_size: int, trajectory: Trajectory | None = None,
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """Draw n samples; sample i depends only on (seed, i), not on batch_size.

    Class-conditional models get ``labels`` (default: i mod num_classes).
    """
    device = next(model.parameters()).device
    shape = tuple(components.dataset.sample_shape)
    out = []
    model.eval()
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        x_T, gen = initial_noise((size, *shape), seed, offset=start, device=device)
        cond = class_labels(model, start, size, device, labels)
        callback = trajectory if (trajectory is not None and start == 0) else None
        if callback is not None:
            callback.start(x_T)
        out.append(components.sampler.sample(model, components.scheduler, x_T, num_steps,
                                             cond=cond, generator=gen,
                                             callback=callback).cpu())
    return torch.cat(out)


@dataclass
class ModelInputs:
    """What a model metric (``test-loss``) scores: the denoiser on held-out data."""

    model: torch.nn.Module
    scheduler: Any
    data: torch.Tensor
    labels: torch.Tensor | None = None
    seed: int = 0


def is_model_metric(metric: Any) -> bool:
    """Whether a metric scores the model (``score_model``) rather than samples."""
    return callable(getattr(metric, "score_model", None))


def heldout_inputs(config: RunConfig, components: Components,
                   model: torch.nn.Module) -> ModelInputs:
    """The held-out split (and labels for a conditional model) that model metrics score."""
    ds = components.dataset
    labels = _labels(ds, "test") if num_classes(model) is not None else None
    return ModelInputs(model, components.scheduler, ds.test_tensor(), labels, config.seed)


def metric_values(registry: Registry, names: list[str], generated: torch.Tensor | None,
                  real: torch.Tensor | None, options: dict[str, dict[str, Any]] | None = None,
                  model_inputs: ModelInputs | None = None,
                  metadata: dict[str, Any] | None = None) -> dict[str, float]:
    """Values of the named metrics: sample metrics on (generated, real), model metrics on
    ``model_inputs``. A metric that leaves a ``metadata`` dict (extractor, weights hash,
    counts) has it copied into ``metadata[name]`` when a dict is passed."""
    values: dict[str, float] = {}
    for name in names:
        metric = registry.create("metric", name, (options or {}).get(name))
        if is_model_metric(metric):
            if model_inputs is None:
                raise UsageError(f"metric '{name}' scores a model; it cannot be computed "
                                 "from samples alone here")
            m = model_inputs
            result = metric.score_model(m.model, m.scheduler, m.data, m.labels, seed=m.seed)
        else:
            result = metric(generated, real)
        values.update({k: float(v) for k, v in result.items()})
        if metadata is not None and getattr(metric, "metadata", None):
            metadata[name] = _plain(metric.metadata)
    return values


def metric_options_on(config: RunConfig, registry: Registry,
                      device: torch.device | str) -> dict[str, dict[str, Any]]:
    """The run's ``eval.metric_options`` with ``device: auto`` replaced by the run's device,
    for the metrics that have a ``device`` field (fid, kid, isc, prc, lpips): a CPU run on a
    GPU machine computes its metrics on the CPU too."""
    options = {name: dict(values) for name, values in config.eval.metric_options.items()}
    for name, values in options.items():
        spec = registry.get("metric", name)
        if "device" in spec.config.model_fields and values.get("device", "auto") == "auto":
            values["device"] = str(device)
    return options


def _plain(value: Any) -> Any:
    """JSON-safe copy of a metadata value (tuples to lists, tensors and numbers to floats)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


class RunDirectory:
    """Paths of one run and the small writers for its files."""

    def __init__(self, path: Path):
        self.path = path
        self.checkpoints = path / "checkpoints"

    def exists(self) -> bool:
        return (self.path / "config.yaml").is_file()

    def append_metrics(self, record: dict[str, Any]) -> None:
        self.append_line("metrics.jsonl", record)

    def append_line(self, name: str, record: dict[str, Any]) -> None:
        """Append one JSON line (a killed run leaves every earlier line intact)."""
        with open(self.path / name, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def write_json(self, name: str, payload: Any) -> None:
        self._replace(name, json.dumps(payload, indent=1))

    def _replace(self, name: str, text: str) -> None:
        """Write ``name`` atomically: a temporary file renamed over it."""
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(self.path / name)

    def truncate_logs(self, step: int) -> None:
        """Drop log lines past ``step``: a resumed run repeats the work after its checkpoint
        and logs it again (atomic rewrite; a torn last line is dropped too)."""
        for name in ("metrics.jsonl", "train.jsonl"):
            path = self.path / name
            if not path.exists():
                continue
            kept = []
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("step", 0) <= step:
                    kept.append(line + "\n")
            self._replace(name, "".join(kept))

    def metrics_history(self) -> list[dict[str, Any]]:
        f = self.path / "metrics.jsonl"
        if not f.exists():
            return []
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def make_trainer(config: RunConfig, components: Components, run: RunDirectory | None,
                 registry: Registry, on_step=None) -> Trainer:
    """A trainer whose checkpoint evaluation computes test-loss and the chosen metrics."""
    ds = components.dataset
    conditional = num_classes(components.denoiser) is not None
    started = time.time()
    during = [m for m in config.eval.during_training if m != "test-loss"]

    metadata: dict[str, Any] = {}

    def evaluate(model: torch.nn.Module, state: TrainState) -> dict[str, float]:
        inputs = heldout_inputs(config, components, model)
        options = metric_options_on(config, registry, next(model.parameters()).device)
        values = metric_values(registry, ["test-loss"], None, None, options, inputs)
        if during:
            n = config.eval.during_training_samples
            gen = generate(components, model, n, config.sample.num_steps, config.seed + 1,
                           sample_batch_size(config, components))
            real = ds.reference(n, config.seed + 2)
            values |= metric_values(registry, during, gen, real, options, inputs, metadata)
        return values

    def on_eval(state: TrainState, values: dict[str, float]) -> None:
        if run is not None:
            extra = {"metric_metadata": dict(metadata)} if metadata else {}
            run.append_metrics({"step": state.step, "epoch": state.epoch,
                                "train_seconds": round(state.train_seconds, 3),
                                "wall_seconds": round(time.time() - started, 3), **values,
                                **extra})

    def log_step(event) -> None:
        if run is not None and (event.step % config.train.log_every == 0 or event.step == 1):
            run.append_line("train.jsonl", {
                "step": event.step, "epoch": event.epoch, "loss": event.loss, "lr": event.lr,
                "steps_per_second": round(event.steps_per_second, 3)})
        if on_step is not None:
            on_step(event)

    return Trainer(components.denoiser, components.scheduler, ds.train_tensor(), config.train,
                   seed=config.seed, labels=_labels(ds, "train") if conditional else None,
                   augment=getattr(ds, "augment", None),
                   checkpoint_dir=run.checkpoints if run else None, evaluate=evaluate,
                   higher_is_better=lambda name: bool(metric_direction(name, registry)),
                   on_step=log_step, on_eval=on_eval)


def _labels(dataset: Any, split: str) -> torch.Tensor:
    getter = getattr(dataset, f"{split}_labels", None)
    labels = getter() if getter is not None else None
    if labels is None:
        raise UsageError(f"dataset {dataset!r} has no {split} labels for class conditioning")
    return labels


def evaluate_samples(config: RunConfig, components: Components, model: torch.nn.Module,
                     registry: Registry, run: RunDirectory | None = None) -> dict[str, Any]:
    """Final evaluation: sample, compute metrics and their real-vs-real floors."""
    cfg = config.sample
    images = len(components.dataset.sample_shape) == 3
    # 10 evenly spaced states from the noise x_T to the sample x_0; for images 10 samples
    # along them make the 10x10 progression grid
    keep = min(cfg.progression_samples, 10) if images else cfg.progression_samples
    traj = Trajectory(frames=10) if keep else None
    t0 = time.perf_counter()
    samples = generate(components, model, cfg.num_samples, cfg.num_steps, config.seed + 1,
                       sample_batch_size(config, components), traj)
    sample_seconds = time.perf_counter() - t0
    real = components.dataset.reference(cfg.num_samples, config.seed + 2)
    options = metric_options_on(config, registry, next(model.parameters()).device)
    # the model used for sampling also gets the final held-out loss
    names = list(dict.fromkeys([*config.eval.metrics, "test-loss"]))
    metadata: dict[str, Any] = {}
    values = metric_values(registry, names, samples, real, options,
                           heldout_inputs(config, components, model), metadata)
    result: dict[str, Any] = {"num_samples": cfg.num_samples, "sample_seconds": sample_seconds,
                              "metrics": values, "floors": {}, "metric_metadata": metadata}
    k = num_classes(model)
    if k is not None:
        result["labels"] = f"sample i has class i mod {k}"
    if config.eval.floor_draws:
        result["floors"] = metric_floors(registry, names, options, components.dataset,
                                         cfg.num_samples, config.eval.floor_draws,
                                         config.seed + 100)
    if config.eval.reconstruction_metrics:
        result["reconstruction"] = reconstruction_values(config, components, model, registry)
    if run is not None:
        np.save(run.path / "samples.npy", samples.numpy())
        np.save(run.path / "real.npy", real.numpy())
        if traj is not None and traj.xs:
            np.savez(run.path / "trajectory.npz", timesteps=np.array(traj.timesteps),
                     xs=np.stack([x[:keep].numpy() for x in traj.xs]),
                     x0s=np.stack([x[:keep].numpy() for x in traj.x0s]))
    return result


def metric_floors(registry: Registry, names: list[str], options: dict[str, dict[str, Any]],
                  dataset: Any, n: int, draws: int, seed: int) -> dict[str, dict[str, Any]]:
    """Real-vs-real floors (mean, p95, values) of the sample metrics among ``names`` at sample
    size ``n``; model metrics have none. A metric with ``zero_centred = True`` (unbiased MMD^2,
    KID) has its headline floor marked so: "within k x of the floor" means below k x p95."""
    from diffctl.evaluation.floor import metric_floor

    floors: dict[str, dict[str, Any]] = {}
    for name in names:
        metric = registry.create("metric", name, options.get(name))
        if is_model_metric(metric):
            continue
        found = metric_floor(metric, dataset.reference, n, draws=draws, seed=seed)
        if getattr(metric, "zero_centred", False) and name in found:
            found[name]["zero_centred"] = True  # compare with the p95, not the mean
        floors.update(found)
    return floors


@torch.no_grad()
def reconstruction_values(config: RunConfig, components: Components, model: torch.nn.Module,
                          registry: Registry) -> dict[str, Any]:
    """Paired metrics between held-out images x0 and the model's x0 estimate from x_t.

    x_t = q_sample(x0, t, noise) at ``eval.reconstruction_t`` with seeded noise; the estimate
    is one model call converted to x0 (clamped to [-1, 1]). Reports PSNR/SSIM-style numbers of
    how well the model denoises at that noise level.
    """
    from diffctl.samplers.base import DenoiserCall

    cfg = config.eval
    data = components.dataset.test_tensor()[:cfg.reconstruction_examples]
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(config.seed + 3)
    t = min(cfg.reconstruction_t, components.scheduler.num_train_timesteps - 1)
    alpha_bar = float(components.scheduler.alphas_cumprod[t])
    labels = _labels(components.dataset, "test")[:len(data)] \
        if num_classes(model) is not None else None
    call = DenoiserCall(model, clip_denoised=1.0)
    estimates = []
    for start in range(0, len(data), 250):
        x0 = data[start:start + 250].to(device)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        x_t = alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise
        call.cond = labels[start:start + 250].to(device) if labels is not None else None
        estimates.append(call(x_t, t, alpha_bar)[0].cpu())
    metadata: dict[str, Any] = {}
    values = metric_values(registry, cfg.reconstruction_metrics, torch.cat(estimates), data,
                           metric_options_on(config, registry, device), metadata=metadata)
    return {"t": t, "examples": len(data), "metrics": values, "metric_metadata": metadata}


def run_experiment(config: RunConfig, out: Path, *, resume: bool = False,
                   registry: Registry | None = None, on_step=None,
                   train: bool = True, evaluate: bool = True) -> dict[str, Any]:
    """Train (or resume) and evaluate one run; returns the final report."""
    registry = registry or get_registry()
    run = RunDirectory(out)
    main = dist_info().is_main  # under torchrun only rank 0 writes the run directory
    if resume and not run.exists():
        raise UsageError(f"no run to resume at {out} (config.yaml missing)")
    if main and not resume and run.exists():
        raise UsageError(f"run directory {out} already holds a run; use --resume or "
                         "another --out")
    components = build(config, registry)
    if evaluate:  # fail now, not after training, if the data cannot give the real sample
        components.dataset.reference(config.sample.num_samples, config.seed + 2)
    # the trainer checks the device and the batch against the processes before anything
    # is written; it creates the checkpoint folder itself on the first save
    trainer = make_trainer(config, components, run if main else None, registry, on_step)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            (out / "config.yaml").write_text(dump(config))
    if resume:
        trainer.resume(_latest(run))  # every rank reads it (rank 0 alone has checkpoint_dir)
        if main:
            run.truncate_logs(trainer.state.step)
    if train:
        state = trainer.fit()
        if main:
            run.write_json("losses.json", state.losses)
    if not main:
        return {"run": str(out), "rank": trainer.dist.rank}
    report: dict[str, Any] = {"run": str(out), "train": trainer.state.as_dict() | {
        "losses": None, "device": str(trainer.device),
        "parameters": sum(p.numel() for p in trainer.model.parameters())}}
    if evaluate:
        model = trainer.eval_model() if config.sample.use_ema else trainer.model
        report["eval"] = evaluate_samples(config, components, model, registry, run)
        run.write_json("metrics.json", report)
    return report


def _latest(run: RunDirectory) -> Path | None:
    """The ``last`` checkpoint, or the newest complete one if the pointer is missing."""
    path = read_pointer(run.checkpoints / "last")
    if path is not None and path.exists():
        return path
    found = list_checkpoints(run.checkpoints)
    return found[-1] if found else None


def load_run_model(path: Path, registry: Registry | None = None, checkpoint: str = "last",
                   use_ema: bool = True, device: str | None = None
                   ) -> tuple[RunConfig, Components, torch.nn.Module]:
    """Rebuild a run's components and load one of its checkpoints (``last``, ``best`` or a
    folder name) onto ``device`` (auto, cpu, cuda, mps; default: the run's train.device)."""
    from diffctl.runs.config import load_yaml, resolve
    from diffctl.training.trainer import pick_device

    registry = registry or get_registry()
    run = RunDirectory(path)
    if not run.exists():
        raise UsageError(f"not a run directory (no config.yaml): {path}")
    config = resolve(load_yaml(path / "config.yaml"), registry)
    components = build(config, registry)
    ckpt = read_pointer(run.checkpoints / checkpoint) if checkpoint in ("last", "best") \
        else run.checkpoints / checkpoint
    if ckpt is None:
        raise UsageError(f"run {path} has no '{checkpoint}' checkpoint")
    model = components.denoiser
    ema = None
    if use_ema and (ckpt / "ema.safetensors").exists():
        import copy

        ema = copy.deepcopy(model)
    load_checkpoint(ckpt, model, None, ema)
    chosen = ema if ema is not None else model
    return config, components, chosen.to(pick_device(device or config.train.device)).eval()
