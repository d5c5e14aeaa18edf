"""Runs: the resolved config, the run directory, and composing components into a run."""
