"""Derived quantities with intervals: fixed points, their eigenvalues, limit-cycle period and amplitude.

A fitted model answers more than "how well does it track the data": where are its equilibria, how
stable are they, how long is its cycle. :func:`derived` reads these off every member of a set of
fits and reports each with an interval and a support check:

- an :class:`~sysid.parallel.Ensemble` (seeds, bootstrap or starts): every member that succeeded;
- a :class:`~sysid.estimation.BootstrapResult` with the fit it came from (``model=``): the fit's
  model at every replicate's parameter values;
- a reference :class:`~sysid.systems.System` (or any dynamics) with ``parameters=``, a table of
  parameter draws (:func:`sample_parameters`: from a covariance, e.g. a fit's, or from given
  distributions), integrated with SciPy at each draw;
- a plain list of fits, models or dynamics.

Fixed points are found in every member (:func:`~sysid.analysis.find_fixed_points`) and matched
across members: the point-estimate member's points (the bootstrap base fit, else the first member)
seed the clusters, and each member's points are paired with the clusters by Hungarian matching on
the distance in units of the search box's width per state; a pair farther apart than ``match`` is
a new cluster. Each cluster is one fixed point; it reports its coordinates, the real and
imaginary parts of its Jacobian's eigenvalues (sorted by decreasing real part, as
:func:`~sysid.analysis.linearise`), the stability class most members give it, and in how many
members it was found. With ``y0`` (or data, whose first sample is the default start) the limit
cycle reached from ``y0`` is measured in every member (:func:`~sysid.analysis.find_limit_cycle`):
its period and the amplitude of each state. With ``reference=`` each member's vector field is
compared with the reference's (:func:`~sysid.analysis.field_error`) at the data and on a grid
inside and outside the data's support.

Intervals are the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles over the members. What they
mean depends on the members: for a bootstrap (or parameter draws from a covariance) a percentile
confidence interval; for seeds or starts the spread the optimiser reaches, which is not a
confidence interval. Off the data neither is to be trusted: every member can share the same bias
where the data say nothing. ``benchmarks/bench_derived_selkov.py`` measured it: with data on a
limit cycle only, 4-member intervals (seeds or residual bootstrap) held the true focus in 0 of 3
data sets (the members agreed on a point 17-22 % off); with a transient passing 0.4 data-std
units from it, in 2 of 3. The ``extrapolation`` flag is the signal to read first.

``distance_to_data`` is the median over members of the distance (std units, see
:class:`~sysid.analysis.DataSupport`) from the data to the fixed point, or the largest distance
from the data to the orbit; a quantity farther than ``support_threshold`` is flagged
``extrapolation`` and one :class:`~sysid.analysis.ExtrapolationWarning` names them all.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr
from scipy import optimize

from sysid.errors import ConfigError, DataError, SolverError, SysidError

__all__ = ["derived", "DerivedQuantities", "sample_parameters"]

_COLUMNS = ["kind", "point", "estimate", "median", "low", "high", "n_members", "units",
            "distance_to_data", "extrapolation", "note"]


# --------------------------------------------------------------------------------------------- #
# parameter draws for a reference system
# --------------------------------------------------------------------------------------------- #
def sample_parameters(
    mean: Any,
    covariance: Any = None,
    *,
    distributions: Mapping[str, Any] | None = None,
    n: int = 200,
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Draws of uncertain parameters: multivariate normal from a covariance and/or given distributions.

    Parameters
    ----------
    mean : mapping name -> value, or FitResult
        The centre of the draws. A :class:`~sysid.training.FitResult` gives its fitted parameter
        values and, unless ``covariance`` is given, its covariance (``result.covariance``, from the
        joint refinement) restricted to the parameters.
    covariance : pandas.DataFrame or array, optional
        Covariance of the parameters: a DataFrame indexed (rows and columns) by name, or a square
        array in the order of ``names`` (default: the order of ``mean``). Parameters not in it
        stay at their mean unless ``distributions`` gives them one.
    distributions : mapping name -> distribution, optional
        Independent draws for these parameters from any object with SciPy's
        ``rvs(size=..., random_state=...)`` (e.g. ``scipy.stats.uniform(0.5, 0.2)``); they replace
        the normal draws of those names.
    n : int
        Number of draws.
    seed : int
        Seeds every draw.
    names : sequence of str, optional
        Parameters to draw (default every name of ``mean``).

    Returns
    -------
    pandas.DataFrame
        One row per draw, one column per parameter; ``attrs["center"]`` holds ``mean``.

    Examples
    --------
    >>> s = sample_parameters({"k": 2.0}, [[0.01]], n=4000, seed=1)
    >>> round(float(s["k"].std()), 2)
    0.1
    """
    from sysid.training import FitResult

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"sample_parameters: n must be an integer >= 1; got {n!r}.")
    if isinstance(mean, FitResult):
        params = mean.parameters
        if covariance is None and mean.covariance is not None and not mean.covariance.empty:
            covariance = mean.covariance
        mean = {str(r["name"]): float(r["value"]) for _, r in params.iterrows()}
    if not isinstance(mean, Mapping) or not mean:
        raise ConfigError("sample_parameters: mean must be a non-empty mapping of parameter name to "
                          f"value (or a FitResult); got {type(mean).__name__}.")
    center = {str(k): float(v) for k, v in mean.items()}
    order = list(names) if names is not None else list(center)
    unknown = [k for k in order if k not in center]
    if unknown:
        raise ConfigError(f"sample_parameters: names {unknown} have no mean; the means are for "
                          f"{list(center)}.")
    rng = np.random.default_rng(seed)
    draws = {k: np.full(int(n), center[k]) for k in order}
    if covariance is not None:
        cov_names, cov = _covariance(covariance, order)
        mu = np.array([center[k] for k in cov_names])
        if len(cov_names):
            z = rng.multivariate_normal(mu, cov, size=int(n), method="eigh")
            for j, k in enumerate(cov_names):
                draws[k] = z[:, j]
    for k, dist in (distributions or {}).items():
        if k not in draws:
            raise ConfigError(f"sample_parameters: distributions name {k!r}, which is not among "
                              f"the parameters {order}.")
        if not hasattr(dist, "rvs"):
            raise ConfigError(f"sample_parameters: the distribution of {k!r} has no rvs(); pass a "
                              f"scipy.stats distribution such as scipy.stats.norm(1.0, 0.1).")
        draws[k] = np.asarray(dist.rvs(size=int(n), random_state=rng), float).reshape(int(n))
    out = pd.DataFrame(draws)
    out.index.name = "draw"
    out.attrs["center"] = dict(center)
    return out


