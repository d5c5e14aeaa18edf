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

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from diffctl.component_info import DatasetInfo, DenoiserInfo
from diffctl.config import ComponentConfig, validation_message
from diffctl.errors import ConfigError, UsageError
from diffctl.seeds import MAX_SEED
from diffctl.training.config import TrainConfig


class ComponentChoice(BaseModel):
    """``name`` picks the registered component; other keys are its config fields."""

    model_config = ConfigDict(extra="allow")
    name: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


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
                             "metric's floor: 0 (no floors) or at least 5 (at least 20 "
                             "for zero-centred estimators such as mmd-rbf and kid).")
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


class DistillConfig(ComponentConfig):
    """Train the run's denoiser as a student of a trained teacher run (output matching of the
    denoiser, after Hinton et al. 2015's matching of a teacher; see
    :mod:`diffctl.training.distill`)."""

    teacher: str = Field(description="Run directory of the teacher (a trained diffctl run "
                         "with the same schedule, prediction type, data shape and classes); "
                         "a relative path is read from the working directory.")
    checkpoint: str = Field("best", description="Teacher checkpoint: best, last or a folder "
                            "name such as epoch-0040.")
    use_ema: bool = Field(True, description="Use the teacher's EMA weights when it has them.")
    weight: float = Field(1.0, ge=0.0, le=1.0, description="Share of the teacher term: loss "
                          "= weight * |s - teacher|^2 + (1 - weight) * |s - target|^2 (1: the "
                          "teacher alone, 0: the data alone).")


#: the schedule of a run config that names none (also of a scheduler section with options
#: but no name)
DEFAULT_SCHEDULER = "linear"


class RunConfig(ComponentConfig):
    name: str | None = Field(None, description="Run name (default: dataset-denoiser-time).")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="The run's seed: every random "
                      "stream (data, init, training, sampling, floors) derives from it "
                      "(diffctl.seeds).")
    dataset: ComponentChoice
    denoiser: ComponentChoice
    scheduler: ComponentChoice = Field(
        default_factory=lambda: ComponentChoice(name=DEFAULT_SCHEDULER))
    sampler: ComponentChoice = Field(default_factory=lambda: ComponentChoice(name="ddim"))
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    distill: DistillConfig | None = Field(None, description="Distil from a teacher run "
                                          "(null: train on the data alone).")


COMPONENT_SECTIONS = ("dataset", "denoiser", "scheduler", "sampler")
RECIPE_SECTIONS = ("scheduler", "denoiser", "train", "sample", "sampler", "eval")
#: Sampler fields that belong to the schedule, the data and the model rather than to the
#: solver: where the time grid starts and ends, how x0 estimates are clamped, the guidance
#: scale. A recipe's sampler section sets them for whichever sampler a run uses, and a run's
#: values go with its model to any other sampler (sample, compare, export); a sampler's other
#: options were tuned for that solver and stay with it.
SAMPLER_SHARED_FIELDS = ("spacing", "final_alpha_one", "clip_denoised", "guidance_scale")


def default_config_data() -> dict[str, Any]:
    """The embedded default of ``diffctl run`` with no arguments, as a raw dict: the core's
    schedule and sampler; dataset, denoiser and recipe are filled in by :func:`compose`."""
    return load_yaml(Path(__file__).with_name("default.yaml"))


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def default_dataset(registry, data: str = "points") -> str:
    """The dataset that declares itself the default of data kind ``data``."""
    for spec in registry.registered("dataset"):
        if isinstance(spec.info, DatasetInfo) and spec.info.default and spec.info.data == data:
            return spec.name
    raise ConfigError(f"no dataset is registered as the default for {data}; pass --dataset")


def fitting_denoiser(registry, data: str) -> str:
    """The denoiser that declares itself the default for data kind ``data``."""
    for spec in registry.registered("denoiser"):
        info = spec.info
        if isinstance(info, DenoiserInfo) and info.default and data in info.data:
            return spec.name
    raise ConfigError(f"no denoiser is registered as the default for {data}; pass --denoiser")


