"""Command groups of the ``diffctl`` CLI, one module each, each with ``register(app)``."""
