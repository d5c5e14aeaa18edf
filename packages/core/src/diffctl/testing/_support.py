"""Plumbing shared by the conformance checks: named sub-checks, failures, devices, factories."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel


class ConformanceError(AssertionError):
    """A component broke its contract. The message names the component and the sub-check.

    An ``AssertionError`` so that test runners report it as a failed test, not as an error.
    """


class CheckFailed(Exception):
    """Raised inside a sub-check with a message that says what was expected and what was seen."""


class NotApplicable(Exception):
    """Raised by a sub-check that does not apply to this component: it is not listed as passed."""


def require(condition: object, message: str) -> None:
    """Fail the running sub-check with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


class Checks:
    """Runs named sub-checks, turns any failure into one :class:`ConformanceError`.

    ``skip`` names sub-checks to leave out (a ``ValueError`` for names this check does not
    have, so a typo cannot silently skip nothing). ``passed`` lists the sub-checks that ran and
    passed, in order; skipped ones and those that do not apply (``splits`` on a dataset without
    splits) are left out.
    """

    def __init__(self, label: str, names: Collection[str], skip: Collection[str] = ()):
        unknown = sorted(set(skip) - set(names))
        if unknown:
            raise ValueError(f"unknown sub-check(s) to skip: {', '.join(unknown)}; "
                             f"this check has: {', '.join(names)}")
        self.label, self.skip, self.passed = label, set(skip), []

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run one sub-check (unless skipped) and return what ``fn`` returns."""
        if name in self.skip:
            return None
        try:
            value = fn()
        except NotApplicable:
            return None
        except ConformanceError:
            raise
        except CheckFailed as exc:
            raise ConformanceError(f"{self.label}: {name}: {exc}") from None
        except Exception as exc:
            raise ConformanceError(
                f"{self.label}: {name}: raised {type(exc).__name__}: {exc}") from exc
        self.passed.append(name)
        return value


def resolve_factory(factory: str | Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A factory given as a callable or as ``"module:attribute"`` (the registry's form)."""
    if callable(factory):
        return factory
    module_name, sep, attr = str(factory).partition(":")
    if not sep:
        raise TypeError(f"factory must be callable or 'module:attribute', got {factory!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def describe(factory: str | Callable[[Any], Any]) -> str:
    if isinstance(factory, str):
        return factory
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', factory)}"


class Builder:
    """Builds a component from its factory and a config validated from ``options``."""

    def __init__(self, factory: str | Callable[[Any], Any], config: type[BaseModel],
                 options: Mapping[str, Any] | None = None):
        self.factory_ref, self.config_cls = factory, config
        self.options = dict(options or {})
        self._factory: Callable[[Any], Any] | None = None

    def config(self, **overrides: Any) -> BaseModel:
        return self.config_cls.model_validate({**self.options, **overrides})

    def build(self, **overrides: Any) -> Any:
        if self._factory is None:
            self._factory = resolve_factory(self.factory_ref)
        return self._factory(self.config(**overrides))


def label_for(kind: str, factory: str | Callable[[Any], Any], label: str | None) -> str:
    return label or f"{kind} {describe(factory)}"


def default_devices(devices: Collection[str] | None) -> list[str]:
    """The devices to try: ``devices``, or the CPU plus CUDA when it is available."""
    if devices is not None:
        return list(devices)
    import torch

    return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def same(a: Any, b: Any) -> bool:
    """Bit-identical tensors: same shape, dtype and values."""
    import torch

    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.cpu(), b.cpu()))


def max_diff(a: Any, b: Any) -> float:
    return float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max())


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread: the checks use small tensors, where extra threads
    only add overhead (and on a busy machine, a lot of it). Restores the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Leave torch's global (CPU) RNG as it was: the checks disturb it on purpose."""
    import torch

    state = torch.random.get_rng_state()
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
