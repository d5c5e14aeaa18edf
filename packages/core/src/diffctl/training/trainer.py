"""The training loop: objective, optimiser, EMA, checkpoints, evaluation, resume.

Randomness is a function of (seed, epoch): the data order, timesteps, noise and augmentation
of epoch e come from the run's ``train`` stream at index e, dropout from its ``dropout``
stream (:mod:`diffctl.seeds`). Checkpoints fall on epoch boundaries, so a resumed run
continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

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
    load_checkpoint,
    read_pointer,
    save_checkpoint,
    write_pointer,
)
from diffctl.training.config import TrainConfig
from diffctl.training.distributed import all_mean, broadcast_flag, dist_info, setup
from diffctl.training.ema import EMA
from diffctl.training.lr_schedule import lr_multiplier, scaled_lr
from diffctl.training.objective import diffusion_loss

#: How a checkpoint's RNG state is to be read; a resume refuses a checkpoint of another scheme.
RNG_SCHEME = "diffctl.seeds streams train/dropout per epoch"


class TrainingDiverged(DiffctlError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


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
    train_seconds: float = 0.0
    best_value: float | None = None
    best_epoch: int | None = None
    evals_without_improvement: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    stopped_early: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


Evaluate = Callable[[torch.nn.Module, TrainState], dict[str, float]]


class Trainer:
    """Trains ``model`` on a tensor of examples; writes checkpoints under ``run_dir``."""

    def __init__(
        self,
        model: torch.nn.Module,
        scheduler: Any,
        train_data: torch.Tensor,
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
    ):
        self.config, self.seed = config, seed
        self.dist = dist_info()
        self.device = pick_device(config.device)
        if self.dist.enabled:
            if config.batch_size % self.dist.world_size:
                raise UsageError(f"batch_size {config.batch_size} must be divisible by the "
                                 f"number of processes ({self.dist.world_size})")
            self.device = setup(self.dist, self.device)
        self.model = model.to(self.device)
        self.scheduler = scheduler
        self.data = train_data.to(self.device)
        self.labels = labels.to(self.device) if labels is not None else None
        self.augment = augment
        self.checkpoint_dir = checkpoint_dir if self.dist.is_main else None
        self.evaluate, self.on_step, self.on_eval = evaluate, on_step, on_eval
        self.higher_is_better = higher_is_better
        self.checkpoint_meta = dict(checkpoint_meta or {})  # stored in every state.json
        self.lr = scaled_lr(config.lr, config.batch_size, config.base_batch_size,
                            config.lr_scaling)
        opt_cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.model.parameters(), lr=self.lr,
                                 weight_decay=config.weight_decay)
        self.ema = EMA(self.model, config.ema_decay, config.ema_warmup) \
            if config.ema_decay else None
        self.state = TrainState()
        # what the loss calls: the module itself or its torch.compile wrapper (checkpoints and
        # EMA always use the plain module, so the weights' names never change)
        self.train_model = torch.compile(self.model) if config.compile else self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DistributedDataParallel(self.train_model, device_ids=ids)
        n = len(self.data)
        # a last partial batch is kept if every process gets at least one example of it (and
        # BatchNorm-style layers at least two in a one-process run)
        tail = n % config.batch_size
        self.steps_per_epoch = n // config.batch_size + (
            1 if tail >= max(2, self.dist.world_size) else 0)
        self.total_steps = self.steps_per_epoch * config.epochs

    # -- checkpoints -----------------------------------------------------------------------
    def eval_model(self) -> torch.nn.Module:
        """The weights used for evaluation and sampling: the EMA copy when there is one."""
        return self.ema.shadow if self.ema is not None else self.model

    def save(self, name: str) -> Path | None:
        if self.checkpoint_dir is None:
            return None
        # the RNG state: every random draw of epoch e comes from the streams "train" and
        # "dropout" at index e of the run's seed, so (seed, next epoch) restores it
        rng = {"scheme": RNG_SCHEME, "seed": self.seed,
               "next_epoch": self.state.epoch}
        state = self.state.as_dict() | {"ema_updates": self.ema.updates if self.ema else 0,
                                        "rng": rng, **self.checkpoint_meta}
        return save_checkpoint(self.checkpoint_dir, name, self.model, self.optimizer, state,
                               ema=self.ema.shadow if self.ema else None)

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
        # the record goes out before the checkpoint: a run killed in between has a record
        # without its checkpoint, which resuming drops (the run directory's truncate_logs),
        # never the reverse
        if self.on_eval is not None:
            self.on_eval(st, metrics)
        self.save(name)
        if improved and self.checkpoint_dir is not None:
            write_pointer(self.checkpoint_dir / "best", name)
        return broadcast_flag(stop, self.dist, self.device)

    def fit(self) -> TrainState:
        cfg, st = self.config, self.state
        T = self.scheduler.num_train_timesteps
        n = len(self.data)
        self.model.train()
        while st.epoch < cfg.epochs:
            started = time.perf_counter()
            gen = torch.Generator().manual_seed(stream_seed(self.seed, "train", st.epoch))
            torch.manual_seed(stream_seed(self.seed, "dropout", st.epoch))
            order = torch.randperm(n, generator=gen).to(self.device)
            for b in range(self.steps_per_epoch):
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                x0 = self.data[idx]
                if self.augment is not None:
                    x0 = self.augment(x0, gen)
                cond = self.labels[idx] if self.labels is not None else None
                t = torch.randint(0, T, (len(idx),), generator=gen).to(self.device)
                noise = torch.randn(x0.shape, generator=gen).to(self.device, x0.dtype)
                if self.dist.enabled:  # every rank drew the whole batch; keep this rank's share
                    share = slice(self.dist.rank, None, self.dist.world_size)
                    x0, t, noise = x0[share], t[share], noise[share]
                    cond = cond[share] if cond is not None else None
                with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                    enabled=cfg.precision == "bf16"):
                    loss = diffusion_loss(self.train_model, self.scheduler, x0, t, noise, cond,
                                          cfg.loss_weighting, cfg.min_snr_gamma,
                                          prediction=getattr(self.model, "prediction", None))
                loss_value = all_mean(float(loss.detach()), self.dist, self.device)
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
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.optimizer.step()
                if self.ema is not None:
                    self.ema.update(self.model)
                st.step += 1
                if st.step % cfg.log_every == 0 or st.step == 1:
                    st.losses.append((st.step, loss_value))
                if self.on_step is not None:
                    elapsed = st.train_seconds + time.perf_counter() - started
                    self.on_step(StepEvent(st.step, st.epoch, self.total_steps, loss_value, lr,
                                           st.step / max(elapsed, 1e-9)))
            st.epoch += 1
            st.train_seconds += time.perf_counter() - started
            last = st.epoch == cfg.epochs
            if st.epoch % cfg.checkpoint_every == 0 or last:
                self.model.eval()
                stop = self._evaluate_and_checkpoint(last)
                self.model.train()
                if stop:
                    break
        self.model.eval()
        return st
