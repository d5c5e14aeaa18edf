"""The ``diffctl`` command: built-in command modules plus sub-commands added by plugins.

Start-up imports only typer, rich and the registry (pluggy, pydantic); commands import torch
and the run machinery inside their bodies, so ``diffctl --help`` stays fast. Every
:class:`~diffctl.errors.DiffctlError` - from a command or from loading plugins in strict mode -
ends as one line ``error: <message>`` on stderr and the error's exit code, never a traceback.

Adding a command group: write ``commands/<name>.py`` with ``register(app)`` and list the
module in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from diffctl.errors import DiffctlError

from diffctl_cli.commands import listing, run

if TYPE_CHECKING:
    from diffctl.registry import Registry

#: Built-in command modules, in help order; each has ``register(app: typer.Typer)``.
COMMAND_MODULES: tuple[ModuleType, ...] = (listing, run)


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:  # a source tree without install
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"diffctl {_dist_version('diffctl-cli')} (core {_dist_version('diffctl-core')}"
                   f", Python {sys.version.split()[0]})")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """diffctl: compose datasets, denoisers, schedules, samplers and metrics from plugins."""


def create_app(registry: Registry | None = None) -> typer.Typer:
    """A fresh app: the built-in commands, then each plugin's ``register_commands`` hook.

    ``registry`` defaults to the process-wide one; loading it may raise ``PluginError`` in
    strict mode, which :func:`main` reports like any other ``DiffctlError``.
    """
    from diffctl import get_registry

    app = typer.Typer(
        name="diffctl",
        help="Plugin-based diffusion-model toolkit: list components, run and compare "
             "experiments.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    app.callback()(_root)
    for module in COMMAND_MODULES:
        module.register(app)
    (registry if registry is not None else get_registry()).call_register_commands(app)
    return app


def _fail(error: DiffctlError) -> NoReturn:
    """Print ``error: <first line of the message>`` to stderr and exit with its code."""
    from rich.console import Console
    from rich.markup import escape

    lines = str(error).strip().splitlines()
    message = lines[0] if lines else type(error).__name__
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(message)}")
    raise SystemExit(error.exit_code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point; ``argv`` (default ``sys.argv[1:]``) is for tests.

    Typer runs in standalone mode, so its own usage errors print as usual (exit code 2) and
    every path ends in ``SystemExit``.
    """
    try:
        app = create_app()
        app(args=None if argv is None else list(argv), prog_name="diffctl")
    except DiffctlError as error:
        _fail(error)


if __name__ == "__main__":
    main()
