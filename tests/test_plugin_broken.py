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
SHADOWING = FIXTURES / "shadowing-plugin"      # aaa-diffctl-shadow: registers denoiser 'mlp'
IMPOSTOR = FIXTURES / "impostor-plugin"        # aaa-diffctl-impostor: entry point 'models'
CHATTY = FIXTURES / "chatty-plugin"            # prints on import and in its hooks
INTERRUPTING = FIXTURES / "interrupting-plugin"  # raises KeyboardInterrupt on import
FIRST_PARTY = ("core", "models", "metrics")
MODELS_DENOISERS = {"dit", "dit-b", "dit-s", "dit-tiny", "mlp", "residual-mlp", "student-unet",
                    "unet-mini"}


def diffctl(*args: str, paths: tuple[Path, ...] = (BROKEN,), strict: bool = False,
            timeout: int = 300, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """Run ``diffctl ARGS`` with the fixture folders ``paths`` on PYTHONPATH (``env`` adds
    variables)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DIFFCTL_")}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [*map(str, paths), *filter(None, [os.environ.get("PYTHONPATH")])])
    full_env["COLUMNS"] = "250"  # one table row per plugin line: no wrapped cells
    if strict:
        full_env["DIFFCTL_STRICT_PLUGINS"] = "1"
    env = {**full_env, **(env or {})}
    return subprocess.run([sys.executable, "-c", "from diffctl_cli.app import main; main()",
                           *args], capture_output=True, text=True, env=env, timeout=timeout)


def plugin_list(**kwargs) -> list[dict]:
    """``diffctl list plugins --json``, in load order."""
    out = diffctl("list", "plugins", "--json", **kwargs)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def plugins_json(**kwargs) -> dict[str, dict]:
    return {p["name"]: p for p in plugin_list(**kwargs)}


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


# -- third parties cannot displace first-party plugins -----------------------------------------
def test_first_party_plugins_load_first_whatever_the_others_are_called() -> None:
    """Fixture distributions named aaa-... would sort first; they load after diffctl's own."""
    order = [(p["name"], p["distribution"])
             for p in plugin_list(paths=(SHADOWING, IMPOSTOR, BROKEN))]
    assert order[:3] == [("core", "diffctl-core"), ("models", "diffctl-models"),
                         ("metrics", "diffctl-metrics")]
    rest = [dist for _, dist in order[3:]]
    assert rest == sorted(rest)
    assert {"aaa-diffctl-impostor", "aaa-diffctl-shadow", "diffctl-broken-plugin"} <= set(rest)


def test_a_third_party_denoiser_named_mlp_fails_and_diffctl_models_stays() -> None:
    plugins = plugin_list(paths=(SHADOWING,))
    models = next(p for p in plugins if p["name"] == "models")
    assert models["status"] == "loaded", models["error"]
    assert {c.split(":")[1] for c in models["components"]} == MODELS_DENOISERS
    shadow = next(p for p in plugins if p["name"] == "shadow")
    assert (shadow["status"], shadow["components"]) == ("failed", [])
    assert shadow["error"] == ("PluginError: duplicate denoiser 'mlp': already registered by "
                               "plugin 'models' (diffctl-models), registered again by plugin "
                               "'shadow' (aaa-diffctl-shadow)")
    out = diffctl("list", "denoiser", "--json", paths=(SHADOWING,))
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert {d["name"] for d in listed} == MODELS_DENOISERS
    assert {d["distribution"] for d in listed} == {"diffctl-models"}
    out = diffctl("show", "denoiser", "mlp", "--json", paths=(SHADOWING,))
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert (shown["plugin"], shown["distribution"]) == ("models", "diffctl-models")
    # strict mode blames the plugin that came second, in one line
    out = diffctl("list", "plugins", paths=(SHADOWING,), strict=True)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == ("error: plugin 'shadow' (aaa-diffctl-shadow) failed to load: "
                          "PluginError: duplicate denoiser 'mlp': already registered by plugin "
                          "'models' (diffctl-models), registered again by plugin 'shadow' "
                          "(aaa-diffctl-shadow)\n")


@pytest.mark.slow
def test_run_with_denoiser_mlp_builds_the_first_party_mlp(tmp_path: Path) -> None:
    """The fixture's own mlp raises when built: the run succeeds only with diffctl-models'."""
    run_dir = tmp_path / "run"
    out = diffctl("run", "--denoiser", "mlp", "--set", "train.epochs=1", "--set",
                  "dataset.n=200", "--set", "sample.num_samples=100", "--steps", "5",
                  "--no-plots", "--out", str(run_dir), paths=(SHADOWING, CHATTY, INTERRUPTING))
    assert out.returncode == 0, out.stderr[-2000:]
    assert "chatty:" not in out.stdout
    assert "denoiser:\n  name: mlp\n" in (run_dir / "config.yaml").read_text()


def test_a_third_party_plugin_named_models_cannot_replace_diffctl_models() -> None:
    plugins = plugin_list(paths=(IMPOSTOR,))
    models = [p for p in plugins if p["name"] == "models"]
    assert [(p["distribution"], p["status"]) for p in models] == [
        ("diffctl-models", "loaded"), ("aaa-diffctl-impostor", "failed")]
    assert {c.split(":")[1] for c in models[0]["components"]} == MODELS_DENOISERS
    assert models[1]["error"] == ("PluginError: plugin name 'models' is already held by the "
                                  "plugin from diffctl-models, which loaded first; "
                                  "aaa-diffctl-impostor must use another entry-point name")
    assert models[1]["output"] is None  # refused before its module was imported
    out = diffctl("list", "plugins", "--json", paths=(IMPOSTOR,),
                  env={"DIFFCTL_LOAD_PLUGINS": "aaa-diffctl-impostor"})
    assert out.returncode == 0, out.stderr
    assert [(p["name"], p["status"], p["error"]) for p in json.loads(out.stdout)] == [
        ("models", "failed", "PluginError: plugin name 'models' is reserved for diffctl-models; "
                             "aaa-diffctl-impostor must use another entry-point name")]


@pytest.mark.parametrize("args", [["list", "plugins", "--json"], ["list", "chatter", "--json"],
                                  ["show", "chatter", "chatty", "--json"]])
def test_a_plugin_that_prints_leaves_json_output_valid(args) -> None:
    out = diffctl(*args, paths=(CHATTY,))
    assert out.returncode == 0, out.stderr
    assert not [line for line in out.stdout.splitlines() if line.startswith("chatty:")]
    data = json.loads(out.stdout)  # nothing before or after the document
    assert out.stderr == "chatty: stderr on import\n"  # stderr is the plugin's to use
    if args[1] == "plugins":
        chatty = next(p for p in data if p["name"] == "chatty")
        assert chatty["status"] == "loaded" and chatty["components"] == ["chatter:chatty"]
        assert chatty["output"].splitlines() == [
            "chatty: print on import", "chatty: print in register_components",
            "chatty: sys.__stdout__ on import", "chatty: file descriptor 1 on import",
            "chatty: print in register_commands"]


def test_list_plugins_notes_what_a_plugin_printed() -> None:
    out = diffctl("list", "plugins", paths=(CHATTY,))
    assert out.returncode == 0, out.stderr
    assert "printed while loading: chatty: print on import (+4 more, see --json)" in out.stdout
    assert "chatty: file descriptor 1" not in out.stdout
    help_out = diffctl("--help", paths=(CHATTY,))
    assert help_out.returncode == 0 and "chatty:" not in help_out.stdout


def test_a_plugin_raising_keyboard_interrupt_on_import_is_only_a_failure() -> None:
    out = diffctl("--help", paths=(INTERRUPTING,))
    assert out.returncode == 0, out.stderr
    assert "Usage: diffctl" in out.stdout
    plugins = plugins_json(paths=(INTERRUPTING,))
    assert plugins["interrupting"]["status"] == "failed"
    assert plugins["interrupting"]["error"] == (
        "KeyboardInterrupt: diffctl-interrupting-plugin raises KeyboardInterrupt on import (a "
        "fixture of the test suite)")
    assert all(plugins[name]["status"] == "loaded" for name in FIRST_PARTY)
    out = diffctl("list", "sampler", "--json", paths=(INTERRUPTING,))
    assert out.returncode == 0 and "ddim" in {s["name"] for s in json.loads(out.stdout)}
    out = diffctl("list", "plugins", paths=(INTERRUPTING,), strict=True)
    assert out.returncode == 1
    assert out.stderr == ("error: plugin 'interrupting' (diffctl-interrupting-plugin) failed to "
                          "load: KeyboardInterrupt: diffctl-interrupting-plugin raises "
                          "KeyboardInterrupt on import (a fixture of the test suite)\n")
