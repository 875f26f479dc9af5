"""Limit cycles (periodic orbits): detection, period and amplitude, and comparison with a reference.

:func:`find_limit_cycle` integrates the dynamics past a transient, then cuts the orbit with a
Poincaré section ``x_k = mean(x_k)`` (``k`` the state with the largest spread, crossed upwards).
Crossing times are roots of SciPy's dense output located with :func:`scipy.optimize.brentq`. The
orbit is periodic when the last crossings come back to the same point (scaled by each state's
spread) at the same interval; the period is the mean of those intervals and the amplitude of each
state is half its peak-to-peak range over the last full cycle.

A centre (e.g. Lotka–Volterra) has a family of closed orbits rather than an isolated attracting
cycle; both are reported as periodic orbits — decide between them by starting from several points.

:func:`oscillation_from_samples` estimates period and amplitude from measured samples (mean
crossings, linearly interpolated), for data such as the hare–lynx records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr
from scipy import optimize

from sysid.analysis.dynamics import Dynamics, as_dynamics
from sysid.analysis.fixed_points import distance_to_data
from sysid.errors import ConfigError, DataError, SolverError
from sysid.solvers import SolverConfig, solve_scipy


@final
@dataclass(frozen=True, kw_only=True)
class LimitCycle:
    """A periodic orbit found by :func:`find_limit_cycle` (or why none was).

    Attributes
    ----------
    found : bool
        Whether a periodic orbit was detected.
    reason : str
        "periodic orbit", or why not ("settles to an equilibrium", "not periodic", ...).
    period : float
        Period in the dynamics' time units (NaN when not found).
    period_spread : float
        Relative spread (max - min) / mean of the last crossing intervals.
    amplitude, minimum, maximum, mean : pandas.Series
        Per state over the last full cycle; amplitude = (maximum - minimum) / 2.
    section : str
        The state whose mean defines the Poincaré section.
    n_crossings : int
        Upward section crossings after the transient.
    crossing_times : numpy.ndarray
        Their times.
    units : dict
        Units of each state and of time (key "time").
    distance_to_data : float
        The orbit's largest distance (data-std units) from the nearest sample of the ``data``
        given to :func:`find_limit_cycle` (NaN without data or without an orbit).
    """

    found: bool
    reason: str
    period: float
    period_spread: float
    amplitude: pd.Series
    minimum: pd.Series
    maximum: pd.Series
    mean: pd.Series
    section: str
    n_crossings: int
    crossing_times: np.ndarray = field(repr=False)
    units: dict[str, str] = field(default_factory=dict)
    distance_to_data: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary."""
        return {
            "found": self.found,
            "reason": self.reason,
            "period": None if np.isnan(self.period) else float(self.period),
            "period_spread": None if np.isnan(self.period_spread) else float(self.period_spread),
            "amplitude": {k: float(v) for k, v in self.amplitude.items()},
            "mean": {k: float(v) for k, v in self.mean.items()},
            "section": self.section,
            "n_crossings": int(self.n_crossings),
            "units": dict(self.units),
            "distance_to_data": None if np.isnan(self.distance_to_data) else float(self.distance_to_data),
        }


def _not_found(dyn: Dynamics, reason: str, section: str, stats: np.ndarray | None = None) -> LimitCycle:
    nan = pd.Series(np.nan, index=list(dyn.states))
    mean = nan if stats is None else pd.Series(stats, index=list(dyn.states))
    return LimitCycle(
        found=False, reason=reason, period=float("nan"), period_spread=float("nan"), amplitude=nan,
        minimum=nan, maximum=nan, mean=mean, section=section, n_crossings=0,
        crossing_times=np.array([]), units=_units(dyn),
    )


def _units(dyn: Dynamics) -> dict[str, str]:
    return {**dict(zip(dyn.states, dyn.state_units)), "time": dyn.time_units}


