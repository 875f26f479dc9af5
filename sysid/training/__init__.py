"""Training: fit neural, physics and hybrid ODE models to trajectory data.

``fit(model, data, config)`` returns a :class:`FitResult`; the settings are a :class:`FitConfig`
made of parts (:class:`Optimizer`, :class:`Shooting`, :class:`~sysid.solvers.SolverConfig`,
:class:`Loss`, :class:`WarmStart`, :class:`Validation`, :class:`Checkpoint`, :class:`Refine`).
See :mod:`sysid.training.engine` for the loop, :mod:`sysid.training.shooting` for single and
multiple shooting, :mod:`sysid.training.windows` for the windows and how unmeasured states are
initialised, and :mod:`sysid.training.warmstart` for the derivative-based warm start.
"""

from __future__ import annotations

from sysid.solvers import SolverConfig
from sysid.training.config import (
    Checkpoint,
    FitConfig,
    Loss,
    Optimizer,
    Refine,
    Shooting,
    Validation,
    WarmStart,
)
from sysid.training.engine import FitWarning, fit
from sysid.training.result import FitResult, StopReason

__all__ = ["fit", "FitConfig", "FitResult", "FitWarning", "StopReason", "Optimizer", "Shooting",
           "SolverConfig", "Loss", "WarmStart", "Validation", "Checkpoint", "Refine"]
