"""The run config: which components, how to train, sample and evaluate.

A component section is its registry name plus that component's own config fields, flat:

    denoiser:
      name: residual-mlp
      hidden: 256

``resolve`` validates every section against the registry and fills in all defaults, so the
``config.yaml`` of a run directory is complete and repeats the run. A dataset config with a
``metric_defaults()`` method supplies options of metrics that must know the data's
distribution (the gmm-ring's modes for ``mode-coverage``). No torch import here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from diffctl.config import ComponentConfig, validation_message
from diffctl.errors import ConfigError, UsageError


class ComponentChoice(BaseModel):
    """``name`` picks the registered component; other keys are its config fields."""

    model_config = ConfigDict(extra="allow")
    name: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrainConfig(ComponentConfig):
    epochs: int = Field(50, ge=1, description="Passes over the training split.")
    batch_size: int = Field(128, ge=1, description="Examples per optimisation step.")
    lr: float = Field(1e-3, gt=0, description="Base learning rate (before lr_scaling).")
    optimizer: Literal["adamw", "adam"] = Field("adamw", description="Optimiser.")
    weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay (AdamW).")
    lr_schedule: Literal["constant", "cosine"] = Field("constant",
                                                        description="LR shape over training.")
    warmup_steps: int = Field(0, ge=0, description="Linear LR warm-up steps.")
    lr_scaling: Literal["none", "linear", "sqrt"] = Field(
        "none", description="Scale lr by batch_size / base_batch_size (linear or sqrt).")
    base_batch_size: int = Field(128, ge=1, description="Reference batch size for lr_scaling.")
    grad_clip: float | None = Field(1.0, gt=0, description="Max gradient norm; null: off.")
    ema_decay: float | None = Field(0.999, gt=0, lt=1, description="EMA decay; null: no EMA.")
    ema_warmup: bool = Field(True, description="Ramp the EMA decay up over early updates.")
    loss_weighting: Literal["uniform", "min-snr"] = Field(
        "uniform", description="Per-timestep loss weight (min-snr: Hang et al. 2023).")
    min_snr_gamma: float = Field(5.0, gt=0, description="gamma of min-SNR weighting.")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="auto picks cuda > mps > cpu.")
    log_every: int = Field(50, ge=1, description="Record the training loss every N steps.")
    checkpoint_every: int = Field(10, ge=1, description="Checkpoint and evaluate every N epochs.")
    best_metric: str = Field("test-loss", description="Metric that selects the best checkpoint.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after N evaluations without improvement; null: never.")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: forward and loss under torch.autocast in bfloat16 "
        "(weights, optimiser and EMA stay float32).")
    compile: bool = Field(False, description="Train through torch.compile(model) (the "
                          "checkpoints hold the plain module's weights).")


class SampleConfig(ComponentConfig):
    num_steps: int = Field(50, ge=1, description="Sampler steps.")
    num_samples: int = Field(5000, ge=2, description="Samples for the final metrics.")
    batch_size: int | None = Field(
        None, ge=1, description="Samples drawn per batch; null: 5000 for vectors, 250 for "
        "images.")
    use_ema: bool = Field(True, description="Sample from the EMA weights when there are some.")
    progression_samples: int = Field(1000, ge=0, description="Samples kept along the "
                                     "trajectory for the denoising-progression plot.")


class EvalConfig(ComponentConfig):
    metrics: list[str] = Field(default_factory=list,
                               description="Metrics for the final evaluation (sample metrics "
                               "and model metrics such as test-loss).")
    floor_draws: int = Field(5, ge=0, description="Real-vs-real draws for each sample "
                             "metric's floor: 0 (no floors) or at least 5.")
    during_training: list[str] = Field(default_factory=list,
                                       description="Metrics at each checkpoint (test-loss is "
                                       "always computed).")
    during_training_samples: int = Field(1000, ge=2,
                                         description="Samples for metrics at checkpoints.")
    reconstruction_metrics: list[str] = Field(
        default_factory=list, description="Paired metrics (psnr, ssim, lpips) between "
        "held-out images and the model's one-step x0 estimate from them noised to "
        "reconstruction_t.")
    reconstruction_t: int = Field(200, ge=0, description="Timestep of the reconstruction "
                                  "evaluation.")
    reconstruction_examples: int = Field(1000, ge=1, description="Held-out images for the "
                                         "reconstruction evaluation.")
    metric_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Config of each metric by name, e.g. "
        "{fid: {feature_extractor: lenet-mnist}, test-loss: {examples: 500}}.")

    @field_validator("floor_draws")
    @classmethod
    def _enough_floor_draws(cls, value: int) -> int:
        if 0 < value < 5:
            raise ValueError("a floor needs at least 5 real-vs-real draws (0 turns floors "
                             "off)")
        return value


class RunConfig(ComponentConfig):
    name: str | None = Field(None, description="Run name (default: dataset-denoiser-time).")
    seed: int = Field(0, description="Seeds data order, init, noise and sampling.")
    dataset: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="two-moons"))
    denoiser: ComponentChoice = Field(
        default_factory=lambda: ComponentChoice(name="residual-mlp"))
    scheduler: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="linear"))
    sampler: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="ddim"))
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


COMPONENT_SECTIONS = ("dataset", "denoiser", "scheduler", "sampler")

#: Metrics a run evaluates when its config names none, by dataset, with their options.
#: MNIST gets FID and a classifier Inception Score on the bundled LeNet features (offline);
#: other image sets get pixel-space MMD (crude; FID with Inception needs its weights file).
DEFAULT_METRICS: dict[str, list[str]] = {
    "two-moons": ["moons-overall", "mmd-rbf"],
    "gmm-ring": ["mode-coverage", "mmd-rbf", "wasserstein"],
    "mnist": ["fid", "isc"],
    "cifar10": ["mmd-rbf"],
    "digits": ["mmd-rbf"],
    "image-folder": ["mmd-rbf"],
}
DEFAULT_METRIC_OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "mnist": {"fid": {"feature_extractor": "lenet-mnist"},
              "isc": {"feature_extractor": "lenet-mnist"}},
}
FALLBACK_METRICS = ["mmd-rbf", "sample-stats"]


def default_config_data() -> dict[str, Any]:
    """The embedded default run (``diffctl run`` with no arguments), as a raw dict."""
    return load_yaml(Path(__file__).with_name("default.yaml"))


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalars and lists (``1e-3``, ``true``, ``[a, b]``, ``null``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.field=value`` overrides to a raw config dict (nested keys allowed).

    Setting a component section's ``name`` to a different component (``denoiser.name=mlp``)
    starts that section afresh: options of the old component do not carry over. Name changes
    apply first, so ``denoiser.hidden=64 denoiser.name=mlp`` keeps the ``hidden`` override.
    """
    parsed = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got {item!r}")
        parsed.append((key.strip(), value))
    renames = {key for key, _ in parsed
               if key.endswith(".name") and key.partition(".")[0] in COMPONENT_SECTIONS}
    for key, value in parsed:
        if key in renames:
            section, new_name = key.partition(".")[0], parse_value(value)
            current = data.get(section)
            if not isinstance(current, dict) or current.get("name") != new_name:
                data[section] = {"name": new_name}
    for key, value in parsed:
        if key in renames:
            continue
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UsageError(f"--set {key}: '{part}' is not a section")
            node = child
        node[parts[-1]] = parse_value(value)
    return data