def find_limit_cycle(
    model: Any,
    y0: Mapping[str, float] | Sequence[float],
    *,
    t_end: float,
    transient: float = 0.5,
    section: str | None = None,
    u: Mapping[str, float] | Sequence[float] | None = None,
    min_cycles: int = 3,
    rtol: float = 1e-3,
    settings: SolverConfig | None = None,
    states: Sequence[str] | None = None,
    params: Mapping[str, float] | None = None,
    data: xr.Dataset | None = None,
    support_threshold: float = 0.25,
) -> LimitCycle:
    """Detect a periodic orbit reached from ``y0`` and measure its period and amplitude.

    Parameters
    ----------
    model : Model, FitResult, System, Dynamics or callable
        The dynamics (autonomous: evaluated with constant inputs ``u``).
    y0 : mapping or sequence
        Initial state.
    t_end : float
        Integration horizon (from t = 0); it must hold the transient and ``min_cycles + 1``
        cycles after it.
    transient : float
        Fraction of ``t_end`` discarded before measuring (0 <= transient < 1).
    section : str, optional
        State defining the Poincaré section; default the one with the largest spread.
    min_cycles : int
        Crossing intervals needed to call the orbit periodic.
    rtol : float
        Intervals must agree, and crossings coincide (in units of each state's spread), to ``rtol``.
    settings : SolverConfig, optional
        A SciPy method and tolerances; default the analysis default (RK45, rtol 1e-8, atol 1e-10).
    data : xarray.Dataset, optional
        Training data: the orbit's ``distance_to_data`` is measured against its support.
    support_threshold : float
        Orbit points farther than this (std units) from every sample are outside the support.

    Returns
    -------
    LimitCycle

    Warns
    -----
    ExtrapolationWarning
        When ``data`` is given and part of the orbit lies outside its support.
    """
    dyn = as_dynamics(model, states=states, params=params)
    if not 0 <= transient < 1:
        raise ConfigError(f"transient must be a fraction in [0, 1); got {transient}.")
    if not t_end > 0:
        raise ConfigError(f"t_end must be > 0; got {t_end}.")
    if min_cycles < 1:
        raise ConfigError(f"min_cycles must be >= 1; got {min_cycles}.")
    if section is not None and section not in dyn.states:
        raise ConfigError(f"section {section!r} is not a state; the states are {list(dyn.states)}.")
    x0 = dyn.point(y0)
    uc = dyn.constant_inputs(u, purpose="limit cycles")
    t0 = transient * t_end

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        return dyn.fn(np.array([t]), y[None, :], None if uc is None else uc[None, :])[0]

    try:
        sol = solve_scipy(rhs, x0, [0.0, t_end], settings, context=dyn.name, states=dyn.states,
                          time_units=dyn.time_units, dense_output=True, evaluate=False)
    except SolverError as exc:
        return _not_found(dyn, f"integration failed (the orbit diverges or is stiff): {exc}", section or "")
    grid = np.linspace(t0, t_end, max(2000, 50 * (min_cycles + 1)))
    ys = sol.sol(grid)
    spread = np.ptp(ys, axis=1)
    mean = ys.mean(axis=1)
    scale = np.maximum(np.abs(mean), 1.0)
    if np.all(spread <= 1e-6 * scale):
        return _not_found(dyn, "settles to an equilibrium", section or dyn.states[0], mean)
    k = int(np.argmax(spread / scale)) if section is None else dyn.states.index(section)
    name = dyn.states[k]
    g = ys[k] - mean[k]
    idx = np.flatnonzero((g[:-1] < 0) & (g[1:] >= 0))
    crossings = []
    for i in idx:
        a, b = grid[i], grid[i + 1]
        if g[i + 1] == 0:
            crossings.append(b)
            continue
        crossings.append(optimize.brentq(lambda t: sol.sol(t)[k] - mean[k], a, b, xtol=1e-12 * max(1.0, abs(b))))
    tc = np.asarray(crossings)
    if tc.size < min_cycles + 1:
        return _not_found(dyn, f"only {tc.size} section crossings after the transient; increase t_end",
                          name, mean)
    last = tc[-(min_cycles + 1):]
    intervals = np.diff(last)
    period = float(intervals.mean())
    spread_rel = float(np.ptp(intervals) / period)
    pts = sol.sol(last)
    drift = float(np.max(np.abs(pts - pts[:, -1:]) / np.maximum(spread, 1e-300)[:, None]))
    if spread_rel > rtol or drift > rtol:
        return LimitCycle(
            found=False, reason=f"not periodic: intervals spread {spread_rel:.2g}, crossings drift "
            f"{drift:.2g} (rtol {rtol:g})", period=float("nan"), period_spread=spread_rel,
            amplitude=pd.Series(np.nan, index=list(dyn.states)), minimum=pd.Series(np.nan, index=list(dyn.states)),
            maximum=pd.Series(np.nan, index=list(dyn.states)), mean=pd.Series(mean, index=list(dyn.states)),
            section=name, n_crossings=int(tc.size), crossing_times=tc, units=_units(dyn),
        )
    cyc = sol.sol(np.linspace(last[-2], last[-1], 2001))
    lo, hi = cyc.min(axis=1), cyc.max(axis=1)
    idx_names = list(dyn.states)
    dist = distance_to_data(dyn, cyc.T[::20], data, support_threshold, "orbit point")
    return LimitCycle(
        found=True, reason="periodic orbit", period=period, period_spread=spread_rel,
        amplitude=pd.Series((hi - lo) / 2, index=idx_names), minimum=pd.Series(lo, index=idx_names),
        maximum=pd.Series(hi, index=idx_names), mean=pd.Series(cyc.mean(axis=1), index=idx_names),
        section=name, n_crossings=int(tc.size), crossing_times=tc, units=_units(dyn),
        distance_to_data=float(np.max(dist)),
    )


