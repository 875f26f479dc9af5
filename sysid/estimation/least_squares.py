"""The converged joint optimum: SciPy least squares on torch Jacobians.

:func:`solve` refines every unknown of a :class:`~sysid.estimation.problem.ShootingProblem`
together with ``scipy.optimize.least_squares`` (MINPACK Levenberg-Marquardt when there are at least
as many residuals as unknowns, else the trust-region reflective method), the Jacobian computed by
automatic differentiation through the RK4 rollout. Around it:

- **ODE accuracy.** The RK4 step is halved until the predictions at the samples change by less
  than ``accuracy`` times the residual noise level of each state (its RMS residual in data units,
  at least 1e-4 of its spread)
  from one step to half of it, at the start and again at the optimum (then the optimisation goes on
  with the finer grid): the optimum is that of the differential equation, not of one
  discretisation, to well within its standard errors.
- **Estimated noise levels.** Error models with one unknown sigma per state ("gaussian") are solved
  by re-weighting: least squares on ``e / sigma_s`` with ``sigma_s`` fixed, then ``sigma_s`` set to its
  maximum-likelihood value, until the sigmas stop changing. Models with one common level need no
  re-weighting (the least-squares optimum does not depend on it).
- **Honest convergence.** At the end the Gauss-Newton step ``delta`` is computed: the fit is
  converged when that full step would lower the cost by less than ``ftol`` of it (relative
  predicted decrease), whatever SciPy's own stopping test said. :class:`Convergence` reports the
  gradient norm, the relative size of that step, the iterations and the typed reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import least_squares

from sysid.budget import BudgetExceeded
from sysid.errors import ConfigError, SolverError
from sysid.estimation.problem import ShootingProblem
from sysid.training.config import Refine
from sysid.training.result import StopReason

__all__ = ["Refine", "Convergence", "solve"]

# fixed SciPy tolerances: the convergence test that counts is the Gauss-Newton decrease
_XTOL = 1e-12
_GTOL = 1e-12
# RK4 steps per longest sample gap, at most
_MAX_SUBSTEPS = 1024

# a trial point whose solve fails gets residuals this large: the step is rejected, the trust
# region shrinks
_FAILED = 1e10


@dataclass(frozen=True, kw_only=True)
class Convergence:
    """How the joint least-squares refinement ended.

    Attributes
    ----------
    reason : StopReason
        "converged", "iteration_limit", "max_time", "interrupted", "diverged" (the solves failed)
        or "skipped" (nothing to refine, or refinement disabled / too large; see ``message``).
    converged : bool
        Whether a full Gauss-Newton step would lower the cost by less than ``ftol`` of it.
    gradient_norm : float
        Largest component of the cost's gradient ``J^T r`` in the solver's coordinates (raw
        parameters, initial states in units of their state's spread).
    relative_step : float
        Norm of the remaining Gauss-Newton step relative to the norm of the unknowns.
    predicted_decrease : float
        Cost reduction that step promises, relative to the cost.
    iterations : int
        Jacobian evaluations.
    evaluations : int
        Residual evaluations.
    cost : float
        ``0.5 * sum(r**2)`` of the standardised residuals at the end.
    step : float
        RK4 step (time units) used at the end (sample gaps are split into equal steps no longer
        than this).
    message : str
        In words (SciPy's message, the reason for skipping, ...).
    """

    reason: StopReason
    converged: bool
    gradient_norm: float = math.nan
    relative_step: float = math.nan
    predicted_decrease: float = math.nan
    iterations: int = 0
    evaluations: int = 0
    cost: float = math.nan
    step: float = math.nan
    message: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", StopReason(self.reason))

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-able)."""
        return {k: (str(v.value) if k == "reason" else v) for k, v in self.__dict__.items()}


class _Stop(Exception):
    """Raised inside the residual function to end the solve (time budget)."""


@dataclass
class _Tracker:
    """Best point seen and evaluation counts across the SciPy calls."""

    problem: ShootingProblem
    deadline: float | None
    best_x: np.ndarray | None = None
    best_cost: float = math.inf
    nfev: int = 0
    njev: int = 0
    cache: dict[str, Any] = field(default_factory=dict)

    def fun(self, x: np.ndarray) -> np.ndarray:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise _Stop
        self.nfev += 1
        try:
            r = self.problem.evaluate(torch.as_tensor(x, dtype=torch.float64)).numpy()
        except SolverError:
            return np.full(self.problem.n_residuals, _FAILED)
        if not np.all(np.isfinite(r)):
            return np.full(self.problem.n_residuals, _FAILED)
        cost = 0.5 * float(r @ r)
        if cost < self.best_cost:
            self.best_cost, self.best_x = cost, x.copy()
        return r

    def jac(self, x: np.ndarray) -> np.ndarray:
        self.njev += 1
        try:
            _, j = self.problem.jacobian(torch.as_tensor(x, dtype=torch.float64))
        except SolverError:
            return np.zeros((self.problem.n_residuals, self.problem.size))
        j = j.numpy()
        return np.where(np.isfinite(j), j, 0.0)


def _choose_step(problem: ShootingProblem, theta: torch.Tensor, settings: Refine) -> None:
    """Halve ``problem.step`` until the predictions agree with half the step to ``accuracy``."""
    shortest = problem.longest_gap / _MAX_SUBSTEPS
    with torch.no_grad():
        try:
            pred = problem.predict(theta, measured=True)
            diff = torch.where(problem.mask, pred - problem.obs, torch.zeros_like(pred))
            n = problem.mask.reshape(-1, pred.shape[-1]).sum(0).clamp(min=1)
            noise = torch.sqrt((diff * diff).reshape(-1, pred.shape[-1]).sum(0) / n)
        except SolverError:
            noise = torch.zeros(len(problem.obs_idx), dtype=torch.float64)
    # states without residuals (measured only at a fixed first sample) do not matter here
    counted = problem.mask.reshape(-1, problem.mask.shape[-1]).any(0)
    tol = settings.accuracy * torch.maximum(noise, 1e-4 * problem.spread)
    tol = torch.where(counted, tol, torch.full_like(tol, math.inf))
    coarse = None
    while problem.step > shortest * (1 + 1e-9):
        try:
            change, coarse = problem.max_change(theta, problem.step, coarse)
        except SolverError:
            change = coarse = None
        if change is not None and bool(torch.isfinite(change).all()) and bool((change <= tol).all()):
            return
        if change is None and problem.step <= problem.longest_gap / 8:
            return  # the start itself blows up; the least-squares steps move away from it
        problem.step /= 2


def _gn_diagnostics(problem: ShootingProblem, x: np.ndarray) -> tuple[float, float, float, float]:
    """``(cost, gradient norm, relative Gauss-Newton step, relative predicted decrease)`` at x."""
    r, j = problem.jacobian(torch.as_tensor(x, dtype=torch.float64))
    r, j = r.numpy(), j.numpy()
    cost = 0.5 * float(r @ r)
    if not (np.all(np.isfinite(j)) and math.isfinite(cost)):
        return cost, math.nan, math.nan, math.nan
    g = j.T @ r
    if j.shape[1] == 0:
        return cost, 0.0, 0.0, 0.0
    delta = np.linalg.lstsq(j, -r, rcond=None)[0]
    jd = j @ delta
    predicted = -(float(r @ jd) + 0.5 * float(jd @ jd))  # decrease of the linearised cost
    rel_pred = predicted / cost if cost > 0 else 0.0
    rel_step = float(np.linalg.norm(delta) / max(np.linalg.norm(x), 1e-8))
    return cost, float(np.max(np.abs(g))), rel_step, max(rel_pred, 0.0)


def _method(settings: Refine, problem: ShootingProblem) -> str:
    if settings.method != "auto":
        if settings.method == "lm" and problem.n_residuals < problem.size:
            raise ConfigError(
                f"Refine: method='lm' needs at least as many residuals as unknowns; this problem has "
                f"{problem.n_residuals} residuals and {problem.size} unknowns. Use method='trf'."
            )
        return settings.method
    return "lm" if problem.n_residuals >= problem.size else "trf"


def _scipy(tracker: _Tracker, x0: np.ndarray, settings: Refine, method: str, budget: int) -> Any:
    kw: dict[str, Any] = {"method": method, "x_scale": "jac", "ftol": min(settings.ftol, 1e-8) * 1e-2,
                          "xtol": _XTOL, "gtol": _GTOL, "max_nfev": budget}
    return least_squares(tracker.fun, x0, jac=tracker.jac, **kw)


def solve(problem: ShootingProblem, settings: Refine | None = None, *,
          max_time: float | None = None) -> tuple[np.ndarray, Convergence]:
    """Refine all unknowns of ``problem`` jointly; see the module docstring.

    Parameters
    ----------
    problem : ShootingProblem
        Starts at ``problem.theta0``; ``problem.substeps`` and ``problem.sigma`` are updated.
    settings : Refine, optional
    max_time : float, optional
        Seconds before the solve stops with reason "max_time" (the best point so far is kept).

    Returns
    -------
    theta : ndarray (P,)
        The best unknowns found.
    convergence : Convergence
    """
    settings = settings or Refine()
    started = time.perf_counter()
    deadline = None if max_time is None else started + float(max_time)
    tracker = _Tracker(problem, deadline)
    x = problem.theta0.detach().numpy().astype(np.float64).copy()
    if problem.size == 0:
        return x, Convergence(reason="skipped", converged=False, message="nothing to estimate")
    if problem.n_residuals == 0:
        return x, Convergence(reason="skipped", converged=False, message="no residuals")
    method = _method(settings, problem)
    per_state = problem.error_model.sigma_kind == "state"
    reason, message = "iteration_limit", ""
    budget = settings.max_iterations
    try:
        _choose_step(problem, torch.as_tensor(x), settings)
        if per_state:
            problem.sigma = _safe_sigma(problem, x)
        for _ in range(50):  # re-weighting and substep rounds; each usually converges in few steps
            res = _scipy(tracker, x, settings, method, max(budget - tracker.nfev, 1))
            x = tracker.best_x.copy() if tracker.best_x is not None else res.x
            message = str(res.message)
            moved = False
            before = problem.step
            _choose_step(problem, torch.as_tensor(x), settings)
            moved = problem.step != before
            if per_state:
                new = _safe_sigma(problem, x)
                change = float(torch.max(torch.abs(new / problem.sigma - 1.0)))
                problem.sigma = new
                moved = moved or change > 1e-9
            if moved:
                tracker.best_cost, tracker.best_x = math.inf, None  # the cost function changed
                if tracker.nfev < budget:
                    continue
            reason = "converged" if res.status > 0 else "iteration_limit"
            break
    except _Stop:
        reason, message = "max_time", f"the time budget of {max_time} s was spent"
    except BudgetExceeded:
        reason, message = "max_time", "the fit's max_time was spent during the least-squares solve"
    except KeyboardInterrupt:
        reason, message = "interrupted", "interrupted during the least-squares refinement"
    if reason in ("max_time", "interrupted") and tracker.best_x is not None:
        x = tracker.best_x.copy()
    return x, _finish(problem, x, settings, tracker, reason, message)


def _safe_sigma(problem: ShootingProblem, x: np.ndarray) -> torch.Tensor:
    s = problem.sigma_at(torch.as_tensor(x, dtype=torch.float64))
    ok = torch.isfinite(s) & (s > 0)
    return torch.where(ok, s, torch.ones_like(s))


def _finish(problem: ShootingProblem, x: np.ndarray, settings: Refine, tracker: _Tracker,
            reason: str, message: str) -> Convergence:
    try:
        cost, gnorm, rel_step, rel_pred = _gn_diagnostics(problem, x)
    except (BudgetExceeded, KeyboardInterrupt) as exc:  # the best point is kept, undiagnosed
        stop = "interrupted" if isinstance(exc, KeyboardInterrupt) else "max_time"
        if reason not in ("max_time", "interrupted"):
            reason, message = stop, ("interrupted" if stop == "interrupted" else
                                     "the fit's max_time was spent") + " after the least-squares solve"
        return Convergence(reason=reason, converged=False, iterations=tracker.njev,
                           evaluations=tracker.nfev, step=problem.step,
                           message=message + "; convergence diagnostics skipped")
    except SolverError as exc:
        return Convergence(reason="diverged", converged=False, iterations=tracker.njev,
                           evaluations=tracker.nfev, step=problem.step,
                           message=f"the model cannot be integrated at the end point: {exc}")
    if not math.isfinite(cost) or cost >= 0.5 * _FAILED**2:
        return Convergence(reason="diverged", converged=False, iterations=tracker.njev,
                           evaluations=tracker.nfev, cost=cost, step=problem.step,
                           message="every trial point failed to integrate")
    tiny = 1e-24 * problem.n_residuals
    converged = math.isfinite(rel_pred) and (rel_pred <= settings.ftol or cost <= tiny)
    if reason == "converged" and not converged:
        reason = "iteration_limit"
        message = (f"SciPy stopped ({message}) but a Gauss-Newton step would still lower the cost by "
                   f"{rel_pred:.2g} of it")
    elif reason == "iteration_limit" and converged:
        reason = "converged"
    return Convergence(reason=reason, converged=converged and reason == "converged",
                       gradient_norm=gnorm, relative_step=rel_step, predicted_decrease=rel_pred,
                       iterations=tracker.njev, evaluations=tracker.nfev, cost=cost,
                       step=problem.step, message=message)
