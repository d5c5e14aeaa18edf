"""``diffctl weights``: listing the metrics' weight files and fetching one, verified, from a
local file URL (never the network)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from diffctl.errors import UsageError
from diffctl_cli.app import main
from diffctl_metrics import weights
from diffctl_metrics.weights import WeightFile


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


@pytest.fixture()
def fake(tmp_path: Path, monkeypatch) -> tuple[Path, WeightFile]:
    """A 'published' file and a registry entry pinned to its sha256."""
    source = tmp_path / "published.pth"
    source.write_bytes(b"weights " * 1000)
    entry = WeightFile("test-net", "a test", "test-net-abc.pth", "https://example.invalid/x",
                       hashlib.sha256(source.read_bytes()).hexdigest(), "8 kB")
    monkeypatch.setattr(weights, "weight_files", lambda: {entry.name: entry})
    return source, entry


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0)


def test_list_names_every_file_and_its_state(hub, capsys) -> None:
    assert run_cli("weights", "list", "--json") == 0
    import json

    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == {"inception-v3-compat", "lpips-alex", "lpips-vgg", "lpips-squeeze"}
    inception = rows["inception-v3-compat"]
    assert inception["present"] is False and inception["sha256"].startswith("6726825d")
    assert len(inception["sha256"]) == 64 and inception["path"].startswith(str(hub))
    assert rows["lpips-alex"]["sha256"] == "7be5be79"  # the prefix in torchvision's file name


def test_fetch_from_a_file_url_verifies_and_installs(hub, fake, capsys) -> None:
    source, entry = fake
    assert run_cli("weights", "fetch", "test-net", "--url", source.as_uri()) == 0
    installed = hub / "test-net-abc.pth"
    assert installed.read_bytes() == source.read_bytes()
    assert "sha256 verified" in capsys.readouterr().out
    assert entry.status()["verified"] is True
    assert list(hub.glob(".*")) == []  # no temporary file left


def test_fetch_with_a_wrong_checksum_installs_nothing(hub, fake, tmp_path, capsys) -> None:
    forged = tmp_path / "forged.pth"
    forged.write_bytes(b"not the weights")
    assert run_cli("weights", "fetch", "test-net", "--url", forged.as_uri()) == 2
    err = capsys.readouterr().err
    assert "not the pinned" in err and len(err.strip().splitlines()) == 1
    assert not (hub / "test-net-abc.pth").exists() and list(hub.glob("*")) == []
    with pytest.raises(UsageError, match="unknown weights 'nope'"):
        weights.fetch("nope")


def test_an_unreachable_url_is_one_line(hub, fake, tmp_path, capsys) -> None:
    assert run_cli("weights", "fetch", "test-net", "--url",
                   (tmp_path / "missing.pth").as_uri()) == 1
    err = capsys.readouterr().err
    assert "fetching test-net" in err and len(err.strip().splitlines()) == 1


def test_missing_weights_name_the_fetch_command(hub) -> None:
    import diffctl

    metric = diffctl.create("metric", "lpips")
    with pytest.raises(UsageError, match="diffctl weights fetch lpips-alex"):
        metric.weights_path()
    extractor = diffctl.create("feature-extractor", "inception-v3-compat")
    with pytest.raises(UsageError, match="diffctl weights fetch inception-v3-compat"):
        extractor.weights_path()
