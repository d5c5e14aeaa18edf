"""Base class for every component config.

Configs are pydantic models: defaults and field descriptions are the documentation that
``diffctl show`` prints, and ``extra="forbid"`` makes a typo an error instead of a silently
ignored setting.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from diffctl.errors import ConfigError


class ComponentConfig(BaseModel):
    """Strict config: unknown fields are rejected, values are validated on assignment too, and
    no float may be infinite or NaN (``train.lr=inf`` would diverge at the first step)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False,
                              allow_inf_nan=False)


def validation_message(error: ValidationError, where: str = "") -> str:
    """Flatten a pydantic ``ValidationError`` into one line: ``field: problem; field: problem``."""
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"])
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown field"
        elif item["type"] == "value_error":  # our own validators: their message as written
            msg = msg.removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    prefix = f"invalid {where} config: " if where else "invalid config: "
    return prefix + "; ".join(parts)


def build_config(model: type[BaseModel], values: dict[str, Any], where: str = "") -> BaseModel:
    """Validate ``values`` against ``model``, raising a one-line :class:`ConfigError`."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, where)) from None
