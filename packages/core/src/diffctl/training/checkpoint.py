"""Checkpoints: safetensors weights plus a small JSON of trainer state, written atomically.

Layout of one checkpoint folder ``checkpoints/epoch-0010/``:
``model.safetensors``, ``ema.safetensors`` (if EMA is on), ``optimizer.safetensors`` (the
optimizer's tensors), ``state.json`` (step, epoch, optimizer hyper-parameters, best value,
losses, EMA update count and the RNG state). The trainer draws every random number of epoch
``e`` from generators seeded with ``(seed, e)`` and checkpoints fall on epoch boundaries, so
the RNG state is just ``{"seed", "next_epoch"}``: plain JSON, exact on every device.
``state.json`` also records the sha256 of every tensor file (``files``), verified on load, so
flipped bytes are an error rather than weights used silently. The folder is written under a
temporary name and renamed into place, so a killed process leaves either a whole checkpoint
or none (a leftover ``.epoch-NNNN.*`` staging folder is removed by the next save).
``checkpoints/last`` and ``checkpoints/best`` are one-line pointer files naming a folder of the
same ``checkpoints/``, also replaced atomically. No pickle anywhere.

A checkpoint saved mid-epoch adds ``rng.safetensors`` (the generators' states as uint8
tensors) and ``batch_in_epoch``; an fp16 run's ``state.json`` holds the gradient scaler's
state (``grad_scaler``: scale, growth tracker and factors, plain numbers).

Partial checkpoints (``train.checkpoint_every_steps``) live one level down, in
``checkpoints/partial/step-NNNNNNNN/`` (the optimiser step, eight digits), same layout. They
exist only to resume from: ``partial/`` has no ``state.json`` of its own, so
:func:`list_checkpoints`, :func:`select_checkpoints` and the pointers never see them, and
:func:`resolve_checkpoint` refuses the name. A new one is written beside the old and the old
is removed after, so a kill at any moment leaves at least one whole checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    ValidationError,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffctl.errors import StorageError, UsageError


class CheckpointError(UsageError):
    """A checkpoint is missing or unreadable."""


def _state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into tensors (safetensors) and plain JSON."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


#: Names of checkpoint folders: what a pointer may name (nothing outside ``checkpoints/``).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
POINTERS = ("last", "best")
#: The folders the trainer writes, ``epoch-NNNN``: their state must record that epoch.
EPOCH_DIR_RE = re.compile(r"^epoch-(\d+)$")
#: The folder under ``checkpoints/`` holding the resume-only partial checkpoints.
PARTIAL_DIR = "partial"
#: A partial checkpoint's folder, ``step-NNNNNNNN``: its state must record that step.
STEP_DIR_RE = re.compile(r"^step-(\d+)$")


def partial_name(step: int) -> str:
    """The folder name of the partial checkpoint saved after optimiser step ``step``."""
    return f"step-{step:08d}"


def list_partial_checkpoints(directory: Path) -> list[Path]:
    """The partial checkpoints under ``directory/partial`` (``directory`` being a run's
    ``checkpoints/``), oldest first by the step in their name; staging folders ignored."""
    folder = directory / PARTIAL_DIR
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and STEP_DIR_RE.match(p.name)]
    return sorted(found, key=lambda p: int(STEP_DIR_RE.match(p.name).group(1)))  # type: ignore


def partial_step(path: Path) -> int:
    """The step a partial checkpoint's folder name claims."""
    named = STEP_DIR_RE.match(path.name)
    if named is None:
        raise CheckpointError(f"{path} is not a partial checkpoint folder (step-NNNNNNNN)")
    return int(named.group(1))


