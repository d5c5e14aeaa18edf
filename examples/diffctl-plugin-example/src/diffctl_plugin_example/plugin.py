"""The plugin module named by the ``diffctl`` entry point: hook implementations only.

Factories are ``"module:attribute"`` strings and the command's body imports what it needs, so
``diffctl list`` loads this module without importing torch.
"""

from __future__ import annotations

from diffctl import hookimpl
from diffctl_plugin_example.configs import (
    EnergyDistanceConfig,
    EulerMaruyamaConfig,
    MarkdownLoggerConfig,
    SpiralConfig,
)

_PKG = "diffctl_plugin_example"


@hookimpl
def register_components(registry) -> None:
    registry.add("dataset", "spiral", factory=f"{_PKG}.spiral:Spiral", config=SpiralConfig,
                 summary="Noisy Archimedean spiral with evenly rotated arms (default 2 arms).")
    registry.add("sampler", "euler-maruyama", factory=f"{_PKG}.sampler:EulerMaruyamaSampler",
                 config=EulerMaruyamaConfig,
                 summary="Euler-Maruyama steps of the reverse-time SDE in sigma space (Song "
                         "et al. 2021).")
    registry.add("metric", "energy-distance", factory=f"{_PKG}.energy:EnergyDistance",
                 config=EnergyDistanceConfig,
                 summary="Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (Szekely & Rizzo); 0 "
                         "for identical samples.")
    registry.add("logger", "markdown", factory=f"{_PKG}.markdown_log:MarkdownLogger",
                 config=MarkdownLoggerConfig,
                 summary="One markdown table row per evaluated metric, in log.md.")


@hookimpl
def register_commands(app) -> None:
    from diffctl_plugin_example.cli import register

    register(app)