def compare_limit_cycles(
    learned: Any,
    reference: Any,
    y0: Mapping[str, float] | Sequence[float],
    *,
    t_end: float,
    transient: float = 0.5,
    u: Mapping[str, float] | Sequence[float] | None = None,
    settings: SolverConfig | None = None,
    params: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Period and amplitudes of the learned and reference orbits from the same start.

    The Poincaré section of the learned orbit uses the state chosen for the reference, so both are
    cut the same way.

    Returns
    -------
    pandas.DataFrame
        Rows ``period`` and ``amplitude <state>``; columns ``reference``, ``learned``, ``units``,
        ``error`` (learned - reference) and ``percent_error``. Attrs hold both :class:`LimitCycle`
        summaries (``attrs["reference"]``, ``attrs["learned"]``).
    """
    ref_dyn = as_dynamics(reference, params=params)
    ref = find_limit_cycle(ref_dyn, y0, t_end=t_end, transient=transient, u=u, settings=settings)
    lrn = find_limit_cycle(
        learned, y0, t_end=t_end, transient=transient, u=u, settings=settings,
        section=ref.section if ref.found else None, states=ref_dyn.states,
    )
    rows = [("period", ref.period, lrn.period, ref.units.get("time", ""))]
    for n in ref_dyn.states:
        rows.append((f"amplitude {n}", ref.amplitude[n], lrn.amplitude.get(n, np.nan), ref.units.get(n, "")))
    df = pd.DataFrame(rows, columns=["quantity", "reference", "learned", "units"]).set_index("quantity")
    df["error"] = df["learned"] - df["reference"]
    df["percent_error"] = 100.0 * df["error"] / df["reference"].abs()
    df.attrs = {"reference": ref.to_dict(), "learned": lrn.to_dict()}
    return df


def oscillation_from_samples(t: np.ndarray, x: np.ndarray) -> dict[str, float]:
    """Period and amplitude of a sampled oscillation (e.g. one measured variable of one run).

    The period is the mean interval between upward crossings of the mean (linear interpolation
    between samples); the amplitude is half the mean peak-to-trough range per cycle. NaN samples are
    dropped first.

    Returns
    -------
    dict
        ``period``, ``period_std`` (NaN with fewer than 3 crossings), ``amplitude``,
        ``n_cycles``.
    """
    t = np.asarray(t, float).ravel()
    x = np.asarray(x, float).ravel()
    if t.shape != x.shape:
        raise DataError(f"oscillation_from_samples: {t.size} times but {x.size} values.")
    ok = np.isfinite(t) & np.isfinite(x)
    t, x = t[ok], x[ok]
    if t.size < 4:
        raise DataError(f"oscillation_from_samples: need at least 4 finite samples; got {t.size}.")
    g = x - x.mean()
    i = np.flatnonzero((g[:-1] < 0) & (g[1:] >= 0))
    tc = t[i] - g[i] * (t[i + 1] - t[i]) / (g[i + 1] - g[i])
    if tc.size < 2:
        return {"period": float("nan"), "period_std": float("nan"), "amplitude": float("nan"), "n_cycles": 0}
    amps = [np.ptp(x[(t >= a) & (t <= b)]) / 2 for a, b in zip(tc[:-1], tc[1:])]
    d = np.diff(tc)
    return {
        "period": float(d.mean()),
        "period_std": float(d.std(ddof=1)) if d.size > 1 else float("nan"),
        "amplitude": float(np.mean(amps)),
        "n_cycles": int(d.size),
    }


__all__ = ["LimitCycle", "find_limit_cycle", "compare_limit_cycles", "oscillation_from_samples"]
