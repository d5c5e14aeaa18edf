"""The component registry, fed by pluggy hook implementations found through entry points.

Every plugin, the core's built-ins included, is a module named by an entry point in group
``diffctl``. The first-party distributions load first (:data:`FIRST_PARTY`, in that order),
then every other one sorted by canonical distribution name and entry-point name, so a third
party can never take a name before the toolkit's own packages do. Loading runs each plugin's
``register_components`` hook against a staging area: a plugin either registers all of its
components or is recorded as failed (import error, a hook that raises, an unknown hook, a
component or plugin name an earlier plugin holds) and contributes nothing. "Raises" covers
``sys.exit()`` and a ``KeyboardInterrupt`` the plugin raises itself; a real Ctrl-C still
interrupts (:mod:`diffctl.plugin_isolation`, which also keeps what a plugin prints off stdout).
A plugin whose ``register_commands`` hook fails later loses the components it had registered.
Failures never stop the other plugins unless ``DIFFCTL_STRICT_PLUGINS=1``.

The registry holds light specs only: a pydantic config model and a factory, usually given as a
``"module:attribute"`` string imported on first :meth:`ComponentSpec.create`. Listing plugins
and showing configs therefore never imports torch.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy
from pydantic import BaseModel

from diffctl import hookspecs
from diffctl.component_info import ComponentInfo, MetricInfo, make_info
from diffctl.config import build_config
from diffctl.errors import PluginError, UnknownComponentError
from diffctl.plugin_isolation import MAX_OUTPUT, PluginCall

#: The kinds the toolkit itself composes. Plugins may add others; these are listed first.
KINDS: tuple[str, ...] = (
    "dataset",
    "denoiser",
    "scheduler",
    "sampler",
    "metric",
    "feature-extractor",
    "logger",
)

_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ENTRY_POINT_GROUP = "diffctl"

#: The first-party distributions in load order, each with the plugin (entry-point) name it
#: owns: no other distribution may load a plugin under these names.
FIRST_PARTY: dict[str, str] = {
    "diffctl-core": "core",
    "diffctl-models": "models",
    "diffctl-metrics": "metrics",
    "diffctl-cli": "cli",
}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _one_line(exc: BaseException, limit: int = 400) -> str:
    """``Type: message`` on one line; a multi-line message (pluggy's) keeps every line."""
    raw = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = "; ".join(line.strip() for line in raw.splitlines() if line.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_order(ep: metadata.EntryPoint) -> tuple[int, str, str, str]:
    """Sort key of entry points: first-party distributions in :data:`FIRST_PARTY` order, then
    the rest by canonical distribution name, entry-point name and value."""
    dist = _canonical(ep.dist.name) if ep.dist else ""
    ranks = list(FIRST_PARTY)
    rank = ranks.index(dist) if dist in FIRST_PARTY else len(ranks)
    return (rank, dist, ep.name, ep.value)


@dataclass
class PluginInfo:
    """What ``diffctl list plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    module: str
    status: str = "loaded"  # loaded | failed
    error: str | None = None
    components: list[tuple[str, str]] = field(default_factory=list)
    #: what the plugin printed to stdout while it was imported or its hooks ran (captured,
    #: so that it never mixes with a command's output); "" when nothing
    output: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "status": self.status,
            "error": self.error,
            "components": [f"{kind}:{name}" for kind, name in self.components],
            "output": self.output or None,
        }


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component: enough to list, document, validate and build it."""

    kind: str
    name: str
    factory: str | Callable[[Any], Any]
    config: type[BaseModel]
    summary: str
    plugin: str
    distribution: str
    version: str
    #: what the component declared at registration (diffctl.component_info); None if nothing
    info: ComponentInfo | None = None

    def load_factory(self) -> Callable[[Any], Any]:
        """Import the factory if it was given as ``"module:attribute"``."""
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def make_config(self, values: dict[str, Any] | BaseModel | None = None, **overrides: Any):
        """Validate a config for this component: defaults, then ``values``, then ``overrides``."""
        if isinstance(values, BaseModel):
            values = values.model_dump()
        merged = {**(values or {}), **overrides}
        return build_config(self.config, merged, where=f"{self.kind} '{self.name}'")

    def create(self, values: dict[str, Any] | BaseModel | None = None, **overrides: Any) -> Any:
        """Build the component from a validated config."""
        return self.load_factory()(self.make_config(values, **overrides))


class _Staging:
    """The object a plugin's hook sees as ``registry``: collects its components for commit."""

    def __init__(self, registry: Registry, info: PluginInfo):
        self._registry = registry
        self._info = info
        self.specs: list[ComponentSpec] = []

    def add(
        self,
        kind: str,
        name: str,
        *,
        factory: str | Callable[[Any], Any],
        config: type[BaseModel],
        summary: str,
        **info: Any,
    ) -> None:
        """Register one component. ``factory(config)`` must return a ready component.

        ``info`` are the metadata keywords of the kind (:mod:`diffctl.component_info`), e.g.
        ``higher_is_better=True, data=("images",)`` for a metric."""
        if not _NAME_RE.match(kind) or not _NAME_RE.match(name):
            raise ValueError(f"kind and name must be kebab-case, got {kind!r} / {name!r}")
        if not (isinstance(config, type) and issubclass(config, BaseModel)):
            raise TypeError(f"{kind} '{name}': config must be a pydantic model class")
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise TypeError(f"{kind} '{name}': factory must be callable or 'module:attribute'")
        if not summary or "\n" in summary.strip():
            raise ValueError(f"{kind} '{name}': summary must be one line")
        existing = self._registry._specs.get((kind, name))
        if existing is not None:
            raise PluginError(
                f"duplicate {kind} '{name}': already registered by plugin '{existing.plugin}' "
                f"({existing.distribution}), registered again by plugin '{self._info.name}' "
                f"({self._info.distribution})"
            )
        if any(s.kind == kind and s.name == name for s in self.specs):
            raise PluginError(f"duplicate {kind} '{name}' within plugin '{self._info.name}'")
        declared = make_info(kind, name, info)
        self.specs.append(
            ComponentSpec(
                kind=kind,
                name=name,
                factory=factory,
                config=config,
                summary=summary.strip(),
                plugin=self._info.name,
                distribution=self._info.distribution,
                version=self._info.version,
                info=declared,
            )
        )


class Registry:
    """Components by (kind, name), and the plugins they came from."""

    def __init__(self, strict: bool | None = None):
        self.strict = _env_flag("DIFFCTL_STRICT_PLUGINS") if strict is None else strict
        self._specs: dict[tuple[str, str], ComponentSpec] = {}
        self._plugins: list[PluginInfo] = []
        #: plugins registered with pluggy, by plugin name: those that loaded (one whose
        #: command hook failed later keeps its name); a plugin that failed to load holds none
        self._loaded: dict[str, PluginInfo] = {}
        self._fallback_info: dict[str, MetricInfo] = {}
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)

    # -- loading ---------------------------------------------------------------------------
    def load_entry_points(self, only: Iterable[str] | None = None) -> Registry:
        """Load every plugin of entry-point group ``diffctl``.

        ``only`` (or ``DIFFCTL_LOAD_PLUGINS=a,b``) restricts loading to the named
        distributions or entry-point names; an empty value loads none. A name that matches no
        entry point of the group (a typo) is recorded as a failed plugin whose error names the
        installed distributions, so ``diffctl list plugins`` shows it and every command keeps
        working; in strict mode it raises ``PluginError``.
        """
        source = "load_entry_points(only=...)"
        if only is None and "DIFFCTL_LOAD_PLUGINS" in os.environ:
            only = [p for p in os.environ["DIFFCTL_LOAD_PLUGINS"].split(",") if p.strip()]
            source = "DIFFCTL_LOAD_PLUGINS"
        wanted = None if only is None else {_canonical(p.strip()): p.strip() for p in only}
        eps = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
        for ep in sorted(eps, key=load_order):
            dist = ep.dist.name if ep.dist else "(unknown)"
            version = ep.dist.version if ep.dist else "?"
            if wanted is not None and not ({_canonical(dist), _canonical(ep.name)}
                                           & wanted.keys()):
                continue
            self._register(ep.load, name=ep.name, distribution=dist, version=version,
                           module=ep.value, entry_point=True)
        if wanted:
            self._record_unmatched(wanted, eps, source)
        self._pm.check_pending()
        return self

    def _record_unmatched(self, wanted: dict[str, str], eps: list[metadata.EntryPoint],
                          source: str) -> None:
        """A failed entry for each requested name that no entry point matched."""
        known = {_canonical(ep.name) for ep in eps}
        dists = sorted({ep.dist.name for ep in eps if ep.dist})
        known |= {_canonical(d) for d in dists}
        for key, raw in wanted.items():
            if key in known:
                continue
            close = difflib.get_close_matches(raw, dists, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            error = (f"{source} names '{raw}', which matches no installed distribution or entry "
                     f"point in group '{ENTRY_POINT_GROUP}' (installed: "
                     f"{', '.join(dists) or 'none'}){hint}")
            if self.strict:
                raise PluginError(error)
            self._plugins.append(PluginInfo(name=raw, distribution=raw, version="-",
                                            module="-", status="failed", error=error))

    def register_plugin(
        self,
        plugin: object,
        *,
        name: str,
        distribution: str = "(local)",
        version: str = "0",
    ) -> PluginInfo:
        """Load one plugin object (a module or any object with hook implementations)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        return self._register(lambda: plugin, name=name, distribution=distribution,
                              version=version, module=module)

    def _register(
        self,
        load: Callable[[], object],
        *,
        name: str,
        distribution: str,
        version: str,
        module: str,
        entry_point: bool = False,
    ) -> PluginInfo:
        """Import (``load``), register and run one plugin's hook; record any failure.

        The plugin's code runs inside :class:`~diffctl.plugin_isolation.PluginCall`: what it
        prints is recorded in ``info.output``, and any exception it raises, ``SystemExit`` and
        its own ``KeyboardInterrupt`` included, only fails it. A real Ctrl-C is re-raised.
        """
        info = PluginInfo(name=name, distribution=distribution, version=version, module=module)
        self._plugins.append(info)
        obj, registered, failure = None, False, None
        with PluginCall() as call:
            try:
                self._check_plugin_name(name, distribution, entry_point)
                obj = load()
                other = self._pm.get_name(obj)
                if other is not None:
                    holder = self._loaded.get(other)
                    where = f" ({holder.distribution})" if holder else ""
                    raise PluginError(f"module '{module}' is already loaded as plugin "
                                      f"'{other}'{where}")
                self._pm.register(obj, name=name)
                registered = True  # from here on, a failure must unregister this plugin
                unknown = [h.name for h in (self._pm.get_hookcallers(obj) or [])
                           if not h.has_spec()]
                if unknown:
                    raise PluginError(f"unknown hook(s): {', '.join(sorted(unknown))}")
                staging = _Staging(self, info)
                for impl in self._pm.hook.register_components.get_hookimpls():
                    if impl.plugin is obj:
                        impl.function(registry=staging)
            except BaseException as exc:  # a broken plugin (even sys.exit) must not take others
                failure = exc
        info.output = call.output
        if failure is not None or call.interrupted:
            if registered:
                self._pm.unregister(obj)
            info.status = "failed"
            info.error = _one_line(failure) if failure is not None else "interrupted"
            if call.interrupted:  # a real Ctrl-C, even one the plugin swallowed
                raise failure if isinstance(failure, KeyboardInterrupt) else KeyboardInterrupt
            if self.strict:
                raise PluginError(
                    f"plugin '{name}' ({distribution}) failed to load: {info.error}"
                ) from failure
            return info
        for spec in staging.specs:
            self._specs[(spec.kind, spec.name)] = spec
            info.components.append((spec.kind, spec.name))
        self._loaded[name] = info
        return info

    def _check_plugin_name(self, name: str, distribution: str, entry_point: bool) -> None:
        """Refuse a plugin name an earlier plugin holds, or (for an entry point) one that
        belongs to a first-party distribution, before the plugin's code runs."""
        holder = self._loaded.get(name)
        if holder is not None:
            raise PluginError(f"plugin name '{name}' is already held by the plugin from "
                              f"{holder.distribution}, which loaded first; {distribution} must "
                              f"use another entry-point name")
        owner = next((d for d, n in FIRST_PARTY.items() if n == name), None)
        if entry_point and owner is not None and _canonical(distribution) != owner:
            raise PluginError(f"plugin name '{name}' is reserved for {owner}; {distribution} "
                              f"must use another entry-point name")

    def call_register_commands(self, app: Any,
                               validate: Callable[[Any], None] | None = None) -> None:
        """Let each loaded plugin add CLI sub-commands; a failing hook marks its plugin failed.

        ``validate(app)`` runs after each plugin's hook; an exception from it (e.g. the plugin
        tried to replace a built-in command) counts as that plugin's failure. A failed plugin's
        components are removed from the registry: a failed plugin contributes no component.
        (Commands it added before failing are the caller's to drop, e.g. ``validate``'s.)
        The hooks run like the plugin's import: output captured, only a real Ctrl-C escapes.
        """
        for impl in self._pm.hook.register_commands.get_hookimpls():
            info = self._loaded.get(impl.plugin_name)
            failure = None
            with PluginCall() as call:
                try:
                    impl.function(app=app)
                    if validate is not None:
                        validate(app)
                except BaseException as exc:
                    failure = exc
            if info is not None and call.output:
                info.output = (info.output + call.output)[:MAX_OUTPUT]
            if call.interrupted:
                raise failure if isinstance(failure, KeyboardInterrupt) else KeyboardInterrupt
            if failure is None:
                continue
            message = _one_line(failure)
            if info is not None:
                self._withdraw(info)
                info.status, info.error = "failed", f"register_commands: {message}"
            if self.strict:
                raise PluginError(f"plugin '{impl.plugin_name}' command hook failed: "
                                  f"{message}") from failure

    def _withdraw(self, info: PluginInfo) -> None:
        """Remove the components ``info``'s plugin registered."""
        for kind, name in info.components:
            spec = self._specs.get((kind, name))
            if spec is not None and spec.plugin == info.name:
                del self._specs[(kind, name)]
        info.components = []

    # -- queries ---------------------------------------------------------------------------
    def plugins(self) -> list[PluginInfo]:
        return list(self._plugins)

    def kinds(self) -> list[str]:
        extra = sorted({k for k, _ in self._specs} - set(KINDS))
        return [*KINDS, *extra]

    def components(self, kind: str | None = None) -> list[str]:
        """Sorted names of one kind (or ``kind:name`` of all kinds)."""
        if kind is None:
            return sorted(f"{k}:{n}" for k, n in self._specs)
        return sorted(n for k, n in self._specs if k == kind)

    def specs(self, kind: str | None = None) -> list[ComponentSpec]:
        return sorted(
            (s for s in self._specs.values() if kind is None or s.kind == kind),
            key=lambda s: (s.kind, s.name),
        )

    def registered(self, kind: str) -> list[ComponentSpec]:
        """The components of ``kind`` in registration order (plugins in load order, each
        plugin's components in the order it added them): the order of precedence when
        several declare themselves a default."""
        return [s for s in self._specs.values() if s.kind == kind]

    def get(self, kind: str, name: str) -> ComponentSpec:
        """The spec for ``kind``/``name``, or a one-line error naming what exists."""
        if kind not in self.kinds():
            close = difflib.get_close_matches(kind, self.kinds(), n=1)
            raise UnknownComponentError("kind", kind, self.kinds(), close[0] if close else None)
        spec = self._specs.get((kind, name))
        if spec is None:
            names = self.components(kind)
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
            raise UnknownComponentError(kind, name, names, close[0] if close else None)
        return spec

    def metric_info(self, name: str) -> MetricInfo:
        """The declared :class:`MetricInfo` of metric ``name``.

        A metric registered without metadata (an older plugin) gets one from its factory's
        class attributes (``higher_is_better``, ``zero_centred``, ``score_model``): the module
        is imported, the metric is never built.
        """
        spec = self.get("metric", name)
        if isinstance(spec.info, MetricInfo):
            return spec.info
        cached = self._fallback_info.get(name)
        if cached is None:
            factory = spec.load_factory()
            cached = MetricInfo(
                higher_is_better=bool(getattr(factory, "higher_is_better", False)),
                zero_centred=bool(getattr(factory, "zero_centred", False)),
                input="model" if callable(getattr(factory, "score_model", None)) else "samples")
            self._fallback_info[name] = cached
        return cached

    def create(self, kind: str, name: str, config: dict[str, Any] | BaseModel | None = None,
               **overrides: Any) -> Any:
        """Build a component, e.g. ``create("scheduler", "cosine", num_train_timesteps=500)``."""
        return self.get(kind, name).create(config, **overrides)


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _default
    if _default is None:
        _default = Registry().load_entry_points()
    return _default


def reset_registry() -> None:
    """Forget the loaded registry (tests; after changing DIFFCTL_* environment variables)."""
    global _default
    _default = None

