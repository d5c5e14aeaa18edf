"""The ``diffctl`` command: listing, showing, errors, start-up cost, broken plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffctl import hookimpl
from diffctl import registry as registry_module
from diffctl.config import ComponentConfig
from diffctl.registry import Registry
from diffctl_cli.app import create_app, main

BUILTIN_SAMPLERS = ["ancestral", "ddim", "dpmpp-2m", "euler", "heun"]


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
    assert "parameters:" not in diffctl("show", "denoiser", "mlp").stdout  # no build


def test_show_details_counts_parameters_for_the_given_config() -> None:
    """``show --details --set`` builds the model as configured (the teacher/student study
    needs counts per size_factor) and counts what the library builds."""
    import torch

    from diffctl import create

    def count(*sets: str) -> int:
        args = [x for s in sets for x in ("--set", s)]
        data = json.loads(diffctl("show", "denoiser", "student-unet", "--details",
                                      "--json", *args).stdout)
        return data["details"]["parameters"]

    full, small = count("size_factor=1.0"), count("size_factor=0.1")
    teacher = create("denoiser", "unet-mini")
    assert full == sum(p.numel() for p in teacher.parameters())
    assert small < full / 20
    model = create("denoiser", "student-unet", size_factor=0.1)
    assert small == sum(p.numel() for p in model.parameters())
    assert isinstance(model, torch.nn.Module)
    out = diffctl("show", "denoiser", "student-unet", "--details", "--set",
                      "size_factor=0")
    assert out.returncode == 2 and "size_factor" in out.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["show", "sampler", "dim"], "did you mean 'ddim'"),
    (["list", "samplr"], "did you mean 'sampler'"),
    (["bogus"], "No such command 'bogus'"),
    (["show", "schedulr", "linear"], "did you mean 'scheduler'"),
])
def test_unknown_names_are_one_line_exit_2(args, message) -> None:
    out = diffctl(*args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


@pytest.mark.parametrize("args", [["--help"], ["list", "plugins"], ["show", "sampler", "ddim"]])
def test_listing_never_imports_torch(args) -> None:
    code = ("import sys\nfrom diffctl_cli.app import main\n"
            f"sys.argv = ['diffctl', *{args!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'matplotlib', 'scipy') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
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
    """A plugin that adds a command (broken plugins: tests/test_plugin_broken.py)."""
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


def test_a_plugin_adds_a_command(third_party: Path) -> None:
    out = diffctl("hello", "--name", "diffctl", pythonpath=third_party)
    assert out.returncode == 0 and out.stdout.strip() == "hello diffctl"
    out = diffctl("hello", env={"DIFFCTL_LOAD_PLUGINS": "diffctl-core"},
                  pythonpath=third_party)
    assert out.returncode == 2  # not loaded: no such command


# -- in-process checks through main(): exit codes, one-line errors, plugin failures -------------
def run_main(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
             ) -> tuple[int, str, str]:
    """Run ``diffctl ARGS`` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setenv("COLUMNS", "200")  # wide tables: no wrapped cells in assertions
    with pytest.raises(SystemExit) as caught:
        main(list(args))
    out, err = capsys.readouterr()
    return caught.value.code or 0, out, err


def cells(row: str) -> list[str]:
    """The stripped cells of one rich table row."""
    return [cell.strip() for cell in row.strip().strip("│").split("│")]


#: Our own distributions plus the test's "bracket" entry point: listings in these tests must
#: not change because some other diffctl plugin (e.g. the example plugin) is installed.
FIRST_PARTY = "diffctl-core,diffctl-models,diffctl-metrics,bracket"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("DIFFCTL_LOAD_PLUGINS", FIRST_PARTY)
    monkeypatch.delenv("DIFFCTL_STRICT_PLUGINS", raising=False)
    return monkeypatch


def test_version_names_cli_and_core(capsys, clean_env) -> None:
    code, out, _ = run_main(capsys, clean_env, "--version")
    assert code == 0
    assert out.startswith(f"diffctl {metadata.version('diffctl-cli')} "
                          f"(core {metadata.version('diffctl-core')}, Python ")