def discard(path: Path) -> None:
    """Remove a checkpoint folder (or the partial folder): first renamed to a hidden name,
    which the next save's staging clean-up removes if this process dies before it does, so
    a half-removed folder is never taken for a checkpoint."""
    if not path.exists():
        return
    hidden = path.with_name(f".{path.name}.discarded")
    try:
        if hidden.exists():
            shutil.rmtree(hidden, ignore_errors=True)
        os.replace(path, hidden)
    except OSError:
        hidden = path
    shutil.rmtree(hidden, ignore_errors=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    """The cause of a failed write in a few words (``No space left on device``)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def write_pointer(path: Path, target: str) -> None:
    """Atomically replace a pointer file with the name of a checkpoint folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(target + "\n")
    os.replace(tmp, path)


def read_pointer(path: Path) -> Path | None:
    """The checkpoint folder a ``last``/``best`` pointer names, None if there is no pointer.

    A pointer may only name a folder of its own ``checkpoints/`` (no path separators, no
    ``..``): anything else is a damaged pointer and an error, never another run's weights.
    """
    if not path.exists():
        return None
    try:
        target = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise CheckpointError(f"checkpoint pointer {path} is unreadable (damaged?)") from None
    if not NAME_RE.match(target) or target in (*POINTERS, PARTIAL_DIR) or \
            target in (".", ".."):
        raise CheckpointError(f"checkpoint pointer {path} names {target!r}, which is not a "
                              f"checkpoint folder of {path.parent} (damaged?)")
    return path.parent / target


def save_checkpoint(
    directory: Path,
    name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    ema: torch.nn.Module | None = None,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,
    point_last: bool = True,
) -> Path:
    """Write checkpoint ``directory/name`` atomically and (with ``point_last``) point ``last``
    at it; ``extra`` maps further ``*.safetensors`` file names to their tensors (checksummed
    like the rest)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(directory)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=directory))
    except OSError as exc:
        raise StorageError(f"cannot write checkpoint {name} in {directory}: "
                           f"{exc.strerror or exc}") from None
    try:
        save_file(_state_dict(model), str(staging / "model.safetensors"))
        if ema is not None:
            save_file(_state_dict(ema), str(staging / "ema.safetensors"))
        for file_name, tensors in (extra or {}).items():
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                      str(staging / file_name))
        payload = dict(state)
        if optimizer is not None:
            tensors, meta = _optimizer_tensors(optimizer)
            save_file(tensors, str(staging / "optimizer.safetensors"))
            payload["optimizer"] = meta
        payload["files"] = {f.name: file_sha256(f) for f in sorted(staging.glob("*.safetensors"))}
        (staging / "state.json").write_text(json.dumps(payload, indent=1))
        final = directory / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except (OSError, SafetensorError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        kept = [p.name for p in list_checkpoints(directory)]
        raise StorageError(f"cannot write checkpoint {name} in {directory} "
                           f"({_reason(exc)}); the earlier checkpoints are kept "
                           f"({', '.join(kept) if kept else 'none yet'})") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if point_last:
        write_pointer(directory / "last", name)
    return final


def remove_stale_staging(directory: Path) -> None:
    """Remove half-written ``.<name>.*`` staging folders left by a killed save."""
    for path in directory.glob(".*"):
        if path.is_dir() and not path.name.startswith(".."):
            shutil.rmtree(path, ignore_errors=True)


def _load_tensors(path: Path, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    if expected_sha256 is not None and path.exists() and file_sha256(path) != expected_sha256:
        raise CheckpointError(f"checkpoint file {path} does not match the checksum in its "
                              "state.json: the file is damaged")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"corrupted or unreadable checkpoint file {path}: "
                              f"{str(exc).splitlines()[0]}") from None


def load_extra_tensors(path: Path, file_name: str) -> dict[str, torch.Tensor]:
    """The tensors of a further file of checkpoint ``path`` (see ``save_checkpoint``'s
    ``extra``), checked against the checksum its state.json records."""
    sums = read_state(path).get("files") or {}
    if not (path / file_name).is_file() or file_name not in sums:
        raise CheckpointError(f"checkpoint {path} lacks {file_name}, which its state needs "
                              "(damaged?)")
    return _load_tensors(path / file_name, sums[file_name])


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    ema: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Restore weights (and optimizer, EMA) from a checkpoint folder; returns its state."""
    state = read_state(path)
    sums = state.get("files") or {}
    weights = _load_tensors(path / "model.safetensors", sums.get("model.safetensors"))
    _load_module(model, weights, path / "model.safetensors")
    if ema is not None and (path / "ema.safetensors").exists():
        _load_module(ema, _load_tensors(path / "ema.safetensors", sums.get("ema.safetensors")),
                     path / "ema.safetensors")
    elif ema is not None and "ema.safetensors" in sums:  # written, then lost: not "no EMA"
        raise CheckpointError(f"checkpoint {path} lacks ema.safetensors, which its state.json "
                              "records (damaged?)")
    if optimizer is not None:
        if not (path / "optimizer.safetensors").exists() or \
                not isinstance(state.get("optimizer"), dict):
            raise CheckpointError(f"checkpoint {path} has no optimizer state to resume from")
        tensors = _load_tensors(path / "optimizer.safetensors",
                                sums.get("optimizer.safetensors"))
        try:
            _restore_optimizer(optimizer, tensors, state["optimizer"])
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"optimizer state of {path} does not fit the model "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0]})") \
                from None
    return state


def verify_checkpoint(path: Path, *, need_optimizer: bool = False,
                      need_ema: bool = False) -> dict[str, Any]:
    """Check a checkpoint folder without loading it into a model: a readable state.json, the
    tensor files present (the optimizer's and the EMA's when needed) and matching the
    checksums the state records. Returns the state."""
    state = read_state(path)
    required = ["model.safetensors"]
    if need_optimizer:
        required.append("optimizer.safetensors")
    if need_ema:
        required.append("ema.safetensors")
    for name in required:
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} lacks {name}")
    if need_optimizer and not isinstance(state.get("optimizer"), dict):
        raise CheckpointError(f"checkpoint {path} has no optimizer state in its state.json")
    for name, expected in (state.get("files") or {}).items():
        if (path / name).exists() and file_sha256(path / name) != expected:
            raise CheckpointError(f"checkpoint file {path / name} does not match the checksum "
                                  "in its state.json: the file is damaged")
    return state


def _load_module(module: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not fit the model: "
                              f"{str(exc).splitlines()[0]}") from None
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(
        torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"checkpoint {path} holds non-finite weights ({bad[0]}): damaged "
                              "or diverged")


