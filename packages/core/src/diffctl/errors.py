"""Exceptions with one-line messages: the CLI prints ``str(error)`` and exits non-zero."""

from __future__ import annotations


class DiffctlError(Exception):
    """Base class. ``exit_code`` is what the CLI returns when this escapes a command."""

    exit_code = 1


class UsageError(DiffctlError):
    """Bad input from the user: unknown names, invalid config values, missing files."""

    exit_code = 2


class UnknownComponentError(UsageError):
    """No component of this kind and name is registered."""

    def __init__(self, kind: str, name: str, available: list[str], suggestion: str | None):
        self.kind, self.name, self.available, self.suggestion = kind, name, available, suggestion
        listing = ", ".join(available) if available else "none registered"
        hint = f"; did you mean '{suggestion}'?" if suggestion else ""
        super().__init__(f"unknown {kind} '{name}' (available: {listing}){hint}")


class ConfigError(UsageError):
    """A config value failed validation."""


class StorageError(DiffctlError):
    """Writing failed for a reason of the environment (disk full, permissions); what was
    already written is kept."""


class Interrupted(DiffctlError):
    """The user pressed Ctrl-C (SIGINT); the message says what was kept."""

    exit_code = 130


class PluginError(DiffctlError):
    """A plugin failed to load (raised only in strict mode; otherwise recorded)."""
