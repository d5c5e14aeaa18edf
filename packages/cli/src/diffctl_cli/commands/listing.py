"""``diffctl list`` and ``diffctl show``: what the installed plugins provide.

Reads only the registry's light specs (config models and summaries), never importing torch.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
list_app = typer.Typer(help="List plugins, kinds or the components of one kind.",
                       no_args_is_help=True)


def _kind(registry, kind: str) -> str:
    """Accept plurals (``samplers``) and report unknown kinds with the closest match."""
    kinds = registry.kinds()
    if kind not in kinds and kind.endswith("s") and kind[:-1] in kinds:
        kind = kind[:-1]
    if kind not in kinds:
        registry.get(kind, "")  # raises UnknownComponentError for the kind
    return kind


@list_app.command("plugins")
def list_plugins(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
                 ) -> None:
    """Every plugin found through entry points: distribution, version, components, status."""
    from diffctl.registry import get_registry

    plugins = get_registry().plugins()
    if as_json:
        typer.echo(json.dumps([p.as_dict() for p in plugins], indent=1))
        return
    table = Table(title="diffctl plugins")
    for col in ("plugin", "distribution", "version", "components", "status"):
        table.add_column(col, overflow="fold")
    for p in plugins:
        by_kind: dict[str, list[str]] = {}
        for kind, name in p.components:
            by_kind.setdefault(kind, []).append(name)
        comps = "\n".join(f"{k}: {', '.join(sorted(v))}" for k, v in sorted(by_kind.items()))
        status = "[green]loaded[/]" if p.status == "loaded" else f"[red]failed[/]: {p.error}"
        table.add_row(p.name, p.distribution, p.version, comps or "-", status)
    console.print(table)


@list_app.command("kinds")
def list_kinds() -> None:
    """The component kinds and how many of each are registered."""
    from diffctl.registry import get_registry

    registry = get_registry()
    table = Table(title="component kinds")
    table.add_column("kind")
    table.add_column("count", justify="right")
    for kind in registry.kinds():
        table.add_row(kind, str(len(registry.components(kind))))
    console.print(table)


def list_kind(kind: str, as_json: bool) -> None:
    from diffctl.registry import get_registry

    registry = get_registry()
    kind = _kind(registry, kind)
    specs = registry.specs(kind)
    if as_json:
        typer.echo(json.dumps([{"name": s.name, "summary": s.summary, "plugin": s.plugin,
                                "distribution": s.distribution} for s in specs], indent=1))
        return
    table = Table(title=f"{kind} components")
    for col in ("name", "summary", "plugin"):
        table.add_column(col, overflow="fold")
    for s in specs:
        table.add_row(s.name, s.summary, f"{s.plugin} ({s.distribution})")
    console.print(table)


def _register_kind_commands() -> None:
    """``diffctl list sampler`` etc.: one sub-command per kind, plurals included."""
    from diffctl.registry import KINDS

    for kind in KINDS:
        for name in (kind, kind + "s"):
            def command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")]
                        = False, _kind: str = kind) -> None:
                list_kind(_kind, as_json)

            command.__doc__ = f"Registered {kind} components."
            list_app.command(name, hidden=name.endswith("s"))(command)


_register_kind_commands()


def show(
    kind: Annotated[str, typer.Argument(help="Component kind, e.g. sampler.")],
    name: Annotated[str, typer.Argument(help="Component name, e.g. ddim.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the config's JSON schema.")]
    = False,
) -> None:
    """A component's summary, origin and config fields (type, default, description)."""
    from diffctl.registry import get_registry

    registry = get_registry()
    kind = _kind(registry, kind)
    spec = registry.get(kind, name)
    if as_json:
        typer.echo(json.dumps({"kind": kind, "name": name, "summary": spec.summary,
                               "plugin": spec.plugin, "distribution": spec.distribution,
                               "version": spec.version,
                               "config": spec.config.model_json_schema(),
                               "defaults": spec.config().model_dump(mode="json")}, indent=1))
        return
    console.print(f"[bold]{kind} {name}[/]: {spec.summary}")
    console.print(f"from plugin {spec.plugin} ({spec.distribution} {spec.version})")
    table = Table(title="config")
    for col in ("field", "type", "default", "description"):
        table.add_column(col, overflow="fold")
    for field_name, field in spec.config.model_fields.items():
        annotation = getattr(field.annotation, "__name__", None) or str(field.annotation)
        default = field.get_default(call_default_factory=True)
        if hasattr(default, "model_dump"):
            default = default.model_dump(mode="json")
        table.add_row(field_name, annotation.replace("typing.", ""), repr(default),
                      field.description or "")
    console.print(table)
    if kind == "denoiser":
        size = spec.create()
        params = sum(p.numel() for p in size.parameters())
        console.print(f"parameters: {params:,} (default config)")


def register(app: typer.Typer) -> None:
    app.add_typer(list_app, name="list")
    app.command("show")(show)
