"""``diffctl list`` and ``diffctl show``: what the installed plugins provide.

Both read only the registry's light specs (config models and summaries), so they never import
torch; only ``show --details`` builds the component (a denoiser's parameter count).
Plugin-provided text is escaped before rich renders it, so a summary or error containing
``[...]`` is printed as written. What a plugin printed while loading (captured by the registry)
is a one-line note under its status in ``list plugins``, and in full under ``output`` with
``--json``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from diffctl.errors import DiffctlError

if TYPE_CHECKING:
    from diffctl.registry import ComponentSpec, PluginInfo, Registry

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

#: Names of a plugin's components shown per kind in ``list plugins`` before "...".
NAMES_PER_KIND = 3


def _console() -> Console:
    """A console built per command, so it sees the current stdout and terminal width."""
    return Console(highlight=False)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def resolve_kind(registry: Registry, kind: str) -> str:
    """The registered kind for ``kind``, accepting plurals (``samplers``).

    An unknown kind raises :class:`~diffctl.errors.UnknownComponentError` naming the closest
    kind, which the CLI prints as one line with exit code 2.
    """
    from diffctl.errors import UnknownComponentError

    kinds = registry.kinds()
    if kind in kinds:
        return kind
    if kind.endswith("s") and kind[:-1] in kinds:
        return kind[:-1]
    close = difflib.get_close_matches(kind, kinds, n=1)
    raise UnknownComponentError("kind", kind, kinds, close[0] if close else None)


# -- diffctl list -----------------------------------------------------------------------------
def components_summary(info: PluginInfo, per_kind: int = NAMES_PER_KIND) -> str:
    """One line per kind, e.g. ``scheduler (4): cosine, linear, scaled-linear, ...``."""
    by_kind: dict[str, list[str]] = {}
    for kind, name in info.components:
        by_kind.setdefault(kind, []).append(name)
    lines = []
    for kind, names in sorted(by_kind.items()):
        names.sort()
        shown = ", ".join(names[:per_kind]) + (", ..." if len(names) > per_kind else "")
        lines.append(f"{kind} ({len(names)}): {shown}")
    return "\n".join(lines) or "-"


def output_note(output: str, width: int = 60) -> str:
    """What a plugin printed while loading, as one short line (``--json`` has all of it)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if not lines:
        return "printed blank lines while loading"
    first = lines[0] if len(lines[0]) <= width else lines[0][: width - 3] + "..."
    more = f" (+{len(lines) - 1} more, see --json)" if len(lines) > 1 else ""
    return f"printed while loading: {first}{more}"


def _list_plugins(registry: Registry, as_json: bool) -> None:
    plugins = registry.plugins()
    if as_json:
        _echo_json([p.as_dict() for p in plugins])
        return
    table = Table(title="diffctl plugins")
    for column in ("plugin", "distribution", "version", "components", "status"):
        table.add_column(column, overflow="fold")
    for p in plugins:
        status = ("[green]loaded[/]" if p.status == "loaded"
                  else f"[red]failed[/]: {escape(p.error or '')}")
        if p.output:
            status += f"\n[dim]{escape(output_note(p.output))}[/]"
        table.add_row(escape(p.name), escape(p.distribution), escape(p.version),
                      escape(components_summary(p)), status)
    _console().print(table)


def _list_kinds(registry: Registry, as_json: bool) -> None:
    counts = {kind: len(registry.components(kind)) for kind in registry.kinds()}
    if as_json:
        _echo_json(counts)
        return
    table = Table(title="component kinds")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for kind, count in counts.items():
        table.add_row(escape(kind), str(count))
    console = _console()
    console.print(table)
    console.print("list one kind with [bold]diffctl list KIND[/], plugins with "
                  "[bold]diffctl list plugins[/]")


def _list_components(registry: Registry, kind: str, as_json: bool) -> None:
    specs = registry.specs(kind)
    if as_json:
        _echo_json([{"name": s.name, "summary": s.summary, "plugin": s.plugin,
                     "distribution": s.distribution, "version": s.version} for s in specs])
        return
    table = Table(title=f"{kind} components")
    for column in ("name", "summary", "plugin"):
        table.add_column(column, overflow="fold")
    for s in specs:
        table.add_row(escape(s.name), escape(s.summary), escape(s.plugin))
    _console().print(table)


