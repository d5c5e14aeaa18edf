"""Checks by registered name, and of a whole plugin module."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Collection, Mapping
from types import ModuleType
from typing import Any

from diffctl.errors import DiffctlError
from diffctl.registry import Registry, get_registry
from diffctl.testing._support import Builder, Checks, ConformanceError, NotApplicable
from diffctl.testing.config import CONFIG_CHECKS, config_checks
from diffctl.testing.dataset import check_dataset
from diffctl.testing.denoiser import check_denoiser
from diffctl.testing.logger import check_logger
from diffctl.testing.metric import check_metric
from diffctl.testing.registry import isolated_registry, use_registry
from diffctl.testing.sampler import check_sampler
from diffctl.testing.scheduler import check_scheduler

#: The check for each kind the toolkit composes; other kinds get the config and build checks.
CHECKS: dict[str, Callable[..., list[str]]] = {
    "dataset": check_dataset,
    "denoiser": check_denoiser,
    "scheduler": check_scheduler,
    "sampler": check_sampler,
    "metric": check_metric,
    "logger": check_logger,
}

#: Modules that must stay unimported while plugins are listed (``diffctl list`` stays fast).
HEAVY_MODULES = ("torch", "numpy", "scipy", "sklearn", "matplotlib")

PLUGIN_CHECKS = ("loads", "registers", "lazy-imports", "commands")

def check_component(kind: str, name: str, options: Mapping[str, Any] | None = None, *,
                    registry: Registry | None = None, skip: Collection[str] = (),
                    **kwargs: Any) -> list[str]:
    """Check the registered component ``kind``/``name`` with the check for its kind.

    Looks it up in ``registry`` (default: the process-wide one, which the ``diffctl_registry``
    fixture replaces by an isolated one); ``options`` configure it, ``kwargs`` go to the kind's
    check (e.g. ``symmetric=False`` for a metric). Kinds without a dedicated check get the
    config checks and a build (``"build"`` in the passed list; ``skip=["build"]`` leaves it
    out, and for any kind checks the config only).
    """
    spec = (registry or get_registry()).get(kind, name)
    label = f"{kind} '{name}' (plugin {spec.plugin}, {spec.distribution})"
    check = CHECKS.get(kind)
    if check is None:
        checks = Checks(label, (*CONFIG_CHECKS, "build"), skip)
        config_checks(checks, spec.config, options)
        checks.run("build", Builder(spec.factory, spec.config, options).build)
        return checks.passed
    if kind == "metric":
        kwargs.setdefault("name", name)
    return check(spec.factory, spec.config, options, label=label, skip=skip, **kwargs)


def _imported_heavy_modules(module: str) -> list[str]:
    """Heavy modules that importing ``module`` pulls in, measured in a fresh interpreter that
    sees this one's ``sys.path``."""
    code = (f"import importlib, json, sys\nimportlib.import_module({module!r})\n"
            f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"importing {module} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_plugin(plugin: ModuleType | str | object, *,
                 components: Mapping[str, Mapping[str, Any]] | None = None,
                 skip: Collection[str] = ()) -> dict[str, list[str]]:
    """Check a plugin (a module, its name, or any object with hook implementations) and every
    component it registers.

    Plugin sub-checks: ``loads`` (it registers next to the core's built-ins without error:
    hooks known, names free), ``registers`` (at least one component or command), ``lazy-imports``
    (importing it in a fresh interpreter imports none of torch, numpy, scipy, scikit-learn,
    matplotlib), ``commands`` (with diffctl-cli installed: its command hook runs and adds no
    built-in command names). Then :func:`check_component` for each component, with the
    keyword arguments in ``components["kind:name"]`` (e.g. ``{"options": {...}, "skip": [...]}``).
    Returns the passed sub-checks under ``"plugin"`` and under each ``"kind:name"``.
    """
    module: Any = importlib.import_module(plugin) if isinstance(plugin, str) else plugin
    module_name = getattr(module, "__name__", type(module).__name__)
    checks = Checks(f"plugin {module_name}", PLUGIN_CHECKS, skip)
    components = dict(components or {})

    def loads() -> Registry:
        try:
            return isolated_registry(module)
        except DiffctlError as exc:
            raise ConformanceError(f"{checks.label}: loads: {exc}") from None

    reg = checks.run("loads", loads) or isolated_registry(module, strict=False)
    info = next(p for p in reg.plugins() if p.name == module_name)
    has_commands = hasattr(module, "register_commands")

    def registers() -> None:
        if not (info.components or has_commands):
            raise ConformanceError(f"{checks.label}: registers: it adds no component and no "
                                   "command")

    def lazy_imports() -> None:
        if not isinstance(module, ModuleType):
            raise NotApplicable
        heavy = _imported_heavy_modules(module_name)
        if heavy:
            raise ConformanceError(
                f"{checks.label}: lazy-imports: importing it imports {', '.join(heavy)}; give "
                "factories as 'module:attribute' strings and import heavy libraries inside "
                "them, so that `diffctl list` stays fast")

    def commands() -> None:
        try:
            from diffctl_cli.app import create_app
        except ImportError:
            raise NotApplicable from None
        if not has_commands:
            raise NotApplicable
        with use_registry(reg):
            create_app()
        if info.status != "loaded":
            raise ConformanceError(f"{checks.label}: commands: {info.error}")

    checks.run("registers", registers)
    checks.run("lazy-imports", lazy_imports)
    checks.run("commands", commands)
    unknown = sorted(set(components) - {f"{k}:{n}" for k, n in info.components})
    if unknown:
        raise ValueError(f"settings for components the plugin does not register: "
                         f"{', '.join(unknown)}")
    report = {"plugin": checks.passed}
    for kind, name in info.components:
        report[f"{kind}:{name}"] = check_component(kind, name, registry=reg,
                                                   **components.get(f"{kind}:{name}", {}))
    return report
