"""The component registry: registration, config validation, building, and plugin failures.

Most tests feed small in-test plugins to ``Registry.register_plugin``; the last group loads
the real entry points of the installed packages.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import Field

import diffctl
from diffctl import hookimpl
from diffctl import registry as registry_module
from diffctl.config import ComponentConfig
from diffctl.errors import ConfigError, PluginError, UnknownComponentError, UsageError
from diffctl.registry import FIRST_PARTY, KINDS, Registry, load_order

BUILTIN_SAMPLERS = ["ancestral", "ddim", "dpmpp-2m", "euler", "heun"]
BUILTIN_SCHEDULERS = ["cosine", "linear", "scaled-linear", "sigmoid"]


class SizeConfig(ComponentConfig):
    size: int = Field(3, ge=1, description="How big.")
    label: str = Field("toy", description="What to call it.")


def build_toy(config: SizeConfig) -> dict[str, Any]:
    return {"size": config.size, "label": config.label, "config": config}


def toy_plugin(*components: tuple[str, str], raises: Exception | None = None,
               factory: Any = build_toy) -> SimpleNamespace:
    """A plugin adding ``(kind, name)`` components, then raising ``raises`` if given."""

    @hookimpl
    def register_components(registry) -> None:
        for kind, name in components:
            registry.add(kind, name, factory=factory, config=SizeConfig,
                         summary=f"A test {kind} called {name}.")
        if raises is not None:
            raise raises

    return SimpleNamespace(register_components=register_components)


class CommandPlugin:
    """A class-based plugin: one component and a CLI hook that records the app it was given."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.apps: list[Any] = []

    @hookimpl
    def register_components(self, registry) -> None:
        registry.add("metric", "cmd-metric", factory=build_toy, config=SizeConfig,
                     summary="A metric from a class-based plugin.")

    @hookimpl
    def register_commands(self, app) -> None:
        if self.fail:
            raise RuntimeError("cannot add commands")
        self.apps.append(app)


def _env_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFCTL_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("DIFFCTL_STRICT_PLUGINS", raising=False)


# -- registration and building ---------------------------------------------------------------
def test_components_record_their_plugin_distribution_and_version():
    reg = Registry(strict=False)
    info = reg.register_plugin(toy_plugin(("sampler", "toy"), ("widget", "gizmo")),
                               name="toys", distribution="toy-dist", version="1.2.3")
    assert (info.status, info.error) == ("loaded", None)
    assert info.components == [("sampler", "toy"), ("widget", "gizmo")]
    spec = reg.get("sampler", "toy")
    assert (spec.plugin, spec.distribution, spec.version) == ("toys", "toy-dist", "1.2.3")
    assert spec.summary == "A test sampler called toy."
    assert reg.components("sampler") == ["toy"]
    assert reg.components() == ["sampler:toy", "widget:gizmo"]
    # built-in kinds first, a plugin's new kind after them
    assert reg.kinds() == [*KINDS, "widget"]
    assert info.as_dict()["components"] == ["sampler:toy", "widget:gizmo"]


def test_create_validates_config_and_calls_a_callable_factory():
    reg = Registry(strict=False)
    reg.register_plugin(toy_plugin(("sampler", "toy")), name="toys")
    built = reg.create("sampler", "toy")
    assert (built["size"], built["label"]) == (3, "toy")
    assert isinstance(built["config"], SizeConfig)
    # defaults < config dict < keyword overrides
    built = reg.create("sampler", "toy", {"size": 5, "label": "a"}, label="b")
    assert (built["size"], built["label"]) == (5, "b")
    # a config model instance is accepted as well
    assert reg.create("sampler", "toy", SizeConfig(size=7))["size"] == 7