def list_command(
    what: Annotated[str, typer.Argument(
        help="'plugins', 'kinds', or a component kind such as sampler (plurals accepted).")
    ] = "kinds",
    as_json: JsonOpt = False,
) -> None:
    """List plugins (with status), component kinds, or the components of one kind."""
    from diffctl import get_registry

    registry = get_registry()
    if what == "plugins":
        _list_plugins(registry, as_json)
    elif what == "kinds":
        _list_kinds(registry, as_json)
    else:
        _list_components(registry, resolve_kind(registry, what), as_json)


# -- diffctl show -----------------------------------------------------------------------------
def _denoiser_details(spec: ComponentSpec, options: dict[str, Any]) -> dict[str, Any]:
    """Parameter count of the model built with ``options`` (imports torch)."""
    model = spec.create(options)
    return {"parameters": sum(p.numel() for p in model.parameters())}


#: Facts ``show --details`` computes for a kind by building the component (so they import
#: torch, which a plain ``show`` never does); each hook gets the spec and the options.
DETAILS: dict[str, Callable[[ComponentSpec, dict[str, Any]], dict[str, Any]]] = {
    "denoiser": _denoiser_details,
}


def _details(spec: ComponentSpec, options: dict[str, Any]) -> dict[str, Any]:
    """The kind's details, or ``{"error": ...}``: a failing hook must not hide the config."""
    hook = DETAILS.get(spec.kind)
    if hook is None:
        return {}
    try:
        return hook(spec, options)
    except DiffctlError:
        raise  # an invalid --set value: the usual one-line error
    except Exception as exc:  # the config table is still worth showing
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def _show_options(spec: ComponentSpec, overrides: list[str]) -> dict[str, Any]:
    """``--set field=value`` pairs as a validated config dict of ``spec``."""
    from diffctl.runs.config import apply_overrides

    values = apply_overrides({}, overrides)
    return spec.make_config(values).model_dump(mode="json")


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _jsonable(value: Any) -> Any:
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value, fallback=repr)


def config_rows(spec: ComponentSpec) -> list[dict[str, Any]]:
    """One row per config field: name, type, default (JSON value, or required) and description."""
    rows = []
    for name, field in spec.config.model_fields.items():
        required = field.is_required()
        default = None if required else _jsonable(field.get_default(call_default_factory=True))
        rows.append({"name": name, "type": _type_name(field.annotation), "required": required,
                     "default": default, "description": field.description or ""})
    return rows


def show_command(
    kind: Annotated[str, typer.Argument(help="Component kind, e.g. sampler.")],
    name: Annotated[str, typer.Argument(help="Component name, e.g. ddim.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the config's JSON schema and defaults.")] = False,
    details: Annotated[bool, typer.Option(
        "--details", "--params", help="Build the component and report facts about it "
        "(denoisers: the parameter count); imports torch.")] = False,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Config field for --details, e.g. size_factor=0.1 (repeatable).")]
    = None,
) -> None:
    """A component's summary, origin and config fields (type, default, description)."""
    from diffctl import get_registry

    registry = get_registry()
    kind = resolve_kind(registry, kind)
    spec = registry.get(kind, name)
    rows = config_rows(spec)
    options = _show_options(spec, set_ or [])
    facts = _details(spec, options) if details else {}
    if as_json:
        _echo_json({"kind": kind, "name": name, "summary": spec.summary, "plugin": spec.plugin,
                    "distribution": spec.distribution, "version": spec.version,
                    "defaults": {r["name"]: r["default"] for r in rows if not r["required"]},
                    "config": spec.config.model_json_schema(), "details": facts,
                    **({"options": options} if set_ else {})})
        return
    console = _console()
    console.print(f"[bold]{escape(kind)} {escape(name)}[/]: {escape(spec.summary)}")
    console.print(f"plugin {escape(spec.plugin)} ({escape(spec.distribution)} "
                  f"{escape(spec.version)})")
    table = Table(title="config")
    for column in ("field", "type", "default", "description"):
        table.add_column(column, overflow="fold")
    for r in rows:
        default = "(required)" if r["required"] else json.dumps(r["default"])
        table.add_row(escape(r["name"]), escape(r["type"]), escape(default),
                      escape(r["description"]))
    console.print(table)
    if set_:
        console.print("with " + escape(", ".join(set_)))
    for key, value in facts.items():
        text = f"{value:,}" if isinstance(value, int) else str(value)
        console.print(f"{escape(key)}: {escape(text)}")
    if not details and kind in DETAILS:
        console.print("[dim](--details builds it and reports the parameter count)[/]")


def register(app: typer.Typer) -> None:
    """Add ``list`` and ``show`` to the ``diffctl`` app."""
    app.command("list")(list_command)
    app.command("show")(show_command)
