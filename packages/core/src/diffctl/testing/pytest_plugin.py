"""pytest plugin of diffctl-core (entry point ``pytest11``): an isolated registry fixture.

Loaded by every pytest run in an environment with diffctl-core installed, so it only defines
fixtures: no hooks, no autouse fixtures, no options, and nothing beyond pytest is imported
until a test asks for a fixture. Disabled with ``-p no:diffctl``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from diffctl.registry import Registry


@pytest.fixture
def diffctl_registry() -> Iterator[Registry]:
    """A fresh registry with only the core's built-ins, installed as the process default.

    Plugins on the machine (yours included) are not loaded: register what the test is about
    with ``diffctl_registry.register_plugin(module, name=...)`` or load more distributions with
    ``diffctl_registry.load_entry_points(only=["diffctl-models"])``. ``diffctl.create``,
    ``diffctl.testing.check_component`` and the CLI's ``create_app`` all see this registry;
    the previous one is restored afterwards. Strict: a plugin that fails to load raises.
    """
    from diffctl.testing.registry import isolated_registry, use_registry

    with use_registry(isolated_registry()) as reg:
        yield reg