def _covariance(cov: Any, order: list[str]) -> tuple[list[str], np.ndarray]:
    """The covariance restricted to the names of ``order`` it has, checked symmetric PSD."""
    if isinstance(cov, pd.DataFrame):
        have = [k for k in order if k in cov.index and k in cov.columns]
        c = cov.loc[have, have].to_numpy(float)
    else:
        c = np.atleast_2d(np.asarray(cov, float))
        if c.shape != (len(order), len(order)):
            raise ConfigError(f"sample_parameters: covariance must be {len(order)} x {len(order)} "
                              f"(the parameters {order}); got shape {c.shape}. Pass a DataFrame "
                              "indexed by name to cover a subset.")
        have = list(order)
    if not np.all(np.isfinite(c)):
        bad = [have[i] for i in np.flatnonzero(~np.isfinite(np.diag(c)) | ~np.isfinite(c).all(1))]
        raise DataError(f"sample_parameters: the covariance is not finite for {bad} (parameters "
                        "the data do not determine); give them distributions= or fix them.")
    if not np.allclose(c, c.T, rtol=1e-8, atol=1e-14 * max(1.0, float(np.abs(c).max()))):
        raise ConfigError("sample_parameters: the covariance is not symmetric.")
    w = np.linalg.eigvalsh(c) if len(c) else np.zeros(0)
    if len(w) and w.min() < -1e-10 * max(1.0, float(w.max())):
        raise ConfigError(f"sample_parameters: the covariance is not positive semi-definite "
                          f"(smallest eigenvalue {w.min():.3g}).")
    return have, c


