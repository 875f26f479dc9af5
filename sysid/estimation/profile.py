"""Profile likelihood: confidence intervals that follow the shape of the objective.

For a parameter ``theta`` the profile is the best objective with ``theta`` held fixed and every
other estimated quantity (parameters, free initial states, network weights) fitted again:
``D(theta) = min -2 log L`` (:func:`sysid.estimation.misfit`). The set
``D(theta) - D(theta_hat) <= c`` is a confidence interval that does not assume the objective is
quadratic, so it stays honest for curved, skewed and bounded problems where
``value +/- 1.96 stderr`` does not. ``c`` is the likelihood-ratio threshold: ``chi2(1)`` for known
noise, its exact small-sample form when the noise level is estimated and concentrated out
(:func:`sysid.estimation._inference.threshold`).

How it walks: from the estimate, each side is stepped outward (``points`` steps across 1.5 Wald
half-widths; each re-fit starts from its neighbour's optimum), then on with doubling steps
(``extend`` more) until the deviance rises above ``c``. The crossing is then located by
safeguarded regula falsi on the signed root ``tau = sqrt(D - D_hat)``, which is nearly linear in
the parameter. A side that stays below ``c`` up to the parameter's bound or the last step is
open: the data do not bound the parameter there, and an :class:`IdentifiabilityWarning` names it.

The two sides of every parameter are independent tasks (:func:`profile_side`), run serially by
default or on any :class:`concurrent.futures.Executor`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError, SolverError
from sysid.estimation._inference import (
    did_you_mean,
    free_parameters,
    loss_kind,
    misfit,
    parameter_values,
    quantile,
    refit_config,
    run_tasks,
    threshold,
    with_parameters,
)

__all__ = ["profile", "ProfileResult", "IdentifiabilityWarning", "profile_side"]


class IdentifiabilityWarning(UserWarning):
    """The data do not determine a parameter (flat or open profile, singular information)."""


# each side's grid spans this many Wald half-widths before the doubling extension
_SPAN = 1.5
# the crossing is located to this accuracy in tau (about 0.3 % of a 95 % half-width)
_TAU_TOL = 5e-3
# re-fits spent on locating one crossing
_ROOT_EVALS = 6

_TABLE_COLUMNS = ["name", "side", "value", "deviance", "delta", "tau", "role", "stopped_reason"]


@dataclass(frozen=True, kw_only=True)
class ProfileResult:
    """Profiles and profile-likelihood intervals of named parameters.

    Attributes
    ----------
    intervals : pandas.DataFrame
        Indexed by parameter name: ``estimate``, ``lower``, ``upper`` (the interval; an open
        side is the parameter's bound, or -inf/inf), ``lower_status``/``upper_status``
        ("found"; "bound" when the profile stays below the threshold up to the parameter's
        bound; "open" when it stays below it as far as the walk went), ``stderr`` (the fit's),
        ``wald_lower``/``wald_upper`` (``estimate -/+ quantile * stderr``, for comparison),
        ``identifiable`` (both sides found).
    table : pandas.DataFrame
        Every evaluated point: ``name``, ``side``, ``value``, ``deviance``, ``delta`` (above the
        fit's deviance), ``tau`` (signed root of ``delta``), ``role`` ("estimate", "grid",
        "root"), ``stopped_reason`` of the re-fit, and the re-fitted value of every other free
        parameter (columns named after them).
    level : float
        Confidence level.
    threshold : float
        The rise of the deviance that bounds the interval.
    quantile : float
        The matching Wald quantile (``quantile**2`` is the threshold of a linear model).
    kind : str
        The error model.
    deviance : float
        The fit's deviance (``-2 log L`` up to a data constant).
    n, n_estimated : int
        Measured values and estimated quantities (parameters and initial states).
    """

    intervals: pd.DataFrame
    table: pd.DataFrame
    level: float
    threshold: float
    quantile: float
    kind: str
    deviance: float
    n: int
    n_estimated: int

    def interval(self, name: str) -> tuple[float, float]:
        """``(lower, upper)`` of one parameter."""
        if name not in self.intervals.index:
            known = list(self.intervals.index)
            raise ConfigError(f"ProfileResult: no profile of {name!r}; profiled parameters are "
                              f"{known}.{did_you_mean(name, known)}")
        row = self.intervals.loc[name]
        return float(row["lower"]), float(row["upper"])

    @property
    def names(self) -> list[str]:
        """The profiled parameters."""
        return list(self.intervals.index)


def _refit(model: Any, data: xr.Dataset, config: Any, name: str, value: float) -> tuple[Any, float]:
    """Fit with ``name`` fixed at ``value``, starting from ``model``'s values: (result, deviance)."""
    from sysid.training import fit

    start = with_parameters(model, {name: value}, fixed=[name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a failed point is judged by its deviance, not a warning
        try:
            res = fit(start, data, config)
        except SolverError:
            return None, math.inf
    return res, misfit(res, data).deviance


def _row(name: str, side: str, value: float, dev: float, d_hat: float, role: str,
         res: Any) -> dict[str, Any]:
    delta = dev - d_hat
    tau = math.copysign(math.sqrt(max(delta, 0.0)), 1.0 if side == "upper" else -1.0) \
        if math.isfinite(delta) else math.copysign(math.inf, 1.0 if side == "upper" else -1.0)
    row = {"name": name, "side": side, "value": value, "deviance": dev, "delta": delta,
           "tau": tau, "role": role,
           "stopped_reason": str(res.stopped_reason) if res is not None else "failed"}
    if res is not None:
        for k, v in parameter_values(res.model).items():
            if k != name:
                row[k] = v
    return row


def _next_value(x_prev: float, step: float, lo: float, hi: float) -> float | None:
    """``x_prev + step``, or halfway to the bound it would pass; None at the bound."""
    x = x_prev + step
    bound = hi if step > 0 else lo
    if (step > 0 and x >= hi) or (step < 0 and x <= lo):
        x = x_prev + 0.5 * (bound - x_prev)
        if abs(bound - x_prev) <= 1e-9 * max(abs(bound), abs(x_prev), 1e-300):
            return None
    return x


def profile_side(payload: tuple) -> dict[str, Any]:
    """Walk one side of one parameter's profile and locate its crossing.

    ``payload`` = ``(model, data, config, name, side, estimate, step, lo, hi, d_hat, c, points,
    extend)``; a top-level function so that executors in other processes can run it.

    Returns
    -------
    dict
        ``rows`` (evaluated points), ``endpoint`` and ``status`` ("found", "bound", "open").
    """
    (model, data, config, name, side, estimate, step, lo, hi, d_hat, c, points, extend) = payload
    sign = 1.0 if side == "upper" else -1.0
    rows: list[dict[str, Any]] = []
    inner = (estimate, 0.0, model)  # last point below the threshold: value, tau, fitted model
    outer = None
    k = 0
    while k < points + extend:
        k += 1
        width = step if k <= points else step * 2.0 ** (k - points)
        x = _next_value(inner[0], sign * width, lo, hi)
        if x is None:
            return {"rows": rows, "endpoint": hi if side == "upper" else lo, "status": "bound"}
        res, dev = _refit(inner[2], data, config, name, x)
        row = _row(name, side, x, dev, d_hat, "grid", res)
        rows.append(row)
        if abs(row["tau"]) > math.sqrt(c):
            outer = (x, abs(row["tau"]))
            break
        inner = (x, abs(row["tau"]), res.model)
    if outer is None:
        return {"rows": rows, "endpoint": hi if side == "upper" else lo, "status": "open"}
    return _locate(rows, inner, outer, data, config, name, side, d_hat, c)


def _locate(rows: list[dict[str, Any]], inner: tuple, outer: tuple, data: xr.Dataset,
            config: Any, name: str, side: str, d_hat: float, c: float) -> dict[str, Any]:
    """Regula falsi (Illinois) on ``|tau| - sqrt(c)`` between ``inner`` (below) and ``outer``
    (above); bisection while the outer value is infinite. The endpoint is the linear
    interpolation of tau in the final bracket."""
    target = math.sqrt(c)
    (xa, ta, model_a), (xb, tb) = inner, outer
    fa, fb = ta - target, tb - target
    kept_b = 0
    for _ in range(_ROOT_EVALS):
        if math.isfinite(fb):
            x = xb - fb * (xb - xa) / (fb - fa)
            if not (min(xa, xb) < x < max(xa, xb)):
                x = 0.5 * (xa + xb)
        else:
            x = 0.5 * (xa + xb)
        res, dev = _refit(model_a, data, config, name, x)
        row = _row(name, side, x, dev, d_hat, "root", res)
        rows.append(row)
        f = abs(row["tau"]) - target
        if abs(f) <= _TAU_TOL:
            return {"rows": rows, "endpoint": x, "status": "found"}
        if f < 0:
            xa, fa, model_a = x, f, res.model
            kept_b += 1
            if kept_b >= 2 and math.isfinite(fb):
                fb *= 0.5  # Illinois: the stale side's weight halves
        else:
            xb, fb = x, f
            kept_b = 0
    if math.isfinite(fb):
        return {"rows": rows, "endpoint": xb - fb * (xb - xa) / (fb - fa), "status": "found"}
    return {"rows": rows, "endpoint": 0.5 * (xa + xb), "status": "found"}


def _names(result: Any, names: str | Sequence[str] | None) -> list[str]:
    table = result.model.parameter_table()
    free = list(free_parameters(result.model)["name"])
    if names is None:
        return free
    names = [names] if isinstance(names, str) else list(names)
    everything = list(table["name"])
    for n in names:
        if not isinstance(n, str) or n not in everything:
            raise ConfigError(f"profile: {n!r} is not a parameter of the model; its free "
                              f"parameters are {free}.{did_you_mean(str(n), everything)}")
        if n not in free:
            raise ConfigError(f"profile: parameter {n!r} is fixed (vary=False) in the fit, so it "
                              f"has no interval; free parameters are {free}.")
    return names


def _check_options(level: Any, points: Any, extend: Any) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ConfigError(f"profile: level must be a number in (0, 1), e.g. 0.95; got {level!r}.")
    for label, value, minimum in (("points", points, 1), ("extend", extend, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ConfigError(f"profile: {label} must be an integer >= {minimum}; got {value!r}.")


def profile(result: Any, data: xr.Dataset, names: str | Sequence[str] | None = None, *,
            level: float = 0.95, points: int = 4, extend: int = 8, executor: Any = None,
            warn: bool = True) -> ProfileResult:
    """Profile-likelihood intervals of a fit's named parameters.

    Parameters
    ----------
    result : FitResult
        The fit (its settings are used for every re-fit, without the derivative warm start).
    data : xarray.Dataset
        The data given to :func:`sysid.fit`.
    names : str or sequence of str, optional
        Parameters to profile (default: every free named parameter).
    level : float
        Confidence level of the intervals (default 0.95).
    points : int
        Re-fits per side across 1.5 Wald half-widths (more points draw a smoother profile).
    extend : int
        Further re-fits per side, each step twice the last, before a side is declared open.
    executor : concurrent.futures.Executor, optional
        Runs the sides (two tasks per parameter); default one after another.
    warn : bool
        Emit an :class:`IdentifiabilityWarning` for each parameter with an open side.

    Returns
    -------
    ProfileResult

    Notes
    -----
    Hybrid models re-fit their network at every profile point, but the threshold counts only the
    named parameters and initial states as estimated: the intervals do not include the network's
    own uncertainty.
    """
    from sysid.training import FitResult

    if not isinstance(result, FitResult):
        raise ConfigError(f"profile: expected the FitResult of sysid.fit; got "
                          f"{type(result).__name__}.")
    _check_options(level, points, extend)
    names = _names(result, names)
    base = misfit(result, data)
    if not math.isfinite(base.deviance):
        raise ConfigError("profile: the fitted model cannot be simulated over the data (its "
                          "deviance is not finite); profile a fit that converged.")
    kind = loss_kind(result.config)
    c = threshold(level, kind, base.n, base.n_estimated)
    q = quantile(level, kind, base.n, base.n_estimated)
    free = free_parameters(result.model).set_index("name")
    stderr = result.parameters.set_index("name")["stderr"] \
        if "stderr" in result.parameters.columns else pd.Series(dtype=float)
    cfg = refit_config(result.config)
    payloads, est = [], {}
    for name in names:
        value = float(free.loc[name, "value"])
        se = float(stderr.get(name, math.nan))
        if not (math.isfinite(se) and se > 0):  # no usable Jacobian error: 10 % of the value
            se = 0.1 * (abs(value) if value != 0 else float(free.loc[name, "scale"]))
        est[name] = (value, se)
        step = _SPAN * q * se / points
        lo, hi = float(free.loc[name, "lower"]), float(free.loc[name, "upper"])
        for side in ("lower", "upper"):
            payloads.append((result.model, data, cfg, name, side, value, step, lo, hi,
                             base.deviance, c, int(points), int(extend)))
    sides = run_tasks(profile_side, payloads, executor, where="profile")
    return _assemble(result, names, est, sides, stderr, base, c, q, kind, level, warn)


def _assemble(result: Any, names: list[str], est: dict, sides: list[dict], stderr: pd.Series,
              base: Any, c: float, q: float, kind: str, level: float, warn: bool) -> ProfileResult:
    rows, records = [], []
    values = parameter_values(result.model)
    for i, name in enumerate(names):
        low, up = sides[2 * i], sides[2 * i + 1]
        value, se = est[name]
        rows.append({"name": name, "side": "estimate", "value": value, "deviance": base.deviance,
                     "delta": 0.0, "tau": 0.0, "role": "estimate",
                     "stopped_reason": str(result.stopped_reason),
                     **{k: v for k, v in values.items() if k != name}})
        rows.extend(low["rows"])
        rows.extend(up["rows"])
        fit_se = float(stderr.get(name, math.nan))
        records.append({"name": name, "estimate": value, "lower": low["endpoint"],
                        "upper": up["endpoint"], "lower_status": low["status"],
                        "upper_status": up["status"], "stderr": fit_se,
                        "wald_lower": value - q * fit_se, "wald_upper": value + q * fit_se,
                        "identifiable": low["status"] == "found" and up["status"] == "found"})
    intervals = pd.DataFrame(records).set_index("name")
    table = pd.DataFrame(rows)
    lead = [c_ for c_ in _TABLE_COLUMNS if c_ in table.columns]
    table = table[lead + [c_ for c_ in table.columns if c_ not in lead]]
    table = table.sort_values(["name", "value"], kind="stable").reset_index(drop=True)
    if warn:
        _warn(intervals, table, c, level)
    return ProfileResult(intervals=intervals, table=table, level=float(level), threshold=c,
                         quantile=q, kind=kind, deviance=base.deviance, n=base.n,
                         n_estimated=base.n_estimated)


def _warn(intervals: pd.DataFrame, table: pd.DataFrame, c: float, level: float) -> None:
    from sysid.training import FitWarning

    pct = f"{100 * level:g} %"
    for name, row in intervals.iterrows():
        open_sides = [s for s in ("lower", "upper") if row[f"{s}_status"] != "found"]
        if open_sides:
            pts = table[table["name"] == name]
            seen = f"{pts['value'].min():.6g} to {pts['value'].max():.6g}"
            what = "flat" if len(open_sides) == 2 else f"open on the {open_sides[0]} side"
            warnings.warn(
                f"profile: the profile of {name!r} is {what}: the objective stays within the "
                f"{pct} threshold over {seen}, so the data do not determine {name!r} "
                f"(practically non-identifiable). Fix it (vary=False) at a known value, give it "
                f"tighter bounds, or reparameterise (e.g. only a product of parameters may be "
                f"determined).", IdentifiabilityWarning, stacklevel=3)
    lowest = table["delta"].min()
    if lowest < -0.1 * c:
        best = table.loc[table["delta"].idxmin()]
        warnings.warn(
            f"profile: re-fitting with {best['name']!r} fixed at {best['value']:.6g} lowered the "
            f"objective by {-lowest:.3g} below the fit's: the fit had not reached the optimum, so "
            f"the intervals are relative to a point that is not the best. Fit again (e.g. with "
            f"FitConfig(starts=...)) and profile that fit.", FitWarning, stacklevel=3)
