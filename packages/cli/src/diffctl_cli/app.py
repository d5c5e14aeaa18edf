"""The ``diffctl`` command: discovers plugins and composes runs.

Start-up imports only typer, rich and the registry (pluggy, pydantic): commands import
torch and the run machinery inside their bodies, so ``diffctl --help`` stays fast.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Annotated

import typer

from diffctl_cli.commands import listing, run

app = typer.Typer(
    name="diffctl",
    help="Plugin-based diffusion-model toolkit: list components, run and compare experiments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        try:
            cli = metadata.version("diffctl-cli")
            core = metadata.version("diffctl-core")
        except metadata.PackageNotFoundError:
            cli = core = "unknown"
        typer.echo(f"diffctl {cli} (core {core}, Python {sys.version.split()[0]})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """diffctl: compose datasets, denoisers, schedules, samplers and metrics from plugins."""


listing.register(app)
run.register(app)


def _error(message: str, code: int) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {message}",
                                                soft_wrap=True)
    raise SystemExit(code)


def main() -> None:
    """Entry point: plugin commands are added, then errors become one line and an exit code."""
    from diffctl.errors import DiffctlError
    from diffctl.registry import get_registry

    try:
        get_registry().call_register_commands(app)
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except DiffctlError as exc:
        _error(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        _error("aborted", 130)
    except KeyboardInterrupt:
        _error("interrupted; the last checkpoint is kept (resume with --resume RUN_DIR)", 130)
    except Exception as exc:  # click usage errors and anything unexpected
        import click

        if isinstance(exc, click.exceptions.NoArgsIsHelpError):
            typer.echo(exc.format_message())
            raise SystemExit(0) from None
        if isinstance(exc, click.exceptions.ClickException):
            _error(exc.format_message().splitlines()[0], 2)
        raise


if __name__ == "__main__":
    main()
