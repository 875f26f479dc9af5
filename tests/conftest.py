"""Shared fixtures. Tests run on CPU with one torch thread (stable timings on a shared 2-core box)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> Path:
    """The SHARED-ONLY data folder beside the checkout (never copied into the repository)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets folder not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture
def python_sigint():
    """SIGINT raises KeyboardInterrupt in this test, as in an interactive Python.

    A process started in the background by a non-interactive shell (``make test &``, a CI
    runner) inherits SIGINT ignored (POSIX); the Ctrl-C tests would then test nothing and fail.
    The handler is restored afterwards."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
