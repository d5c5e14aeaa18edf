"""``diffctl weights list`` and ``diffctl weights fetch NAME``: the pretrained files metrics
read, and an opt-in download (:mod:`diffctl_metrics.weights`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from diffctl_cli.console import make_console

console = make_console()
app = typer.Typer(help="Pretrained weight files of the metrics: list them, fetch one.",
                  no_args_is_help=True)


@app.command("list")
def list_weights(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
                 ) -> None:
    """Each file: what uses it, its sha256 (or published prefix), where it is looked for,
    whether it is there and verified."""
    from diffctl_metrics.weights import weight_files

    rows = [f.status() for f in weight_files().values()]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    table = Table(title="weight files (nothing downloads unless fetched)")
    for col in ("name", "used by", "file", "sha256", "present", "path"):
        table.add_column(col)
    for r in rows:
        state = "verified" if r["verified"] else ("wrong checksum" if r["present"] else "missing")
        table.add_row(r["name"], r["used_by"], f"{r['file']} ({r['size']})", r["sha256"][:16],
                      state, r["path"])
    console.print(table)


@app.command("fetch")
def fetch_weights(
    name: Annotated[str, typer.Argument(help="A name from 'diffctl weights list'.")],
    url: Annotated[str | None, typer.Option(help="Download from here instead of the official "
                                            "URL (a mirror or file://); still verified.")]
    = None,
    force: Annotated[bool, typer.Option(help="Download even when a verified copy exists.")]
    = False,
) -> None:
    """Download one weights file from its official URL into the cache the metrics read,
    verified against its pinned sha256."""
    from diffctl_metrics.weights import fetch, get

    entry = get(name)
    console.print(f"fetching {entry.filename} ({entry.size}) from {url or entry.url}")
    path = fetch(name, url=url, force=force)
    console.print(f"{name}: {path} (sha256 verified)")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="weights")
