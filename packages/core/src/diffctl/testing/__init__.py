"""Conformance checks for diffctl components, for plugin authors' own test suites.

In the spirit of scikit-learn's ``check_estimator``: call the check for your component's kind
from a test; it raises :class:`ConformanceError` (an ``AssertionError``) naming the component
and the sub-check that failed, and returns the names of the sub-checks that passed::

    from diffctl.testing import check_component, check_sampler

    def test_my_sampler():
        check_sampler(MySampler, MySamplerConfig)          # factory and config model

    def test_registered(diffctl_registry):                 # fixture of the pytest plugin
        diffctl_registry.register_plugin(my_plugin, name="mine")
        check_component("sampler", "my-sampler")          # looked up in the registry

Each check takes ``skip=[...]`` to leave out named sub-checks. Importing this package is cheap:
the checks (and torch) load on first use, so the pytest plugin costs nothing until used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ConformanceError": "diffctl.testing._support",
    "check_config": "diffctl.testing.config",
    "check_dataset": "diffctl.testing.dataset",
    "check_denoiser": "diffctl.testing.denoiser",
    "check_scheduler": "diffctl.testing.scheduler",
    "check_sampler": "diffctl.testing.sampler",
    "GaussianDenoiser": "diffctl.testing.sampler",
    "check_metric": "diffctl.testing.metric",
    "check_logger": "diffctl.testing.logger",
    "check_component": "diffctl.testing.component",
    "check_plugin": "diffctl.testing.component",
    "CHECKS": "diffctl.testing.component",
    "isolated_registry": "diffctl.testing.registry",
    "use_registry": "diffctl.testing.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diffctl.testing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
