"""Checkpoints: safetensors weights plus a small JSON of trainer state, written atomically.

Layout of one checkpoint folder ``checkpoints/epoch-0010/``:
``model.safetensors``, ``ema.safetensors`` (if EMA is on), ``optimizer.safetensors`` (the
optimizer's tensors), ``state.json`` (step, epoch, optimizer hyper-parameters, best value,
losses, EMA update count and the RNG state). The trainer draws every random number of epoch
``e`` from generators seeded with ``(seed, e)`` and checkpoints fall on epoch boundaries, so
the RNG state is just ``{"seed", "next_epoch"}``: plain JSON, exact on every device.
The folder is written under a temporary name and renamed into place, so a killed process
leaves either a whole checkpoint or none. ``checkpoints/last`` and ``checkpoints/best`` are
one-line pointer files, also replaced atomically. No pickle anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffctl.errors import UsageError


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


def write_pointer(path: Path, target: str) -> None:
    """Atomically replace a pointer file with the name of a checkpoint folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(target + "\n")
    os.replace(tmp, path)


def read_pointer(path: Path) -> Path | None:
    if not path.exists():
        return None
    return path.parent / path.read_text().strip()


def save_checkpoint(
    directory: Path,
    name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    ema: torch.nn.Module | None = None,
) -> Path:
    """Write checkpoint ``directory/name`` atomically and point ``last`` at it."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=directory))
    try:
        save_file(_state_dict(model), str(staging / "model.safetensors"))
        if ema is not None:
            save_file(_state_dict(ema), str(staging / "ema.safetensors"))
        payload = dict(state)
        if optimizer is not None:
            tensors, meta = _optimizer_tensors(optimizer)
            save_file(tensors, str(staging / "optimizer.safetensors"))
            payload["optimizer"] = meta
        (staging / "state.json").write_text(json.dumps(payload, indent=1))
        final = directory / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    write_pointer(directory / "last", name)
    return final


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"corrupted or unreadable checkpoint file {path}: "
                              f"{str(exc).splitlines()[0]}") from None


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    ema: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Restore weights (and optimizer, EMA) from a checkpoint folder; returns its state."""
    if not path.is_dir():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = json.loads((path / "state.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupted checkpoint state {path / 'state.json'}: {exc}") from None
    weights = _load_tensors(path / "model.safetensors")
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path / 'model.safetensors'} does not fit the model: "
                              f"{str(exc).splitlines()[0]}") from None
    if ema is not None and (path / "ema.safetensors").exists():
        ema.load_state_dict(_load_tensors(path / "ema.safetensors"))
    if optimizer is not None and (path / "optimizer.safetensors").exists():
        _restore_optimizer(optimizer, _load_tensors(path / "optimizer.safetensors"),
                           state["optimizer"])
    return state


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint folders in epoch order (temporary ones are ignored)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "state.json").exists())
