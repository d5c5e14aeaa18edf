"""The ``diffctl`` command: built-in command modules plus sub-commands added by plugins.

Start-up imports only typer, rich and the registry (pluggy, pydantic); commands import torch
and the run machinery inside their bodies, so ``diffctl --help`` stays fast. Every
:class:`~diffctl.errors.DiffctlError` - from a command or from loading plugins in strict mode -
ends as one line ``error: <message>`` on stderr and the error's exit code, never a traceback.

Adding a command group: write ``commands/<name>.py`` with ``register(app)`` and list the
module in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Sequence
from importlib import metadata
from types import ModuleType
from typing import Annotated, NoReturn

import typer

from diffctl.errors import DiffctlError, PluginError
from diffctl_cli.commands import (
    analyze,
    compare,
    evaluate,
    export,
    listing,
    report,
    run,
    sample,
    study,
    sweep,
    weights,
)

#: Built-in command modules, in help order; each has ``register(app: typer.Typer)``.
COMMAND_MODULES: tuple[ModuleType, ...] = (listing, run, sample, evaluate, compare, report,
                                           sweep, study, analyze, export, weights)


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


def create_app() -> typer.Typer:
    """A fresh app: the built-in commands, then each plugin's ``register_commands`` hook.

    Uses the process-wide registry (the one ``list`` and ``show`` read); loading it may raise
    ``PluginError`` in strict mode, which :func:`main` reports like any other ``DiffctlError``.
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
    builtin = _command_names(app)
    seen = {"commands": len(app.registered_commands), "groups": len(app.registered_groups)}

    def keep_builtins(app: typer.Typer) -> None:
        """Drop what the last plugin added under a built-in name; that plugin then fails."""
        new_commands = app.registered_commands[seen["commands"]:]
        new_groups = app.registered_groups[seen["groups"]:]
        clash = sorted({_info_name(i) for i in [*new_commands, *new_groups]} & builtin)
        if clash:
            app.registered_commands[seen["commands"]:] = [
                c for c in new_commands if _info_name(c) not in builtin]
            app.registered_groups[seen["groups"]:] = [
                g for g in new_groups if _info_name(g) not in builtin]
        seen["commands"], seen["groups"] = len(app.registered_commands), len(app.registered_groups)
        if clash:
            raise PluginError(f"cannot replace built-in command(s): {', '.join(clash)}")

    get_registry().call_register_commands(app, validate=keep_builtins)
    return app


def _info_name(info) -> str:
    """The command name typer derives for a registered command or group."""
    name = getattr(info, "name", None)
    if not name and getattr(info, "typer_instance", None) is not None:
        name = info.typer_instance.info.name
    if not name and getattr(info, "callback", None) is not None:
        name = info.callback.__name__.lower().replace("_", "-")
    return str(name)


def _command_names(app: typer.Typer) -> set[str]:
    return {_info_name(i) for i in [*app.registered_commands, *app.registered_groups]}


def _fail(message: str, code: int) -> NoReturn:
    """Print ``error: <first line of message>`` to stderr and exit with ``code``."""
    from rich.console import Console
    from rich.markup import escape

    lines = message.strip().splitlines()
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(lines[0] if lines else 'failed')}")
    raise SystemExit(code)


def _click_error() -> type[Exception]:
    """Click's ``ClickException``: vendored by newer typer releases, else click's own."""
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # typer releases that depend on click itself
        from click import ClickException
    return ClickException


def _log_warnings() -> None:
    """The library's warnings (logger ``diffctl``) as ``warning: <message>`` on stderr."""
    import logging

    logger = logging.getLogger("diffctl")
    if not any(getattr(h, "_diffctl_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        handler._diffctl_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point; ``argv`` (default ``sys.argv[1:]``) is for tests.

    Every outcome is a ``SystemExit``: 0, a command's exit code, or after a one-line error -
    ``DiffctlError`` (its ``exit_code``: 2 for usage errors, 1 for plugin errors) or a
    command-line usage error from click (2).
    """
    click_error = _click_error()
    _log_warnings()
    try:
        app = create_app()
        code = app(args=None if argv is None else list(argv), prog_name="diffctl",
                   standalone_mode=False)
    except DiffctlError as error:
        _fail(str(error) or type(error).__name__, error.exit_code)
    except click_error as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # a group called without a command
            text = error.format_message()  # empty when typer's rich help already printed it
            if text.strip():
                typer.echo(text)
            raise SystemExit(0) from None
        ctx = getattr(error, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(error.format_message() + hint, getattr(error, "exit_code", 2))
    except typer.Abort:
        _fail("aborted", 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except MemoryError:
        _fail("out of memory; lower the sizes of the run (batch, samples, model)", 1)
    except UnicodeDecodeError as error:
        _fail(f"a file is not UTF-8 text ({error.reason}); is it the file you meant?", 2)
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        # a name no file system accepts is a bad argument, not a failure of the machine
        _fail(f"{error.strerror or error}{where}", 2 if error.errno == errno.ENAMETOOLONG else 1)
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
