"""Importable pieces for the parallel tests (worker processes import them by name)."""

from __future__ import annotations

import multiprocessing
import os
import signal

import numpy as np



def decay(t, x, u, p, xp):
    """dx/dt = -k x."""
    return xp.stack([-p["k"] * x[..., 0]])


def decay_or_die(t, x, u, p, xp):
    """dx/dt = -k x, except in a worker process (one started by multiprocessing: the local pool's
    and Dask's workers, not the test process), which it kills with SIGKILL mid-fit."""
    if multiprocessing.parent_process() is not None:
        os.kill(os.getpid(), signal.SIGKILL)
    return xp.stack([-p["k"] * x[..., 0]])


def decay_data(k: float = 0.7, runs: int = 3, n: int = 12, noise: float = 0.02, seed: int = 0,
               additive: bool = False, same_start: bool = False):
    """Noisy exponential decays x(t) = x0 exp(-k t), one per run (float64): multiplicative noise
    (log-normal, sd ``noise``), or additive Gaussian noise of sd ``noise``. Runs start at
    1, 1.5, 2, ... (all at 1 with ``same_start``: replicates of one experiment)."""
    from sysid.data import from_arrays

    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 3.0, n)
    x0 = np.ones(runs) if same_start else 1.0 + 0.5 * np.arange(runs)
    if additive:
        values = [x * np.exp(-k * t) + noise * rng.standard_normal(n) for x in x0]
    else:
        values = [x * np.exp(-k * t) * np.exp(noise * rng.standard_normal(n)) for x in x0]
    return from_arrays([t] * runs, {"x": values}, states=["x"], runs=[f"r{i}" for i in range(runs)])
