"""Estimation: error models, the converged joint least-squares optimum, and what the data say
about the parameters.

:mod:`sysid.estimation.error_models` names what a fit minimises as a statistical model of the
measurement noise (residuals, log-likelihood, noise levels, AIC/BIC);
:mod:`sysid.estimation.least_squares` refines every estimated quantity that is not a network weight
with SciPy's Levenberg-Marquardt / trust-region least squares on torch Jacobians;
:mod:`sysid.estimation.covariance` turns the Jacobian at the optimum into standard errors,
correlations and identifiability warnings.

On top of a fit: :func:`multistart` (also ``FitConfig(starts=N)``: several starting points, the
best optimum, the distinct optima found), :func:`profile` (re-exported as
:func:`sysid.analysis.profile`: profile-likelihood intervals, flags for practically
non-identifiable parameters) and :func:`bootstrap` (parametric-bootstrap intervals); all three run
their fits serially or on any :class:`concurrent.futures.Executor`.
"""

from __future__ import annotations

from sysid.estimation._inference import Misfit, misfit, with_parameters
from sysid.estimation.bootstrap import BootstrapResult, bootstrap
from sysid.estimation.error_models import (
    ALIASES,
    KINDS,
    NMSE,
    SSE,
    WLS,
    ErrorModel,
    Gaussian,
    Lognormal,
    Poisson,
    Relative,
    information_criteria,
    make_error_model,
)
from sysid.estimation.multistart import distinct_optima, draw_starts, multistart
from sysid.estimation.profile import IdentifiabilityWarning, ProfileResult, profile

__all__ = [
    "ErrorModel", "SSE", "WLS", "Gaussian", "Lognormal", "Poisson", "NMSE", "Relative",
    "KINDS", "ALIASES", "make_error_model", "information_criteria",
    "multistart", "draw_starts", "distinct_optima", "profile", "ProfileResult",
    "IdentifiabilityWarning", "bootstrap", "BootstrapResult", "misfit", "Misfit",
    "with_parameters",
]