# --------------------------------------------------------------------------------------------- #
# members
# --------------------------------------------------------------------------------------------- #
def _members(source: Any, model: Any, parameters: Any,
             states: Sequence[str] | None) -> tuple[list[Any], int | None, str, int]:
    """``(dynamics per member, index of the point-estimate member or None, source label, failed)``."""
    from sysid.analysis.dynamics import as_dynamics
    from sysid.estimation import BootstrapResult
    from sysid.parallel import Ensemble, TaskFailure
    from sysid.systems import System

    if isinstance(source, Ensemble):
        fits = list(source.fits)
        dyns = [as_dynamics(f) for f in fits]
        estimate = None
        if source.base is not None and not isinstance(source.base, TaskFailure):
            dyns.insert(0, as_dynamics(source.base))
            estimate = 0
        if not fits:
            raise DataError(f"derived: no member of the ensemble succeeded "
                            f"({len(source.failures)} failed).")
        return dyns, estimate, f"ensemble ({source.kind})", len(source.failures)
    if isinstance(source, BootstrapResult):
        from sysid.estimation import with_parameters

        if model is None:
            raise ConfigError("derived: a BootstrapResult holds parameter values only; pass the fit "
                              "it came from as model= (derived(boot, data, model=result)).")
        base = getattr(model, "model", model)
        names = [c for c in source.samples.columns if c not in ("replicate", "stopped_reason")]
        good = source.samples[names].dropna()
        dyns = [as_dynamics(model)]
        dyns += [as_dynamics(with_parameters(base, dict(row))) for _, row in good.iterrows()]
        return dyns, 0, "parametric bootstrap", int(len(source.samples) - len(good))
    from sysid.models import Model
    from sysid.training import FitResult

    learned = isinstance(source, (Model, FitResult))
    if isinstance(source, (System, str)) or parameters is not None or (callable(source) and not learned):
        if parameters is None:
            return [as_dynamics(source, states=states)], 0, "reference", 0
        if not isinstance(source, (System, str)):
            raise ConfigError(f"derived: parameters= draws apply to a reference System (or its "
                              f"catalogue name); got a {type(source).__name__}. For fitted models "
                              "pass an Ensemble, or a BootstrapResult with model=.")
        if not isinstance(parameters, pd.DataFrame) or parameters.empty:
            raise ConfigError("derived: parameters= must be a non-empty DataFrame of parameter draws "
                              "(one row per draw; see sample_parameters).")
        center = parameters.attrs.get("center")
        dyns = []
        if center:
            dyns.append(as_dynamics(source, states=states,
                                    params={k: center[k] for k in parameters.columns}))
        for _, row in parameters.iterrows():
            dyns.append(as_dynamics(source, states=states,
                                    params={k: float(v) for k, v in row.items()}))
        return dyns, (0 if center else None), "reference with parameter draws", 0
    if isinstance(source, Sequence) and not isinstance(source, str):
        items = [m for m in source if not isinstance(m, TaskFailure)]
        if not items:
            raise DataError("derived: the list of members is empty (or every member failed).")
        return ([as_dynamics(m, states=states) for m in items], None, "members",
                len(source) - len(items))
    return [as_dynamics(source, states=states)], 0, "single model", 0


