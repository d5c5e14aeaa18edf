"""Base class for every component config.

Configs are pydantic models: defaults and field descriptions are the documentation that
``diffctl show`` prints, and ``extra="forbid"`` makes a typo an error instead of a silently
ignored setting.
"""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from diffctl.errors import ConfigError


class ComponentConfig(BaseModel):
    """Strict config: unknown fields are rejected, values are validated on assignment too, no
    float may be infinite or NaN (``train.lr=inf`` would diverge at the first step), and a
    number is never read from true/false (``train.epochs=true`` is not 1 epoch)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False,
                              allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _boolean_for_number(value, field.annotation):
            raise ValueError("Input should be a number, not true or false")
        return value


def _boolean_for_number(value: Any, annotation: Any) -> bool:
    """Whether ``value`` holds a bool where ``annotation`` wants a number (not a bool): at
    the top level or inside a list or tuple of numbers."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        if isinstance(value, bool):
            return bool not in args and any(_boolean_for_number(value, a) for a in args)
        return any(_boolean_for_number(value, a) for a in args)
    if origin is Annotated:
        return _boolean_for_number(value, args[0])
    if isinstance(value, bool):
        return annotation in (int, float)
    if origin in (list, tuple, set, frozenset) and isinstance(value, list | tuple):
        inner = [a for a in args if a is not Ellipsis] or [Any]
        if origin is tuple and len(inner) > 1:  # tuple[int, float]: one type per place
            return any(_boolean_for_number(v, a) for v, a in zip(value, inner, strict=False))
        return any(_boolean_for_number(v, inner[0]) for v in value)
    return False


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
