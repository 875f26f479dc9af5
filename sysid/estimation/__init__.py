"""Estimation: error models, the converged joint least-squares optimum and its covariance.

:mod:`sysid.estimation.error_models` names what a fit minimises as a statistical model of the
measurement noise (residuals, log-likelihood, noise levels, AIC/BIC);
:mod:`sysid.estimation.least_squares` refines every estimated quantity that is not a network weight
with SciPy's Levenberg-Marquardt / trust-region least squares on torch Jacobians;
:mod:`sysid.estimation.covariance` turns the Jacobian at the optimum into standard errors,
correlations and identifiability warnings.
"""

from __future__ import annotations

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

__all__ = [
    "ErrorModel", "SSE", "WLS", "Gaussian", "Lognormal", "Poisson", "NMSE", "Relative",
    "KINDS", "ALIASES", "make_error_model", "information_criteria",
]