def test_bare_command_prints_help(capsys, clean_env) -> None:
    code, out, _ = run_main(capsys, clean_env)
    assert code == 0 and "Usage: diffctl" in out and "list" in out


def test_list_samplers_in_every_spelling(capsys, clean_env) -> None:
    for args in (["list", "sampler"], ["list", "samplers"]):
        code, out, _ = run_main(capsys, clean_env, *args)
        assert code == 0
        rows = [cells(line) for line in out.splitlines() if line.startswith("│")]
        assert sorted(row[0] for row in rows if row[2] == "core") == BUILTIN_SAMPLERS
    code, out, _ = run_main(capsys, clean_env, "list", "sampler", "--json")
    assert [s["name"] for s in json.loads(out)] == BUILTIN_SAMPLERS
    code, out, _ = run_main(capsys, clean_env, "list", "kinds", "--json")
    assert json.loads(out)["sampler"] == 5 and json.loads(out)["scheduler"] == 4


def test_plugin_text_is_printed_literally(capsys, clean_env) -> None:
    # the mlp summary contains "[x, time embedding]", which rich would eat as markup
    code, out, _ = run_main(capsys, clean_env, "list", "denoiser")
    assert code == 0 and "Plain MLP on [x, time embedding]" in out


def test_show_linear_scheduler_table_and_json(capsys, clean_env) -> None:
    code, out, _ = run_main(capsys, clean_env, "show", "schedulers", "linear")
    assert code == 0
    assert "plugin core (diffctl-core" in out
    row = next(cells(line) for line in out.splitlines() if "num_train_timesteps" in line)
    assert row[:3] == ["num_train_timesteps", "int", "1000"]
    code, out, _ = run_main(capsys, clean_env, "show", "scheduler", "linear", "--json")
    data = json.loads(out)
    assert data["defaults"]["num_train_timesteps"] == 1000
    assert data["config"]["properties"]["num_train_timesteps"]["minimum"] == 2


def test_unknown_name_in_process_is_one_line_exit_2(capsys, clean_env) -> None:
    code, out, err = run_main(capsys, clean_env, "show", "sampler", "dim")
    assert code == 2 and out == ""
    assert err == ("error: unknown sampler 'dim' (available: ancestral, ddim, dpmpp-2m, euler, "
                   "heun); did you mean 'ddim'?\n")


def _add_entry_point(monkeypatch: pytest.MonkeyPatch, name: str, module: str) -> None:
    """Make the registry see one more entry point next to the installed ones."""
    real = metadata.entry_points

    def entry_points(**selection):
        extra = metadata.EntryPoint(name=name, value=module, group="diffctl")
        return [*real(**selection), extra]

    monkeypatch.setattr(registry_module.metadata, "entry_points", entry_points)


