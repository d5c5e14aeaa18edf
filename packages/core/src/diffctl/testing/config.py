"""Conformance of a component's config model: what ``diffctl show``, ``--set`` and run
directories rely on."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from diffctl.testing._support import CheckFailed, Checks, require

CONFIG_CHECKS = ("config-model", "config-defaults", "config-descriptions",
                 "config-yaml-round-trip", "config-rejects-unknown", "config-json-schema")

UNKNOWN_FIELD = "no_such_field_for_conformance"


def config_checks(checks: Checks, config: type[BaseModel],
                  options: Mapping[str, Any] | None = None) -> None:
    """Run the config sub-checks on ``config`` (validated with ``options``) into ``checks``."""
    import yaml

    def model() -> None:
        require(isinstance(config, type) and issubclass(config, BaseModel),
                f"config must be a pydantic model class (derive from "
                f"diffctl.config.ComponentConfig), got {config!r}")

    checks.run("config-model", model)

    def defaults() -> None:
        try:
            config()
        except ValidationError as exc:
            missing = [".".join(map(str, e["loc"])) for e in exc.errors()]
            raise CheckFailed(f"every field needs a default so that a component can be "
                                 f"built by name alone; no default for: {', '.join(missing)}"
                                 ) from None

    def descriptions() -> None:
        bare = [name for name, field in config.model_fields.items() if not field.description]
        require(not bare, "every field needs a description (diffctl show prints it); missing "
                f"for: {', '.join(bare)}")

    def round_trip() -> None:
        original = config.model_validate(dict(options or {}))
        text = yaml.safe_dump(original.model_dump(mode="json"), sort_keys=False)
        again = config.model_validate(yaml.safe_load(text))
        require(again == original and again.model_dump(mode="json") ==
                original.model_dump(mode="json"),
                f"dump -> YAML -> validate changed the config: {original!r} became {again!r}")

    def rejects_unknown() -> None:
        values = {**config.model_validate(dict(options or {})).model_dump(mode="json"),
                  UNKNOWN_FIELD: 1}
        try:
            config.model_validate(values)
        except ValidationError:
            return
        raise CheckFailed("an unknown field was accepted; set extra='forbid' (derive from "
                             "diffctl.config.ComponentConfig) so that typos are errors")

    def schema() -> None:
        require(isinstance(config.model_json_schema(), dict), "no JSON schema")

    checks.run("config-defaults", defaults)
    checks.run("config-descriptions", descriptions)
    checks.run("config-yaml-round-trip", round_trip)
    checks.run("config-rejects-unknown", rejects_unknown)
    checks.run("config-json-schema", schema)


def check_config(config: type[BaseModel], options: Mapping[str, Any] | None = None, *,
                 label: str | None = None, skip: Collection[str] = ()) -> list[str]:
    """Check a component config model; returns the names of the sub-checks that passed.

    Sub-checks: ``config-model`` (a pydantic model class), ``config-defaults`` (builds with no
    values), ``config-descriptions`` (every field documented), ``config-yaml-round-trip``
    (``options`` -> YAML -> the same config), ``config-rejects-unknown`` (a misspelt field is an
    error) and ``config-json-schema``. Raises :class:`ConformanceError` on the first failure.
    """
    checks = Checks(label or f"config {getattr(config, '__qualname__', config)}",
                    CONFIG_CHECKS, skip)
    config_checks(checks, config, options)
    return checks.passed
