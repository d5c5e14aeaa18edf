"""The training loop: objective, optimiser, EMA, checkpoints, evaluation, resume.

Randomness is a function of (seed, epoch): the data order, timesteps, noise and augmentation
of epoch e come from the run's ``train`` stream at index e, dropout from its ``dropout``
stream (:mod:`diffctl.seeds`). The run's checkpoints fall on epoch boundaries, so a resumed
run continues exactly as the uninterrupted one would have; a checkpoint saved mid-epoch
(:meth:`Trainer.save` from ``on_step``) also records the batch reached and the two generators'
states, and resuming it trains exactly the remaining batches. With
``checkpoint_every_steps`` N the trainer itself saves such a checkpoint every N optimiser
steps into ``checkpoints/partial/`` (:meth:`Trainer.save_partial`): only the newest is kept,
it is not evaluated, and the next epoch checkpoint removes it.

Each batch of ``batch_size`` examples (the global batch) is one optimiser step. With
``grad_accum_steps`` N it is split into N micro-batches (per process under DDP), each loss
scaled by its share of the batch, so their gradients add up to the batch's; DDP
synchronises only on the last one (``no_sync``). Training data is a tensor (the in-memory
path) or :class:`diffctl.training.streaming.StreamingData` (read by DataLoader workers,
batch by batch); both draw the same batches, timesteps and noise.

Before the first step the trainer checks memory (:meth:`Trainer.check_memory`): one trial
forward and backward pass at the training batch on the chosen device, which leaves weights,
buffers and random state as they were. Out of memory there is a one-line error naming the
batch size; with ``batch_size: auto`` the batch is halved until a trial step fits. Given a
``teacher``, the loss is :func:`diffctl.training.distill.distillation_loss`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from diffctl.errors import DiffctlError, UsageError
from diffctl.seeds import stream_seed
from diffctl.training.checkpoint import (
    PARTIAL_DIR,
    CheckpointError,
    discard,
    list_partial_checkpoints,
    load_checkpoint,
    load_extra_tensors,
    partial_name,
    read_pointer,
    save_checkpoint,
    write_pointer,
)
from diffctl.training.config import TrainConfig
from diffctl.training.distill import distillation_loss
from diffctl.training.distributed import all_mean, broadcast_flag, dist_info, setup
from diffctl.training.ema import EMA
from diffctl.training.lr_schedule import lr_multiplier, scaled_lr
from diffctl.training.objective import diffusion_loss
from diffctl.training.streaming import StreamingData

#: How a checkpoint's RNG state is to be read; a resume refuses a checkpoint of another scheme.
RNG_SCHEME = "diffctl.seeds streams train/dropout per epoch"
#: The file of a mid-epoch checkpoint holding the generator states (uint8 tensors).
RNG_FILE = "rng.safetensors"
#: autocast dtype of each reduced precision.
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TrainingDiverged(DiffctlError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class BatchTooLarge(UsageError):
    """A training step at the configured batch size does not fit in the device's memory."""


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocator failure (CUDA, MPS or CPU), not another error."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or
                                              "can't allocate memory" in text)