def load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"invalid YAML in {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the top level must be a mapping")
    return data


def resolve(data: dict[str, Any], registry=None) -> RunConfig:
    """Validate a raw config and fill every component's defaults from the registry."""
    from diffctl.registry import get_registry

    registry = registry or get_registry()
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, "run")) from None
    resolved: dict[str, BaseModel] = {}
    for section in COMPONENT_SECTIONS:
        choice: ComponentChoice = getattr(config, section)
        spec = registry.get(section, choice.name)
        resolved[section] = spec.make_config(choice.options())
        full = resolved[section].model_dump(mode="json")
        setattr(config, section, ComponentChoice(name=choice.name, **full))
    if not config.eval.metrics:
        config.eval.metrics = list(DEFAULT_METRICS.get(config.dataset.name, FALLBACK_METRICS))
        for metric, options in DEFAULT_METRIC_OPTIONS.get(config.dataset.name, {}).items():
            if metric in config.eval.metrics:
                config.eval.metric_options[metric] = {
                    **options, **config.eval.metric_options.get(metric, {})}
    # every metric named anywhere is validated with its options (a typo is an error); a
    # dataset config may give defaults for metrics that need to know its distribution
    # (gmm-ring: mode-coverage's modes), which the run's own options override
    named = [*config.eval.metrics, *config.eval.during_training,
             *config.eval.reconstruction_metrics, *config.eval.metric_options]
    dataset_defaults = getattr(resolved["dataset"], "metric_defaults", dict)()
    for metric in dict.fromkeys(named):
        spec = registry.get("metric", metric)
        options = spec.make_config({**dataset_defaults.get(metric, {}),
                                    **config.eval.metric_options.get(metric, {})})
        config.eval.metric_options[metric] = options.model_dump(mode="json")
    _check_consistency(config)
    return config


def _check_consistency(config: RunConfig) -> None:
    """Settings that are valid one by one but not together: one line each, before any work."""
    steps = config.sample.num_steps
    T = config.scheduler.options().get("num_train_timesteps")
    if T is not None and steps > T:
        raise ConfigError(f"sample.num_steps {steps} exceeds the schedule's "
                          f"num_train_timesteps {T}")
    best = config.train.best_metric
    if best != "test-loss" and best not in config.eval.during_training:
        raise ConfigError(f"train.best_metric '{best}' is not computed at checkpoints: use "
                          "test-loss or add it to eval.during_training "
                          f"(now {config.eval.during_training})")


def dump(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
