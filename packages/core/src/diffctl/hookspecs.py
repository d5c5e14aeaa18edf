"""The plugin contract: every hook a diffctl plugin may implement.

A plugin is a module named by an entry point in group ``diffctl``. It implements
:func:`register_components` (and optionally :func:`register_commands`) with the
``hookimpl`` marker::

    from diffctl import hookimpl

    @hookimpl
    def register_components(registry):
        registry.add("sampler", "my-sampler", factory="my_pkg.sampler:MySampler",
                     config=MyConfig, summary="One line about it.")

Changes to this module are additive only: a new hook may appear, existing hooks keep
their names and arguments.
"""

from __future__ import annotations

from typing import Any

import pluggy

PROJECT = "diffctl"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_components(registry: Any) -> None:
    """Add components with ``registry.add(kind, name, factory=..., config=..., summary=...)``.

    ``kind`` is one the toolkit composes (dataset, denoiser, scheduler, sampler, metric,
    feature-extractor) or a new one of the plugin's own. The hook registers all of its
    components or, if it raises, none. Keep this cheap: pass the factory as a
    ``"module:attribute"`` string (imported on first use) so that listing plugins never
    imports torch.
    """


@hookspec
def register_commands(app: Any) -> None:
    """Add sub-commands to the ``diffctl`` command line; ``app`` is its ``typer.Typer``.

    If this hook raises, the plugin is recorded as failed and its components are withdrawn.
    """
