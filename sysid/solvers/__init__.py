"""The one solver layer: settings, torch integration (single runs and batched windows), SciPy integration.

Every integration in sysid goes through this package; ``torchdiffeq`` and ``scipy.integrate.solve_ivp``
are used nowhere else (``tests/test_architecture.py`` checks it).

- :mod:`~sysid.solvers.config`: :class:`SolverConfig` (one settings object for fit, simulate and
  the analysis; its method picks torch or SciPy) and the default of each verb.
- :mod:`~sysid.solvers.times`: :func:`check_times`, the one check of output times (``DataError``).
- :mod:`~sysid.solvers.steps`: explicit Runge-Kutta steps in plain torch, shared by the two torch
  integrators below.
- :mod:`~sysid.solvers.runs`: :func:`solve`, a batch of runs on one time grid (``simulate``);
  :func:`solve_numpy`, the same with ``dopri5`` on a NumPy field.
- :mod:`~sysid.solvers.dopri`: the lean Dormand-Prince stepper of solves without a gradient.
- :mod:`~sysid.solvers.windows`: :func:`solve_windows`, multiple-shooting windows each on its own
  grid (``fit``).
- :mod:`~sysid.solvers.ivp`: :func:`solve_scipy`, SciPy's ``solve_ivp`` on a plain ``f(t, y)`` with
  the non-finite guard and a work budget (reference systems, ``simulate`` with a SciPy method,
  the analysis).

torch is imported by the torch integrators when they run (and with :mod:`~sysid.solvers.windows`,
loaded on first use of :func:`solve_windows` or :class:`StepCounter`), not with this package:
:func:`solve_numpy` and :func:`solve_scipy` run without it.
"""

from typing import Any

from sysid.solvers.config import (
    ADAPTIVE_METHODS,
    FIXED_METHODS,
    METHODS,
    SCIPY_METHODS,
    SolverConfig,
    default_solver,
    solver_from,
)
from sysid.solvers.ivp import solve_scipy
from sysid.solvers.runs import SolveCounter, solve, solve_numpy
from sysid.solvers.times import check_times


def __getattr__(name: str) -> Any:
    """:func:`solve_windows` and :class:`StepCounter`, imported on first use (they need torch)."""
    if name in ("solve_windows", "StepCounter"):
        from sysid.solvers import windows

        return getattr(windows, name)
    raise AttributeError(f"module 'sysid.solvers' has no attribute {name!r}")


__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_METHODS",
    "METHODS",
    "SCIPY_METHODS",
    "SolveCounter",
    "SolverConfig",
    "StepCounter",
    "check_times",
    "default_solver",
    "solve",
    "solve_numpy",
    "solve_scipy",
    "solve_windows",
    "solver_from",
]
