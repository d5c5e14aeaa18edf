"""Several samplers on one checkpoint, every one from the same x_T: samples, time, metric.

A comparison is a list of :class:`SamplerSpec` (sampler, steps, options), written on the
command line as ``name[:steps][:field=value...]`` separated by commas, e.g.
``ddim:50,heun:20,ancestral:all,ddim:50:eta=1``; ``all`` means every one of the schedule's
T steps and a missing step count the run's ``sample.num_steps``. :func:`default_specs` is the
comparison of the reference workflows: ancestral and deterministic DDIM (eta 0) over all T
steps, DDIM at 50, Heun and DPM-Solver++(2M) at 20 steps.

Every row draws sample ``i`` from the x_T of index ``i`` of the same sampling seed (the
noise is per sample, docs/design.md "Per-sample noise"), so the rows differ only by the
sampler. The grid fields every sampler shares (``spacing``, ``final_alpha_one``,
``clip_denoised``, ``guidance_scale``) are the run's; a spec's own fields go on top.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffctl.errors import UsageError
from diffctl.runs.config import shared_sampler_fields


@dataclass(frozen=True)
class SamplerSpec:
    """One row of a comparison: a sampler, its step count and its own options."""

    name: str
    steps: int
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def label(self) -> str:
        """``ddim (eta=0)``: the sampler and the options that set it apart."""
        extra = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in self.options)
        return f"{self.name} ({extra})" if extra else self.name


def default_specs(num_train_timesteps: int) -> list[SamplerSpec]:
    """Ancestral and deterministic DDIM over all T steps, DDIM 50, Heun and DPM-Solver++ at
    20 (step counts capped at T; duplicates dropped)."""
    T = num_train_timesteps
    specs = [SamplerSpec("ancestral", T), SamplerSpec("ddim", T, (("eta", 0.0),)),
             SamplerSpec("ddim", min(50, T), (("eta", 0.0),)),
             SamplerSpec("heun", min(20, T)), SamplerSpec("dpmpp-2m", min(20, T))]
    return list(dict.fromkeys(specs))


def parse_specs(text: str, num_train_timesteps: int, default_steps: int) -> list[SamplerSpec]:
    """``ddim:50,heun:20,ancestral:all,ddim:50:eta=1`` as specs (see the module docstring);
    a malformed item is one :class:`UsageError` naming it."""
    from diffctl.runs.config import parse_value

    specs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, *rest = item.split(":")
        steps = default_steps
        if rest and "=" not in rest[0]:
            word = rest.pop(0)
            if word == "all":
                steps = num_train_timesteps
            elif word.isdigit() and int(word) >= 1:
                steps = int(word)
            else:
                raise UsageError(f"comparison item {item!r}: the step count must be a positive "
                                 "integer or 'all'")
        options = []
        for pair in rest:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise UsageError(f"comparison item {item!r}: expected field=value, got "
                                 f"{pair!r}")
            options.append((key, parse_value(value)))
        if num_train_timesteps and steps > num_train_timesteps:
            raise UsageError(f"comparison item {item!r}: {steps} steps exceed the schedule's "
                             f"{num_train_timesteps}")
        specs.append(SamplerSpec(name.strip(), steps, tuple(options)))
    if not specs:
        raise UsageError("the sampler comparison is empty; e.g. ddim:50,heun:20")
    return specs


@dataclass
class SamplerRow:
    """What one sampler drew: every sample, the x_T of the first ``show``, time and metric."""

    spec: SamplerSpec
    options: dict[str, Any]  # every option the sampler was built with
    deterministic: bool
    samples: torch.Tensor
    x_T: torch.Tensor  # the starting noise of the first samples, as the sampler received it
    seconds: float
    value: float | None = None  # the headline metric on all the row's samples

    @property
    def sampler(self) -> str:
        return self.spec.name

    @property
    def steps(self) -> int:
        return self.spec.steps


@dataclass
class SamplerComparison:
    """What :meth:`diffctl.runs.Run.compare_samplers` returns."""

    checkpoint: str
    seed: int
    num_samples: int
    show: int
    metric: str | None
    higher_is_better: bool | None
    floor: dict[str, Any] | None
    rows: list[SamplerRow] = field(default_factory=list)
    real: torch.Tensor | None = None
    path: Path | None = None  # the JSON summary written into the run's samples/

    def summary(self) -> dict[str, Any]:
        """The comparison without tensors (what the JSON summary holds)."""
        return {"checkpoint": self.checkpoint, "seed": self.seed,
                "num_samples": self.num_samples, "shown": self.show, "metric": self.metric,
                "higher_is_better": self.higher_is_better, "floor": self.floor,
                "rows": [{"sampler": r.sampler, "label": r.spec.label, "steps": r.steps,
                          "options": r.options, "deterministic": r.deterministic,
                          "seconds": round(r.seconds, 4), "value": r.value}
                         for r in self.rows]}

    def write(self, path: Path) -> Path:
        from diffctl.runs.directory import write_atomic

        write_atomic(path, json.dumps(self.summary(), indent=1))
        self.path = path
        return path


class FirstNoise:
    """A trajectory stand-in for :func:`diffctl.runs.sampling.generate` that keeps the x_T
    of the first batch exactly as it was handed to the sampler."""

    def __init__(self) -> None:
        self.x_T: torch.Tensor | None = None

    def start(self, x_T: torch.Tensor) -> None:
        if self.x_T is None:
            self.x_T = x_T.detach().cpu().clone()

    def __call__(self, step: Any) -> None:
        pass


def specs_of(samplers: str | list[SamplerSpec] | None, num_train_timesteps: int,
             default_steps: int) -> list[SamplerSpec]:
    """The specs of a comparison: given, parsed from text, or the default list."""
    if samplers is None:
        if not num_train_timesteps:
            raise UsageError("this run's schedule does not say its T; name the samplers and "
                             "their steps (e.g. ddim:50,heun:20)")
        return default_specs(num_train_timesteps)
    if isinstance(samplers, str):
        return parse_specs(samplers, num_train_timesteps, default_steps)
    return list(samplers)


def compare_samplers(run: Any, samplers: str | list[SamplerSpec] | None = None, *,
                     checkpoint: str = "last", num_samples: int | None = None,
                     seed: int | None = None, show: int = 10, device: str | None = None,
                     metrics: bool = True, save: bool = True, strict: bool = False,
                     on_progress: Callable[[int, int], None] | None = None,
                     on_stage: Callable[[str, int, int], None] | None = None
                     ) -> SamplerComparison:
    """The work of :meth:`diffctl.runs.Run.compare_samplers` (see there) on ``run``."""
    from diffctl.runs.components import build_sampler
    from diffctl.runs.evaluation import (
        bind_stage,
        check_sample_count,
        metric_floors,
        metric_options_on,
        metric_values,
    )
    from diffctl.runs.resources import check_samples
    from diffctl.runs.sampling import generate
    from diffctl.seeds import stream_seed

    cfg, registry = run.config, run.registry
    T = int(cfg.scheduler.options().get("num_train_timesteps") or 0)
    specs = specs_of(samplers, T, cfg.sample.num_steps)
    n = cfg.sample.num_samples if num_samples is None else num_samples
    seed = cfg.seed if seed is None else seed
    if n < 1:
        raise UsageError(f"--num-samples must be at least 1, got {n}")
    if show < 1:
        raise UsageError(f"a comparison shows at least 1 sample per sampler, got {show}")
    for spec in specs:
        registry.get("sampler", spec.name)  # an unknown name fails before any sampling
        if spec.steps < 1 or (T and spec.steps > T):
            raise UsageError(f"{spec.label}: steps must be in [1, {T or 'T'}], got "
                             f"{spec.steps}")
    loaded = run.load_model(checkpoint, device=device, strict=strict)
    components, model = loaded.components, loaded.model
    check_samples(n, tuple(components.dataset.sample_shape), "--num-samples")
    headline = next((m for m in cfg.eval.metrics if registry.metric_info(m).input == "samples"),
                    None) if metrics else None
    if headline is not None:
        check_sample_count(components.dataset, n)
    run_options = cfg.sampler.options()
    built = []
    for spec in specs:
        # the run's grid, clamp and guidance, not its sampler's own options (even for a row of
        # the run's sampler: each row is the sampler's defaults plus what the row sets)
        options = shared_sampler_fields(run_options, spec.name, registry) | dict(spec.options)
        built.append((spec, build_sampler(spec.name, options, model, registry)))
    batch = run._sample_batch(components)
    per_step = -(-n // batch)  # progress: sampler steps summed over batches and rows
    total = per_step * sum(spec.steps for spec in specs)
    result = SamplerComparison(loaded.checkpoint.name, seed, n, min(show, n), headline,
                               registry.metric_info(headline).higher_is_better
                               if headline else None, None)
    options_on = metric_options_on(cfg, registry, loaded.device)
    if headline is not None or not components.images:
        result.real = components.dataset.reference(n, stream_seed(seed, "reference"))
    done = 0
    for spec, sampler in built:
        first = FirstNoise()

        def report(d: int, _total: int, offset: int = done) -> None:
            if on_progress is not None:
                on_progress(min(offset + d, total), total)

        started = time.perf_counter()
        samples = generate(components, model, n, spec.steps, stream_seed(seed, "sample"),
                           batch, first, None, report, sampler=sampler)  # type: ignore[arg-type]
        row = SamplerRow(spec, sampler.config.model_dump(mode="json"),
                         bool(getattr(sampler, "deterministic", False)), samples,
                         first.x_T[:result.show],  # type: ignore[index]
                         time.perf_counter() - started)
        done += per_step * spec.steps
        if headline is not None:
            row.value = metric_values(registry, [headline], samples, result.real, options_on,
                                      on_features=bind_stage(on_stage, "features"))[headline]
        result.rows.append(row)
    if headline is not None and cfg.eval.floor_draws:
        result.floor = metric_floors(registry, [headline], options_on, components.dataset, n,
                                     cfg.eval.floor_draws, seed,
                                     on_progress=bind_stage(on_stage, "floors"),
                                     on_features=bind_stage(on_stage, "features")).get(headline)
    if save:
        result.write(run.dir.comparison_path(result.checkpoint, n, seed, specs))
    return result