def pick_device(choice: str = "auto") -> torch.device:
    """cuda > mps > cpu for ``auto``; ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` as given. An
    unknown or unavailable device is a one-line usage error."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    kind, _, index = str(choice).partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()) or \
            (index and kind != "cuda"):
        raise UsageError(f"unknown device {choice!r}: use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {choice!r} requested but CUDA is not available here "
                         "(use auto or cpu)")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise UsageError(f"device {choice!r} requested but this machine has "
                         f"{torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not has_mps:
        raise UsageError(f"device {choice!r} requested but MPS is not available here "
                         "(use auto or cpu)")
    return torch.device(choice)


@dataclass
class StepEvent:
    """What a progress display sees after each optimisation step."""

    step: int
    epoch: int
    total_steps: int
    loss: float
    lr: float
    steps_per_second: float


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch done (non-zero only mid-epoch)
    train_seconds: float = 0.0
    best_value: float | None = None
    best_epoch: int | None = None
    evals_without_improvement: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    stopped_early: bool = False
    stop_reason: str | None = None  # why early stopping fired
    batch_size: int | None = None  # the batch trained with (chosen by the memory check: auto)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


Evaluate = Callable[[torch.nn.Module, TrainState], dict[str, float]]


class Trainer:
    """Trains ``model`` on a tensor of examples (or :class:`StreamingData`); writes
    checkpoints under ``checkpoint_dir``."""

    def __init__(
        self,
        model: torch.nn.Module,
        scheduler: Any,
        train_data: torch.Tensor | StreamingData,
        config: TrainConfig,
        *,
        seed: int = 0,
        labels: torch.Tensor | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        checkpoint_dir: Path | None = None,
        evaluate: Evaluate | None = None,
        higher_is_better: Callable[[str], bool] = lambda name: False,
        on_step: Callable[[StepEvent], None] | None = None,
        on_eval: Callable[[TrainState, dict[str, float]], None] | None = None,
        checkpoint_meta: dict[str, Any] | None = None,
        teacher: torch.nn.Module | None = None,
        distill_weight: float = 1.0,
    ):
        self.config, self.seed = config, seed
        self.dist = dist_info()
        self.device = pick_device(config.device)
        self.accum = config.grad_accum_steps
        if self.dist.enabled:
            if config.batch_size == "auto":
                raise UsageError("train.batch_size auto is not available under torchrun; give "
                                 "a number divisible by the number of processes")
            parts = self.dist.world_size * self.accum
            if config.batch_size % parts:
                split = "" if self.accum == 1 else \
                    f" x grad_accum_steps ({self.dist.world_size} x {self.accum} = {parts})"
                raise UsageError(f"batch_size {config.batch_size} must be divisible by the "
                                 f"number of processes ({self.dist.world_size}){split}")
            self.device = setup(self.dist, self.device)
        self.streaming = isinstance(train_data, StreamingData)
        if self.streaming and augment is not None:
            raise UsageError("streaming data augments each example in its loader; a batch "
                             "augmentation cannot be combined with it")
        self.model = model.to(self.device)
        # the frozen teacher of a distilled run: eval mode, no gradients, on the same device
        self.teacher = teacher.to(self.device).eval().requires_grad_(False) \
            if teacher is not None else None
        self.distill_weight = float(distill_weight)
        self.scheduler = scheduler
        self.data = train_data if isinstance(train_data, StreamingData) else \
            train_data.to(self.device)
        self.labels = labels.to(self.device) if labels is not None else None
        self.augment = augment
        self.checkpoint_dir = checkpoint_dir if self.dist.is_main else None
        self.evaluate, self.on_step, self.on_eval = evaluate, on_step, on_eval
        self.higher_is_better = higher_is_better
        self.checkpoint_meta = dict(checkpoint_meta or {})  # stored in every state.json
        opt_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
        self.ema = EMA(self.model, config.ema_decay, config.ema_warmup) \
            if config.ema_decay else None
        self.state = TrainState()
        # fp16 gradients underflow without loss scaling; bf16 and fp32 need none
        self.scaler = torch.amp.GradScaler(self.device.type) \
            if config.precision == "fp16" else None
        self._gen: torch.Generator | None = None  # the epoch's train-stream generator
        self._epoch_started: float | None = None
        self._resume_rng: dict[str, torch.Tensor] | None = None  # a mid-epoch checkpoint's
        # what the loss calls: the module itself or its torch.compile wrapper (checkpoints and
        # EMA always use the plain module, so the weights' names never change)
        self.train_model = torch.compile(self.model) if config.compile else self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)
        # the batch and what follows from it (lr scaling, steps); with auto: after the
        # memory check chose it (or a resumed checkpoint recorded it)
        self.batch_size: int | None = None
        self.lr = config.lr
        self.steps_per_epoch = self.total_steps = 0
        self.memory_checked = False
        self._batch_fixed = config.batch_size != "auto"
        if config.batch_size != "auto":
            self._use_batch(int(config.batch_size))

    # -- the batch size and the memory check -------------------------------------------------
    def steps_for(self, batch_size: int) -> int:
        """Optimisation steps per epoch at ``batch_size``. A last partial batch is kept if
        every process gets at least one example of it (and BatchNorm-style layers at least
        two in a one-process run)."""
        n = len(self.data)
        tail = n % batch_size
        return n // batch_size + (1 if tail >= max(2, self.dist.world_size) else 0)

    def _use_batch(self, batch_size: int) -> None:
        cfg = self.config
        self.batch_size = self.state.batch_size = batch_size
        self.lr = scaled_lr(cfg.lr, batch_size, cfg.base_batch_size, cfg.lr_scaling)
        self.steps_per_epoch = self.steps_for(batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs

    def check_memory(self) -> int:
        """One trial forward/backward pass at the training batch on the training device;
        returns the batch size. Out of memory raises :class:`BatchTooLarge` naming the size;
        with ``batch_size: auto`` (and no batch recorded by a resumed checkpoint) the batch
        starts at ``max_batch_size`` (at most the training split) and is halved until a
        trial step fits. Weights, buffers (BatchNorm statistics), gradients and the random
        state are left as they were."""
        auto, accum = not self._batch_fixed, self.accum
        size = min(self.config.max_batch_size, len(self.data)) if auto else self.batch_size
        assert size is not None
        if auto:  # a whole number of micro-batches
            size = max(accum, size - size % accum)
        while True:
            try:
                self._trial_step(size)
                break
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                if not is_out_of_memory(exc):
                    raise
                self._release_memory()
                if not auto or size == accum:
                    hint = ("lower train.batch_size or set it to auto" if not auto
                            else "the model does not fit even one example")
                    raise BatchTooLarge(f"out of memory on {self.device}: a training step at "
                                        f"batch size {size} does not fit ({hint})") from None
                size = size // accum // 2 * accum
        if auto:
            self._use_batch(size)
            self._batch_fixed = True
        self.memory_checked = True
        return size

    def _trial_step(self, size: int) -> None:
        # one micro-batch: what a step holds in memory at a time
        share = max(1, size // (self.dist.world_size * self.accum))
        idx = (torch.arange(share) % len(self.data)).to(self.device)
        if isinstance(self.data, StreamingData):
            x0 = torch.stack([self.data.example(int(i)) for i in idx]).to(self.device)
        else:
            x0 = self.data[idx]
        cond = self.labels[idx] if self.labels is not None else None
        gen = torch.Generator().manual_seed(0)
        t = torch.randint(0, self.scheduler.num_train_timesteps, (share,),
                          generator=gen).to(self.device)
        noise = torch.randn(x0.shape, generator=gen).to(self.device, x0.dtype)
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        was_training = self.model.training
        self.model.train()
        try:
            with self.autocast():
                loss = self._loss(self.model, x0, t, noise, cond)
            loss.backward()
        finally:
            self.model.zero_grad(set_to_none=True)
            with torch.no_grad():
                for name, b in self.model.named_buffers():
                    b.copy_(buffers[name])
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            self.model.train(was_training)

    def _release_memory(self) -> None:
        self.model.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision of forward passes and losses (the teacher's included): autocast in
        bf16 or fp16, or nothing at fp32."""
        dtype = AUTOCAST_DTYPES.get(self.config.precision)
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16,
                              enabled=dtype is not None)

    def _loss(self, model: torch.nn.Module, x0: torch.Tensor, t: torch.Tensor,
              noise: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        """The training loss of one batch: the data loss, or the distillation loss when the
        trainer has a teacher."""
        cfg = self.config
        prediction = getattr(self.model, "prediction", None)
        if self.teacher is not None:
            return distillation_loss(model, self.teacher, self.scheduler, x0, t, noise, cond,
                                     weight=self.distill_weight,
                                     weighting=cfg.loss_weighting, gamma=cfg.min_snr_gamma,
                                     prediction=prediction)
        return diffusion_loss(model, self.scheduler, x0, t, noise, cond, cfg.loss_weighting,
                              cfg.min_snr_gamma, prediction=prediction)

    # -- checkpoints -----------------------------------------------------------------------
    def eval_model(self) -> torch.nn.Module:
        """The weights used for evaluation and sampling: the EMA copy when there is one."""
        return self.ema.shadow if self.ema is not None else self.model

    def save(self, name: str, *, directory: Path | None = None,
             point_last: bool = True) -> Path | None:
        """Checkpoint folder ``name`` (in ``directory``, default the checkpoint folder): at an
        epoch boundary, or mid-epoch when called from ``on_step`` (then the batch reached and
        the generators' states are saved too). ``point_last`` moves the ``last`` pointer."""
        if self.checkpoint_dir is None:
            return None
        st = self.state
        # the RNG state: every random draw of epoch e comes from the streams "train" and
        # "dropout" at index e of the run's seed, so (seed, next epoch) restores it
        rng: dict[str, Any] = {"scheme": RNG_SCHEME, "seed": self.seed, "next_epoch": st.epoch}
        state = st.as_dict() | {"ema_updates": self.ema.updates if self.ema else 0,
                                "rng": rng, **self.checkpoint_meta}
        extra: dict[str, dict[str, torch.Tensor]] = {}
        if st.batch_in_epoch:
            # mid-epoch: the epoch's generators where this batch left them
            if self._gen is None:
                raise UsageError("a mid-epoch checkpoint can only be saved during fit()")
            rng["next_batch"] = st.batch_in_epoch
            extra[RNG_FILE] = {"train": self._gen.get_state(), "global": torch.get_rng_state()}
            if self.device.type == "cuda":
                extra[RNG_FILE]["cuda"] = torch.cuda.get_rng_state(self.device)
            if self._epoch_started is not None:
                state["train_seconds"] = st.train_seconds + \
                    time.perf_counter() - self._epoch_started
        if self.scaler is not None:
            state["grad_scaler"] = self.scaler.state_dict()
        return save_checkpoint(directory or self.checkpoint_dir, name, self.model,
                               self.optimizer, state, ema=self.ema.shadow if self.ema else None,
                               extra=extra, point_last=point_last)

    def save_partial(self) -> Path | None:
        """A resume-only checkpoint of the current step in ``checkpoints/partial/``; the older
        ones there are removed once it is whole, so only the newest is kept. ``last`` and
        ``best`` are left alone."""
        if self.checkpoint_dir is None:
            return None
        path = self.save(partial_name(self.state.step),
                         directory=self.checkpoint_dir / PARTIAL_DIR, point_last=False)
        for old in list_partial_checkpoints(self.checkpoint_dir):
            if old != path:
                discard(old)
        return path

    def resume(self, path: Path) -> dict[str, Any]:
        """Continue from checkpoint folder ``path``: weights, optimizer, EMA, state and the
        RNG position. Returns the checkpoint's state.json."""
        saved = load_checkpoint(path, self.model, self.optimizer,
                                self.ema.shadow if self.ema else None)
        rng = saved.get("rng", {})
        if rng.get("scheme", RNG_SCHEME) != RNG_SCHEME:
            raise UsageError(f"checkpoint {path} was written with the random-number scheme "
                             f"{rng['scheme']!r}; this version continues only "
                             f"{RNG_SCHEME!r} runs exactly")
        if rng.get("seed", self.seed) != self.seed:
            raise UsageError(f"checkpoint {path} was trained with seed {rng['seed']}, this "
                             f"run has seed {self.seed}: resuming would not continue it")
        if self.ema is not None:
            self.ema.updates = int(saved.get("ema_updates", 0))
        for key in TrainState.__dataclass_fields__:
            if key in saved:
                setattr(self.state, key, saved[key])
        self.state.losses = [tuple(x) for x in self.state.losses]
        recorded = saved.get("batch_size")
        if not self._batch_fixed and recorded:  # auto: continue with the batch it chose
            self._use_batch(int(recorded))
            self._batch_fixed = True
        elif self.batch_size is not None:
            self.state.batch_size = self.batch_size
        if self.scaler is not None and isinstance(saved.get("grad_scaler"), dict):
            self.scaler.load_state_dict(saved["grad_scaler"])
        self._resume_rng = None
        if self.state.batch_in_epoch:
            if self.batch_size is not None and \
                    self.state.batch_in_epoch >= self.steps_for(self.batch_size):
                raise CheckpointError(f"checkpoint {path} records batch "
                                      f"{self.state.batch_in_epoch} of an epoch of "
                                      f"{self.steps_for(self.batch_size)} (damaged?)")
            self._resume_rng = load_extra_tensors(path, RNG_FILE)
        return saved

    # -- the loop --------------------------------------------------------------------------
    def _evaluate_and_checkpoint(self, last: bool) -> bool:
        """Evaluate, track the best, checkpoint. Returns True when early stopping fires."""
        st, cfg = self.state, self.config
        if not self.dist.is_main:  # rank 0 evaluates and saves; the others follow its verdict
            st.stopped_early = broadcast_flag(False, self.dist, self.device)
            return st.stopped_early
        metrics = self.evaluate(self.eval_model(), st) if self.evaluate else {}
        name = f"epoch-{st.epoch:04d}"
        improved = False
        value = metrics.get(cfg.best_metric)
        if value is not None and math.isfinite(value):
            better = (st.best_value is None or
                      (value > st.best_value if self.higher_is_better(cfg.best_metric)
                       else value < st.best_value))
            if better:
                st.best_value, st.best_epoch, improved = value, st.epoch, True
                st.evals_without_improvement = 0
            else:
                st.evals_without_improvement += 1
        patience = cfg.early_stopping_patience
        stop = patience is not None and st.evals_without_improvement >= patience and not last
        st.stopped_early = stop
        if stop:
            best = "none finite" if st.best_value is None else \
                f"best {st.best_value:.4g} at epoch {st.best_epoch}"
            st.stop_reason = (f"stopped early at epoch {st.epoch} of {cfg.epochs}: "
                              f"{cfg.best_metric} did not improve for {patience} "
                              f"evaluation(s) in a row ({best})")
        # the record goes out before the checkpoint: a run killed in between has a record
        # without its checkpoint, which resuming drops (the run directory's truncate_logs),
        # never the reverse
        if self.on_eval is not None:
            self.on_eval(st, metrics)
        self.save(name)
        if improved and self.checkpoint_dir is not None:
            write_pointer(self.checkpoint_dir / "best", name)
        if self.checkpoint_dir is not None:  # partial checkpoints older than this one
            discard(self.checkpoint_dir / PARTIAL_DIR)
        return broadcast_flag(stop, self.dist, self.device)

    def fit(self) -> TrainState:
        """Train to ``config.epochs`` (from the current state: a resumed checkpoint continues),
        checking memory first if :meth:`check_memory` has not run."""
        if not self.memory_checked:
            self.check_memory()
        try:
            return self._fit()
        finally:
            self._gen = self._epoch_started = None
            if isinstance(self.data, StreamingData):
                self.data.close()

    def _fit(self) -> TrainState:
        cfg, st = self.config, self.state
        batch = self.batch_size
        assert batch is not None
        T = self.scheduler.num_train_timesteps
        n = len(self.data)
        rank, world = self.dist.rank, self.dist.world_size
        every = cfg.checkpoint_every_steps
        self.model.train()
        while st.epoch < cfg.epochs:
            partial_at_end = False  # a partial checkpoint falls due on the epoch's last step
            started = self._epoch_started = time.perf_counter()
            gen = torch.Generator().manual_seed(stream_seed(self.seed, "train", st.epoch))
            torch.manual_seed(stream_seed(self.seed, "dropout", st.epoch))
            order = torch.randperm(n, generator=gen)
            start = st.batch_in_epoch
            if start:  # a mid-epoch checkpoint: its generators, where it left them
                self._restore_rng(gen)
            self._gen = gen
            stream = None
            if isinstance(self.data, StreamingData):
                stream = self.data.batches(order, batch, self.steps_per_epoch, epoch=st.epoch,
                                           seed=self.seed, start=start, rank=rank,
                                           world_size=world,
                                           pin_memory=self.device.type == "cuda")
            else:
                order = order.to(self.device)
            for b in range(start, self.steps_per_epoch):
                idx = order[b * batch:(b + 1) * batch]
                if stream is not None:  # this rank's share, already decoded by the loader
                    x0 = next(stream).to(self.device, non_blocking=True)
                else:
                    x0 = self.data[idx]
                    if self.augment is not None:
                        x0 = self.augment(x0, gen)
                cond = self.labels[idx.to(self.labels.device)] \
                    if self.labels is not None else None
                t = torch.randint(0, T, (len(idx),), generator=gen).to(self.device)
                noise = torch.randn((len(idx), *x0.shape[1:]),
                                    generator=gen).to(self.device, x0.dtype)
                if self.dist.enabled:  # every rank drew the whole batch; keep this rank's share
                    share = slice(rank, None, world)
                    x0 = x0 if stream is not None else x0[share]
                    t, noise = t[share], noise[share]
                    cond = cond[share] if cond is not None else None
                # as many micro-batches on every rank (a short last batch may allow fewer)
                parts = min(self.accum, len(idx) // world)
                loss = self._accumulate(x0, t, noise, cond, parts)
                loss_value = all_mean(float(loss), self.dist, self.device)
                if not math.isfinite(loss_value):
                    last = read_pointer(self.checkpoint_dir / "last") \
                        if self.checkpoint_dir else None
                    kept = f"; last good checkpoint: {last}" if last else "; no checkpoint yet"
                    raise TrainingDiverged(
                        f"loss became {loss_value} at step {st.step} (epoch {st.epoch}); "
                        f"training stopped{kept}")
                lr = self.lr * lr_multiplier(st.step, self.total_steps, cfg.lr_schedule,
                                             cfg.warmup_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self._optimizer_step()
                if self.ema is not None:
                    self.ema.update(self.model)
                st.step += 1
                st.batch_in_epoch = b + 1
                if st.step % cfg.log_every == 0 or st.step == 1:
                    st.losses.append((st.step, loss_value))
                if self.on_step is not None:
                    elapsed = st.train_seconds + time.perf_counter() - started
                    self.on_step(StepEvent(st.step, st.epoch, self.total_steps, loss_value, lr,
                                           st.step / max(elapsed, 1e-9)))
                # after on_step: the step's log line is out before its checkpoint, so a kill
                # in between leaves a line that resuming drops, never a missing one
                if every is not None and st.step % every == 0:
                    if b + 1 < self.steps_per_epoch:
                        self.save_partial()
                    else:  # saved at the boundary below unless an epoch checkpoint is
                        partial_at_end = True
            st.epoch += 1
            st.batch_in_epoch = 0
            st.train_seconds += time.perf_counter() - started
            self._epoch_started = None
            last = st.epoch == cfg.epochs
            if st.epoch % cfg.checkpoint_every == 0 or last:
                self.model.eval()
                stop = self._evaluate_and_checkpoint(last)
                self.model.train()
                if stop:
                    break
            elif partial_at_end:
                self.save_partial()
        self.model.eval()
        return st

    def _accumulate(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
                    cond: torch.Tensor | None, parts: int) -> torch.Tensor:
        """Gradients of this process's share of a batch, in ``parts`` micro-batches; returns
        the share's loss (detached). Each micro-batch's loss is weighted by its share of the
        examples, so the summed gradient is that of the whole share's mean loss."""
        self.optimizer.zero_grad(set_to_none=True)
        if parts <= 1:
            with self.autocast():
                loss = self._loss(self.train_model, x0, t, noise, cond)
            self._backward(loss)
            return loss.detach()
        m = len(x0)
        q, r = divmod(m, parts)
        total = torch.zeros((), dtype=torch.float64)
        begin = 0
        for j in range(parts):
            end = begin + q + (1 if j < r else 0)
            part = slice(begin, end)
            # DDP: all-reduce the gradients once, after the last micro-batch
            sync = self.train_model.no_sync() if self.dist.enabled and j < parts - 1 \
                else contextlib.nullcontext()
            with sync:
                with self.autocast():
                    loss = self._loss(self.train_model, x0[part], t[part], noise[part],
                                      cond[part] if cond is not None else None)
                loss = loss * ((end - begin) / m)
                self._backward(loss)
            total += loss.detach().double().cpu()
            begin = end
        return total

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _optimizer_step(self) -> None:
        """Clip (after unscaling fp16 gradients) and step; the scaler skips a step whose
        gradients overflowed and lowers its scale."""
        cfg = self.config
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def _restore_rng(self, gen: torch.Generator) -> None:
        saved = self._resume_rng
        if saved is None:
            raise UsageError("resuming mid-epoch needs the generator states of the checkpoint "
                             f"({RNG_FILE}); resume() it first")
        gen.set_state(saved["train"])
        torch.set_rng_state(saved["global"])
        if self.device.type == "cuda" and "cuda" in saved:
            torch.cuda.set_rng_state(saved["cuda"], self.device)
        self._resume_rng = None
