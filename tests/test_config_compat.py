"""Fields added for size studies leave existing runs as they were: the MLP denoisers' default
size_factor builds the same network, and checkpoints written before the new fields existed
still resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from study_helpers import TINY

import diffctl
from diffctl.runs import Run, compose
from diffctl.runs.config import (
    LATER_FIELDS,
    _fingerprint,
    _fingerprint_items,
    config_fingerprint,
    config_fingerprints,
)


@pytest.mark.parametrize(("name", "options", "hidden"), [
    ("mlp", {}, 128), ("residual-mlp", {}, 512), ("mlp", {"size_factor": 0.25}, 32),
    ("residual-mlp", {"hidden": 256, "size_factor": 0.1}, 26),
    ("residual-mlp", {"hidden": 8, "size_factor": 0.01}, 1),
])
def test_size_factor_scales_the_hidden_width_and_defaults_to_the_old_model(
        name: str, options: dict, hidden: int) -> None:
    model = diffctl.create("denoiser", name, **options)
    first = model.net[0] if name == "mlp" else model.input
    assert first.out_features == hidden
    if not options:  # the default builds the model of before (counts of the code before)
        count = sum(p.numel() for p in model.parameters())
        assert count == {"mlp": 38_882, "residual-mlp": 2_808_962}[name]


def test_a_checkpoint_written_before_the_new_fields_still_resumes(tmp_path: Path) -> None:
    config = compose(overrides=TINY)
    items = _fingerprint_items(config)
    old = _fingerprint([kv for kv in items if LATER_FIELDS.get(kv[0]) != kv[1]])
    assert old != config_fingerprint(config) and old in config_fingerprints(config)
    other = compose(overrides=[*TINY, "denoiser.size_factor=0.5"])
    assert old not in config_fingerprints(other)
    run = Run.create(config, tmp_path / "r")
    run.train()
    for state in (tmp_path / "r/checkpoints").glob("epoch-*/state.json"):
        data = json.loads(state.read_text())
        data["config_sha256"] = old  # as a version without these fields recorded it
        data.pop("batch_size")
        state.write_text(json.dumps(data))
    assert Run.open(tmp_path / "r").resume(epochs=3)["epoch"] == 3
