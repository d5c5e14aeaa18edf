"""The ``diffctl energy-distance`` command, added through the ``register_commands`` hook.

Typer is imported here, not in the plugin module: the hook only runs when the CLI starts, and
the command's body imports torch only when it runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def _load(path: Path):
    """Samples from a ``.npy`` file (numpy) or a ``.pt`` tensor file, as a torch tensor."""
    import numpy as np
    import torch

    from diffctl.errors import UsageError

    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    if path.suffix == ".npy":
        return torch.from_numpy(np.load(path))
    if path.suffix == ".pt":
        return torch.load(path, weights_only=True)
    raise UsageError(f"{path}: expected a .npy or .pt file of samples")


def register(app: typer.Typer) -> None:
    @app.command("energy-distance")
    def energy_distance(
        generated: Annotated[Path, typer.Argument(help="Generated samples (.npy or .pt).")],
        real: Annotated[Path, typer.Argument(help="Real samples (.npy or .pt).")],
        exponent: Annotated[float, typer.Option(help="alpha in E|X - Y|^alpha.")] = 1.0,
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Energy distance between two sample files, e.g. two runs' samples.npy."""
        from diffctl.config import build_config
        from diffctl_plugin_example.configs import EnergyDistanceConfig
        from diffctl_plugin_example.energy import EnergyDistance

        config = build_config(EnergyDistanceConfig, {"exponent": exponent},
                              where="metric 'energy-distance'")  # a bad value: one-line error
        metric = EnergyDistance(config)
        value = metric(_load(generated), _load(real))["energy-distance"]
        typer.echo(json.dumps({"energy-distance": value}) if as_json else f"{value:.6g}")