# --------------------------------------------------------------------------------------------- #
# result
# --------------------------------------------------------------------------------------------- #
@final
@dataclass(frozen=True, kw_only=True)
class DerivedQuantities:
    """What :func:`derived` returns.

    Attributes
    ----------
    table : pandas.DataFrame
        Indexed by ``quantity`` (``"fixed point 0: x"``, ``"fixed point 0: eigenvalue 1 real"``,
        ``"period"``, ``"amplitude x"``, ``"field error at data"``); columns ``kind`` (fixed
        point, eigenvalue, period, amplitude, field error), ``point`` (the fixed point's number;
        -1 for the cycle, -2 for the field error), ``estimate`` (the
        point-estimate member's value: the bootstrap base fit, the reference at the centre of the
        draws; else the median), ``median``, ``low``, ``high`` (the central ``level`` interval over
        members), ``n_members`` (members that have the quantity), ``units``,
        ``distance_to_data``, ``extrapolation`` and ``note`` (the stability class and how many
        members agree).
    members : pandas.DataFrame
        Long table: ``member``, ``quantity``, ``value``, ``distance_to_data``.
    level : float
    source : str
        What the members are ("ensemble (seeds)", "parametric bootstrap", ...).
    n_members : int
        Members analysed (including the point-estimate member).
    n_failed : int
        Members left out: failed fits or replicates, and members whose analysis failed.
    states : tuple of str
    box : numpy.ndarray
        The fixed-point search box ``(S, 2)``.
    """

    table: pd.DataFrame
    members: pd.DataFrame
    level: float
    source: str
    n_members: int
    n_failed: int
    states: tuple[str, ...]
    box: np.ndarray = field(repr=False)

    def fixed_points(self) -> pd.DataFrame:
        """One row per matched fixed point: estimate, low, high of each state, stability, counts."""
        fp = self.table[self.table["kind"] == "fixed point"]
        rows = []
        for k, g in fp.groupby("point", sort=True):
            row: dict[str, Any] = {"point": int(k)}
            for q, r in g.iterrows():
                s = q.split(": ", 1)[1]
                row.update({s: r["estimate"], f"{s}_low": r["low"], f"{s}_high": r["high"]})
            first = g.iloc[0]
            row.update({"n_members": int(first["n_members"]), "stability": first["note"],
                        "distance_to_data": first["distance_to_data"],
                        "extrapolation": bool(first["extrapolation"])})
            rows.append(row)
        return pd.DataFrame(rows)

    def compare(self, reference: DerivedQuantities, *, max_distance: float = 0.25) -> pd.DataFrame:
        """Put a reference's quantities next to these (e.g. the true system, or the reference
        with uncertain parameters).

        Fixed points are paired nearest first (distance between estimates in units of this
        result's box width per state; pairs farther apart than ``max_distance`` stay unpaired)
        and the reference's numbering is mapped onto this one's.

        Returns
        -------
        pandas.DataFrame
            This table's ``estimate, low, high`` with ``reference, reference_low,
            reference_high`` and ``inside`` (the reference's estimate lies in ``[low, high]``) and
            ``overlap`` (the two intervals overlap); NaN / False where the reference lacks it.
        """
        if not isinstance(reference, DerivedQuantities):
            raise ConfigError(f"DerivedQuantities.compare: expected the DerivedQuantities of the "
                              f"reference (derived(system, ...)); got {type(reference).__name__}.")
        if not max_distance > 0:
            raise ConfigError(f"DerivedQuantities.compare: max_distance must be > 0 (box widths); "
                              f"got {max_distance!r}.")
        mapping = _pair_points(self, reference, max_distance)
        ref = reference.table
        rows = []
        for q, r in self.table.iterrows():
            rq = q
            if r["kind"] in ("fixed point", "eigenvalue"):
                other = mapping.get(int(r["point"]))
                rq = None if other is None else f"fixed point {other}: {q.split(': ', 1)[1]}"
            hit = ref.loc[rq] if rq is not None and rq in ref.index else None
            rv = float(hit["estimate"]) if hit is not None else math.nan
            rl = float(hit["low"]) if hit is not None else math.nan
            rh = float(hit["high"]) if hit is not None else math.nan
            rows.append({"quantity": q, "estimate": r["estimate"], "low": r["low"], "high": r["high"],
                         "reference": rv, "reference_low": rl, "reference_high": rh,
                         "inside": bool(r["low"] <= rv <= r["high"]),
                         "overlap": bool(max(r["low"], rl) <= min(r["high"], rh))})
        return pd.DataFrame(rows).set_index("quantity")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able summary (for reports)."""
        from sysid.analysis.tables import jsonable

        return {"source": self.source, "level": self.level, "n_members": self.n_members,
                "n_failed": self.n_failed, "states": list(self.states),
                "table": jsonable(self.table.reset_index())}

    def markdown(self, digits: int = 4) -> str:
        """The table as Markdown."""
        from sysid.analysis.tables import markdown_table

        cols = ["estimate", "low", "high", "n_members", "units", "distance_to_data",
                "extrapolation", "note"]
        return markdown_table(self.table[cols].reset_index(), floatfmt=f".{digits}g", index=False)


def _pair_points(a: DerivedQuantities, b: DerivedQuantities, limit: float) -> dict[int, int]:
    """Fixed points of ``a`` -> of ``b``, nearest pairs first (a minimum-total assignment could
    pair a point with a far one to free a near one for another), none beyond ``limit``."""
    fa, fb = a.fixed_points(), b.fixed_points()
    if fa.empty or fb.empty:
        return {}
    names = list(a.states)
    width = a.box[:, 1] - a.box[:, 0]
    xa = fa[names].to_numpy(float) / width
    xb = fb[names].to_numpy(float) / width
    cost = np.linalg.norm(xa[:, None, :] - xb[None, :, :], axis=-1)
    out: dict[int, int] = {}
    used: set[int] = set()
    for flat in np.argsort(cost, axis=None):
        i, j = np.unravel_index(flat, cost.shape)
        if cost[i, j] > limit:
            break
        pa = int(fa["point"].iloc[i])
        if pa in out or int(j) in used:
            continue
        out[pa] = int(fb["point"].iloc[j])
        used.add(int(j))
    return out


# --------------------------------------------------------------------------------------------- #
# per member
# --------------------------------------------------------------------------------------------- #
def _analyse(dyn: Any, data: xr.Dataset | None, fp_opts: dict[str, Any], cycle: dict[str, Any] | None,
             ) -> tuple[pd.DataFrame | None, Any]:
    """Fixed points and limit cycle of one member (None where the analysis failed)."""
    from sysid.analysis.cycles import find_limit_cycle
    from sysid.analysis.fixed_points import find_fixed_points

    failures = (SolverError, FloatingPointError, np.linalg.LinAlgError, ValueError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning for all members, from derived()
        try:
            fps = find_fixed_points(dyn, data=data, **fp_opts)
        except failures as exc:  # the member's numbers fail; a user's mistake is raised
            if isinstance(exc, SysidError) and not isinstance(exc, SolverError):
                raise
            fps = None
        lc = None
        if cycle is not None:
            try:
                lc = find_limit_cycle(dyn, data=data, **cycle)
                if not lc.found and lc.reason.startswith("not periodic"):
                    # a learned cycle often attracts slowly: give the transient three times longer
                    lc = find_limit_cycle(dyn, data=data, **{**cycle, "t_end": 3 * cycle["t_end"],
                                                             "transient": 5 / 6})
            except failures as exc:
                if isinstance(exc, SysidError) and not isinstance(exc, SolverError):
                    raise
                lc = None
    return fps, lc


def _cluster(found: list[pd.DataFrame | None], states: list[str], width: np.ndarray,
             match: float, order: list[int]) -> list[list[tuple[int, int]]]:
    """Clusters of ``(member, row)`` pairs: each member's fixed points paired with the clusters."""
    centres: list[np.ndarray] = []
    clusters: list[list[tuple[int, int]]] = []
    for m in order:
        fps = found[m]
        if fps is None or fps.empty:
            continue
        x = fps[states].to_numpy(float) / width
        taken = set()
        if centres:
            c = np.asarray(centres)
            cost = np.linalg.norm(x[:, None, :] - c[None, :, :], axis=-1)
            for i, j in zip(*optimize.linear_sum_assignment(cost)):
                if cost[i, j] <= match:
                    clusters[j].append((m, int(i)))
                    taken.add(int(i))
        for i in range(len(x)):
            if i not in taken:
                centres.append(x[i])
                clusters.append([(m, i)])
    clusters.sort(key=lambda cl: -len(cl))
    return clusters


