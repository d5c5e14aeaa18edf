"""The component registry: registration, config validation, building, and plugin failures.

Most tests feed small in-test plugins to ``Registry.register_plugin``; the last group loads
the real entry points of the installed packages.
"""

from __future__ import annotations

import sys
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
from diffctl.registry import KINDS, Registry

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
    assert reg.plugins()[0].name == "core"
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


def test_keyboard_interrupt_is_not_swallowed():
    reg = Registry(strict=False)
    with pytest.raises(KeyboardInterrupt):
        reg.register_plugin(toy_plugin(raises=KeyboardInterrupt()), name="ctrl-c")

    class Interrupted:
        @hookimpl
        def register_commands(self, app) -> None:
            raise KeyboardInterrupt

    reg.register_plugin(Interrupted(), name="ctrl-c-commands")
    with pytest.raises(KeyboardInterrupt):
        reg.call_register_commands(object())


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
