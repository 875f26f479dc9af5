"""Identifiability: which parameter combinations the data determine, and what a network absorbed.

:func:`identifiability` looks at a physics or hybrid model at its fitted values (or any values)
through the sensitivity of the residuals to the parameters:

- **Sensitivity (Fisher information) spectrum.** ``J`` is the Jacobian of the fit's residuals (single
  shooting from each run's initial state, the error model of the fit, standardised as the
  covariance of :mod:`sysid.estimation.covariance` takes them) with respect to the *logarithm* of
  each free parameter (``d r / d log p = p d r / d p``; a parameter at 0 is taken in its own units),
  with the estimated initial states profiled out (``J`` projected on the complement of their
  columns: what the data say about the parameters whatever the initial states). The eigenvalues of
  ``J^T J`` (largest first) and their eigenvectors are the spectrum: an eigenvector is a
  combination ``sum_j v_j log p_j`` of the parameters, and ``sd = s / sqrt(eigenvalue)`` its
  standard error (``s`` the residual standard deviation for error models with an estimated noise
  level, else 1) - about the relative error of the combination. A direction whose eigenvalue is
  below ``tol`` times the largest is *not determined*: the data cannot move along it (two
  parameters that appear only as a product ``a b`` give the direction ``log a - log b``).
  Network weights of a hybrid model are held at their values (the spectrum is conditional on the
  network).
- **Absorption check (hybrid models).** At the data's samples the network's output on each state
  it corrects is correlated with each physical parameter's contribution to that state,
  ``p d f / d p`` (the term itself for a term linear in ``p``; central differences). A correlation
  above ``correlation_limit`` in magnitude means the network may have taken over part of that
  term: the fitted ``p`` is then biased by the share the network took, ``beta`` (the least-squares
  slope of the network's output on the contribution: the network acts like a change of ``p`` by
  ``beta p``).

An :class:`~sysid.analysis.IdentifiabilityWarning` names the parameters of each undetermined
direction and of each absorbed term.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError, DataError

__all__ = ["identifiability", "Identifiability"]


@final
@dataclass(frozen=True, kw_only=True)
class Identifiability:
    """What :func:`identifiability` returns.

    Attributes
    ----------
    spectrum : pandas.DataFrame
        One row per direction (largest eigenvalue first): ``eigenvalue``, ``relative`` (to the
        largest), ``sd`` (standard error of the combination, log units; inf when not
        determined), ``determined`` (bool),
        ``combination`` (the direction in words, e.g. ``"+0.71 log(a) +0.71 log(b)"``), then one
        column per parameter with the eigenvector's component.
    parameters : tuple of str
        The free physical parameters, in the spectrum's column order.
    values : dict
        Their values where the spectrum was taken.
    absorption : pandas.DataFrame
        Hybrid models: one row per (network state, parameter) whose term reaches that state:
        ``state, parameter, correlation, beta`` (the network's output regressed on the term),
        ``network_rms, term_rms`` and ``absorbed`` (``abs(correlation) > correlation_limit``).
        Empty for a physics model.
    warnings : list of str
        What the data do not determine, and what the network absorbed, naming the parameters.
    n_residuals : int
    """

    spectrum: pd.DataFrame
    parameters: tuple[str, ...]
    values: dict[str, float]
    absorption: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    n_residuals: int = 0

    def determined(self) -> list[str]:
        """The combinations the data determine, in words."""
        return list(self.spectrum.loc[self.spectrum["determined"], "combination"])

    def undetermined(self) -> list[str]:
        """The combinations the data do not determine, in words."""
        return list(self.spectrum.loc[~self.spectrum["determined"], "combination"])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary."""
        from sysid.analysis.tables import jsonable

        return {"parameters": list(self.parameters), "values": dict(self.values),
                "spectrum": jsonable(self.spectrum.reset_index()),
                "absorption": jsonable(self.absorption), "warnings": list(self.warnings)}


def _combination(v: np.ndarray, names: Sequence[str], logs: np.ndarray, small: float = 0.05) -> str:
    parts = [f"{c:+.2f} {'log(' + n + ')' if lg else n}" for c, n, lg in zip(v, names, logs)
             if abs(c) >= small]
    return " ".join(parts) if parts else "0"


# --------------------------------------------------------------------------------------------- #
# the sensitivity spectrum
# --------------------------------------------------------------------------------------------- #
def _problem(result: Any, data: xr.Dataset) -> tuple[Any, Any]:
    """The shooting problem of the fit (its error model and initial-state settings) and theta."""
    import torch

    from sysid.estimation.problem import from_data
    from sysid.models import Model
    from sysid.training import FitConfig, FitResult

    if isinstance(result, FitResult):
        model, cfg = result.model, result.config
    elif isinstance(result, Model):
        model, cfg = result, FitConfig()
    else:
        raise ConfigError(f"identifiability: expected a FitResult or a sysid Model; got "
                          f"{type(result).__name__}.")
    loss = cfg.loss
    kind = loss if isinstance(loss, str) else str(loss.kind)
    sigma = None if isinstance(loss, str) else loss.sigma
    weights = None if isinstance(loss, str) else loss.weights
    problem = from_data(model, data, loss=kind, sigma=sigma, weights=weights,
                        initial_states=cfg.initial_states, known_initial=cfg.known_initial)
    theta = problem.theta0.clone()
    table = getattr(result, "initial_states", None)
    if table is not None and len(table):  # start each estimated initial state where the fit put it
        for k, i in enumerate(problem.index):
            kind_i = problem.all_kinds[i]
            if kind_i[0] != "x0":
                continue
            run, s = problem.data.run_ids[kind_i[1]], problem.spec.states[kind_i[2]]
            if run in table.index and s in table.columns:
                theta[k] = (float(table.loc[run, s]) - float(problem.mean[kind_i[2]])) \
                    / float(problem.scale[kind_i[2]])
    return problem, torch.as_tensor(theta, dtype=torch.float64)


def _spectrum(problem: Any, theta: Any, tol: float) -> tuple[pd.DataFrame, list[str], np.ndarray, np.ndarray]:
    """The spectrum table, parameter names, values and the log flags."""
    em = problem.error_model
    if em.sigma_kind == "state":
        problem.sigma = problem.sigma_at(theta)
    r, j = problem.fisher_jacobian(theta)
    dv = problem.value_derivative(theta)
    values = problem.values(theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        jv = np.where(np.abs(dv) > 1e-300, j / dv, 0.0)  # d r / d value
    is_p = problem.is_param()
    names = [n for n, p in zip(problem.names, is_p) if p]
    jp, jx = jv[:, is_p], jv[:, ~is_p]
    if jx.shape[1]:  # profile the initial states out
        q, _ = np.linalg.qr(jx)
        jp = jp - q @ (q.T @ jp)
    vals = values[is_p]
    logs = np.abs(vals) > 0
    s = jp * np.where(logs, np.abs(vals), 1.0)
    w, v = np.linalg.eigh(s.T @ s)
    order = np.argsort(-w)
    w, v = np.clip(w[order], 0.0, None), v[:, order]
    for k in range(v.shape[1]):  # sign: the first of the largest components (to 1e-6) positive
        mag = np.abs(v[:, k])
        if v[int(np.flatnonzero(mag >= mag.max() - 1e-6)[0]), k] < 0:
            v[:, k] = -v[:, k]
    n, p = problem.n_residuals, problem.size
    rr = r.numpy()
    if em.sigma_kind == "common":
        level = math.sqrt(float(rr @ rr) / (n - p)) if n > p else math.nan
    else:
        level = 1.0
    top = float(w[0]) if len(w) else 0.0
    rel = w / top if top > 0 else np.zeros_like(w)
    with np.errstate(divide="ignore"):
        sd = np.where(rel > tol, level / np.sqrt(np.where(w > 0, w, 1.0)), np.inf)
    rows = []
    for k in range(len(w)):
        rows.append({"eigenvalue": float(w[k]), "relative": float(rel[k]), "sd": float(sd[k]),
                     "determined": bool(rel[k] > tol),
                     "combination": _combination(v[:, k], names, logs),
                     **{nm: float(v[i, k]) for i, nm in enumerate(names)}})
    table = pd.DataFrame(rows, columns=["eigenvalue", "relative", "sd", "determined", "combination",
                                        *names])
    table.index.name = "direction"
    return table, names, vals, logs


# --------------------------------------------------------------------------------------------- #
# what the network absorbed
# --------------------------------------------------------------------------------------------- #
def _absorption(model: Any, data: xr.Dataset, limit: float, h: float = 1e-5) -> pd.DataFrame:
    """Correlation of the network's output with each physical parameter's contribution."""
    from sysid.analysis.distill import _points, _target
    from sysid.estimation import with_parameters
    from sysid.estimation._inference import parameter_values
    from sysid.models import HybridField
    from sysid.models.dynamics import Dynamics

    cols = ["state", "parameter", "correlation", "beta", "network_rms", "term_rms", "absorbed"]
    fld = model.field
    if not isinstance(fld, HybridField):
        return pd.DataFrame(columns=cols)
    fn, targets, _ = _target(model, "neural")
    t, x, u, _ = _points(model, data, "data", 0, 0, 0.25)
    net = np.asarray(fn(t, x, u), float)
    phys = fld.physics
    specs = phys.parameter_specs()
    cur = parameter_values(phys)
    idx = [list(phys.state_names).index(s) for s in targets]
    uu = None if u is None else u[:, [list(model.input_names).index(n) for n in phys.input_names]]

    def f(values: dict[str, float]) -> np.ndarray:
        m = with_parameters(model, values)
        dyn = Dynamics.from_field(m.field.physics, name="physics term")
        return np.asarray(dyn.fn(t, x, uu), float)[:, idx]

    rows = []
    for name, spec in specs.items():
        p = cur[name]
        step = h * (abs(p) if p != 0 else 1.0)
        lo, hi = spec.bounds
        a, b = max(p - step, lo), min(p + step, hi)
        if not b > a:
            continue
        term = (f({name: b}) - f({name: a})) / (b - a) * (p if p != 0 else 1.0)
        for j, s in enumerate(targets):
            c, nn = term[:, j], net[:, j]
            crms, nrms = float(np.sqrt(np.mean(c**2))), float(np.sqrt(np.mean(nn**2)))
            if crms <= 1e-12 * max(1.0, nrms):
                continue  # the parameter does not reach this state
            cc, nc = c - c.mean(), nn - nn.mean()
            den = float(np.sqrt(np.sum(cc**2) * np.sum(nc**2)))
            corr = float(np.sum(cc * nc) / den) if den > 0 else 0.0
            beta = float(np.sum(c * nn) / np.sum(c * c))
            rows.append({"state": s, "parameter": name, "correlation": corr, "beta": beta,
                         "network_rms": nrms, "term_rms": crms,
                         "absorbed": bool(abs(corr) > limit and nrms > 1e-3 * crms)})
    return pd.DataFrame(rows, columns=cols)


# --------------------------------------------------------------------------------------------- #
# the verb
# --------------------------------------------------------------------------------------------- #
def identifiability(
    result: Any,
    data: xr.Dataset,
    *,
    tol: float = 1e-8,
    correlation_limit: float = 0.9,
    names_shown: int = 6,
    warn: bool = True,
) -> Identifiability:
    """Sensitivity spectrum of a physics or hybrid model's parameters, and a network-absorption check.

    Parameters
    ----------
    result : FitResult or sysid.models.Model
        A fit (its error model and initial-state settings are used, and its estimated initial
        states), or a model at the values to examine (plain least squares, measured initial
        states).
    data : xarray.Dataset
        The data the model was (or would be) fitted to.
    tol : float
        A direction whose eigenvalue is below ``tol`` times the largest is not determined.
    correlation_limit : float
        Hybrid models: a network output correlated with a parameter's term beyond this (in
        magnitude) is reported as absorbed.
    names_shown : int
        At most this many parameters named per warning.
    warn : bool
        Emit an :class:`~sysid.analysis.IdentifiabilityWarning` per problem found.

    Returns
    -------
    Identifiability

    Raises
    ------
    ConfigError
        When the model has no free physical parameter and no network term (a hybrid model with
        every parameter fixed gets the absorption check alone).
    """
    from sysid.analysis.profiles import IdentifiabilityWarning

    if not 0 < tol < 1:
        raise ConfigError(f"identifiability: tol must lie in (0, 1); got {tol!r}.")
    if not 0 < correlation_limit < 1:
        raise ConfigError(f"identifiability: correlation_limit must lie in (0, 1); got "
                          f"{correlation_limit!r}.")
    from sysid.models import HybridField

    problem, theta = _problem(result, data)
    model = getattr(result, "model", result)
    hybrid = isinstance(model.field, HybridField)
    if not problem.is_param().any() and not hybrid:
        raise ConfigError("identifiability: the model has no free physical parameter; the spectrum "
                          "is about named parameters (a neural model has none).")
    if problem.is_param().any():
        table, names, vals, logs = _spectrum(problem, theta, tol)
    else:  # a hybrid with every physical parameter fixed: the absorption check only
        table = pd.DataFrame(columns=["eigenvalue", "relative", "sd", "determined", "combination"])
        table.index.name = "direction"
        names, vals = [], np.zeros(0)
    if not np.all(np.isfinite(table["eigenvalue"].to_numpy(float))):
        raise DataError("identifiability: the sensitivities are not finite (the model cannot be "
                        "integrated over the data at these values).")
    absorption = _absorption(model, data, correlation_limit)
    msgs = []
    for k, row in table[~table["determined"]].iterrows():
        v = row[names].to_numpy(float)
        order = np.argsort(-np.round(np.abs(v), 6), kind="stable")  # ties in parameter order
        involved = [names[i] for i in order if abs(v[i]) > 0.2][:names_shown]
        msgs.append(f"the data do not determine {row['combination']} (relative eigenvalue "
                    f"{row['relative']:.1e} of the sensitivity matrix): {involved} cannot be "
                    "told apart along it - fix one of them, reparametrise (e.g. their product), "
                    "or add data that separates them")
    for _, row in absorption[absorption["absorbed"]].iterrows():
        msgs.append(f"the network term on {row['state']!r} correlates {row['correlation']:+.3f} "
                    f"with parameter {row['parameter']!r}'s term ({row['parameter']} "
                    f"d f/d {row['parameter']}): the network may have absorbed part of it (it acts "
                    f"like a change of {row['parameter']} by {100 * row['beta']:+.1f} %), so the "
                    f"value of {row['parameter']} is not what the data say on its own - penalise "
                    "the network (Loss(neural_penalty=...)) or give it inputs the term does not use")
    if warn:
        for m in msgs:
            warnings.warn(IdentifiabilityWarning(f"identifiability: {m}."), stacklevel=2)
    return Identifiability(spectrum=table, parameters=tuple(names),
                           values={n: float(v) for n, v in zip(names, vals)}, absorption=absorption,
                           warnings=msgs, n_residuals=int(problem.n_residuals))
