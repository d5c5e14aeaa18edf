"""Registers the metrics package's metrics with diffctl."""

from __future__ import annotations

from diffctl import hookimpl


@hookimpl
def register_components(registry) -> None:
    """Metrics arrive with the 2-D and image workflow issues."""
