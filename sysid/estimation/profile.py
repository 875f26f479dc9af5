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
safeguarded regula falsi on the signed root ``tau`` of the rise, measured in the units of the
Wald quantile (the profile t statistic of Bates and Watts when the noise level is estimated): it
is ``(value - estimate) / stderr`` exactly for a model linear in its parameters, and nearly
linear in the parameter otherwise, so a few re-fits find the crossing. A side that stays below ``c`` up to the parameter's bound or the last step is
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

from sysid.errors import ConfigError, FitError, SolverError
from sysid.estimation._inference import (
    CONCENTRATED,
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
# without a grid, steps aim this factor past the predicted crossing (to bracket it at once)
_OVERSHOOT = 1.05
# the crossing is located to this accuracy in tau, the units of the Wald quantile (0.5 % of a
# 95 % half-width)
_TAU_TOL = 1e-2
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
        fit's deviance), ``tau`` (signed root of ``delta`` in Wald-quantile units: the interval
        is ``|tau| <= quantile``), ``role`` ("estimate", "grid",
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

    def _facts(self) -> list[tuple[str, str]]:
        facts = [("level", f"{100 * self.level:g} % (deviance rise {self.threshold:.4g})"),
                 ("error model", self.kind),
                 ("data", f"{self.n} measured values, {self.n_estimated} estimated quantities")]
        bad = [n for n in self.names if not bool(self.intervals.loc[n, "identifiable"])]
        if bad:
            facts.append(("not identifiable", ", ".join(bad)))
        return facts

    def _rows(self) -> pd.DataFrame:
        cols = ["estimate", "lower", "upper", "lower_status", "upper_status", "wald_lower",
                "wald_upper"]
        return self.intervals[[c for c in cols if c in self.intervals.columns]].reset_index()

    def summary(self) -> str:
        """A short text report: level, error model, sizes, parameters whose interval stays open,
        and per parameter the estimate, the profile interval (with how each end was found) and
        the Jacobian (Wald) interval beside it."""
        from sysid._display import text_block

        return text_block("sysid ProfileResult", self._facts(), self._rows())

    def __repr__(self) -> str:
        """One line: level and each parameter's interval."""
        shown = [f"{n}=[{lo:.4g}, {hi:.4g}]" for n, (lo, hi) in
                 ((n, self.interval(n)) for n in self.names[:6])]
        return (f"ProfileResult(level={self.level:g}, intervals={{" + ", ".join(shown)
                + (f", +{len(self.names) - 6} more" if len(self.names) > 6 else "") + "})")

    def _repr_html_(self) -> str:
        """HTML for Jupyter: the facts of ``summary()``, the interval table and the profile
        figure (:func:`sysid.plot.profile`)."""
        from sysid._display import block, facts_html, figure_png, table_html
        from sysid.plot import profile as plot_profile

        parts = [facts_html(self._facts()), table_html(self._rows())]
        if self.names:
            parts.append(figure_png(plot_profile(self, names=self.names[:4])))
        return block("sysid ProfileResult", parts, "sysid-profile")


@dataclass(frozen=True, kw_only=True)
class _Side:
    """One side of one parameter's profile: everything its task needs (picklable)."""

    result: Any  # the fit being profiled
    data: xr.Dataset
    config: Any
    name: str
    side: str  # "lower" or "upper"
    estimate: float
    step: float
    lo: float
    hi: float
    d_hat: float  # the fit's deviance
    target: float  # the interval's end: |tau| = target
    concentrated: bool  # noise level estimated: tau is the profile t statistic
    n: int
    p: int
    points: int
    extend: int

    def tau(self, deviance: float) -> float:
        """Signed root of the deviance rise, in the units of the Wald quantile: the profile t
        statistic ``sqrt((n - p) (exp(delta / n) - 1))`` when the noise level is concentrated
        out, else ``sqrt(delta)``. Both equal ``(value - estimate) / stderr`` for a model linear
        in its parameters, so the crossing search converges in one secant step there."""
        delta = deviance - self.d_hat
        if not math.isfinite(delta):
            size = math.inf
        elif self.concentrated:
            size = math.sqrt(max(self.n - self.p, 1) * max(math.expm1(delta / self.n), 0.0))
        else:
            size = math.sqrt(max(delta, 0.0))
        return size if self.side == "upper" else -size


def _refit(near: Any, side: _Side, value: float) -> tuple[Any, float]:
    """Fit with the parameter fixed at ``value``, starting from the neighbouring fit ``near``
    (its parameter values and initial states)."""
    from sysid.training import fit

    start = with_parameters(near.model, {side.name: value}, fixed=[side.name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a failed point is judged by its deviance, not a warning
        try:
            res = fit(start, side.data, side.config, initial=near.initial_states)
        except SolverError:
            return None, math.inf
    return res, misfit(res, side.data).deviance


def _row(side: _Side, value: float, dev: float, role: str, res: Any) -> dict[str, Any]:
    row = {"name": side.name, "side": side.side, "value": value, "deviance": dev,
           "delta": dev - side.d_hat, "tau": side.tau(dev), "role": role,
           "stopped_reason": str(res.stopped_reason) if res is not None else "failed"}
    if res is not None:
        for k, v in parameter_values(res.model).items():
            if k != side.name:
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


def profile_side(side: _Side) -> dict[str, Any]:
    """Walk one side of one parameter's profile and locate its crossing (a top-level function,
    so executors in other processes can run it).

    Returns
    -------
    dict
        ``rows`` (evaluated points), ``endpoint`` and ``status`` ("found", "bound", "open").
    """
    sign = 1.0 if side.side == "upper" else -1.0
    bound = side.hi if side.side == "upper" else side.lo
    rows: list[dict[str, Any]] = []
    inner = (side.estimate, 0.0, side.result)  # last point inside: value, |tau|, its fit
    for k in range(1, max(side.points, 1) + side.extend + 1):
        x = _next_value(inner[0], sign * _width(side, k, inner), side.lo, side.hi)
        if x is None:
            return {"rows": rows, "endpoint": bound, "status": "bound"}
        res, dev = _refit(inner[2], side, x)
        row = _row(side, x, dev, "grid", res)
        rows.append(row)
        if abs(row["tau"]) > side.target:
            return _locate(side, rows, inner, (x, abs(row["tau"])))
        inner = (x, abs(row["tau"]), res)
    return {"rows": rows, "endpoint": bound, "status": "open"}


def _width(side: _Side, k: int, inner: tuple) -> float:
    """Length of step ``k`` of the walk. With ``points`` > 0: the grid, then doubling steps.
    With ``points=0`` (no grid): first a step just past the Wald end, then ``tau`` extrapolated
    linearly from the estimate through the last point inside, aiming just past the crossing
    (at least 0.1 and at most 3 times the distance walked)."""
    if side.points:
        return side.step if k <= side.points else side.step * 2.0 ** (k - side.points)
    if k == 1:
        return side.step
    dist = abs(inner[0] - side.estimate)
    ratio = side.target / inner[1] if inner[1] > 0 else math.inf
    return dist * min(max(_OVERSHOOT * ratio - 1.0, 0.1), 3.0)


def _locate(side: _Side, rows: list[dict[str, Any]], inner: tuple, outer: tuple) -> dict[str, Any]:
    """Regula falsi (Illinois) on ``|tau| - target`` between ``inner`` (inside) and ``outer``;
    bisection while the outer value is infinite (a failed re-fit). The endpoint is the last
    point within tolerance, else the secant of the final bracket."""
    (xa, ta, near), (xb, tb) = inner, outer
    fa, fb = ta - side.target, tb - side.target
    stale = 0
    for _ in range(_ROOT_EVALS):
        x = xb - fb * (xb - xa) / (fb - fa) if math.isfinite(fb) else 0.5 * (xa + xb)
        if not min(xa, xb) < x < max(xa, xb):
            x = 0.5 * (xa + xb)
        res, dev = _refit(near, side, x)
        row = _row(side, x, dev, "root", res)
        rows.append(row)
        f = abs(row["tau"]) - side.target
        if abs(f) <= _TAU_TOL:
            return {"rows": rows, "endpoint": x, "status": "found"}
        if f < 0:
            xa, fa, near = x, f, res
            stale += 1
            if stale >= 2 and math.isfinite(fb):
                fb *= 0.5  # Illinois: the side kept twice weighs half
        else:
            xb, fb, stale = x, f, 0
    end = xb - fb * (xb - xa) / (fb - fa) if math.isfinite(fb) else 0.5 * (xa + xb)
    return {"rows": rows, "endpoint": end, "status": "found"}


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
    for label, value, minimum in (("points", points, 0), ("extend", extend, 0)):
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
        Re-fits per side across 1.5 Wald half-widths (more points draw a smoother profile), or 0
        for no grid: the walk then aims straight at the crossing (fewest re-fits, for intervals
        only).
    extend : int
        Further re-fits per side (each step twice the last; with ``points=0`` extrapolated)
        before a side is declared open.
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
    from sysid.parallel import TaskFailure
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
    cfg = refit_config(result.config, result.model)
    payloads, est = [], {}
    for name in names:
        value = float(free.loc[name, "value"])
        se = float(stderr.get(name, math.nan))
        if not (math.isfinite(se) and se > 0):  # no usable Jacobian error: 10 % of the value
            se = 0.1 * (abs(value) if value != 0 else float(free.loc[name, "scale"]))
        est[name] = (value, se)
        for side in ("lower", "upper"):
            payloads.append(_Side(
                result=result, data=data, config=cfg, name=name, side=side, estimate=value,
                step=_SPAN * q * se / points if points else _OVERSHOOT * q * se, lo=float(free.loc[name, "lower"]),
                hi=float(free.loc[name, "upper"]), d_hat=base.deviance, target=q,
                concentrated=kind in CONCENTRATED and base.n > base.n_estimated, n=base.n,
                p=base.n_estimated, points=int(points), extend=int(extend)))
    sides = run_tasks(profile_side, payloads, executor, where="profile")
    for side, out in zip(payloads, sides):
        if isinstance(out, TaskFailure):
            raise FitError(f"profile: the {side.side} side of {side.name!r} failed: "
                           f"{out.error_type}: {out.message}")
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