def test_string_factory_is_imported_on_first_create_only(tmp_path, monkeypatch):
    module = "diffctl_test_lazy_factory"
    (tmp_path / f"{module}.py").write_text(
        "class Outer:\n"
        "    @staticmethod\n"
        "    def build(config):\n"
        "        return ('lazy', config.size)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    reg = Registry(strict=False)
    reg.register_plugin(toy_plugin(("sampler", "lazy"), factory=f"{module}:Outer.build"),
                        name="lazy")
    assert module not in sys.modules  # registering and listing never import the factory
    assert reg.get("sampler", "lazy").factory == f"{module}:Outer.build"
    assert reg.create("sampler", "lazy", size=4) == ("lazy", 4)
    assert module in sys.modules


def test_unknown_config_field_is_a_one_line_config_error():
    reg = Registry(strict=False)
    reg.register_plugin(toy_plugin(("sampler", "toy")), name="toys")
    with pytest.raises(ConfigError, match="unknown field") as caught:
        reg.create("sampler", "toy", sise=4)
    message = str(caught.value)
    assert "sise" in message and "sampler 'toy'" in message and "\n" not in message
    assert caught.value.exit_code == 2


def test_invalid_value_on_the_real_linear_scheduler_is_a_config_error(monkeypatch):
    _env_clean(monkeypatch)
    spec = Registry(strict=False).load_entry_points(only=["diffctl-core"]).get("scheduler",
                                                                               "linear")
    assert spec.make_config().num_train_timesteps == 1000
    with pytest.raises(ConfigError, match="num_train_timesteps"):
        spec.create(num_train_timesteps=0)  # fails in validation, before torch is needed
    with pytest.raises(ConfigError, match="beta_end must be greater than beta_start"):
        spec.make_config(beta_start=0.02, beta_end=0.01)
    with pytest.raises(ConfigError, match="unknown field"):
        spec.make_config({"num_train_timestep": 10})


def test_unknown_name_and_kind_suggest_the_closest_match():
    reg = Registry(strict=False)
    reg.register_plugin(toy_plugin(("sampler", "ddim"), ("sampler", "euler")), name="toys")
    with pytest.raises(UnknownComponentError) as caught:
        reg.get("sampler", "dim")
    assert str(caught.value) == (
        "unknown sampler 'dim' (available: ddim, euler); did you mean 'ddim'?")
    assert isinstance(caught.value, UsageError) and caught.value.exit_code == 2
    with pytest.raises(UnknownComponentError, match="did you mean 'sampler'"):
        reg.get("samplr", "ddim")
    with pytest.raises(UnknownComponentError) as caught:
        reg.get("sampler", "zzzzzz")
    assert "did you mean" not in str(caught.value)


# -- failing plugins ---------------------------------------------------------------------------
def test_plugin_whose_hook_raises_is_failed_and_contributes_nothing():
    reg = Registry(strict=False)
    reg.register_plugin(toy_plugin(("sampler", "good")), name="good")
    bad = reg.register_plugin(
        toy_plugin(("sampler", "half"), ("scheduler", "half"), raises=RuntimeError("boom\nmore")),
        name="bad", distribution="bad-dist")
    assert bad.status == "failed"
    assert bad.error == "RuntimeError: boom; more"  # one line, nothing dropped
    assert bad.components == []
    # all or nothing: what the hook added before raising is not registered
    assert reg.components() == ["sampler:good"]
    assert reg.create("sampler", "good")["size"] == 3
    assert [(p.name, p.status) for p in reg.plugins()] == [("good", "loaded"), ("bad", "failed")]


def test_duplicate_name_across_plugins_fails_the_second_naming_both():
    reg = Registry(strict=False)
    first = reg.register_plugin(toy_plugin(("sampler", "toy")), name="first",
                                distribution="first-dist")
    second = reg.register_plugin(toy_plugin(("sampler", "other"), ("sampler", "toy")),
                                 name="second", distribution="second-dist")
    assert first.status == "loaded"
    assert second.status == "failed"
    assert "duplicate sampler 'toy'" in second.error
    assert "'first' (first-dist)" in second.error and "'second' (second-dist)" in second.error
    assert reg.components("sampler") == ["toy"]  # 'other' was not committed either
    assert reg.get("sampler", "toy").plugin == "first"


def test_same_kind_and_name_twice_within_one_plugin_fails_it():
    reg = Registry(strict=False)
    info = reg.register_plugin(toy_plugin(("sampler", "toy"), ("sampler", "toy")), name="twice")
    assert info.status == "failed" and "within plugin 'twice'" in info.error


@pytest.mark.parametrize(
    ("kind", "name", "message"),
    [("sampler", "Not_Kebab", "kebab-case"), ("Sampler", "ok", "kebab-case")],
)
def test_badly_named_component_fails_its_plugin(kind, name, message):
    reg = Registry(strict=False)
    info = reg.register_plugin(toy_plugin((kind, name)), name="bad-names")
    assert info.status == "failed" and message in info.error
    assert reg.components() == []


def test_hookimpl_for_an_unknown_hook_fails_the_plugin():
    @hookimpl
    def register_componentz(registry) -> None:  # a typo of the real hook
        raise AssertionError("never called")

    reg = Registry(strict=False)
    info = reg.register_plugin(SimpleNamespace(register_componentz=register_componentz),
                               name="typo")
    reg.register_plugin(toy_plugin(("sampler", "toy")), name="fine")
    assert info.status == "failed"
    assert "unknown hook(s): register_componentz" in info.error
    assert reg.components() == ["sampler:toy"]
    reg._pm.check_pending()  # the failed plugin left no unvalidated hookimpl behind


def test_hookimpl_with_wrong_arguments_fails_the_plugin():
    @hookimpl
    def register_components(registry, extra) -> None:
        raise AssertionError("never called")

    reg = Registry(strict=False)
    info = reg.register_plugin(SimpleNamespace(register_components=register_components),
                               name="wrong-args")
    assert info.status == "failed"
    # pluggy's message spans lines; the recorded one-line error keeps the cause
    assert "\n" not in info.error and "{'extra'}" in info.error


def test_strict_mode_raises_plugin_error():
    reg = Registry(strict=True)
    reg.register_plugin(toy_plugin(("sampler", "toy")), name="good")
    with pytest.raises(PluginError, match=r"plugin 'bad' \(\(local\)\) failed to load: "
                                          r"RuntimeError: boom"):
        reg.register_plugin(toy_plugin(raises=RuntimeError("boom")), name="bad")
    assert reg.components() == ["sampler:toy"]
    assert PluginError.exit_code == 1


def test_strict_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DIFFCTL_STRICT_PLUGINS", "1")
    assert Registry().strict is True
    monkeypatch.setenv("DIFFCTL_STRICT_PLUGINS", "0")
    assert Registry().strict is False
    assert Registry(strict=True).strict is True


def test_two_plugin_names_for_one_module_fail_the_second_only():
    reg = Registry(strict=False)
    plugin = CommandPlugin()
    first = reg.register_plugin(plugin, name="first")
    second = reg.register_plugin(plugin, name="second")
    assert first.status == "loaded"
    assert second.status == "failed"
    assert second.error == (f"PluginError: module '{CommandPlugin.__name__}' is already loaded "
                            "as plugin 'first' ((local))")
    # the failed second registration must not unregister the first one's hooks
    reg.call_register_commands(app := object())
    assert plugin.apps == [app]


def test_register_commands_reaches_plugins_and_a_failing_hook_marks_its_plugin():
    reg = Registry(strict=False)
    good, bad = CommandPlugin(), CommandPlugin(fail=True)
    reg.register_plugin(good, name="good")
    reg.register_plugin(toy_plugin(("sampler", "toy")), name="no-commands")
    bad_info = reg.register_plugin(SimpleNamespace(
        register_commands=CommandPlugin(fail=True).register_commands), name="bad")
    failed_early = CommandPlugin()
    reg.register_plugin(failed_early, name="good-again")  # duplicate metric: failed
    app = object()
    reg.call_register_commands(app)
    assert good.apps == [app]
    assert failed_early.apps == []  # a failed plugin's command hook is never called
    assert bad_info.status == "failed"
    assert bad_info.error == "register_commands: RuntimeError: cannot add commands"
    assert bad.apps == []
    strict = Registry(strict=True)
    strict.register_plugin(SimpleNamespace(
        register_commands=CommandPlugin(fail=True).register_commands), name="bad")
    with pytest.raises(PluginError, match="'bad' command hook failed"):
        strict.call_register_commands(object())


# -- real entry points ---------------------------------------------------------------------------
def core_names(reg: Registry, kind: str) -> list[str]:
    """Names the core registered (other installed plugins may add more of the same kind)."""
    return sorted(s.name for s in reg.specs(kind) if s.plugin == "core")


def test_entry_points_load_core_models_and_metrics_with_core_first(monkeypatch):
    _env_clean(monkeypatch)
    reg = Registry().load_entry_points()
    plugins = {p.name: p for p in reg.plugins()}
    assert {"core", "models", "metrics"} <= set(plugins)
    assert [p.name for p in reg.plugins()[:3]] == ["core", "models", "metrics"]
    assert plugins["core"].distribution == "diffctl-core"
    assert plugins["models"].distribution == "diffctl-models"
    assert plugins["metrics"].distribution == "diffctl-metrics"
    for name in ("core", "models", "metrics"):
        assert plugins[name].status == "loaded", plugins[name].error
        assert plugins[name].version == metadata.version(plugins[name].distribution)
    assert core_names(reg, "scheduler") == BUILTIN_SCHEDULERS
    assert core_names(reg, "sampler") == BUILTIN_SAMPLERS
    assert reg.get("sampler", "ddim").plugin == "core"
    assert plugins["core"].module == "diffctl.plugin"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("diffctl-core", ["core"]), ("", []), ("models", ["models"]),
     ("diffctl_core, diffctl-metrics", ["core", "metrics"])],
)
def test_diffctl_load_plugins_restricts_loading(monkeypatch, value, expected):
    _env_clean(monkeypatch)
    monkeypatch.setenv("DIFFCTL_LOAD_PLUGINS", value)
    reg = Registry().load_entry_points()
    assert [p.name for p in reg.plugins()] == expected
    if expected == ["core"]:
        assert reg.components("sampler") == BUILTIN_SAMPLERS
        assert reg.components("denoiser") == []
    # the process-wide registry honours it too once reset
    diffctl.reset_registry()
    assert [p.name for p in diffctl.plugins()] == expected


