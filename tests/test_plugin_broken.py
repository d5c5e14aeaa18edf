"""A broken third-party plugin, installed for real: listed as failed, nothing else breaks.

The fixture distributions live in ``tests/fixtures/``: each folder holds a module and a
``.dist-info`` with an entry point in group ``diffctl``, so putting the folder on
``PYTHONPATH`` installs the plugin as far as ``importlib.metadata`` is concerned. Every
command runs in a fresh interpreter, as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
BROKEN = FIXTURES / "broken-plugin"
EXITING = FIXTURES / "exiting-plugin"
FIRST_PARTY = ("core", "models", "metrics")


def diffctl(*args: str, paths: tuple[Path, ...] = (BROKEN,), strict: bool = False,
            timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``diffctl ARGS`` with the fixture folders ``paths`` on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIFFCTL_")}
    env["PYTHONPATH"] = os.pathsep.join(
        [*map(str, paths), *filter(None, [os.environ.get("PYTHONPATH")])])
    env["COLUMNS"] = "250"  # one table row per plugin line: no wrapped cells
    if strict:
        env["DIFFCTL_STRICT_PLUGINS"] = "1"
    return subprocess.run([sys.executable, "-c", "from diffctl_cli.app import main; main()",
                           *args], capture_output=True, text=True, env=env, timeout=timeout)


def plugins_json(**kwargs) -> dict[str, dict]:
    out = diffctl("list", "plugins", "--json", **kwargs)
    assert out.returncode == 0, out.stderr
    return {p["name"]: p for p in json.loads(out.stdout)}


def test_the_fixture_is_a_real_distribution() -> None:
    """Without the fixture folder nothing is broken: the failures below come from it."""
    plugins = plugins_json(paths=())
    assert "broken" not in plugins and "exiting" not in plugins
    assert all(plugins[name]["status"] == "loaded" for name in FIRST_PARTY), plugins


def test_list_plugins_shows_the_broken_plugin_failed_and_the_others_loaded() -> None:
    plugins = plugins_json()
    broken = plugins["broken"]
    assert broken["status"] == "failed" and broken["components"] == []
    assert (broken["distribution"], broken["version"]) == ("diffctl-broken-plugin", "0.0.1")
    assert broken["error"] == ("ImportError: diffctl-broken-plugin is broken on purpose (a "
                               "fixture of the test suite)")
    for name in FIRST_PARTY:
        assert plugins[name]["status"] == "loaded", plugins[name]["error"]
    assert "sampler:ddim" in plugins["core"]["components"]
    table = diffctl("list", "plugins")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if "diffctl-broken-plugin" in line)
    assert "failed: ImportError: diffctl-broken-plugin is broken on purpose" in row


def test_help_and_listing_still_work() -> None:
    out = diffctl("--help")
    assert out.returncode == 0, out.stderr
    assert "run" in out.stdout and "list" in out.stdout
    out = diffctl("list", "sampler", "--json")
    assert out.returncode == 0, out.stderr
    names = {s["name"] for s in json.loads(out.stdout)}
    assert {"ancestral", "ddim", "dpmpp-2m", "euler", "heun"} <= names


@pytest.mark.slow
def test_a_tiny_run_still_works(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    out = diffctl("run", "--set", "train.epochs=1", "--set", "dataset.n=400", "--set",
                  "sample.num_samples=200", "--steps", "10", "--no-plots", "--out",
                  str(run_dir))
    assert out.returncode == 0, out.stderr[-2000:]
    assert (run_dir / "config.yaml").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics, "the run wrote no metrics"


@pytest.mark.parametrize("args", [["list", "plugins"],
                                  ["run", "--set", "train.epochs=1", "--no-plots"]])
def test_strict_mode_makes_the_broken_plugin_fatal_in_one_line(args, tmp_path: Path) -> None:
    if args[0] == "run":
        args = [*args, "--out", str(tmp_path / "run")]
    out = diffctl(*args, strict=True)
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr == ("error: plugin 'broken' (diffctl-broken-plugin) failed to load: "
                          "ImportError: diffctl-broken-plugin is broken on purpose (a fixture "
                          "of the test suite)\n")
    assert not (tmp_path / "run").exists()


def test_a_plugin_that_calls_sys_exit_on_import_is_only_a_failure() -> None:
    """SystemExit is a BaseException, not an Exception: it must not end ``diffctl --help``."""
    out = diffctl("--help", paths=(EXITING,))
    assert out.returncode == 0, out.stderr
    assert "Usage: diffctl" in out.stdout
    plugins = plugins_json(paths=(EXITING, BROKEN))
    assert plugins["exiting"]["status"] == "failed"
    assert plugins["exiting"]["error"] == ("SystemExit: diffctl-exiting-plugin exits on import "
                                           "(a fixture of the test suite)")
    assert plugins["broken"]["status"] == "failed"
    assert all(plugins[name]["status"] == "loaded" for name in FIRST_PARTY)
    out = diffctl("list", "plugins", paths=(EXITING,), strict=True)
    assert out.returncode == 1 and out.stderr.startswith("error: plugin 'exiting' ")
    assert len(out.stderr.strip().splitlines()) == 1
