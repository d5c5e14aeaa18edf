"""Conformance of a dataset: the ``Dataset`` protocol and the 2-D fast path ``diffctl run`` uses."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from pydantic import BaseModel

from diffctl.testing._support import Builder, Checks, NotApplicable, label_for, require, same
from diffctl.testing.config import CONFIG_CHECKS, config_checks

DATASET_CHECKS = (*CONFIG_CHECKS, "build", "protocol", "items", "value-range", "deterministic",
                  "seed-is-used", "splits", "reference")


def _indices(n: int) -> list[int]:
    return sorted({0, n // 2, n - 1})


def check_dataset(factory: str | Callable[[Any], Any], config: type[BaseModel],
                  options: Mapping[str, Any] | None = None, *, label: str | None = None,
                  skip: Collection[str] = ()) -> list[str]:
    """Check a dataset built as ``factory(config(**options))``; returns the passed sub-checks.

    Beyond the config checks: ``protocol`` (``sample_shape``, ``num_classes``, a length),
    ``items`` (``ds[i]`` is ``(float32 tensor of sample_shape, int label)``, -1 without
    classes), ``value-range`` (images in [-1, 1]), ``deterministic`` (two builds from one config
    give identical data), ``seed-is-used`` (a config ``seed`` changes the data), ``splits`` and
    ``reference`` (when the dataset offers ``train_tensor``/``test_tensor``/``reference(n,
    seed)``, which ``diffctl run`` needs for vector data: right shapes, consistent with
    ``ds[i]``, reproducible per seed). Raises :class:`ConformanceError` on the first failure.
    ``skip=["build"]`` checks the config only.
    """
    import torch

    from diffctl.protocols import Dataset

    checks = Checks(label_for("dataset", factory, label), DATASET_CHECKS, skip)
    config_checks(checks, config, options)
    builder = Builder(factory, config, options)
    if "build" in checks.skip:
        return checks.passed
    ds = checks.run("build", builder.build)

    def protocol() -> None:
        require(isinstance(ds, Dataset), "missing members of diffctl.protocols.Dataset "
                "(sample_shape, num_classes, __len__, __getitem__)")
        shape = ds.sample_shape
        require(isinstance(shape, tuple) and shape and all(
            isinstance(d, int) and d > 0 for d in shape),
            f"sample_shape must be a tuple of positive ints, got {shape!r}")
        require(ds.num_classes is None or (isinstance(ds.num_classes, int)
                                           and ds.num_classes >= 1),
                f"num_classes must be None or a positive int, got {ds.num_classes!r}")
        require(len(ds) >= 1, "the dataset is empty")

    def items() -> None:
        for i in _indices(len(ds)):
            item = ds[i]
            require(isinstance(item, tuple) and len(item) == 2,
                    f"ds[{i}] must be a pair (x, label), got {type(item).__name__}")
            x, y = item
            require(isinstance(x, torch.Tensor), f"ds[{i}][0] is a {type(x).__name__}, "
                    "expected a torch.Tensor")
            require(x.dtype == torch.float32 and tuple(x.shape) == ds.sample_shape,
                    f"ds[{i}][0] is {x.dtype} {tuple(x.shape)}, expected float32 "
                    f"{ds.sample_shape}")
            require(bool(torch.isfinite(x).all()), f"ds[{i}][0] has non-finite values")
            require(isinstance(y, int) and not isinstance(y, bool),
                    f"ds[{i}][1] must be an int label, got {type(y).__name__}")
            if ds.num_classes:
                require(0 <= y < ds.num_classes,
                        f"ds[{i}] label {y} outside [0, {ds.num_classes})")
            else:
                require(y == -1, f"ds[{i}] label is {y}; a dataset without classes uses -1")

    def value_range() -> None:
        if len(ds.sample_shape) != 3:
            raise NotApplicable
        for i in _indices(len(ds)):
            x = ds[i][0]
            require(float(x.min()) >= -1 and float(x.max()) <= 1,
                    f"image ds[{i}] has values in [{float(x.min()):g}, {float(x.max()):g}], "
                    "expected [-1, 1]")

    def deterministic() -> None:
        other = builder.build()
        require(len(other) == len(ds), "two builds from one config differ in length")
        for i in _indices(len(ds)):
            require(same(ds[i][0], ds[i][0]), f"ds[{i}] changes from one access to the next")
            require(same(ds[i][0], other[i][0]) and ds[i][1] == other[i][1],
                    f"two builds from one config differ at index {i}: draw with a generator "
                    "seeded from the config, not the global RNG")
        for split in ("train_tensor", "test_tensor"):
            if hasattr(ds, split):
                require(same(getattr(ds, split)(), getattr(other, split)()),
                        f"two builds from one config give different {split}()")

    def seed_is_used() -> None:
        if "seed" not in builder.config_cls.model_fields:
            raise NotApplicable
        other = builder.build(seed=(builder.config().seed or 0) + 1)
        n = min(len(ds), len(other))
        require(any(not same(ds[i][0], other[i][0]) for i in _indices(n)),
                "changing the config's seed does not change the data")

    def splits() -> None:
        if not hasattr(ds, "train_tensor"):
            raise NotApplicable
        train, test = ds.train_tensor(), ds.test_tensor()
        for name, t in (("train_tensor()", train), ("test_tensor()", test)):
            require(isinstance(t, torch.Tensor) and t.dtype == torch.float32
                    and tuple(t.shape[1:]) == ds.sample_shape,
                    f"{name} must be float32 (N, *{ds.sample_shape}), got "
                    f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        require(len(train) == len(ds), f"train_tensor() has {len(train)} rows, len(ds) is "
                f"{len(ds)}")
        for i in _indices(len(ds)):
            require(same(train[i], ds[i][0]), f"train_tensor()[{i}] differs from ds[{i}][0]")

    def reference() -> None:
        if not hasattr(ds, "reference"):
            raise NotApplicable
        a, again, b = ds.reference(64, 0), ds.reference(64, 0), ds.reference(64, 1)
        require(isinstance(a, torch.Tensor) and a.dtype == torch.float32
                and tuple(a.shape) == (64, *ds.sample_shape),
                f"reference(64, seed) must be float32 (64, *{ds.sample_shape}), got "
                f"{getattr(a, 'dtype', type(a).__name__)} {tuple(getattr(a, 'shape', ()))}")
        require(bool(torch.isfinite(a).all()), "reference() has non-finite values")
        require(same(a, again), "reference(n, seed) is not reproducible for a fixed seed")
        require(not same(a, b), "reference(n, seed) ignores the seed")

    checks.run("protocol", protocol)
    checks.run("items", items)
    checks.run("value-range", value_range)
    checks.run("deterministic", deterministic)
    checks.run("seed-is-used", seed_is_used)
    checks.run("splits", splits)
    checks.run("reference", reference)
    return checks.passed
