"""Loggers: where a run's training and evaluation records go (kind ``logger``).

``jsonl`` (the run directory's train.jsonl / metrics.jsonl) is always on; ``csv`` and
``tensorboard`` are built in; plugins add others through ``registry.add("logger", ...)``.
See :class:`diffctl.protocols.Logger` for the contract.
"""