def dataset_info(registry, name: str) -> DatasetInfo | None:
    """What dataset ``name`` declared at registration (None: nothing)."""
    info = registry.get("dataset", name).info
    return info if isinstance(info, DatasetInfo) else None


def compose(data: dict[str, Any] | None = None, *, registry=None, dataset: str | None = None,
            denoiser: str | None = None, scheduler: str | None = None,
            sampler: str | None = None, metrics: list[str] | None = None,
            seed: int | None = None, steps: int | None = None,
            overrides: list[str] | tuple[str, ...] = (),
            values: list[tuple[str, Any]] | tuple[tuple[str, Any], ...] = ()) -> RunConfig:
    """A resolved run config from a config file's data (or the embedded default), component
    choices, then ``--set`` overrides, then already parsed ``values`` (``[("distill",
    None)]``, as a sweep point sets them): what ``diffctl run`` builds from its arguments.

    Without a config file, defaults follow the components a user names: an image denoiser
    with no dataset gets the default image dataset (``digits``), a dataset with no denoiser
    the default denoiser for its data kind, and both bring the CPU-sized recipe they declare
    at registration (docs/design.md, "Defaults follow the components").
    """
    from diffctl.registry import get_registry

    registry = registry or get_registry()
    from_file = data is not None
    data = dict(data) if from_file else default_config_data()
    for section, name in (("dataset", dataset), ("denoiser", denoiser),
                          ("scheduler", scheduler), ("sampler", sampler)):
        if name:
            data[section] = {"name": name}
    if metrics:
        data.setdefault("eval", {})["metrics"] = list(metrics)
    if seed is not None:
        data["seed"] = seed
    if steps is not None:
        data.setdefault("sample", {})["num_steps"] = steps
    if not from_file:
        data = with_recipes(data, registry)
    data = apply_values(apply_overrides(data, list(overrides)), list(values))
    if not from_file:  # the sampler's options once --set has had its say on the sampler
        data = with_recipes(data, registry, sampler=True)
    return resolve(data, registry)


def with_recipes(data: dict[str, Any], registry, *, sampler: bool = False) -> dict[str, Any]:
    """Fill the dataset and denoiser a config leaves open and apply their declared recipes
    under the config's own values: every section but ``sampler``, or with ``sampler`` only
    that one. A ``sampler`` or ``scheduler`` section applies only when the config names no
    such component or the one the recipe names (its options were tuned for it; ``compose``
    applies the sampler's after ``--set``, which may change the sampler); of a sampler
    section for another sampler, the :data:`SAMPLER_SHARED_FIELDS` still apply."""
    data = dict(data)
    for section in COMPONENT_SECTIONS:
        if data.get(section) is None:
            continue
        if not isinstance(data[section], dict):
            raise ConfigError(f"invalid run config: {section} must be a mapping with a name")
        name = data[section].get("name")
        if name is not None and not isinstance(name, str):
            raise ConfigError(f"invalid run config: {section}.name must be a component name, "
                              f"got {name!r}")
    ds_name = (data.get("dataset") or {}).get("name")
    dn_name = (data.get("denoiser") or {}).get("name")
    if ds_name is None:
        kind = "points"
        if dn_name is not None:
            info = registry.get("denoiser", dn_name).info
            kind = info.data[0] if isinstance(info, DenoiserInfo) else "points"
        ds_name = default_dataset(registry, kind)
        data["dataset"] = {"name": ds_name, **(data.get("dataset") or {})}
    ds_info = dataset_info(registry, ds_name)
    kind = ds_info.data if ds_info else ""
    if dn_name is None:
        dn_name = fitting_denoiser(registry, kind or "points")
        data["denoiser"] = {"name": dn_name, **(data.get("denoiser") or {})}
    recipe: dict[str, Any] = dict(ds_info.recipe) if ds_info else {}
    dn_info = registry.get("denoiser", dn_name).info
    if isinstance(dn_info, DenoiserInfo):
        own = dn_info.recipe.get(ds_name) or dn_info.recipe.get(kind) or {}
        recipe = _deep_merge(recipe, own)
    for section, values in recipe.items():
        if section not in RECIPE_SECTIONS:
            raise ConfigError(f"recipe section {section!r} is not one of "
                              f"{', '.join(RECIPE_SECTIONS)}")
        if (section == "sampler") != sampler:
            continue
        # a sampler or schedule section applies only to the component it names, except the
        # sampler's time grid and x0 clamp, which belong to the schedule and the data
        if section in ("sampler", "scheduler") and (
                (data.get(section) or {}).get("name") or values.get("name")) != values.get("name"):
            if section == "scheduler":
                continue
            values = shared_sampler_fields(values, data["sampler"]["name"], registry)
        data[section] = _deep_merge(values, data.get(section) or {})
    return data


