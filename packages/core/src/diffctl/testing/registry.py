"""Registries for tests that see only what the test asks for, never what happens to be
installed."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from diffctl import registry as registry_module
from diffctl.registry import Registry


def isolated_registry(*plugins: object, builtins: Iterable[str] = ("diffctl-core",),
                      strict: bool = True) -> Registry:
    """A fresh registry with the ``builtins`` distributions' plugins and ``plugins``.

    ``plugins`` are modules (or objects) with hook implementations, registered under their
    module name. ``strict`` (default) turns a plugin that fails to load into an immediate
    ``PluginError`` with the reason, which is what a plugin's own tests want.
    ``DIFFCTL_LOAD_PLUGINS`` and ``DIFFCTL_STRICT_PLUGINS`` do not apply.
    """
    reg = Registry(strict=strict).load_entry_points(only=list(builtins))
    for plugin in plugins:
        reg.register_plugin(plugin, name=getattr(plugin, "__name__", type(plugin).__name__))
    return reg


@contextmanager
def use_registry(reg: Registry) -> Iterator[Registry]:
    """Make ``reg`` the process-wide registry (``diffctl.create``, the CLI) for a while."""
    before = registry_module._default
    registry_module._default = reg
    try:
        yield reg
    finally:
        registry_module._default = before
