"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import os

import pytest

import diffctl

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one torch/BLAS thread per xdist worker (one worker per core), inherited by the CLI
    # subprocesses the tests start: two threads per worker on a busy machine are several
    # times slower than one
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_worker():
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Each test sees a registry loaded from the current environment."""
    diffctl.reset_registry()
    yield
    diffctl.reset_registry()