def shared_sampler_fields(options: dict[str, Any], sampler: str, registry) -> dict[str, Any]:
    """The :data:`SAMPLER_SHARED_FIELDS` among ``options`` that sampler ``sampler`` has."""
    fields = registry.get("sampler", sampler).config.model_fields
    return {k: v for k, v in options.items() if k in SAMPLER_SHARED_FIELDS and k in fields}


def sampler_options_for(config: RunConfig, sampler: str, registry) -> dict[str, Any]:
    """The options a run gives ``sampler``: all its own sampler's when it is that sampler, else
    the shared fields (:data:`SAMPLER_SHARED_FIELDS`) of the run's sampler."""
    options = config.sampler.options()
    if sampler == config.sampler.name:
        return options
    return shared_sampler_fields(options, sampler, registry)


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
        parsed.append((key.strip(), parse_value(value)))
    return apply_values(data, parsed)


def apply_values(data: dict[str, Any], values: list[tuple[str, Any]]) -> dict[str, Any]:
    """:func:`apply_overrides` with the values already parsed (``("distill", None)``,
    ``("denoiser.size_factor", 0.1)``): what sweeps use for their points."""
    renames = {key for key, _ in values
               if key.endswith(".name") and key.partition(".")[0] in COMPONENT_SECTIONS}
    for key, value in values:
        if key in renames:
            section = key.partition(".")[0]
            current = data.get(section)
            if not isinstance(current, dict) or current.get("name") != value:
                data[section] = {"name": value}
    for key, value in values:
        if key in renames:
            continue
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UsageError(f"--set {key}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing, unreadable or malformed file is one error."""
    from diffctl.runs.directory import read_text

    if not Path(path).is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(read_text(Path(path), "config file")) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"invalid YAML in {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the top level must be a mapping")
    return data


