"""The ``diffctl`` command: listing, showing, errors, start-up cost, broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def diffctl(*args: str, env: dict | None = None, pythonpath: Path | None = None
            ) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    if pythonpath is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(pythonpath), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-c", "from diffctl_cli.app import main; main()",
                           *args], capture_output=True, text=True, env=full_env, timeout=120)


def test_version_and_help() -> None:
    out = diffctl("--version")
    assert out.returncode == 0 and out.stdout.startswith("diffctl 0.")
    out = diffctl("--help")
    assert out.returncode == 0
    for command in ("list", "show", "run", "train", "sample", "eval", "compare"):
        assert command in out.stdout


def test_list_plugins_table_and_json() -> None:
    out = diffctl("list", "plugins")
    assert out.returncode == 0
    for name in ("diffctl-core", "diffctl-models", "diffctl-metrics", "loaded"):
        assert name in out.stdout
    data = json.loads(diffctl("list", "plugins", "--json").stdout)
    by_name = {p["name"]: p for p in data}
    assert by_name["core"]["status"] == "loaded"
    assert "sampler:ddim" in by_name["core"]["components"]


def test_list_kind_and_show() -> None:
    out = diffctl("list", "samplers")
    assert out.returncode == 0
    for name in ("ancestral", "ddim", "euler", "heun", "dpmpp-2m"):
        assert name in out.stdout
    out = diffctl("show", "scheduler", "linear")
    assert out.returncode == 0
    assert "num_train_timesteps" in out.stdout and "1000" in out.stdout
    data = json.loads(diffctl("show", "sampler", "ddim", "--json").stdout)
    assert data["defaults"]["eta"] == 0.0 and "eta" in data["config"]["properties"]
    assert "parameters:" in diffctl("show", "denoiser", "mlp").stdout


@pytest.mark.parametrize(("args", "message"), [
    (["show", "sampler", "dim"], "did you mean 'ddim'"),
    (["list", "samplr"], "No such command"),
    (["show", "schedulr", "linear"], "did you mean 'scheduler'"),
])
def test_unknown_names_are_one_line_exit_2(args, message) -> None:
    out = diffctl(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("args", [["--help"], ["list", "plugins"], ["show", "sampler", "ddim"]])
def test_listing_never_imports_torch(args) -> None:
    code = ("import sys\nfrom diffctl_cli.app import main\nsys.argv = ['diffctl', *%r]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'matplotlib', 'scipy') if m in sys.modules]\n"
            "print('HEAVY', heavy)" % (args,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-500:]


def write_plugin_dist(root: Path, dist: str, module: str, source: str) -> None:
    """A minimal installed distribution: a module plus a dist-info with a diffctl entry point."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(f"[diffctl]\n{module} = {module}\n")


@pytest.fixture
def third_party(tmp_path: Path) -> Path:
    write_plugin_dist(tmp_path, "broken-plugin", "broken_diffctl_plugin",
                      "raise ImportError('this plugin is broken on purpose')\n")
    write_plugin_dist(tmp_path, "hello-plugin", "hello_diffctl_plugin", '''
from diffctl import hookimpl

@hookimpl
def register_commands(app):
    @app.command("hello")
    def hello(name: str = "world"):
        """Say hello (a command added by a plugin)."""
        print(f"hello {name}")
''')
    return tmp_path


def test_a_broken_plugin_is_listed_and_nothing_else_breaks(third_party: Path) -> None:
    out = diffctl("list", "plugins", "--json", pythonpath=third_party)
    assert out.returncode == 0, out.stderr
    by_name = {p["name"]: p for p in json.loads(out.stdout)}
    assert by_name["broken_diffctl_plugin"]["status"] == "failed"
    assert "broken on purpose" in by_name["broken_diffctl_plugin"]["error"]
    assert by_name["broken_diffctl_plugin"]["distribution"] == "broken-plugin"
    assert by_name["core"]["status"] == "loaded"
    assert "failed" in diffctl("list", "plugins", pythonpath=third_party).stdout
    assert "ddim" in diffctl("list", "sampler", pythonpath=third_party).stdout
    assert diffctl("--help", pythonpath=third_party).returncode == 0


def test_strict_mode_makes_a_broken_plugin_fatal(third_party: Path) -> None:
    out = diffctl("list", "plugins", env={"DIFFCTL_STRICT_PLUGINS": "1"},
                  pythonpath=third_party)
    assert out.returncode == 1
    assert "broken on purpose" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_a_plugin_adds_a_command(third_party: Path) -> None:
    out = diffctl("hello", "--name", "diffctl", pythonpath=third_party)
    assert out.returncode == 0 and out.stdout.strip() == "hello diffctl"
    out = diffctl("hello", env={"DIFFCTL_LOAD_PLUGINS": "diffctl-core"},
                  pythonpath=third_party)
    assert out.returncode == 2  # not loaded: no such command
