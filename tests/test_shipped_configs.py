"""Every config shipped in configs/ resolves: run configs through compose (metric/data checks
included), study configs through SizeStudyConfig."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from diffctl.runs.config import compose, load_yaml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def _is_study(path: Path) -> bool:
    return "sizes" in (yaml.safe_load(path.read_text()) or {})


@pytest.mark.parametrize("path", [p for p in CONFIGS if not _is_study(p)], ids=lambda p: p.name)
def test_run_configs_resolve(path: Path) -> None:
    config = compose(load_yaml(path))
    assert config.eval.metrics, f"{path.name} evaluates nothing"
    if config.dataset.name in ("two-moons", "gmm-ring"):
        assert config.eval.metrics[0] == "c2st"  # the 2-D headline (issue 13)


@pytest.mark.parametrize("path", [p for p in CONFIGS if _is_study(p)], ids=lambda p: p.name)
def test_study_configs_parse(path: Path) -> None:
    from diffctl.study.config import SizeStudyConfig

    config = SizeStudyConfig(**yaml.safe_load(path.read_text()))
    assert len(config.sizes) >= 4 and config.from_data
