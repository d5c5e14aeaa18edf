"""diffctl: a plugin-based diffusion-model toolkit.

Library entry points (none of them imports torch until a component is built)::

    import diffctl
    diffctl.components("sampler")          # ['ancestral', 'ddim', 'dpmpp-2m', 'euler', 'heun']
    sched = diffctl.create("scheduler", "cosine", num_train_timesteps=500)
    diffctl.plugins()                      # loaded plugins and failures
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from diffctl.hookspecs import hookimpl
from diffctl.registry import PluginInfo, Registry, get_registry, reset_registry

try:
    __version__ = metadata.version("diffctl-core")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"


def create(kind: str, name: str, config: Any = None, **overrides: Any) -> Any:
    """Build a registered component with its config defaults, ``config`` and ``overrides``."""
    return get_registry().create(kind, name, config, **overrides)


def components(kind: str | None = None) -> list[str]:
    """Names registered for ``kind`` (all as ``kind:name`` when ``kind`` is None)."""
    return get_registry().components(kind)


def load_model(path: str, *, device: str | None = None) -> Any:
    """A model exported by ``diffctl export`` (weights and component configs in one
    safetensors file), ready to ``.sample(n)``: see :mod:`diffctl.runs.export`."""
    from diffctl.runs.export import load_model as _load

    return _load(path, device=device)


def plugins() -> list[PluginInfo]:
    """Every plugin that was found, with its status, error and components."""
    return get_registry().plugins()


__all__ = [
    "PluginInfo",
    "Registry",
    "__version__",
    "components",
    "create",
    "get_registry",
    "hookimpl",
    "load_model",
    "plugins",
    "reset_registry",
]