def resolve(data: dict[str, Any], registry=None) -> RunConfig:
    """Validate a raw config and fill every default: components' configs from the registry,
    a missing dataset or denoiser (and its recipe), default metrics and their options. Every
    metric is checked against the data it would measure, so a run that cannot be evaluated
    stops here, before anything is written."""
    from diffctl.registry import get_registry

    registry = registry or get_registry()
    if not isinstance(data, dict):
        raise ConfigError("invalid run config: the top level must be a mapping")
    if any(not isinstance(data.get(s), dict) or "name" not in data[s]
           for s in ("dataset", "denoiser")):
        data = with_recipes(with_recipes(data, registry), registry, sampler=True)
    if isinstance(data.get("scheduler"), dict) and "name" not in data["scheduler"]:
        # options without a name (--set scheduler.num_train_timesteps=500) are the default
        # schedule's
        data = {**data, "scheduler": {"name": DEFAULT_SCHEDULER, **data["scheduler"]}}
    user_options = (data.get("eval") or {}).get("metric_options") or {}
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
    conditional = bool(config.denoiser.options().get("num_classes"))
    info = dataset_info(registry, config.dataset.name)
    kind = info.data if info else None
    if not config.eval.metrics:
        if kind is None:  # a dataset that declares nothing: ask the data itself
            kind = _built_data_kind(config, registry)
        config.eval.metrics = default_metrics(registry, config.dataset.name, conditional, kind)
    # options of every metric named anywhere, validated (a typo is an error): the metric's
    # defaults, then what it declares for this dataset or data kind, then the dataset
    # config's own (gmm-ring: mode-coverage's modes), then the run's
    named = [*config.eval.metrics, *config.eval.during_training,
             *config.eval.reconstruction_metrics, *config.eval.metric_options]
    dataset_defaults = getattr(resolved["dataset"], "metric_defaults", dict)()
    for metric in dict.fromkeys(named):
        spec = registry.get("metric", metric)
        declared = registry.metric_info(metric).default_for
        for_data = declared.get(config.dataset.name, declared.get(kind or "", {}))
        options = spec.make_config({**for_data, **dataset_defaults.get(metric, {}),
                                    **config.eval.metric_options.get(metric, {})})
        config.eval.metric_options[metric] = options.model_dump(mode="json")
    _check_loggers(config, registry)
    _check_consistency(config)
    check_metrics(config, registry, user_options, kind)
    return config


def _check_loggers(config: RunConfig, registry) -> None:
    """Every logger registered, jsonl first, options validated by each logger's config."""
    from diffctl.runs.loggers import logger_names

    names = logger_names(config.train.loggers)
    for name in [*names, *config.train.logger_options]:
        spec = registry.get("logger", name)
        options = spec.make_config(config.train.logger_options.get(name, {}))
        if name in config.train.logger_options:
            config.train.logger_options[name] = options.model_dump(mode="json")
    config.train.loggers = names


def _built_data_kind(config: RunConfig, registry) -> str:
    from diffctl.component_info import data_kind
    from diffctl.runs.components import build_dataset

    return data_kind(tuple(build_dataset(config, registry).sample_shape))


def default_metrics(registry, dataset: str, conditional: bool = False,
                    kind: str | None = None) -> list[str]:
    """The metrics a run on ``dataset`` evaluates when its config names none: the dataset's
    own declared ones and every metric that declares itself a default for this dataset; if
    there are none, those that declare themselves a default for its data kind (``kind``, or
    what the dataset declares). Metrics that need class labels are left out for an
    unconditional model."""
    info = dataset_info(registry, dataset)
    kind = kind or (info.data if info else None)
    specs = registry.registered("metric")

    def wanted(key: str) -> list[str]:
        return [s.name for s in specs if key in registry.metric_info(s.name).default_for]

    names = [*(info.default_metrics if info else ()), *wanted(dataset)]
    if not names and kind is not None:
        names = wanted(kind)
    return [n for n in dict.fromkeys(names)
            if conditional or "labels" not in registry.metric_info(n).needs]


def check_metrics(config: RunConfig, registry, user_options: dict[str, Any] | None = None,
                  kind: str | None = None) -> None:
    """Refuse, with one line, every metric the run's data cannot give (docs/design.md,
    "Component metadata"): a data kind it does not measure, paired metrics outside the
    reconstruction evaluation (and sample metrics inside it), class labels from an
    unconditional model, mixture modes the dataset does not have."""
    info = dataset_info(registry, config.dataset.name)
    kind = info.data if info else kind
    provides = set(info.provides) if info else set()
    conditional = bool(config.denoiser.options().get("num_classes"))
    user_options = user_options or {}
    places = (("eval.metrics", config.eval.metrics, ("samples", "model")),
              ("eval.during_training", config.eval.during_training, ("samples", "model")),
              ("eval.reconstruction_metrics", config.eval.reconstruction_metrics, ("pairs",)))
    for where, names, inputs in places:
        for name in names:
            metric = registry.metric_info(name)
            problem = metric_problem(name, metric, kind, config.dataset.name, provides,
                                     conditional, user_options.get(name) or {})
            if problem is None and metric.input not in inputs:
                problem = (f"metric '{name}' compares paired images (a reconstruction with "
                           "its original); use it in eval.reconstruction_metrics"
                           if metric.input == "pairs" else
                           f"metric '{name}' does not compare paired images; "
                           "eval.reconstruction_metrics takes psnr, ssim, lpips and the like")
            if problem:
                raise ConfigError(f"{where}: {problem}")