@pytest.fixture
def bracket_plugin(tmp_path: Path, clean_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An entry point whose import fails with an error text that looks like rich markup."""
    (tmp_path / "diffctl_bracket_plugin.py").write_text(
        "raise ImportError('needs the [gpu] extra: pip install diffctl-bracket[gpu]')\n")
    clean_env.syspath_prepend(str(tmp_path))
    _add_entry_point(clean_env, "bracket", "diffctl_bracket_plugin")
    return clean_env


def test_failed_plugin_in_process_is_listed_with_its_error(capsys, bracket_plugin) -> None:
    code, out, _ = run_main(capsys, bracket_plugin, "list", "plugins")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("│ bracket "))
    assert "(unknown)" in row and "failed: ImportError: needs the [gpu] extra" in row
    assert out.count("loaded") == 3
    code, out, _ = run_main(capsys, bracket_plugin, "list", "sampler", "--json")
    assert code == 0 and len(json.loads(out)) == 5


def test_strict_mode_error_while_loading_lazily_is_one_line(capsys, bracket_plugin) -> None:
    bracket_plugin.setenv("DIFFCTL_STRICT_PLUGINS", "1")
    code, out, err = run_main(capsys, bracket_plugin, "list", "sampler")
    assert code == 1 and out == ""
    assert err == ("error: plugin 'bracket' ((unknown)) failed to load: ImportError: needs the "
                   "[gpu] extra: pip install diffctl-bracket[gpu]\n")


class WidgetPlugin:
    """A third-party plugin with a new component kind and a command; ``fail`` breaks the latter."""

    def __init__(self, fail_commands: bool = False):
        self.fail_commands = fail_commands

    @hookimpl
    def register_components(self, registry) -> None:
        registry.add("widget", "gizmo", factory=dict, config=ComponentConfig,
                     summary="A component of a kind the core does not know.")

    @hookimpl
    def register_commands(self, app) -> None:
        if self.fail_commands:
            raise RuntimeError("no commands today")

        @app.command("greet")
        def greet(name: str = "world") -> None:
            """Say hello: a command added by a plugin."""
            print(f"hello {name}")


def _registry_with(monkeypatch: pytest.MonkeyPatch, plugin: object) -> None:
    reg = Registry(strict=False).load_entry_points(only=["diffctl-core"])
    reg.register_plugin(plugin, name="widgets", distribution="diffctl-widgets", version="9.9")
    monkeypatch.setattr(registry_module, "_default", reg)


def test_plugin_kind_and_command_with_cli_runner(clean_env) -> None:
    _registry_with(clean_env, WidgetPlugin())
    runner = CliRunner()
    result = runner.invoke(create_app(), ["greet", "--name", "plugins"])
    assert result.exit_code == 0 and result.stdout == "hello plugins\n"
    result = runner.invoke(create_app(), ["list", "widgets", "--json"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [{
        "name": "gizmo", "summary": "A component of a kind the core does not know.",
        "plugin": "widgets", "distribution": "diffctl-widgets", "version": "9.9"}]
    result = runner.invoke(create_app(), ["show", "widget", "gizmo"])
    assert result.exit_code == 0 and "plugin widgets (diffctl-widgets 9.9)" in result.stdout


def test_failing_command_hook_marks_the_plugin_and_keeps_the_cli(capsys, clean_env) -> None:
    _registry_with(clean_env, WidgetPlugin(fail_commands=True))
    code, out, _ = run_main(capsys, clean_env, "list", "plugins", "--json")
    assert code == 0
    widgets = {p["name"]: p for p in json.loads(out)}["widgets"]
    assert widgets["status"] == "failed"
    assert widgets["error"] == "register_commands: RuntimeError: no commands today"
    code, out, err = run_main(capsys, clean_env, "greet")
    assert code == 2 and "No such command 'greet'" in err


class HijackPlugin:
    """A plugin that tries to replace the built-in ``run`` and also adds a command of its own."""

    @hookimpl
    def register_commands(self, app) -> None:
        @app.command("run")
        def run() -> None:
            print("hijacked")

        @app.command("own")
        def own() -> None:
            print("own command")


def test_a_plugin_cannot_replace_a_built_in_command(capsys, clean_env) -> None:
    _registry_with(clean_env, HijackPlugin())
    code, out, _ = run_main(capsys, clean_env, "run", "--help")
    assert code == 0 and "hijacked" not in out and "--denoiser" in out
    code, out, _ = run_main(capsys, clean_env, "own")
    assert code == 0 and out.strip() == "own command"  # its other commands still work
    code, out, _ = run_main(capsys, clean_env, "list", "plugins", "--json")
    widgets = {p["name"]: p for p in json.loads(out)}["widgets"]
    assert widgets["status"] == "failed"
    assert "cannot replace built-in command(s): run" in widgets["error"]


def test_console_script_and_module_entry_points() -> None:
    script = Path(sys.executable).with_name("diffctl")
    if not script.exists():
        pytest.skip("the diffctl console script is not installed next to this interpreter")
    expected = f"diffctl {metadata.version('diffctl-cli')} "
    for cmd in ([str(script), "--version"], [sys.executable, "-m", "diffctl_cli", "--version"]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and out.stdout.startswith(expected), out.stderr
