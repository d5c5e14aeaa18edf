"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import pytest

import diffctl


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Each test sees a registry loaded from the current environment."""
    diffctl.reset_registry()
    yield
    diffctl.reset_registry()