def _summary(values: list[float], estimate: float | None, level: float) -> dict[str, float]:
    v = np.asarray([x for x in values if math.isfinite(x)], float)
    if not v.size:
        return {"estimate": math.nan, "median": math.nan, "low": math.nan, "high": math.nan}
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    med = float(np.median(v))
    est = med if estimate is None or not math.isfinite(estimate) else float(estimate)
    return {"estimate": est, "median": med, "low": float(lo), "high": float(hi)}


def _rows_for_points(found: list[pd.DataFrame | None], clusters: list[list[tuple[int, int]]],
                     states: list[str], units: dict[str, str], time_units: str, est: int | None,
                     level: float, threshold: float, long: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows of the matched fixed points: coordinates, eigenvalues (real, imaginary parts)."""
    rows = []
    for k, cl in enumerate(clusters):
        dist = [float(found[m]["distance_to_data"].iloc[i]) for m, i in cl]
        d = float(np.nanmedian(dist)) if np.isfinite(dist).any() else math.nan
        flag = bool(math.isfinite(d) and d > threshold)
        classes = Counter(str(found[m]["stability"].iloc[i]) for m, i in cl)
        top, count = classes.most_common(1)[0]
        note = f"{top} in {count} of {len(cl)}"
        est_i = next((i for m, i in cl if m == est), None)
        quantities: list[tuple[str, str, str, list[float], float | None]] = []
        for s in states:
            vals = [float(found[m][s].iloc[i]) for m, i in cl]
            e = float(found[est][s].iloc[est_i]) if est_i is not None else None
            quantities.append((f"fixed point {k}: {s}", "fixed point", units.get(s, ""), vals, e))
        lams = [np.asarray(found[m]["eigenvalues"].iloc[i], complex) for m, i in cl]
        e_lam = np.asarray(found[est]["eigenvalues"].iloc[est_i], complex) if est_i is not None else None
        rate = f"1/{time_units}" if time_units else ""
        for j in range(len(states)):
            re = [float(lam[j].real) for lam in lams]
            im = [float(lam[j].imag) for lam in lams]
            quantities.append((f"fixed point {k}: eigenvalue {j + 1} real", "eigenvalue", rate, re,
                               None if e_lam is None else float(e_lam[j].real)))
            if any(abs(v) > 0 for v in im):
                quantities.append((f"fixed point {k}: eigenvalue {j + 1} imag", "eigenvalue", rate, im,
                                   None if e_lam is None else float(e_lam[j].imag)))
        for q, kind, unit, vals, e in quantities:
            rows.append({"quantity": q, "kind": kind, "point": k, **_summary(vals, e, level),
                         "n_members": len(cl), "units": unit, "distance_to_data": d,
                         "extrapolation": flag, "note": note})
            long += [{"member": m, "quantity": q, "value": v, "distance_to_data": dm}
                     for (m, _), v, dm in zip(cl, vals, dist)]
    return rows


def _rows_for_cycle(cycles: list[Any], states: list[str], units: dict[str, str], time_units: str,
                    est: int | None, level: float, threshold: float,
                    long: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [(m, c) for m, c in enumerate(cycles) if c is not None and c.found]
    if not found:
        return []
    dist = [float(c.distance_to_data) for _, c in found]
    d = float(np.nanmedian(dist)) if np.isfinite(dist).any() else math.nan
    flag = bool(math.isfinite(d) and d > threshold)
    note = f"periodic orbit in {len(found)} of {len(cycles)}"
    e = cycles[est] if est is not None and cycles[est] is not None and cycles[est].found else None
    rows = []
    items = [("period", "period", time_units, lambda c: float(c.period))]
    items += [(f"amplitude {s}", "amplitude", units.get(s, ""), lambda c, s=s: float(c.amplitude[s]))
              for s in states]
    for q, kind, unit, get in items:
        vals = [get(c) for _, c in found]
        rows.append({"quantity": q, "kind": kind, "point": -1,
                     **_summary(vals, None if e is None else get(e), level),
                     "n_members": len(found), "units": unit, "distance_to_data": d,
                     "extrapolation": flag, "note": note})
        long += [{"member": m, "quantity": q, "value": v, "distance_to_data": dm}
                 for (m, _), v, dm in zip(found, vals, dist)]
    return rows


def _rows_for_field(dyns: list[Any], reference: Any, data: xr.Dataset | None, states: list[str],
                    box: np.ndarray, est: int | None, level: float, threshold: float,
                    long: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of each member's normalised field error against ``reference``: at the data, on the grid
    inside the support and outside it."""
    from sysid.analysis.dynamics import as_dynamics
    from sysid.analysis.fields import field_error

    if data is None:
        raise ConfigError("derived: reference= compares vector fields on the data's support; pass "
                          "data.")
    if len(states) < 2:
        raise ConfigError("derived: reference= needs two or more states (the field is compared on "
                          "a grid of two of them).")
    ref = as_dynamics(reference, states=states)
    bounds = {s: (float(lo), float(hi)) for s, (lo, hi) in zip(states[:2], box[:2])}
    values: dict[str, list[tuple[int, float]]] = {"at_data": [], "inside_support": [],
                                                   "outside_support": []}
    for m, d in enumerate(dyns):
        try:
            summary = field_error(d, ref, data, bounds=bounds, threshold=threshold).summary
        except (SolverError, FloatingPointError):
            continue
        for key in values:
            values[key].append((m, float(summary[key])))
    rows = []
    for key, label in (("at_data", "field error at data"),
                       ("inside_support", "field error inside support"),
                       ("outside_support", "field error outside support")):
        got = values[key]
        e = next((v for m, v in got if m == est), None)
        outside = key == "outside_support"
        rows.append({"quantity": label, "kind": "field error", "point": -2,
                     **_summary([v for _, v in got], e, level), "n_members": len(got), "units": "1",
                     "distance_to_data": math.nan, "extrapolation": outside,
                     "note": "RMS of the field difference / RMS of the reference field (std units)"})
        long += [{"member": m, "quantity": label, "value": v, "distance_to_data": math.nan}
                 for m, v in got]
    return rows


def _first_sample(data: xr.Dataset, states: Sequence[str]) -> np.ndarray:
    x = np.stack([np.asarray(data[s].values, float).reshape(-1, data[s].shape[-1]) for s in states],
                 axis=-1)  # (R, N, S)
    ok = np.all(np.isfinite(x[0]), axis=1)
    if not ok.any():
        raise DataError(f"derived: the first run of the data has no sample with every state "
                        f"{list(states)} finite to start the limit cycle from; pass y0=.")
    return x[0][np.argmax(ok)]


# --------------------------------------------------------------------------------------------- #
# the verb
# --------------------------------------------------------------------------------------------- #
def derived(
    source: Any,
    data: xr.Dataset | None = None,
    *,
    model: Any = None,
    parameters: pd.DataFrame | None = None,
    states: Sequence[str] | None = None,
    y0: Mapping[str, float] | Sequence[float] | None = None,
    t_end: float | None = None,
    cycle: bool | None = None,
    level: float = 0.9,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    margin: float = 0.25,
    n_seeds: int = 32,
    match: float = 0.1,
    support_threshold: float = 0.25,
    settings: Any = None,
    seed: int = 0,
    warn: bool = True,
    reference: Any = None,
) -> DerivedQuantities:
    """Fixed points, eigenvalues, limit-cycle period and amplitude across members, with intervals.

    Parameters
    ----------
    source : Ensemble, BootstrapResult, System, sequence of fits/models/dynamics, or one model
        The members (see the module docstring).
    data : xarray.Dataset, optional
        The training data: the support for ``distance_to_data``, the fixed-point search box (its
        range widened by ``margin``) and the limit cycle's default start and horizon.
    model : FitResult, optional
        With a BootstrapResult: the fit it came from.
    parameters : pandas.DataFrame, optional
        With a System (or other dynamics taking parameters): one row per draw
        (:func:`sample_parameters`); ``attrs["center"]`` makes the point-estimate member.
    states : sequence of str, optional
        Names for a System's states (the data's names, in the system's order).
    y0 : mapping or sequence, optional
        Start of the limit-cycle search (default: the data's first sample).
    t_end : float, optional
        Its horizon (default: four times the data's longest run, the second half measured; when
        the orbit is not yet periodic there, the search runs again three times as long, the last
        sixth measured).
    cycle : bool, optional
        Whether to look for a limit cycle (default: when ``y0`` or ``data`` is given).
    level : float
        Central interval level over members.
    bounds, margin, n_seeds : optional
        The fixed-point search (see :func:`~sysid.analysis.find_fixed_points`).
    match : float
        Largest distance (box widths) between a member's fixed point and a cluster's first point
        for them to be the same fixed point.
    support_threshold : float
        Std units beyond which a quantity is an extrapolation.
    settings : SolverConfig, optional
        SciPy integration of the limit-cycle search (default RK45 with rtol 1e-6, atol 1e-9:
        ample for periodicity judged to 1e-3).
    seed : int
        Seeds the fixed-point search.
    warn : bool
        Emit the :class:`~sysid.analysis.ExtrapolationWarning` (learned members only: a reference
        system's fixed point off the data is flagged in the table, not warned about).
    reference : System, catalogue name or callable, optional
        With ``data`` (two or more states): each member's vector-field difference from this
        reference (:func:`~sysid.analysis.field_error`, normalised RMS error) at the data's
        samples, on the grid inside the data's support and outside it, as three more rows
        (kind ``"field error"``; the one outside the support is flagged ``extrapolation``).

    Returns
    -------
    DerivedQuantities

    Warns
    -----
    ExtrapolationWarning
        When a fixed point or the orbit lies outside the data's support (median over members).
    """
    if not 0 < level < 1:
        raise ConfigError(f"derived: level must lie in (0, 1); got {level!r}.")
    if not match > 0:
        raise ConfigError(f"derived: match must be > 0 (box widths); got {match!r}.")
    dyns, est, label, failed = _members(source, model, parameters, states)
    from sysid.analysis.fixed_points import state_box

    first = dyns[0]
    names = list(first.states)
    if data is not None:
        missing = [s for s in names if s not in data.data_vars]
        if missing:
            raise DataError(f"derived: the data has no variables {missing} for the states "
                            f"{names}; it has {list(data.data_vars)}.")
    box = state_box(names, bounds=bounds, data=data, margin=margin)
    full_bounds = {s: (float(lo), float(hi)) for s, (lo, hi) in zip(names, box)}
    fp_opts = {"bounds": full_bounds, "n_seeds": n_seeds, "seed": seed,
               "support_threshold": support_threshold}
    cyc: dict[str, Any] | None = None
    if cycle is None:
        cycle = y0 is not None or data is not None
    if cycle:
        if y0 is None and data is None:
            raise ConfigError("derived: cycle=True needs y0= (or data, whose first sample is used).")
        start = y0 if y0 is not None else _first_sample(data, names)
        if t_end is None:
            if data is None:
                raise ConfigError("derived: the limit-cycle search needs t_end= without data.")
            t = np.asarray(data["time"].values, float)
            span = float(np.nanmax(np.nanmax(t, axis=-1) - np.nanmin(t, axis=-1)))
            t_end = 4.0 * span
        if settings is None:
            from sysid.solvers import SolverConfig

            settings = SolverConfig(method="RK45", rtol=1e-6, atol=1e-9)
        cyc = {"y0": start, "t_end": float(t_end), "settings": settings,
               "support_threshold": support_threshold}
    found, cycles = [], []
    for d in dyns:
        fps, lc = _analyse(d, data, fp_opts, cyc)
        found.append(fps)
        cycles.append(lc)
    failed += sum(f is None for f in found)
    order = ([est] if est is not None else []) + [i for i in range(len(dyns)) if i != est]
    width = box[:, 1] - box[:, 0]
    clusters = _cluster(found, names, width, match, order)
    units = dict(zip(names, first.state_units)) if first.state_units else {}
    long: list[dict[str, Any]] = []
    rows = _rows_for_points(found, clusters, names, units, first.time_units, est, level,
                            support_threshold, long)
    if cyc is not None:
        rows += _rows_for_cycle(cycles, names, units, first.time_units, est, level,
                                support_threshold, long)
    if reference is not None:
        rows += _rows_for_field(dyns, reference, data, names, box, est, level, support_threshold,
                                long)
    table = pd.DataFrame(rows, columns=["quantity", *_COLUMNS]).set_index("quantity")
    members = pd.DataFrame(long, columns=["member", "quantity", "value", "distance_to_data"])
    out = DerivedQuantities(table=table, members=members, level=float(level), source=label,
                            n_members=len(dyns), n_failed=int(failed), states=tuple(names), box=box)
    if warn and data is not None and not label.startswith("reference"):
        _warn(out, support_threshold)
    return out


def _warn(out: DerivedQuantities, threshold: float) -> None:
    from sysid.analysis.fields import ExtrapolationWarning

    flagged = out.table[out.table["extrapolation"] & out.table["kind"].isin(["fixed point", "period"])]
    if flagged.empty:
        return
    parts = []
    for k, g in flagged.groupby("point", sort=True):
        d = float(g["distance_to_data"].iloc[0])
        if k >= 0:
            where = ", ".join(f"{q.split(': ', 1)[1]}={r['estimate']:.4g} [{r['low']:.4g}, "
                              f"{r['high']:.4g}]" for q, r in g.iterrows())
            parts.append(f"fixed point {k} ({where}) lies {d:.2f} std from the nearest sample")
        else:
            parts.append(f"the limit cycle reaches {d:.2f} std from the nearest sample")
    warnings.warn(ExtrapolationWarning(
        f"derived ({out.source}, {out.n_members} member{'s' if out.n_members != 1 else ''}): " + "; ".join(parts)
        + f" (median over members; support threshold {threshold:g} std): the learned field there "
        "is an extrapolation - its intervals show how the members disagree, not what the data "
        "determine."), stacklevel=3)