def metric_problem(name: str, metric, kind: str | None, dataset: str, provides: set[str],
                   conditional: bool, options: dict[str, Any]) -> str | None:
    """Why metric ``name`` cannot measure this data, or None when it can."""
    if kind is not None and kind not in metric.data:
        return (f"metric '{name}' measures {' or '.join(metric.data)}, but dataset "
                f"'{dataset}' has {kind}")
    if "labels" in metric.needs and not conditional:
        return (f"metric '{name}' needs class-conditional samples; set denoiser.num_classes "
                "(a class-conditional model)")
    if "modes" in metric.needs and "modes" not in provides and not (
            {"modes", "num_modes", "radius"} & set(options)):
        return (f"metric '{name}' needs the mixture modes of the data, and dataset "
                f"'{dataset}' has none; give them in eval.metric_options.{name}")
    return None


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


#: Fields added after run directories already existed, with the default that reproduces the
#: old behaviour: a checkpoint written before a field existed recorded a fingerprint without
#: it, so resuming accepts the fingerprint without any of these keys at that value.
LATER_FIELDS: dict[str, str] = {"distill.": "None", "train.max_batch_size.": "1024",
                                "denoiser.size_factor.": "1.0", "train.grad_accum_steps.": "1",
                                "train.checkpoint_every_steps.": "None"}
#: Fields that change how fast a run trains, never what it computes: not fingerprinted, so a
#: run may be resumed with other values (the streaming and in-memory paths draw the same
#: batches, activation checkpointing recomputes the same values, and the number of decoding
#: workers changes nothing either).
UNFINGERPRINTED = (("train", "num_workers"), ("dataset", "streaming"),
                   ("denoiser", "activation_checkpointing"))


def config_fingerprint(config: RunConfig) -> str:
    """sha256 of the resolved config without ``train.epochs`` (which ``resume(epochs=...)``
    may raise): a checkpoint records it, and resuming under another config is refused."""
    return _fingerprint(_fingerprint_items(config))


def config_fingerprints(config: RunConfig) -> set[str]:
    """Every fingerprint a checkpoint of this config may have recorded: the current one and
    those of earlier versions, which lacked some of :data:`LATER_FIELDS` (at their default)."""
    from itertools import combinations

    items = _fingerprint_items(config)
    later = [kv for kv in items if LATER_FIELDS.get(kv[0]) == kv[1]]
    found = set()
    for k in range(len(later) + 1):
        for dropped in combinations(later, k):
            found.add(_fingerprint([kv for kv in items if kv not in dropped]))
    return found


def _fingerprint_items(config: RunConfig) -> list[tuple[str, str]]:
    data = config.model_dump(mode="json")
    data["train"].pop("epochs", None)
    data.pop("name", None)
    for section, key in UNFINGERPRINTED:
        if isinstance(data.get(section), dict):
            data[section].pop(key, None)
    return sorted(_flatten(data))


def _fingerprint(items: list[tuple[str, str]]) -> str:
    return hashlib.sha256(repr(items).encode()).hexdigest()


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(data, dict):
        return [kv for k, v in data.items() for kv in _flatten(v, f"{prefix}{k}.")]
    return [(prefix, repr(data))]
