"""Covariance of the estimates from the Jacobian at the optimum, correlations, intervals and
identifiability warnings.

With ``J`` the Jacobian of the residuals with respect to the *values* of the unknowns (physical
parameters, initial states in user units) at the optimum (computed in the solver's coordinates
and mapped by the derivative of each parameter transform):

- error models with an estimated noise level: ``Cov = s^2 (J^T J)^-1`` where ``J`` is taken of the
  residuals before the noise level (``e / a``) and ``s^2 = sum(r^2) / (n - P)`` (one common level,
  as R's ``nls``), or of the residuals standardised by each state's maximum-likelihood sigma times
  ``n / (n - P)`` (one level per state);
- known noise ("wls") and Poisson counts: ``Cov = (J^T J)^-1``, the inverse Fisher information
  (for Poisson from ``(y - mu) / sqrt(mu)``, whose ``J^T J`` is the expected information).

Noise levels are uncorrelated with the other estimates in a Gaussian model; their variance is
``sigma^2 / (2 n)`` (``n`` the residuals they are estimated from). Intervals are
``value +/- q stderr`` with ``q`` the 97.5 % quantile of Student's t with ``n - P`` degrees of
freedom when the noise level is estimated (normal otherwise). ``J^T J`` is inverted after scaling
its columns to unit norm (a rate of 1e-5 next to an amplitude of 20 must not look singular);
directions with eigenvalues below 1e-12 of the largest are left out (their quantities get NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from sysid.errors import SolverError
from sysid.estimation.problem import ShootingProblem

__all__ = ["Uncertainty", "uncertainty"]

# |correlation| above this names a pair as practically non-identifiable
CORRELATION_LIMIT = 0.99
# reciprocal condition number of the column-scaled information matrix below this: near-singular
CONDITION_LIMIT = 1e-10
_SINGULAR = 1e-12


@dataclass(frozen=True)
class Uncertainty:
    """Standard errors, covariance and correlation of the estimated quantities.

    Attributes
    ----------
    names : list of str
        Estimated quantities: parameters, ``x0[run].state`` initial states, then ``sigma`` (one
        common noise level) or ``sigma[state]``.
    values : ndarray
        Their estimates (user units).
    stderr : ndarray
        Standard errors (NaN: not identifiable, or no degrees of freedom).
    covariance, correlation : pandas.DataFrame
        Over ``names``.
    ci_low, ci_high : ndarray
        95 % intervals ``value -/+ q stderr``.
    quantile : float
        The ``q`` used (Student's t with ``dof`` degrees of freedom, or normal).
    dof : int
        Residuals minus estimated quantities (excluding the noise levels).
    warnings : list of str
        Identifiability problems, naming the quantities.
    """

    names: list[str]
    values: np.ndarray
    stderr: np.ndarray
    covariance: pd.DataFrame
    correlation: pd.DataFrame
    ci_low: np.ndarray
    ci_high: np.ndarray
    quantile: float
    dof: int
    warnings: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per quantity: value, stderr, ci95_low, ci95_high."""
        return pd.DataFrame({"value": self.values, "stderr": self.stderr, "ci95_low": self.ci_low,
                             "ci95_high": self.ci_high}, index=pd.Index(self.names, name="name"))


def _invert(info: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Pseudo-inverse of an information matrix after equilibration.

    Returns the inverse, a mask of quantities outside the null space, the reciprocal condition
    number and the eigenvector of the smallest eigenvalue (in equilibrated coordinates).
    """
    p = info.shape[0]
    d = np.sqrt(np.clip(np.diag(info), 0.0, None))
    safe = np.where(d > 0, d, 1.0)
    scaled = info / np.outer(safe, safe)
    w, v = np.linalg.eigh(scaled)
    top = max(float(w.max()), 0.0) if p else 0.0
    keep = w > _SINGULAR * top if top > 0 else np.zeros(p, dtype=bool)
    inv = (v[:, keep] / w[keep]) @ v[:, keep].T / np.outer(safe, safe)
    ok = d > 0
    if not keep.all():
        ok &= np.abs(v[:, ~keep]).max(axis=1) < 1e-6
    rcond = float(w.min() / top) if top > 0 else 0.0
    return inv, ok, rcond, v[:, 0]


def uncertainty(problem: ShootingProblem, theta: torch.Tensor, *, names_shown: int = 6) -> Uncertainty:
    """Covariance of the unknowns of ``problem`` at ``theta`` (see the module docstring).

    Parameters
    ----------
    problem : ShootingProblem
        At its optimum (``problem.sigma`` is set for per-state noise models).
    theta : Tensor (P,)
        The optimum.
    names_shown : int
        At most this many names in each warning.

    Raises
    ------
    SolverError
        When the model cannot be integrated at ``theta``.
    """
    em = problem.error_model
    theta = torch.as_tensor(theta, dtype=torch.float64)
    values = problem.values(theta)
    dv = problem.value_derivative(theta)
    n, p = problem.n_residuals, problem.size
    dof = n - p
    r_fisher, j = problem.fisher_jacobian(theta)
    # invert in the solver's coordinates (raw parameters, scaled initial states; well scaled),
    # then map to values: Cov(value) = D Cov(theta) D with D = d value / d theta
    bounded = ~np.isfinite(dv) | (np.abs(dv) < 1e-300)
    inv, ok, rcond, weakest = _invert(j.T @ j)
    dvs = np.where(bounded, 0.0, dv)
    with np.errstate(over="ignore", invalid="ignore"):  # a parameter run off to 1e300 (unidentified)
        inv = inv * np.outer(dvs, dvs)
    ok &= ~bounded
    warns: list[str] = []
    if em.sigma_kind == "none":
        factor = 1.0
    elif dof <= 0:
        factor = math.nan
        warns.append(f"no degrees of freedom left ({n} residuals, {p} estimated quantities): "
                     f"standard errors cannot be estimated")
    elif em.sigma_kind == "common":
        # common noise level: the Fisher residuals are the residuals before it (e / a)
        factor = float(r_fisher @ r_fisher) / dof
    else:
        factor = n / dof
    cov = factor * inv
    cov[~ok, :] = np.nan
    cov[:, ~ok] = np.nan
    names = list(problem.names)
    if bounded.any():
        warns.append(f"{[names[i] for i in np.flatnonzero(bounded)]} sit on a bound of their "
                     f"parameter transform: no standard error")
    warns += _identifiability(names, cov, ok, rcond, weakest, names_shown)
    sig_names, sig_vals, sig_var = _sigma_rows(problem, theta)
    all_names = names + sig_names
    full = np.full((len(all_names), len(all_names)), np.nan)
    full[:p, :p] = cov
    for k, var in enumerate(sig_var):
        full[p + k, :] = 0.0
        full[:, p + k] = 0.0
        full[p + k, p + k] = var
    full[:p, p:] = np.where(np.isnan(cov).all(axis=1, keepdims=True), np.nan, full[:p, p:])
    all_values = np.concatenate([values, np.asarray(sig_vals, dtype=float)])
    stderr = np.sqrt(np.clip(np.diag(full), 0.0, None))
    stderr[np.isnan(np.diag(full))] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = full / np.outer(stderr, stderr)
    np.fill_diagonal(corr, np.where(np.isfinite(stderr) & (stderr > 0), 1.0, np.nan))
    # imported here: scipy.stats takes ~0.45 s to import, and every fit imports this module (a
    # neural fit never reaches this line; bench_first_fit.py)
    from scipy import stats

    q = float(stats.t.ppf(0.975, dof)) if em.sigma_kind != "none" and dof > 0 else float(stats.norm.ppf(0.975))
    cov_df = pd.DataFrame(full, index=all_names, columns=all_names)
    corr_df = pd.DataFrame(corr, index=all_names, columns=all_names)
    return Uncertainty(names=all_names, values=all_values, stderr=stderr, covariance=cov_df,
                       correlation=corr_df, ci_low=all_values - q * stderr,
                       ci_high=all_values + q * stderr, quantile=q, dof=dof, warnings=warns)


def _sigma_rows(problem: ShootingProblem, theta: torch.Tensor) -> tuple[list[str], list[float], list[float]]:
    """Names, maximum-likelihood values and asymptotic variances of the estimated noise levels."""
    em = problem.error_model
    if em.sigma_kind == "none":
        return [], [], []
    sig = problem.sigma_at(theta).numpy()
    counts = problem.mask.reshape(-1, problem.mask.shape[-1]).sum(0).numpy()
    if em.sigma_kind == "common":
        level = float(np.nanmax(sig)) if np.isfinite(sig).any() else math.nan
        n = int(counts.sum())
        return ["sigma"], [level], [level**2 / (2 * n) if n else math.nan]
    names, vals, var = [], [], []
    for s, name in enumerate(em.states):
        if counts[s] > 0:
            names.append(f"sigma[{name}]")
            vals.append(float(sig[s]))
            var.append(float(sig[s]) ** 2 / (2 * int(counts[s])))
    return names, vals, var


def _identifiability(names: list[str], cov: np.ndarray, ok: np.ndarray, rcond: float,
                     weakest: np.ndarray, shown: int) -> list[str]:
    """Warnings naming quantities that the data cannot tell apart."""
    out = []
    p = len(names)
    if p == 0:
        return out
    if not ok.all():
        bad = [names[i] for i in np.flatnonzero(~ok)][:shown]
        out.append(f"not identifiable: {bad} (singular information matrix: the data do not "
                   f"determine them; fix some of them or add data)")
    elif rcond < CONDITION_LIMIT:
        order = np.argsort(-np.abs(weakest))
        involved = [names[i] for i in order if abs(weakest[i]) > 0.2][:shown]
        out.append(f"near-singular information matrix (reciprocal condition {rcond:.1e}): "
                   f"{involved} are practically not identifiable together")
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(sd, sd)
    pairs = []
    for i in range(p):
        for k in range(i + 1, p):
            c = corr[i, k]
            if np.isfinite(c) and abs(c) > CORRELATION_LIMIT:
                pairs.append((abs(c), names[i], names[k], c))
    pairs.sort(reverse=True)
    for _, a, b, c in pairs[:shown]:
        out.append(f"{a} and {b} are correlated {c:+.4f}: practically not identifiable "
                   f"separately (only a combination is determined)")
    return out


def safe_uncertainty(problem: ShootingProblem, theta: torch.Tensor) -> tuple[Uncertainty | None, str]:
    """:func:`uncertainty`, or None and the reason when the model cannot be integrated."""
    try:
        return uncertainty(problem, theta), ""
    except SolverError as exc:
        return None, f"no covariance: {exc}"
