"""``diffctl export``: one checkpoint of a run as a single model file
(:func:`diffctl.runs.export.export_model`), loadable with ``diffctl.load_model`` and
``diffctl sample --model``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from diffctl_cli.console import make_console

console = make_console()


def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    out: Annotated[Path, typer.Option(help="The model file to write (.safetensors).")],
    checkpoint: Annotated[str, typer.Option(help="last, best or a checkpoint folder.")]
    = "best",
    ema: Annotated[bool, typer.Option(help="Export the EMA weights (when the run has them).")]
    = True,
) -> None:
    """Write one checkpoint's weights and the run's config into one safetensors file."""
    from diffctl.runs import Run
    from diffctl.runs.export import export_model

    path = export_model(Run.open(run_dir), out, checkpoint=checkpoint, use_ema=ema)
    console.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
