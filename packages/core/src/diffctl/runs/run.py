"""A run as a library object: create or open it, train, resume, sample, evaluate.

The ``diffctl`` commands are thin shells over this class::

    from diffctl.runs import Run, compose

    run = Run.create(compose(), "runs/moons")     # validated; nothing written yet
    run.train()                                    # checkpoints, logs
    report = run.finalize()                        # samples, metrics and floors: metrics.json
    student = Run.create(compose(overrides=["denoiser.size_factor=0.1",
                                            "distill.teacher=runs/moons"]), "runs/small")
    student.train()                                # matches the teacher's predictions
    again = Run.open("runs/moons")
    result = again.sample(sampler="heun", steps=20, num_samples=1000)
    sweep = again.evaluate(checkpoints="all", workers=2)

Every method validates its inputs before it writes anything; every file name belongs to
:mod:`diffctl.runs.directory`; every random stream derives from the run's seed
(:mod:`diffctl.seeds`). Under ``torchrun`` all ranks train and only rank 0 writes.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffctl.errors import UsageError
from diffctl.registry import Registry, get_registry
from diffctl.runs import directory as files
from diffctl.runs.components import Components, build, build_dataset, build_sampler, num_classes
from diffctl.runs.config import (
    RunConfig,
    config_fingerprint,
    config_fingerprints,
    dump,
    resolve,
    sampler_options_for,
)
from diffctl.runs.directory import (
    RunDirectory,
    check_output_dir,
    default_run_dir,
    options_suffix,
)
from diffctl.runs.evaluation import (
    StageProgress,
    bind_stage,
    check_sample_count,
    final_evaluation,
    generated_labels,
    heldout_inputs,
    metric_floors,
    metric_options_on,
    metric_values,
    reference_labels,
    split_labels,
)
from diffctl.runs.floor_prefetch import FloorPrefetch, trains_on_one_thread, worth_prefetching
from diffctl.runs.loggers import RunLoggers
from diffctl.runs.resources import check_samples
from diffctl.runs.results import (
    EvalResult,
    InpaintResult,
    LoadedModel,
    SampleResult,
)
from diffctl.runs.sampling import default_batch_size, generate, inpaint
from diffctl.runs.teacher import Teacher, load_teacher
from diffctl.samplers.base import Trajectory
from diffctl.seeds import stream_seed
from diffctl.training.checkpoint import (
    CheckpointError,
    list_checkpoints,
    list_partial_checkpoints,
    load_checkpoint,
    partial_step,
    read_state,
    resolve_checkpoint,
    select_checkpoints,
    verify_checkpoint,
)
from diffctl.training.distributed import dist_info
from diffctl.training.streaming import StreamingData
from diffctl.training.trainer import StepEvent, Trainer, TrainState, pick_device

if TYPE_CHECKING:
    from diffctl.runs.sampler_comparison import SamplerComparison, SamplerSpec

log = logging.getLogger("diffctl")

Progress = Callable[[int, int], None] | None


class Run:
    """One run directory and the operations on it (see the module docstring)."""

    def __init__(self, path: Path | str, config: RunConfig, registry: Registry | None = None):
        self.dir = RunDirectory(path)
        self.config = config
        self.registry = registry or get_registry()
        self._trainer: Trainer | None = None
        self._components: Components | None = None  # what the trainer of this process uses
        self._loggers: RunLoggers | None = None
        self._teacher: Teacher | None = None
        self._floors: FloorPrefetch | None = None  # floors computed while training

    @property
    def path(self) -> Path:
        return self.dir.path

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def data_kind(self) -> str:
        """``points`` or ``images``: what the dataset declares (else what it builds)."""
        from diffctl.component_info import data_kind
        from diffctl.runs.config import dataset_info

        info = dataset_info(self.registry, self.config.dataset.name)
        if info is not None:
            return info.data
        return data_kind(tuple(build_dataset(self.config, self.registry).sample_shape))

    # -- creating and opening -----------------------------------------------------------------
    @classmethod
    def create(cls, config: RunConfig, out: Path | str | None = None, *,
               registry: Registry | None = None) -> Run:
        """A new run of ``config`` at ``out`` (default ``runs/<time>-<name>``). The location is
        checked now; nothing is written until :meth:`train`."""
        if out is None and dist_info().enabled:
            raise UsageError("under torchrun pass --out, so that every process uses the same "
                             "run directory")
        path = Path(out) if out is not None else default_run_dir(
            config.name or f"{config.dataset.name}-{config.denoiser.name}")
        if dist_info().is_main:
            check_output_dir(path)
        return cls(path, config, registry)

    @classmethod
    def open(cls, path: Path | str, *, registry: Registry | None = None) -> Run:
        """The run in ``path``, its config read and validated."""
        registry = registry or get_registry()
        directory = RunDirectory(path)
        text = directory.read_config_text()
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"run config {directory.file(files.CONFIG)} is damaged: "
                             f"{str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise UsageError(f"run config {directory.file(files.CONFIG)} is damaged: not a "
                             "mapping")
        try:
            config = resolve(data, registry)
        except UsageError as exc:
            raise UsageError(f"run config {directory.file(files.CONFIG)}: {exc}") from None
        return cls(path, config, registry)

    # -- training ------------------------------------------------------------------------------
    def train(self, *, on_step: Callable[[StepEvent], None] | None = None,
              evaluate_after: bool = True) -> dict[str, Any]:
        """Train from scratch. ``evaluate_after`` checks now, before training, that the final
        evaluation will have its real samples. A distilled run (``distill`` in the config)
        loads and checks its teacher first; every run checks that a training step fits in
        memory (``train.batch_size: auto`` picks the batch). All before anything is written.
        Returns the training summary."""
        main = dist_info().is_main
        if main and self.dir.exists():
            raise UsageError(f"run directory {self.path} already holds a run; use resume")
        components = build(self.config, self.registry)
        self._check_data(components, evaluate_after)
        self._teacher = load_teacher(self.config, components, self.registry, self.path)
        trainer = self._make_trainer(components, on_step)
        trainer.check_memory()
        if main:
            self.dir.write_config(dump(self.config))
        return self._fit(trainer, components, prefetch=evaluate_after)

    def resume(self, *, epochs: int | None = None, strict: bool = False,
               on_step: Callable[[StepEvent], None] | None = None) -> dict[str, Any]:
        """Continue from the newest intact checkpoint by step, an epoch checkpoint or a partial
        one (``train.checkpoint_every_steps``; a damaged newer one is skipped with a
        warning, or refused with ``strict``). ``epochs`` extends a run to that many epochs in
        all (config.yaml is updated; with a cosine schedule the learning rate then follows
        the new length). Log lines past the checkpoint are dropped and written again; lines
        up to it that were lost (a torn or cut log) are written again from the checkpoints."""
        if epochs is not None:
            trained = max((self._epoch_of(p) for p in [
                *list_checkpoints(self.dir.checkpoints),
                *list_partial_checkpoints(self.dir.checkpoints)]), default=0)
            if epochs < max(trained, 1):
                raise UsageError(f"--epochs {epochs} is below the {trained} epochs this run "
                                 "has already trained")
            self.config.train.epochs = epochs
        components = build(self.config, self.registry)
        self._check_data(components, True)
        self._teacher = load_teacher(self.config, components, self.registry, self.path)
        trainer = self._make_trainer(components, on_step)
        checkpoint, _ = self._resume_point(trainer, strict)
        trainer.resume(checkpoint)
        trainer.check_memory()
        if dist_info().is_main:
            # a log that cannot be read is refused now, before anything is written
            for log_name in (files.METRICS_LOG, files.TRAIN_LOG):
                files.read_jsonl(self.dir.file(log_name))
            if epochs is not None:
                self.dir.write_config(dump(self.config))
            self.dir.truncate_logs(trainer.state.step)
            self._repair_logs(trainer)
        return self._fit(trainer, components)

    def _repair_logs(self, trainer: Trainer) -> None:
        """Write again the log lines up to the resumed checkpoint (the trainer's step, which
        may be mid-epoch) that are missing: training losses from the checkpoint's own record
        of them (lr recomputed, rate unknown), and the evaluation record of each epoch
        checkpoint up to that step that lost its line (evaluated again)."""
        from diffctl.training.lr_schedule import lr_multiplier

        cfg = trainer.config
        logged = {r.get("step") for r in files.read_jsonl(self.dir.file(files.TRAIN_LOG))}
        for step, loss in trainer.state.losses:
            if step not in logged:
                lr = trainer.lr * lr_multiplier(step - 1, trainer.total_steps, cfg.lr_schedule,
                                                cfg.warmup_steps)
                self.dir.append_line(files.TRAIN_LOG, {
                    "step": step, "epoch": (step - 1) // trainer.steps_per_epoch,
                    "loss": loss, "lr": lr, "steps_per_second": None, "rewritten": True})
        recorded = {r.get("epoch") for r in self.dir.history()}
        for path in list_checkpoints(self.dir.checkpoints):
            try:
                state = read_state(path)
            except CheckpointError:
                continue
            # the epoch checkpoints up to the resumed one, which may be a partial one
            if state["epoch"] in recorded or state["step"] > trainer.state.step:
                continue
            model = copy.deepcopy(trainer.model)
            ema = copy.deepcopy(trainer.model) if trainer.ema is not None else None
            load_checkpoint(path, model, None, ema)
            at = TrainState(step=state["step"], epoch=state["epoch"])
            values = trainer.evaluate((ema or model).eval(), at) if trainer.evaluate else {}
            log.warning("the evaluation record of %s was missing from %s; evaluated it again",
                        path.name, files.METRICS_LOG)
            self.dir.append_line(files.METRICS_LOG, {
                "step": state["step"], "epoch": state["epoch"],
                "train_seconds": state.get("train_seconds"), "wall_seconds": None, **values,
                "rewritten": True})
        self.dir.sort_log(files.TRAIN_LOG)
        self.dir.sort_log(files.METRICS_LOG)

    @staticmethod
    def _epoch_of(checkpoint: Path) -> int:
        try:
            return int(read_state(checkpoint)["epoch"])
        except CheckpointError:
            return 0

    def fork(self, checkpoint: str, out: Path | str | None = None) -> Run:
        """A new run directory that continues this run from ``checkpoint``: the config,
        that checkpoint and the logs up to it are copied, this run is left as it is. Resume
        the returned run to continue training."""
        source = resolve_checkpoint(self.dir.checkpoints, checkpoint)
        state = read_state(source)
        path = Path(out) if out is not None else self.path.with_name(
            f"{self.path.name}-from-{source.name}")
        check_output_dir(path)
        target = RunDirectory(path)
        target.checkpoints.mkdir(parents=True, exist_ok=True)
        shutil.copytree(source, target.checkpoints / source.name)
        from diffctl.training.checkpoint import write_pointer

        write_pointer(target.checkpoints / "last", source.name)
        for name in (files.METRICS_LOG, files.TRAIN_LOG):
            if self.dir.file(name).exists():
                shutil.copy2(self.dir.file(name), target.file(name))
        target.truncate_logs(int(state["step"]))
        target.write_config(self.dir.read_config_text())
        return Run(path, self.config, self.registry)

    def _check_data(self, components: Components, evaluate_after: bool) -> None:
        """Fail now, not after training, when the data cannot give what the run needs."""
        ds = components.dataset
        if len(ds.test_tensor()) == 0:
            raise UsageError(f"dataset '{self.config.dataset.name}' has an empty test split; "
                             "test-loss and checkpoint selection need held-out data (raise "
                             "dataset.test_fraction)")
        if evaluate_after:
            check_samples(self.config.sample.num_samples, tuple(ds.sample_shape),
                          "sample.num_samples")
            check_sample_count(ds, self.config.sample.num_samples, "samples")
        if self.config.eval.during_training:
            check_sample_count(ds, self.config.eval.during_training_samples,
                               "samples at checkpoints")

    def _make_trainer(self, components: Components,
                      on_step: Callable[[StepEvent], None] | None) -> Trainer:
        """A trainer whose checkpoint evaluation computes test-loss and the chosen metrics;
        it checks the device and the batch against the processes before anything is
        written (it creates the checkpoint folder itself on the first save)."""
        config, registry = self.config, self.registry
        main = dist_info().is_main
        ds = components.dataset
        conditional = num_classes(components.denoiser) is not None
        during = [m for m in config.eval.during_training if m != "test-loss"]
        started = time.time()
        metadata: dict[str, Any] = {}

        def evaluate(model: torch.nn.Module, state: TrainState) -> dict[str, float]:
            inputs = heldout_inputs(config, components, model)
            options = metric_options_on(config, registry, next(model.parameters()).device)
            values = metric_values(registry, ["test-loss"], None, None, options, inputs)
            if during:
                n = config.eval.during_training_samples
                gen = generate(components, model, n, config.sample.num_steps,
                               stream_seed(config.seed, "checkpoint-sample"),
                               self._sample_batch(components))
                ref_seed = stream_seed(config.seed, "checkpoint-reference")
                real = ds.reference(n, ref_seed)
                values |= metric_values(registry, during, gen, real, options, inputs,
                                        metadata, generated_labels(model, n),
                                        reference_labels(ds, n, ref_seed))
            return values

        loggers = self._loggers = RunLoggers(registry, config.train.loggers,
                                             config.train.logger_options) if main else None

        def on_eval(state: TrainState, values: dict[str, float]) -> None:
            if loggers is not None:
                extra = {"metric_metadata": dict(metadata)} if metadata else {}
                loggers.log_eval(state.step, {
                    "epoch": state.epoch, "train_seconds": round(state.train_seconds, 3),
                    "wall_seconds": round(time.time() - started, 3), **values, **extra})
                if loggers.wants_images and components.images:
                    model = self._trainer.eval_model() if self._trainer else components.denoiser
                    grid = generate(components, model, 16, config.sample.num_steps,
                                    stream_seed(config.seed, "checkpoint-sample"), 16)
                    loggers.log_images(state.step, "samples", grid)

        def log_step(event: StepEvent) -> None:
            if loggers is not None and (event.step % config.train.log_every == 0
                                        or event.step == 1):
                loggers.log_step(event.step, {
                    "epoch": event.epoch, "loss": event.loss, "lr": event.lr,
                    "steps_per_second": round(event.steps_per_second, 3)})
            if on_step is not None:
                on_step(event)

        teacher = self._teacher
        # a data set too large for memory is read batch by batch (the same batches)
        data = StreamingData(ds.stream_source(), num_workers=config.train.num_workers) \
            if getattr(ds, "streaming", False) else ds.train_tensor()
        return Trainer(
            components.denoiser, components.scheduler, data, config.train,
            seed=config.seed,
            labels=split_labels(ds, "train") if conditional else None,
            augment=getattr(ds, "augment", None),
            checkpoint_dir=self.dir.checkpoints if main else None, evaluate=evaluate,
            higher_is_better=lambda name: registry.metric_info(name).higher_is_better,
            on_step=log_step, on_eval=on_eval,
            checkpoint_meta={"config_sha256": config_fingerprint(config)},
            teacher=teacher.model if teacher is not None else None,
            distill_weight=teacher.weight if teacher is not None else 1.0)

    def _resume_point(self, trainer: Trainer, strict: bool = False
                      ) -> tuple[Path, dict[str, Any]]:
        """The newest checkpoint that loads, checked against this run's config; damaged newer
        ones are skipped with a warning (refused with ``strict``). Partial checkpoints count
        when their step is past every readable epoch checkpoint's (an older one is left over
        from a run killed while it removed it, and is ignored)."""
        if not self.dir.exists():
            raise UsageError(f"no run to resume at {self.path} ({files.CONFIG} missing)")
        candidates = list_checkpoints(self.dir.checkpoints)
        try:
            last = resolve_checkpoint(self.dir.checkpoints, "last")
            candidates = [c for c in candidates if c != last] + [last]
        except CheckpointError as exc:
            if candidates:
                log.warning("%s; using the newest checkpoint folder instead", exc)
        newest = -1
        for path in candidates:
            try:
                newest = max(newest, int(read_state(path)["step"]))
            except CheckpointError:
                continue
        candidates += [p for p in list_partial_checkpoints(self.dir.checkpoints)
                       if partial_step(p) > newest]
        if not candidates:
            raise UsageError(f"run {self.path} has no checkpoint to resume from")
        if strict:
            candidates = candidates[-1:]
        fingerprints = config_fingerprints(self.config)
        for path in reversed(candidates):
            try:
                state = read_state(path)
                recorded = state.get("config_sha256")
                if recorded is not None and recorded not in fingerprints:
                    raise UsageError(f"{self.dir.file(files.CONFIG)} differs from the config "
                                     f"checkpoint {path.name} was trained with (edited or "
                                     "damaged?); resuming would not continue that run")
                epoch, step = int(state["epoch"]), int(state["step"])
                within = int(state.get("batch_in_epoch", 0))  # batches of a mid-epoch save
                batch = state.get("batch_size") or trainer.batch_size
                if epoch > self.config.train.epochs or not batch or \
                        step != epoch * trainer.steps_for(int(batch)) + within or \
                        within >= trainer.steps_for(int(batch)):
                    raise CheckpointError(f"checkpoint {path} records epoch {epoch} and step "
                                          f"{step}, which this run's config cannot reach "
                                          "(damaged state.json?)")
                # every file intact, and the weights fit this run's model
                verify_checkpoint(path, need_optimizer=True, need_ema=trainer.ema is not None)
                load_checkpoint(path, copy.deepcopy(trainer.model), None, None)
                return path, state
            except CheckpointError as exc:
                if strict or path == candidates[0] or len(candidates) == 1:
                    raise
                log.warning("skipping damaged checkpoint %s: %s", self._checkpoint_name(path),
                            exc)
        raise UsageError(f"run {self.path} has no intact checkpoint")

    def _checkpoint_name(self, path: Path) -> str:
        """``epoch-0004`` or ``partial/step-00000123``: a checkpoint as messages name it."""
        return path.relative_to(self.dir.checkpoints).as_posix() \
            if path.is_relative_to(self.dir.checkpoints) else path.name

    def _fit(self, trainer: Trainer, components: Components, prefetch: bool = True
             ) -> dict[str, Any]:
        """Train; 2-D data on a CPU train on one thread while a second process computes the
        final evaluation's floors (:mod:`diffctl.runs.floor_prefetch`)."""
        self._trainer, self._components = trainer, components
        info = dist_info()
        one_thread = trains_on_one_thread(components.images, trainer.device, info.enabled)
        if prefetch and info.is_main and self.registry is get_registry() and worth_prefetching(
                components.images, trainer.device, info.enabled, self.config.eval.floor_draws):
            self._floors = FloorPrefetch(self.config.model_dump(mode="json"))
        threads = torch.get_num_threads()
        if self._loggers is not None:
            self._loggers.open(self.path, trainer.state.step)
        try:
            if one_thread:
                torch.set_num_threads(1)
            state = trainer.fit()
        except BaseException:
            if self._floors is not None:
                self._floors.close()
                self._floors = None
            raise
        finally:
            torch.set_num_threads(threads)
            if self._loggers is not None:
                self._loggers.close()
        if dist_info().is_main:
            self.dir.write_json(files.LOSSES, state.losses)
        return self.train_summary()

    def train_summary(self) -> dict[str, Any]:
        """Steps, epochs, time, device and parameter count of the training in this process."""
        if self._trainer is None:
            raise UsageError("this run has not trained in this process")
        trainer = self._trainer
        summary = trainer.state.as_dict() | {
            "losses": None, "device": str(trainer.device),
            "parameters": sum(p.numel() for p in trainer.model.parameters())}
        summary.pop("batch_in_epoch", None)  # a checkpoint's position, not a result
        if self._teacher is not None:
            summary["distilled_from"] = self._teacher.describe()
        return summary

    # -- the final evaluation -----------------------------------------------------------------
    def finalize(self, *, on_progress: Progress = None,
                 on_stage: StageProgress = None) -> dict[str, Any]:
        """The final evaluation of the trained model (EMA weights when the config says so):
        ``sample.num_samples`` samples, every metric with its real-vs-real floor, the
        reconstruction metrics; writes samples.npy, real.npy, trajectory.npz and the report
        metrics.json. Returns the report. ``on_progress`` counts sampler steps,
        ``on_stage(stage, done, total)`` floors and feature extraction."""
        if not dist_info().is_main:
            return {"run": str(self.path), "rank": dist_info().rank}
        if self._trainer is not None and self._components is not None:
            trainer = self._trainer
            model = trainer.eval_model() if self.config.sample.use_ema else trainer.model
            components = Components(self._components.dataset, model, trainer.scheduler,
                                    self._components.sampler)
            train = self.train_summary()
        else:
            loaded = self.load_model("last", use_ema=self.config.sample.use_ema)
            components, model = loaded.components, loaded.model
            train = {k: loaded.state.get(k) for k in TrainState.__dataclass_fields__} | {
                "losses": None, "device": str(loaded.device),
                "parameters": sum(p.numel() for p in model.parameters())}
            if self.config.distill is not None:
                train["distilled_from"] = self.config.distill.model_dump(mode="json")
        floors = None
        if self._floors is not None:
            floors, self._floors = self._floors.result(), None
        report = {"run": str(self.path), "train": train,
                  "eval": final_evaluation(self.config, components, model, self.registry,
                                           self.dir, self._sample_batch(components),
                                           on_progress, on_stage, floors=floors)}
        self.dir.write_json(files.REPORT, report)
        self._log_final(report, components)
        return report

    def _log_final(self, report: dict[str, Any], components: Components) -> None:
        """The final metrics (with floors) and samples to the loggers other than jsonl,
        whose report is metrics.json."""
        loggers = RunLoggers(self.registry, self.config.train.loggers,
                             self.config.train.logger_options, include_jsonl=False)
        if not loggers:
            return
        step = int(report["train"].get("step") or 0)
        ev = report["eval"]
        loggers.open(self.path, step)
        try:
            loggers.log_eval(step, dict(ev["metrics"]), dict(ev["floors"]))
            if components.images and loggers.wants_images:
                samples = np.load(self.dir.file(files.SAMPLES))[:64]
                loggers.log_images(step, "final samples", torch.from_numpy(samples))
        finally:
            loggers.close()

    def _sample_batch(self, components: Components) -> int:
        return self.config.sample.batch_size or default_batch_size(
            tuple(components.dataset.sample_shape))

    # -- using a trained run ------------------------------------------------------------------
    def load_model(self, checkpoint: str = "last", *, use_ema: bool = True,
                   device: str | None = None, strict: bool = False,
                   check_config: bool = True) -> LoadedModel:
        """The run's components with ``checkpoint`` (``last``, ``best`` or a folder name)
        loaded, on ``device`` (auto, cpu, cuda, mps; default the run's train.device). When
        ``last`` is damaged, the newest intact checkpoint is used with a warning naming what
        was skipped, unless ``strict``. With ``check_config``, a config.yaml that is not the
        config the checkpoint was trained with is announced (refused with ``strict``)."""
        components = build(self.config, self.registry)
        candidates = [checkpoint]
        if checkpoint == "last" and not strict:
            try:  # the folder 'last' names, then every older one
                candidates = [resolve_checkpoint(self.dir.checkpoints, "last").name]
            except CheckpointError as exc:
                log.warning("%s; trying the checkpoint folders newest first", exc)
                candidates = []
            candidates += [p.name for p in reversed(list_checkpoints(self.dir.checkpoints))]
        skipped: list[str] = []
        candidates = list(dict.fromkeys(candidates))
        for i, name in enumerate(candidates):
            try:
                path = resolve_checkpoint(self.dir.checkpoints, name)
                model = copy.deepcopy(components.denoiser)
                has_ema = (path / "ema.safetensors").exists() or \
                    "ema.safetensors" in (read_state(path).get("files") or {})
                ema = copy.deepcopy(model) if use_ema and has_ema else None
                state = load_checkpoint(path, model, None, ema)
            except CheckpointError as exc:
                if i == len(candidates) - 1:
                    raise
                skipped.append(f"{name} ({exc})")
                continue
            if skipped:
                log.warning("skipped damaged checkpoint(s): %s; using %s", "; ".join(skipped),
                            path.name)
            if check_config:
                self._check_config_record(state, path, strict)
            chosen = (ema if ema is not None else model).to(pick_device(
                device or self.config.train.device)).eval()
            components.denoiser = chosen
            return LoadedModel(components, chosen, path, state)
        raise UsageError(f"run {self.path} has no checkpoint")

    def _check_config_record(self, state: dict[str, Any], checkpoint: Path,
                             strict: bool = False) -> None:
        """Announce (or with ``strict`` refuse) a config.yaml whose fingerprint is not the one
        ``checkpoint`` recorded: a damaged or edited file would otherwise change the model,
        the sampler or the evaluation without a word."""
        recorded = state.get("config_sha256")
        if recorded is None or recorded in config_fingerprints(self.config):
            return
        message = (f"{self.dir.file(files.CONFIG)} differs from the config {checkpoint.name} "
                   "was trained with (edited or damaged?)")
        if strict:
            raise UsageError(message)
        log.warning("%s; using it as it is now", message)

    def _sampler_for(self, model: torch.nn.Module, name: str | None,
                     options: dict[str, Any] | None, guidance_scale: float | None) -> tuple:
        """The sampler of a sample/inpaint call: the run's, or ``name`` with the options the
        run gives it (:func:`~diffctl.runs.config.sampler_options_for`); then ``options``."""
        name = name or self.config.sampler.name
        base = sampler_options_for(self.config, name, self.registry)
        merged = {**base, **(options or {})}
        if guidance_scale is not None:
            merged["guidance_scale"] = guidance_scale
        return name, build_sampler(name, merged, model, self.registry)

    def sample(self, *, checkpoint: str = "last", sampler: str | None = None,
               sampler_options: dict[str, Any] | None = None, steps: int | None = None,
               num_samples: int | None = None, seed: int | None = None,
               label: int | None = None, guidance_scale: float | None = None,
               device: str | None = None, progression: bool = False,
               metrics: bool = True, save: bool = True, strict: bool = False,
               on_progress: Progress = None, on_stage: StageProgress = None) -> SampleResult:
        """Draw samples from a checkpoint, with any sampler and step count.

        ``seed`` is a run seed (default: this run's): the noise comes from its ``sample``
        stream, so the run's own seed, sampler and steps reproduce the final evaluation's
        samples. ``label`` fixes the class of every sample of a conditional run (metrics
        against the whole real distribution are then skipped). ``progression`` keeps 10
        states from x_T to x_0 of the first 10 samples. With ``save`` the samples go to
        ``samples/<checkpoint>-<sampler>-<steps>steps-<n>-seed<seed>.npy``.
        """
        cfg = self.config
        steps = cfg.sample.num_steps if steps is None else steps
        n = cfg.sample.num_samples if num_samples is None else num_samples
        seed = _check_seed(cfg.seed if seed is None else seed)
        T = int(cfg.scheduler.options().get("num_train_timesteps") or 0)
        if steps < 1 or (T and steps > T):
            raise UsageError(f"--steps must be in [1, {T or 'T'}], got {steps}")
        if n < 1:
            raise UsageError(f"--num-samples must be at least 1, got {n}")
        loaded = self.load_model(checkpoint, device=device, strict=strict)
        check_samples(n, tuple(loaded.components.dataset.sample_shape), "--num-samples")
        model, components = loaded.model, loaded.components
        k = num_classes(model)
        if label is not None and not (k and 0 <= label < k):
            raise UsageError(f"--label needs a class-conditional run and a label in "
                             f"[0, {k or 0}); got {label}")
        name, sampler_obj = self._sampler_for(model, sampler, sampler_options, guidance_scale)
        measure = metrics and label is None and bool(cfg.eval.metrics)
        if measure:
            check_sample_count(components.dataset, n)
        labels = torch.full((n,), label, dtype=torch.long) if label is not None else None
        traj = Trajectory(frames=10) if progression else None
        t0 = time.perf_counter()
        samples = generate(components, model, n, steps, stream_seed(seed, "sample"),
                           self._sample_batch(components), traj, labels, on_progress,
                           sampler=sampler_obj)
        seconds = time.perf_counter() - t0
        run_options = sampler_options_for(cfg, name, self.registry)
        suffix = (f"-label{label}" if label is not None else "") + (
            f"-g{guidance_scale:g}" if guidance_scale is not None else "") + options_suffix(
            {k: v for k, v in (sampler_options or {}).items()
             if k not in run_options or run_options[k] != v})
        path = self.dir.sample_path(loaded.checkpoint.name, name, steps, n, seed, suffix) \
            if save else None
        if path is not None:
            np.save(path, samples.numpy())
        result = SampleResult(samples, path, loaded.checkpoint.name, name, steps, seed, labels,
                              seconds, trajectory=traj)
        if label is not None:
            result.note = f"every sample has class {label}: no metrics against the data"
        if measure:
            ref_seed = stream_seed(seed, "reference")
            real = components.dataset.reference(n, ref_seed)
            options = metric_options_on(cfg, self.registry, loaded.device)
            result.real = real
            result.metrics = metric_values(
                self.registry, cfg.eval.metrics, samples, real, options,
                heldout_inputs(cfg, components, model), None, generated_labels(model, n),
                reference_labels(components.dataset, n, ref_seed),
                on_features=bind_stage(on_stage, "features"))
            if cfg.eval.floor_draws:
                result.floors = metric_floors(self.registry, cfg.eval.metrics, options,
                                              components.dataset, n, cfg.eval.floor_draws,
                                              seed, on_progress=bind_stage(on_stage, "floors"),
                                              on_features=bind_stage(on_stage, "features"))
        elif not components.images:
            result.real = components.dataset.reference(n, stream_seed(seed, "reference"))
        return result

    def compare_samplers(self, samplers: str | list[SamplerSpec] | None = None, *,
                         checkpoint: str = "last", num_samples: int | None = None,
                         seed: int | None = None, show: int = 10, device: str | None = None,
                         metrics: bool = True, save: bool = True, strict: bool = False,
                         on_progress: Progress = None,
                         on_stage: StageProgress = None) -> SamplerComparison:
        """Draw ``num_samples`` samples (default ``sample.num_samples``) with each sampler of
        ``samplers`` (specs, their text ``ddim:50,heun:20``, or None: the default list of
        :func:`~diffctl.runs.sampler_comparison.default_specs`) from one checkpoint and the
        same x_T (the ``sample`` stream of ``seed``). Each row is timed and scored with the
        run's headline metric, the first sample metric of ``eval.metrics``, against one real
        sample of the ``reference`` stream (with its floor when ``eval.floor_draws`` is set).
        Each row keeps the x_T of its first ``show`` samples. With ``save`` a JSON summary
        goes to ``samples/comparison-...json``. ``on_progress`` counts sampler steps over all
        rows; ``on_stage(stage, done, total)`` reports floors and feature extraction."""
        from diffctl.runs.sampler_comparison import compare_samplers

        return compare_samplers(self, samplers, checkpoint=checkpoint, num_samples=num_samples,
                                seed=seed, show=show, device=device, metrics=metrics,
                                save=save, strict=strict, on_progress=on_progress,
                                on_stage=on_stage)

    def inpaint(self, region: str, *, checkpoint: str = "last", num_images: int = 100,
                sampler: str | None = None, sampler_options: dict[str, Any] | None = None,
                steps: int | None = None, seed: int | None = None, device: str | None = None,
                strict: bool = False, on_progress: Progress = None) -> InpaintResult:
        """Keep ``region`` (left, right, top, bottom; center keeps the border) of held-out
        images and fill the rest; score the fill with the registered ``psnr`` (on the filled
        region) and ``ssim`` (whole images, whose known part is exact). Writes a JSON
        report ``inpaint-<region>-<sampler>-<steps>.json``."""
        from diffctl.runs.sampling import inpaint_mask

        cfg = self.config
        loaded = self.load_model(checkpoint, device=device, strict=strict)
        components, model = loaded.components, loaded.model
        if not components.images:
            raise UsageError("inpainting is for image runs")
        inpaint_mask(region, tuple(components.dataset.sample_shape))  # a bad region fails now
        steps = cfg.sample.num_steps if steps is None else steps
        seed = _check_seed(cfg.seed if seed is None else seed)
        test = components.dataset.test_tensor()
        if not 1 <= num_images <= len(test):
            raise UsageError(f"inpainting takes 1 to {len(test)} held-out images, got "
                             f"{num_images}")
        images = test[:num_images]
        getter = getattr(components.dataset, "test_labels", None)
        labels = getter() if getter is not None else None
        name, sampler_obj = self._sampler_for(model, sampler, sampler_options, None)
        filled = inpaint(components, model, images, labels, region, steps,
                         stream_seed(seed, "sample"), self._sample_batch(components),
                         on_progress, sampler_obj)
        options = metric_options_on(cfg, self.registry, loaded.device)
        box = filled.unknown_box()
        region_psnr = metric_values(self.registry, ["psnr"], filled.filled[box], images[box],
                                    options)["psnr"]
        whole_ssim = metric_values(self.registry, ["ssim"], filled.filled, images,
                                   options)["ssim"]
        result = InpaintResult(filled, region, name, steps, region_psnr, whole_ssim)
        report = {"known": region, "sampler": name, "steps": steps, "images": len(images),
                  "checkpoint": loaded.checkpoint.name, "seed": seed,
                  "psnr_filled_region": region_psnr, "ssim_whole_image": whole_ssim}
        result.path = self.dir.file(f"inpaint-{region}-{name}-{steps}.json")
        self.dir.write_json(result.path.name, report)
        return result

    def evaluate_images(self, folder: Path | str, *, metrics: list[str] | None = None,
                        seed: int | None = None, floors: bool = True,
                        device: str | None = None,
                        on_stage: StageProgress = None) -> dict[str, Any]:
        """Score a folder of PNG images made elsewhere (or by ``sample --png-dir``) with this
        run's metrics against the real sample of the ``reference`` stream of ``seed`` (default:
        the run's) and floors at the folder's image count. Model metrics (test-loss) need a
        model and are left out."""
        from diffctl.runs.export import read_png_labels, read_pngs

        cfg, registry = self.config, self.registry
        if self.data_kind != "images":
            raise UsageError("--generated takes a folder of images; this run's data are points")
        names = [m for m in (metrics or cfg.eval.metrics)
                 if registry.metric_info(m).input == "samples"]
        if not names:
            raise UsageError("no sample metric to score the images with: pass --metric")
        _check_sweep_metrics(self, names)
        dataset = build_dataset(cfg, registry)
        images = read_pngs(folder, tuple(dataset.sample_shape))
        check_sample_count(dataset, len(images))
        seed = cfg.seed if seed is None else seed
        real = dataset.reference(len(images), stream_seed(seed, "reference"))
        options = metric_options_on(cfg, registry, pick_device(device or cfg.train.device))
        metadata: dict[str, Any] = {}
        ref_seed = stream_seed(seed, "reference")
        values = metric_values(registry, names, images, real, options, metadata=metadata,
                               labels=read_png_labels(folder, len(images)),
                               real_labels=reference_labels(dataset, len(images), ref_seed),
                               on_features=bind_stage(on_stage, "features"))
        result = {"folder": str(folder), "num_samples": len(images), "metrics": values,
                  "floors": {}, "metric_metadata": metadata}
        if floors and cfg.eval.floor_draws:
            result["floors"] = metric_floors(registry, names, options, dataset, len(images),
                                             cfg.eval.floor_draws, seed,
                                             on_progress=bind_stage(on_stage, "floors"),
                                             on_features=bind_stage(on_stage, "features"))
        return result

    def evaluate(self, *, checkpoints: str = "all", metrics: list[str] | None = None,
                 num_samples: int | None = None, steps: int | None = None,
                 seed: int | None = None, workers: int = 1, threads: int | None = None,
                 device: str | None = None, devices: list[str] | None = None,
                 floors: bool = True, keep_samples: int | None = None,
                 on_progress: Progress = None, on_stage: StageProgress = None) -> EvalResult:
        """Evaluate saved checkpoints (``all``, ``last``, ``best`` or names) in ``workers``
        processes; writes a new ``eval/<time>-<settings>/`` folder and never touches an
        earlier one. A checkpoint that cannot be evaluated is reported in ``failures`` and
        the others go on. The first ``keep_samples`` samples of each checkpoint (default: 16
        images or 1000 points; 0: none) go to ``samples/<checkpoint>.npy`` in that folder,
        with as many real ones in ``real.npy``."""
        from diffctl.runs.checkpoint_eval import evaluate_checkpoints

        cfg, registry = self.config, self.registry
        selected = select_checkpoints(self.dir.checkpoints, checkpoints)
        names = [p.name for p in selected]
        for path in reversed(selected):  # the config against the newest readable record
            try:
                state = read_state(path)
            except CheckpointError:
                continue
            self._check_config_record(state, path)
            break
        metrics = list(metrics or cfg.eval.metrics)
        if not metrics:
            raise UsageError("no metrics to evaluate: pass --metric or set eval.metrics")
        _check_sweep_metrics(self, metrics)
        n = cfg.sample.num_samples if num_samples is None else num_samples
        dataset = build_dataset(cfg, registry)
        check_samples(n, tuple(dataset.sample_shape), "--num-samples")
        check_sample_count(dataset, n)
        if workers < 1:
            raise UsageError("--workers must be at least 1")
        if threads is not None and threads < 1:
            raise UsageError("--threads must be at least 1")
        images = len(dataset.sample_shape) > 1
        keep = min(n, (16 if images else 1000) if keep_samples is None else keep_samples)
        if keep < 0:
            raise UsageError(f"keep_samples must be at least 0, got {keep_samples}")
        steps = cfg.sample.num_steps if steps is None else steps
        T = int(cfg.scheduler.options().get("num_train_timesteps") or 0)
        if steps < 1 or (T and steps > T):
            raise UsageError(f"--steps must be in [1, {T or 'T'}], got {steps}")
        seed = _check_seed(cfg.seed if seed is None else seed)
        if devices and device:
            raise UsageError("pass --device or --devices, not both")
        for name in devices or ():
            pick_device(name)  # an unknown or missing device fails now, not in a worker
        run_device = pick_device((devices or [None])[0] or device or cfg.train.device)
        settings = {"checkpoints": names, "metrics": metrics, "num_samples": n,
                    "steps": steps, "seed": seed, "device": str(run_device),
                    "sampler": cfg.sampler.name}
        started = time.perf_counter()
        kept: dict[str, np.ndarray] = {}
        rows, failures = evaluate_checkpoints(self.path, names, metrics, n, steps, seed,
                                              workers, device, threads, on_progress,
                                              devices, keep, kept.__setitem__)
        seconds = time.perf_counter() - started
        floor_values: dict[str, dict[str, Any]] = {}
        if floors:
            options = metric_options_on(cfg, registry, run_device)
            floor_values = metric_floors(registry, metrics, options, dataset, n,
                                         cfg.eval.floor_draws or 5, seed,
                                         on_progress=bind_stage(on_stage, "floors"),
                                         on_features=bind_stage(on_stage, "features"))
        folder = self.dir.new_eval_dir(settings)
        files.write_atomic(folder / files.EVAL_SETTINGS, _json(
            {**settings, "workers": workers, "seconds": round(seconds, 3),
             "kept_samples": keep, "failures": failures}))
        sample_files: dict[str, Path] = {}
        if kept:
            for name in sorted(kept):
                sample_files[name] = files.eval_sample_path(folder, name)
                files.save_array(sample_files[name], kept[name])
            real = dataset.reference(n, stream_seed(seed, "reference"))[:keep]
            files.save_array(folder / files.REAL, real.numpy())
        files.write_atomic(folder / files.EVAL_ROWS, "".join(_json(r, indent=None) + "\n"
                                                              for r in rows))
        if floor_values:
            files.write_atomic(folder / files.EVAL_FLOORS, _json(
                {"num_samples": n, "floors": floor_values}))
        return EvalResult(folder, rows, failures, floor_values, metrics, n, workers, seconds,
                          sample_files, folder / files.REAL if kept else None)


def _check_seed(seed: int) -> int:
    """A seed given to sample, inpaint or eval is a run seed: the same range, one line else."""
    from diffctl.seeds import MAX_SEED

    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be in [0, {MAX_SEED}], got {seed}")
    return seed


def _json(payload: Any, indent: int | None = 1) -> str:
    import json

    return json.dumps(payload, indent=indent)


def _check_sweep_metrics(run: Run, metrics: list[str]) -> None:
    """Metrics of a checkpoint sweep: registered, and able to measure this run's samples."""
    from diffctl.runs.config import check_metrics

    probe = run.config.model_copy(deep=True)
    probe.eval.metrics = list(metrics)
    probe.eval.during_training = []
    probe.eval.reconstruction_metrics = []
    for name in metrics:
        spec = run.registry.get("metric", name)
        if name not in probe.eval.metric_options:
            probe.eval.metric_options[name] = spec.make_config({}).model_dump(mode="json")
    check_metrics(probe, run.registry)