class _Optimizer(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    param_groups: list[dict[str, Any]]
    scalars: dict[str, dict[str, Any]] = {}


class _Rng(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    scheme: str | None = None
    seed: NonNegativeInt | None = None
    next_epoch: NonNegativeInt | None = None
    next_batch: NonNegativeInt | None = None


class _GradScaler(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    scale: float = Field(gt=0)
    growth_factor: float
    backoff_factor: float
    growth_interval: int
    growth_tracker: NonNegativeInt = Field(0, alias="_growth_tracker")


class _State(BaseModel):
    """The fields of state.json and their types (those an older checkpoint lacks get
    defaults); a value of another type means a damaged file, never a guess."""

    model_config = ConfigDict(extra="allow", strict=True)
    step: NonNegativeInt
    epoch: NonNegativeInt
    batch_in_epoch: NonNegativeInt = 0
    train_seconds: NonNegativeFloat = 0.0
    best_value: float | None = None
    best_epoch: NonNegativeInt | None = None
    evals_without_improvement: NonNegativeInt = 0
    losses: list[Annotated[list[float], Field(min_length=2, max_length=2)]] = []
    stopped_early: bool = False
    ema_updates: NonNegativeInt = 0
    rng: _Rng = _Rng()
    config_sha256: str | None = None
    optimizer: _Optimizer | None = None
    grad_scaler: _GradScaler | None = None
    files: dict[str, str] = {}


def read_state(path: Path) -> dict[str, Any]:
    """The ``state.json`` of checkpoint folder ``path``, every known field of the right type
    (and the epoch of an ``epoch-NNNN`` folder equal to NNNN); anything unreadable is one
    :class:`CheckpointError`."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} has no state.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupted checkpoint state {path / 'state.json'}: "
                              f"{type(exc).__name__}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"corrupted checkpoint state {path / 'state.json'}: not an "
                              "object")
    try:
        _State.model_validate(state)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        problem = "is missing" if first["type"] == "missing" else \
            f"is {_short(first.get('input'))} ({first['msg']})"
        raise CheckpointError(f"corrupted checkpoint state {path / 'state.json'}: {where} "
                              f"{problem}") from None
    named = EPOCH_DIR_RE.match(path.name)
    if named and int(named.group(1)) != state["epoch"]:
        raise CheckpointError(f"corrupted checkpoint state {path / 'state.json'}: epoch "
                              f"{state['epoch']} in the folder of epoch {int(named.group(1))}")
    named = STEP_DIR_RE.match(path.name) if path.parent.name == PARTIAL_DIR else None
    if named and int(named.group(1)) != state["step"]:
        raise CheckpointError(f"corrupted checkpoint state {path / 'state.json'}: step "
                              f"{state['step']} in the folder of step {int(named.group(1))}")
    return state


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint folders in name (= epoch) order; staging folders are ignored."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "state.json").exists())


def resolve_checkpoint(directory: Path, name: str) -> Path:
    """The checkpoint folder ``name`` names: ``last`` or ``best`` (through their pointers;
    ``last`` falls back to the newest folder when its pointer is missing) or a folder name."""
    if name in POINTERS:
        path = read_pointer(directory / name)
        if path is None and name == "last":
            found = list_checkpoints(directory)
            path = found[-1] if found else None
        if path is None:
            raise CheckpointError(f"{directory} has no '{name}' checkpoint")
    else:
        if not NAME_RE.match(name):
            raise CheckpointError(f"{name!r} is not a checkpoint name (last, best or a folder "
                                  f"of {directory}, e.g. epoch-0010)")
        if name == PARTIAL_DIR:
            known = ", ".join(p.name for p in list_checkpoints(directory)) or "none"
            raise CheckpointError(f"{directory / name} holds mid-epoch checkpoints that only "
                                  f"resuming uses; name an epoch checkpoint (there: {known})")
        path = directory / name
    if not (path / "state.json").is_file():
        if EPOCH_DIR_RE.match(path.name) and path.is_dir():
            raise CheckpointError(f"checkpoint {path} has no state.json (damaged?)")
        known = ", ".join(p.name for p in list_checkpoints(directory)) or "none"
        via = f" (named by {directory / name})" if name in POINTERS else ""
        raise CheckpointError(f"no checkpoint {path.name} in {directory}{via} (there: {known})")
    return path


def select_checkpoints(directory: Path, which: str) -> list[Path]:
    """The checkpoints a command works on: ``all``, ``last``, ``best`` or comma-separated
    folder names; in epoch order, each once."""
    if which == "all":
        # an epoch folder without its state.json is a damaged checkpoint, not an absent one:
        # it is selected, so that using it reports the damage instead of skipping it silently
        found = sorted({*list_checkpoints(directory),
                        *(p for p in (directory.iterdir() if directory.is_dir() else ())
                          if p.is_dir() and EPOCH_DIR_RE.match(p.name))})
    else:
        names = [c.strip() for c in which.split(",") if c.strip()]
        found = sorted({resolve_checkpoint(directory, n) for n in names})
    if not found:
        raise CheckpointError(f"no checkpoints in {directory}")
    return found
