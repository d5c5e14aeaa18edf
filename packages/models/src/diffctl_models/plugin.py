"""Registers the model package's denoisers with diffctl."""

from __future__ import annotations

from diffctl import hookimpl


@hookimpl
def register_components(registry) -> None:
    """Denoisers arrive with the 2-D and image workflow issues."""
