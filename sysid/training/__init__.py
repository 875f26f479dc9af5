"""Training: fit neural, physics and hybrid ODE models to trajectory data.

``fit(model, data, config)`` returns a :class:`FitResult`; every option lives in :class:`FitConfig`.
See :mod:`sysid.training.engine` for the loop, :mod:`sysid.training.windows` for the multiple-shooting
windows and how unmeasured states are initialised, :mod:`sysid.training.solvers` for the batched
solvers and :mod:`sysid.training.warmstart` for the derivative-based warm start.
"""

from __future__ import annotations

from sysid.training.config import FitConfig
from sysid.training.engine import FitWarning, fit
from sysid.training.result import FitResult

__all__ = ["fit", "FitConfig", "FitResult", "FitWarning"]