def _with_broken_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``entry_points(group=...)`` return the real plugins plus one that cannot import."""
    real = metadata.entry_points

    def entry_points(**selection: Any):
        broken = metadata.EntryPoint(name="broken", value="diffctl_nonexistent_mod_xyz",
                                     group=registry_module.ENTRY_POINT_GROUP)
        return [*real(**selection), broken]

    monkeypatch.setattr(registry_module.metadata, "entry_points", entry_points)


def test_entry_point_that_fails_to_import_is_recorded_and_others_load(monkeypatch):
    _env_clean(monkeypatch)
    _with_broken_entry_point(monkeypatch)
    reg = Registry().load_entry_points()
    plugins = {p.name: p for p in reg.plugins()}
    broken = plugins["broken"]
    assert broken.status == "failed"
    assert broken.error.startswith("ModuleNotFoundError:")
    assert "diffctl_nonexistent_mod_xyz" in broken.error
    # a hand-made entry point has no distribution: reported as unknown, not a crash
    assert (broken.distribution, broken.version) == ("(unknown)", "?")
    assert reg.plugins()[0].name == "core"
    assert all(plugins[n].status == "loaded" for n in ("core", "models", "metrics"))
    assert core_names(reg, "sampler") == BUILTIN_SAMPLERS


def test_entry_point_that_fails_to_import_raises_in_strict_mode(monkeypatch):
    _env_clean(monkeypatch)
    _with_broken_entry_point(monkeypatch)
    monkeypatch.setenv("DIFFCTL_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match=r"plugin 'broken' \(\(unknown\)\) failed to load: "
                                          r"ModuleNotFoundError"):
        diffctl.get_registry()


def test_library_api_uses_the_process_wide_registry(monkeypatch):
    _env_clean(monkeypatch)
    monkeypatch.setenv("DIFFCTL_LOAD_PLUGINS", "diffctl-core")
    assert diffctl.get_registry() is diffctl.get_registry()
    assert diffctl.components("sampler") == BUILTIN_SAMPLERS
    assert "scheduler:linear" in diffctl.components()
    assert [p.name for p in diffctl.plugins()] == ["core"]
    with pytest.raises(UnknownComponentError, match="did you mean 'cosine'"):
        diffctl.create("scheduler", "cosin")


# -- BaseException from a plugin, a failing command hook, unknown names to load ----------------
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("exc", [SystemExit(3), SystemExit("bye"), GeneratorExit()])
def test_a_hook_that_raises_a_base_exception_only_fails_its_plugin(exc):
    reg = Registry(strict=False)
    info = reg.register_plugin(toy_plugin(("sampler", "toy"), raises=exc), name="exits")
    reg.register_plugin(toy_plugin(("sampler", "fine")), name="fine")
    assert info.status == "failed" and info.error.startswith(type(exc).__name__)
    assert reg.components() == ["sampler:fine"]
    with pytest.raises(PluginError, match=r"plugin 'exits' .*failed to load: SystemExit: 3"):
        Registry(strict=True).register_plugin(toy_plugin(raises=SystemExit(3)), name="exits")


class CommandsInterrupt:
    """A plugin whose command hook raises KeyboardInterrupt itself (no signal)."""

    @hookimpl
    def register_commands(self, app) -> None:
        raise KeyboardInterrupt


def test_a_keyboard_interrupt_the_plugin_raises_itself_only_fails_it():
    """No SIGINT arrived, so the KeyboardInterrupt is the plugin's own failure."""
    reg = Registry(strict=False)
    info = reg.register_plugin(toy_plugin(("sampler", "half"), raises=KeyboardInterrupt()),
                               name="ctrl-c")
    assert (info.status, info.error, info.components) == ("failed", "KeyboardInterrupt", [])
    assert reg.register_plugin(toy_plugin(("sampler", "fine")), name="fine").status == "loaded"
    commands = reg.register_plugin(CommandsInterrupt(), name="ctrl-c-commands")
    reg.call_register_commands(object())
    assert (commands.status, commands.error) == ("failed", "register_commands: KeyboardInterrupt")
    assert reg.components() == ["sampler:fine"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    with pytest.raises(PluginError, match=r"plugin 'ctrl-c' .*failed to load: KeyboardInterrupt"):
        Registry(strict=True).register_plugin(toy_plugin(raises=KeyboardInterrupt()),
                                              name="ctrl-c")
    # outside the main thread a Ctrl-C is never delivered, so it is the plugin's own too
    seen: list[str | None] = []
    thread = threading.Thread(target=lambda: seen.append(reg.register_plugin(
        toy_plugin(raises=KeyboardInterrupt("from a thread")), name="threaded").error))
    thread.start()
    thread.join()
    assert seen == ["KeyboardInterrupt: from a thread"]


def ctrl_c(swallow: bool) -> None:
    """Deliver SIGINT to this process, as a Ctrl-C in the terminal does."""
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        if not swallow:
            raise


@pytest.mark.parametrize("swallow", [False, True])
def test_a_real_ctrl_c_while_plugins_load_still_interrupts(swallow):
    """A SIGINT during a plugin's hook stops loading, even if the plugin catches it."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not handled by Python's default handler here")

    @hookimpl
    def register_components(registry) -> None:
        registry.add("sampler", "never", factory=build_toy, config=SizeConfig, summary="No.")
        ctrl_c(swallow)

    reg = Registry(strict=False)
    with pytest.raises(KeyboardInterrupt):
        reg.register_plugin(SimpleNamespace(register_components=register_components),
                            name="slow")
    assert reg.plugins()[0].status == "failed" and reg.components() == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    class SlowCommands:
        @hookimpl
        def register_commands(self, app) -> None:
            ctrl_c(swallow)

    reg.register_plugin(SlowCommands(), name="slow-commands")
    with pytest.raises(KeyboardInterrupt):
        reg.call_register_commands(object())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_what_a_plugin_prints_is_recorded_and_never_reaches_stdout(capfd):
    """Python-level and file-descriptor-level writes during import and hooks are captured;
    what the caller prints before and after still reaches stdout; stderr is left alone."""

    class Chatty:
        @hookimpl
        def register_components(self, registry) -> None:
            print("from print")
            sys.stdout.flush()
            os.write(1, b"from fd 1\n")
            sys.__stdout__.write("from sys.__stdout__\n")
            print("to stderr", file=sys.stderr)
            registry.add("sampler", "chatty", factory=build_toy, config=SizeConfig,
                         summary="Talks a lot.")

        @hookimpl
        def register_commands(self, app) -> None:
            print("from the command hook")

    def load() -> object:
        print("from the import")
        return Chatty()

    stdout = sys.stdout
    print("before")
    reg = Registry(strict=False)
    info = reg._register(load, name="chatty", distribution="chatty-dist", version="1",
                         module="chatty")
    reg.call_register_commands(object())
    print("after")
    captured = capfd.readouterr()
    assert captured.out == "before\nafter\n"
    assert captured.err == "to stderr\n"
    assert sys.stdout is stdout
    assert info.status == "loaded" and info.components == [("sampler", "chatty")]
    for line in ("from the import", "from print", "from fd 1", "from sys.__stdout__",
                 "from the command hook"):
        assert line in info.output.splitlines()
    assert info.as_dict()["output"] == info.output
    quiet = reg.register_plugin(toy_plugin(("sampler", "quiet")), name="quiet")
    assert quiet.output == "" and quiet.as_dict()["output"] is None


def test_an_entry_point_that_calls_sys_exit_on_import_is_recorded(monkeypatch):
    """The fixture distribution of tests/fixtures/exiting-plugin, found through sys.path."""
    _env_clean(monkeypatch)
    monkeypatch.syspath_prepend(str(FIXTURES / "exiting-plugin"))
    monkeypatch.delitem(sys.modules, "diffctl_exiting_plugin", raising=False)
    reg = Registry().load_entry_points()
    plugins = {p.name: p for p in reg.plugins()}
    exiting = plugins["exiting"]
    assert (exiting.status, exiting.distribution) == ("failed", "diffctl-exiting-plugin")
    assert exiting.error == ("SystemExit: diffctl-exiting-plugin exits on import (a fixture of "
                             "the test suite)")
    assert plugins["core"].status == "loaded"
    assert core_names(reg, "sampler") == BUILTIN_SAMPLERS


def test_a_failing_command_hook_withdraws_the_plugins_components():
    reg = Registry(strict=False)
    good, bad = CommandPlugin(), CommandPlugin(fail=True)
    reg.register_plugin(toy_plugin(("sampler", "toy")), name="other")
    info = reg.register_plugin(bad, name="bad")
    assert info.components == [("metric", "cmd-metric")]
    reg.call_register_commands(object())
    assert info.status == "failed"
    assert info.error == "register_commands: RuntimeError: cannot add commands"
    assert info.components == [] and info.as_dict()["components"] == []
    assert reg.components() == ["sampler:toy"]  # a failed plugin contributes nothing
    with pytest.raises(UnknownComponentError):
        reg.get("metric", "cmd-metric")
    # the name is free again, and calling the hooks again changes nothing
    assert reg.register_plugin(good, name="good").status == "loaded"
    reg.call_register_commands(object())
    assert reg.get("metric", "cmd-metric").plugin == "good"
    assert reg.components() == ["metric:cmd-metric", "sampler:toy"]
    strict = Registry(strict=True)
    strict_info = strict.register_plugin(CommandPlugin(fail=True), name="bad")
    with pytest.raises(PluginError, match="'bad' command hook failed"):
        strict.call_register_commands(object())
    assert strict.components() == [] and strict_info.status == "failed"


def test_a_name_to_load_that_matches_nothing_is_listed_with_the_installed_ones(monkeypatch):
    _env_clean(monkeypatch)
    monkeypatch.setenv("DIFFCTL_LOAD_PLUGINS", "diffctl-core,diffctl-modles")
    plugins = diffctl.plugins()
    assert [(p.name, p.status) for p in plugins] == [("core", "loaded"),
                                                    ("diffctl-modles", "failed")]
    typo = plugins[1]
    assert typo.components == [] and typo.distribution == "diffctl-modles"
    assert typo.error.startswith("DIFFCTL_LOAD_PLUGINS names 'diffctl-modles', which matches "
                                 "no installed distribution or entry point in group 'diffctl' "
                                 "(installed: diffctl-core, ")
    assert "diffctl-models" in typo.error and "\n" not in typo.error
    assert typo.error.endswith("did you mean 'diffctl-models'?")
    assert diffctl.components("sampler") == BUILTIN_SAMPLERS  # the rest works
    # a name that does match (distribution or entry point, any spelling) adds no such entry
    reg = Registry(strict=True).load_entry_points(only=["diffctl_core", "models"])
    assert [(p.name, p.status) for p in reg.plugins()] == [("core", "loaded"),
                                                          ("models", "loaded")]


def test_a_name_to_load_that_matches_nothing_raises_in_strict_mode(monkeypatch):
    _env_clean(monkeypatch)
    with pytest.raises(PluginError, match=r"^load_entry_points\(only=...\) names 'nope', "
                                          r"which matches no installed distribution"):
        Registry(strict=True).load_entry_points(only=["diffctl-core", "nope"])
    monkeypatch.setenv("DIFFCTL_STRICT_PLUGINS", "1")
    monkeypatch.setenv("DIFFCTL_LOAD_PLUGINS", "diffctl-coer")
    with pytest.raises(PluginError, match=r"DIFFCTL_LOAD_PLUGINS names 'diffctl-coer'.*did "
                                          r"you mean 'diffctl-core'"):
        diffctl.get_registry()


# -- load order, names and collisions with first-party plugins ---------------------------------
def _ep(dist: str | None, name: str, value: str = "mod") -> SimpleNamespace:
    return SimpleNamespace(name=name, value=value,
                           dist=None if dist is None else SimpleNamespace(name=dist))


def test_load_order_puts_first_party_first_then_sorts_the_rest():
    eps = [_ep("zzz-plugin", "a"), _ep("diffctl-cli", "cli"), _ep("aaa_plugin", "b"),
           _ep("aaa-plugin", "a"), _ep("diffctl-metrics", "metrics"), _ep(None, "handmade"),
           _ep("Diffctl_Models", "models"), _ep("diffctl-core", "core"),
           _ep("diffctl-example", "example")]
    ordered = [(ep.dist and ep.dist.name, ep.name) for ep in sorted(eps, key=load_order)]
    assert ordered == [("diffctl-core", "core"), ("Diffctl_Models", "models"),
                       ("diffctl-metrics", "metrics"), ("diffctl-cli", "cli"),
                       (None, "handmade"), ("aaa-plugin", "a"), ("aaa_plugin", "b"),
                       ("diffctl-example", "example"), ("zzz-plugin", "a")]
    assert list(FIRST_PARTY) == ["diffctl-core", "diffctl-models", "diffctl-metrics",
                                 "diffctl-cli"]


def _install_fixture(monkeypatch: pytest.MonkeyPatch, folder: str, module: str) -> None:
    _env_clean(monkeypatch)
    monkeypatch.syspath_prepend(str(FIXTURES / folder))
    monkeypatch.delitem(sys.modules, module, raising=False)


MODELS_DENOISERS = ["dit", "dit-b", "dit-s", "dit-tiny", "mlp", "residual-mlp", "student-unet",
                    "unet-mini"]


def test_a_third_party_reusing_a_first_party_component_name_fails_alone(monkeypatch):
    """aaa-diffctl-shadow sorts before diffctl-models but loads after it: it, not
    diffctl-models, is the plugin that came second and fails."""
    _install_fixture(monkeypatch, "shadowing-plugin", "aaa_diffctl_shadow")
    reg = Registry().load_entry_points()
    plugins = {(p.name, p.distribution): p for p in reg.plugins()}
    models = plugins["models", "diffctl-models"]
    assert models.status == "loaded"
    assert sorted(n for k, n in models.components if k == "denoiser") == MODELS_DENOISERS
    shadow = plugins["shadow", "aaa-diffctl-shadow"]
    assert (shadow.status, shadow.components) == ("failed", [])
    assert shadow.error == ("PluginError: duplicate denoiser 'mlp': already registered by plugin "
                            "'models' (diffctl-models), registered again by plugin 'shadow' "
                            "(aaa-diffctl-shadow)")
    spec = reg.get("denoiser", "mlp")
    assert (spec.plugin, spec.distribution) == ("models", "diffctl-models")
    assert spec.factory == "diffctl_models.mlp:MLPDenoiser"
    assert "shadow-net" not in reg.components("denoiser")  # all or nothing
    with pytest.raises(PluginError, match=r"^plugin 'shadow' \(aaa-diffctl-shadow\) failed to "
                                          r"load: PluginError: duplicate denoiser 'mlp'"):
        Registry(strict=True).load_entry_points()


def test_a_third_party_plugin_named_models_fails_before_it_is_imported(monkeypatch):
    _install_fixture(monkeypatch, "impostor-plugin", "aaa_diffctl_impostor")
    reg = Registry().load_entry_points()
    models = [p for p in reg.plugins() if p.name == "models"]
    assert [(p.distribution, p.status) for p in models] == [
        ("diffctl-models", "loaded"), ("aaa-diffctl-impostor", "failed")]
    assert models[1].error == ("PluginError: plugin name 'models' is already held by the plugin "
                               "from diffctl-models, which loaded first; aaa-diffctl-impostor "
                               "must use another entry-point name")
    assert sorted(reg.components("denoiser")) == MODELS_DENOISERS
    assert reg.get("denoiser", "mlp").distribution == "diffctl-models"
    assert "aaa_diffctl_impostor" not in sys.modules
    # loaded on its own, the name is still not its to take
    alone = Registry(strict=False).load_entry_points(only=["aaa-diffctl-impostor"])
    assert [(p.name, p.status, p.error) for p in alone.plugins()] == [
        ("models", "failed", "PluginError: plugin name 'models' is reserved for diffctl-models; "
                             "aaa-diffctl-impostor must use another entry-point name")]
    assert alone.components() == [] and "aaa_diffctl_impostor" not in sys.modules
    # a plugin registered by hand under a held name fails the same way, naming the holder
    taken = reg.register_plugin(toy_plugin(("sampler", "x")), name="core")
    assert taken.status == "failed" and "already held by the plugin from diffctl-core" in \
        taken.error


def test_a_plugin_raising_keyboard_interrupt_on_import_is_recorded(monkeypatch):
    _install_fixture(monkeypatch, "interrupting-plugin", "diffctl_interrupting_plugin")
    reg = Registry().load_entry_points()
    plugins = {p.name: p for p in reg.plugins()}
    assert plugins["interrupting"].status == "failed"
    assert plugins["interrupting"].error == (
        "KeyboardInterrupt: diffctl-interrupting-plugin raises KeyboardInterrupt on import (a "
        "fixture of the test suite)")
    assert all(plugins[n].status == "loaded" for n in ("core", "models", "metrics"))
    assert core_names(reg, "sampler") == BUILTIN_SAMPLERS
