"""The joint refinement of a fit: from a model and its training data to a converged optimum, its
covariance and likelihood (what :func:`sysid.fit` calls after, or instead of, the first-order
stage).

:func:`refine_model` refines every estimated quantity that is not a network weight - free
physical parameters, free and latent initial states - by single-shooting least squares
(:mod:`sysid.estimation.least_squares`), network weights held fixed; the noise levels follow in
closed form. It reports the error model, the estimated sigmas, the log-likelihood, AIC and BIC
(counting parameters, free initial states and sigmas), the covariance and correlation of all
estimated quantities and identifiability warnings.

Single shooting is the refinement's objective by default because the published least-squares
optimum of an ODE model is a single-shooting optimum (every sample predicted from the run's
initial state, which is itself estimated where free). Problems too large for a dense Jacobian
(see :data:`MAX_WORK`) are not refined; their result says so.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from sysid.budget import BudgetExceeded, expired
from sysid.errors import SolverError
from sysid.estimation.covariance import Uncertainty, uncertainty
from sysid.estimation.error_models import ErrorModel, information_criteria
from sysid.estimation.least_squares import Convergence, solve
from sysid.estimation.problem import ShootingProblem, physics_terms

__all__ = ["Estimate", "refine_model", "MAX_WORK", "has_network_weights"]

#: Largest ``grid points x ceil(residuals / 512)`` refined: the cost of one Jacobian grows with
#: both (a 21-sample series is ~100; 6 runs of 3000 samples at 1 kHz ~10^5, minutes per iteration).
MAX_WORK = 20_000


@dataclass(frozen=True)
class Estimate:
    """What the refinement found (or why it did not run).

    Attributes
    ----------
    convergence : Convergence
        How the least-squares solve ended ("skipped" with the reason when it did not run).
    error_model : str
        The error model's kind.
    names : list of str
        Estimated quantities other than the noise levels (parameters, ``x0[run].state``).
    values : ndarray
        Their values.
    parameters : dict of str to float
        The physical parameters among them.
    initial : ndarray (R, S) or None
        Every state at each run's first sample (user units) at the optimum.
    uncertainty : Uncertainty or None
        Covariance, standard errors and intervals (None when not computed).
    sigma : pandas.Series
        Maximum-likelihood noise level of each measured state (NaN where the error model has
        none; dimensionless for "lognormal" and "relative").
    loglik, aic, bic : float
        At the optimum; AIC and BIC count ``n_estimated`` quantities.
    n_residuals, n_estimated : int
    relative_rms : pandas.Series
        RMS residual (data units) of each measured state divided by its spread in the data
        (NaN for a state without residuals).
    explained : float
        ``1 - SS_res / SS_tot`` of the error model's scaled residuals, ``SS_tot`` those of
        predicting every state by its mean: the share of the data's variation (as the error
        model weighs it) the fit explains (below ~0.75: the model misses most of it).
    warnings : list of str
        Identifiability warnings and notes the user must read.
    """

    convergence: Convergence
    error_model: str
    names: list[str] = field(default_factory=list)
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    parameters: dict[str, float] = field(default_factory=dict)
    initial: np.ndarray | None = None
    uncertainty: Uncertainty | None = None
    sigma: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    loglik: float = math.nan
    aic: float = math.nan
    bic: float = math.nan
    n_residuals: int = 0
    n_estimated: int = 0
    relative_rms: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    explained: float = math.nan
    warnings: list[str] = field(default_factory=list)

    @property
    def refined(self) -> bool:
        """Whether the least-squares solve ran (and its values should replace the start)."""
        return self.convergence.reason not in ("skipped", "diverged")


def has_network_weights(model: Any) -> bool:
    """Whether the model has trainable weights outside its physics terms (networks, and the
    parameters of measurement equations, which the refinement holds fixed)."""
    phys = {id(t.raw) for _, t in physics_terms(model)}
    return any(p.requires_grad and p.numel() and id(p) not in phys for p in model.parameters())


def refine_model(work: Any, spec: Any, data: Any, scales: Any, error_model: ErrorModel,
                 free: torch.Tensor, z0: torch.Tensor, settings: Any, *,
                 max_time: float | None = None) -> Estimate:
    """Refine a fitted model jointly and describe the optimum (see the module docstring).

    Parameters
    ----------
    work : sysid.models.Model
        The fitted model; not changed (see :func:`apply`).
    spec : sysid.training.problem.ModelSpec
    data : sysid.training.problem.Prepared
        The training runs (any dtype; converted to float64).
    scales : sysid.data.Scaling
        Of the model's states.
    error_model : ErrorModel
    free : BoolTensor (R, S)
        Estimated initial states.
    z0 : Tensor (R, S)
        Initial states in scaled units (the start of the free ones).
    settings : sysid.training.Refine
    max_time : float, optional
        Seconds left for the refinement.
    """
    import dataclasses

    data64 = dataclasses.replace(
        data, t=data.t.double(), y=data.y.double(), u=data.u.double() if data.u is not None else None,
        z_guess=data.z_guess.double(), smooth=data.smooth.double(), deriv=data.deriv.double())
    work64 = copy.deepcopy(work).double()
    problem = ShootingProblem(work64.field, spec, data64, scales, error_model, free.clone(),
                              z0.detach().double(), observer=work64 if spec.outputs else None)
    chunks = math.ceil(max(problem.n_residuals, 1) / 512)
    work_units = problem.grid().points * chunks
    reason = ""
    if not settings.enabled:
        reason = "refinement disabled (FitConfig(refine=Refine(enabled=False)))"
    elif problem.size == 0:
        reason = "nothing to refine (no free physical parameters or initial states)"
    elif problem.size > settings.max_unknowns:
        reason = (f"{problem.size} unknowns exceed Refine.max_unknowns={settings.max_unknowns}")
    elif work_units > MAX_WORK:
        reason = (f"too large for the dense least-squares refinement ({problem.n_residuals} "
                  f"residuals over {problem.grid().points} integration points)")
    if reason:
        conv = Convergence(reason="skipped", converged=False, message=reason)
        return _describe(problem, problem.theta0, conv, settings, stderr=False)
    theta, conv = solve(problem, settings, max_time=max_time)
    return _describe(problem, torch.as_tensor(theta), conv, settings, stderr=settings.stderr)


def _describe(problem: ShootingProblem, theta: torch.Tensor, conv: Convergence, settings: Any, *,
              stderr: bool) -> Estimate:
    em = problem.error_model
    names = list(problem.names)
    warns: list[str] = []
    values = problem.values(theta)
    is_param = problem.is_param()
    params = {n: float(v) for n, v, f in zip(names, values, is_param) if f}
    initial = problem.initial_states(theta).numpy()
    try:
        with torch.no_grad():
            pred = problem.predict(theta, measured=True)
            sigma = em.sigma(pred, problem.obs, problem.mask, problem.spread)
            loglik = -float(em.nll(pred, problem.obs, problem.mask, problem.spread))
        diff = torch.where(problem.mask, pred - problem.obs, torch.zeros_like(pred)).reshape(-1, pred.shape[-1])
        count = problem.mask.reshape(-1, pred.shape[-1]).sum(0)
        rms = torch.sqrt((diff * diff).sum(0) / count.clamp(min=1)) / problem.spread
        rms = torch.where(count > 0, rms, torch.full_like(rms, math.nan))
        explained = _explained(problem, pred)
    except (SolverError, KeyboardInterrupt, BudgetExceeded) as exc:
        why = (f"the model cannot be integrated at its estimate: {exc}" if isinstance(exc, SolverError)
               else "likelihood and standard errors skipped (" + (
                   "interrupted" if isinstance(exc, KeyboardInterrupt) else "max_time spent") + ")")
        return Estimate(convergence=conv, error_model=em.kind, names=names, values=values,
                        parameters=params, initial=initial, warnings=[why])
    n_sigma = em.n_sigma(problem.mask)
    k = problem.size + n_sigma
    aic, bic = information_criteria(loglik, k, problem.n_residuals)
    unc = None
    if stderr and problem.size and not expired():
        try:
            unc = uncertainty(problem, theta)
            warns += unc.warnings
        except SolverError as exc:
            warns.append(f"no covariance: {exc}")
        except (KeyboardInterrupt, BudgetExceeded) as exc:
            what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "max_time spent"
            warns.append(f"standard errors skipped ({what})")
    return Estimate(convergence=conv, error_model=em.kind, names=names, values=values,
                    parameters=params, initial=initial,
                    uncertainty=unc,
                    sigma=pd.Series(sigma.numpy(), index=pd.Index(em.states, name="state"),
                                    name="sigma"),
                    loglik=float(loglik), aic=aic, bic=bic, n_residuals=problem.n_residuals,
                    n_estimated=k, relative_rms=pd.Series(rms.numpy(), index=list(em.states)),
                    explained=explained, warnings=warns)


def _explained(problem: ShootingProblem, pred: torch.Tensor) -> float:
    em, mask, obs = problem.error_model, problem.mask, problem.obs
    flat = torch.where(mask, obs, torch.zeros_like(obs)).reshape(-1, obs.shape[-1])
    mean = flat.sum(0) / mask.reshape(-1, obs.shape[-1]).sum(0).clamp(min=1)
    r_fit = em.scaled_residuals(pred, obs, mask, problem.spread)
    r_mean = em.scaled_residuals(mean.expand_as(obs), obs, mask, problem.spread)
    total = float((r_mean * r_mean).sum())
    return 1.0 - float((r_fit * r_fit).sum()) / total if total > 0 else math.nan


def apply(estimate: Estimate, work: Any) -> None:
    """Write the refined physical parameters into ``work`` (in place)."""
    if not estimate.refined or not estimate.parameters:
        return
    from sysid.models.parameters import raw_from_value

    with torch.no_grad():
        for _, term in physics_terms(work.field):
            specs = term.parameter_specs()
            for i, name in enumerate(term.free_names):
                if name in estimate.parameters:
                    term.raw[i] = raw_from_value(estimate.parameters[name], specs[name])


def parameter_table(estimate: Estimate, table: pd.DataFrame) -> pd.DataFrame:
    """The model's parameter table with ``stderr``, ``ci95_low`` and ``ci95_high`` from the
    refinement's covariance (NaN for fixed parameters or without a covariance); the intervals are
    ``value -/+ q stderr`` around the table's values (the model's dtype) with the covariance's
    quantile ``q``."""
    out = table.copy()
    unc = estimate.uncertainty
    if unc is None:
        return out.assign(stderr=np.nan, ci95_low=np.nan, ci95_high=np.nan)
    found = dict(zip(unc.names, unc.stderr))
    se = np.array([float(found.get(n, np.nan)) if bool(v) else np.nan
                   for n, v in zip(out["name"], out["vary"])])
    out["stderr"] = se
    out["ci95_low"] = out["value"].astype(float) - unc.quantile * se
    out["ci95_high"] = out["value"].astype(float) + unc.quantile * se
    return out
