"""Fixed points, linearisation and stability of any dynamics, and matching to a reference.

Fixed points are found with :func:`scipy.optimize.root` (Powell's hybrid method with a
central-difference Jacobian) from many seeds drawn uniformly in a box, kept when the field's norm
at the root is small and the root lies in the box, and deduplicated by distance in box-scaled units.
Each gets the Jacobian's eigenvalues and a stability class:

- 2-D systems: ``stable node``, ``unstable node``, ``stable focus``, ``unstable focus``, ``saddle``,
  ``centre`` (purely imaginary pair) or ``non-hyperbolic`` (a zero eigenvalue);
- other dimensions: ``stable``, ``unstable``, ``saddle``, ``centre`` or ``non-hyperbolic``, with an
  ``oscillatory`` flag when some eigenvalues are complex.

A real part counts as zero when ``|Re λ| <= tol * max(1, max|λ|)``.
"""

from __future__ import annotations

import warnings

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr
from scipy import optimize

from sysid.analysis.dynamics import Dynamics, as_dynamics
from sysid.errors import ConfigError, DataError


def classify(eigenvalues: Sequence[complex], *, tol: float = 1e-6) -> tuple[str, bool]:
    """Stability class and oscillatory flag from Jacobian eigenvalues (see the module docstring).

    Examples
    --------
    >>> classify([-1.0 + 2.0j, -1.0 - 2.0j])
    ('stable focus', True)
    >>> classify([1.0, -3.0])
    ('saddle', False)
    """
    lam = np.asarray(eigenvalues, dtype=complex).ravel()
    if lam.size == 0:
        raise ConfigError("classify: no eigenvalues given.")
    scale = max(1.0, float(np.max(np.abs(lam))))
    re, im = lam.real, lam.imag
    zero_re = np.abs(re) <= tol * scale
    osc = bool(np.any(np.abs(im) > tol * scale))
    pos, neg = bool(np.any(re[~zero_re] > 0)), bool(np.any(re[~zero_re] < 0))
    if pos and neg:
        return "saddle", osc
    if np.any(zero_re):
        if np.all(np.abs(im[zero_re]) > tol * scale) and not (pos or neg):
            return "centre", osc
        return "non-hyperbolic", osc
    sign = "stable" if neg else "unstable"
    if lam.size == 2:
        return f"{sign} {'focus' if osc else 'node'}", osc
    return sign, osc


@final
@dataclass(frozen=True, kw_only=True)
class Linearisation:
    """The linearisation ``d(δx)/dt = J δx`` of dynamics at one point.

    Attributes
    ----------
    point : pandas.Series
        The state at which the field was linearised (index: state names).
    field : pandas.Series
        The field's value there (zero at a fixed point).
    jacobian : pandas.DataFrame
        ``J[i, j] = ∂f_i/∂x_j`` (index and columns: state names).
    eigenvalues : numpy.ndarray
        Complex eigenvalues, sorted by decreasing real part.
    eigenvectors : numpy.ndarray
        Matching eigenvectors as columns.
    stability : str
        Class from :func:`classify`.
    oscillatory : bool
        Whether some eigenvalues have a non-zero imaginary part.
    """

    point: pd.Series
    field: pd.Series
    jacobian: pd.DataFrame
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    stability: str
    oscillatory: bool


def linearise(
    model: Any,
    point: Mapping[str, float] | Sequence[float],
    *,
    t: float = 0.0,
    u: Mapping[str, float] | Sequence[float] | None = None,
    tol: float = 1e-6,
    states: Sequence[str] | None = None,
    params: Mapping[str, float] | None = None,
) -> Linearisation:
    """Jacobian, eigenvalues and stability of ``model`` at ``point`` (any point, not only fixed ones).

    Examples
    --------
    >>> lin = linearise(lambda t, y: [-y[0] + y[1], -2 * y[1]], [0.0, 0.0], states=["a", "b"])
    >>> np.round(lin.eigenvalues.real, 6).tolist()
    [-1.0, -2.0]
    """
    dyn = as_dynamics(model, states=states, params=params)
    x = dyn.point(point)
    uc = dyn.constant_inputs(u)
    jac = dyn.jacobian(x, t=t, u=uc)
    lam, vec = np.linalg.eig(jac)
    order = np.lexsort((-lam.imag, -lam.real))
    lam, vec = lam[order], vec[:, order]
    stability, osc = classify(lam, tol=tol)
    names = list(dyn.states)
    return Linearisation(
        point=pd.Series(x, index=names, name="state"),
        field=pd.Series(dyn(t, x, uc), index=names, name="dxdt"),
        jacobian=pd.DataFrame(jac, index=names, columns=names),
        eigenvalues=lam.astype(complex),
        eigenvectors=vec,
        stability=stability,
        oscillatory=osc,
    )


def state_box(
    names: Sequence[str],
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    data: xr.Dataset | None = None,
    margin: float = 0.25,
) -> np.ndarray:
    """A search box ``(S, 2)``: from ``bounds`` per state, else the data's range widened by ``margin``."""
    box = np.empty((len(names), 2))
    for i, n in enumerate(names):
        if bounds is not None and n in bounds:
            lo, hi = (float(v) for v in bounds[n])
        elif data is not None and n in data.data_vars:
            v = data[n].values
            v = v[np.isfinite(v)]
            if v.size == 0:
                raise DataError(f"state {n!r} has no finite values in the data to size the search box.")
            lo, hi = float(v.min()), float(v.max())
            w = (hi - lo) or max(1.0, abs(hi))
            lo, hi = lo - margin * w, hi + margin * w
        else:
            raise ConfigError(
                f"no range for state {n!r}: pass bounds={{{n!r}: (low, high)}} or data containing it."
            )
        if not hi > lo:
            raise ConfigError(f"bounds for state {n!r} must have high > low; got ({lo}, {hi}).")
        box[i] = lo, hi
    return box


def find_fixed_points(
    model: Any,
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    data: xr.Dataset | None = None,
    margin: float = 0.25,
    n_seeds: int = 64,
    seed: int = 0,
    t: float = 0.0,
    u: Mapping[str, float] | Sequence[float] | None = None,
    residual_tol: float = 1e-8,
    dedup: float = 1e-4,
    tol: float = 1e-6,
    states: Sequence[str] | None = None,
    params: Mapping[str, float] | None = None,
    starts: np.ndarray | None = None,
    support_threshold: float = 0.25,
) -> pd.DataFrame:
    """Fixed points of ``model`` in a box, with eigenvalues and stability.

    Parameters
    ----------
    model : Model, FitResult, System, Dynamics or callable
        The dynamics (see :func:`sysid.analysis.as_dynamics`).
    bounds : mapping state -> (low, high), optional
        The search box; states not given take the data's range widened by ``margin`` each side.
    data : xarray.Dataset, optional
        Trajectories whose range sizes the box.
    n_seeds : int
        Starting points drawn uniformly in the box (seeded by ``seed``).
    t, u : optional
        Time and constant input values at which the field is evaluated.
    residual_tol : float
        A root is kept when ``‖f(x*)‖ <= residual_tol * max(1, median ‖f‖ over the seeds)``.
    dedup : float
        Roots closer than this, in units of the box width per state, are the same fixed point.
    tol : float
        Zero tolerance of eigenvalue real parts (see :func:`classify`).
    starts : array (K, S), optional
        Starting points tried before the random seeds (e.g. another field's fixed points).
    support_threshold : float
        With ``data``: a fixed point farther than this from every sample (std units, see
        :class:`~sysid.analysis.fields.DataSupport`) is outside the data's support.

    Returns
    -------
    pandas.DataFrame
        One row per isolated fixed point: one column per state, ``residual`` (‖f‖ there),
        ``stability``, ``oscillatory``, ``max_real`` (largest eigenvalue real part) and
        ``eigenvalues`` (a complex array per row); ordered by the state coordinates. Empty (same
        columns) when none is found. Roots on a continuum of equilibria (e.g. the ``I = 0`` plane
        of an SIR model) are not rows: ``attrs["non_isolated"]`` lists those found.
        ``distance_to_data``: distance in data-std units to the nearest sample of ``data`` (NaN
        without data, or when the data lacks a state).

    Warns
    -----
    ExtrapolationWarning
        When ``data`` is given and a fixed point lies outside its support: a learned field says
        little there, so the point's position and eigenvalues are extrapolations.
    """
    dyn = as_dynamics(model, states=states, params=params)
    if n_seeds < 1:
        raise ConfigError(f"n_seeds must be >= 1; got {n_seeds}.")
    box = state_box(dyn.states, bounds=bounds, data=data, margin=margin)
    uc = dyn.constant_inputs(u)
    width = box[:, 1] - box[:, 0]
    rng = np.random.default_rng(seed)
    seeds = box[:, 0] + rng.random((n_seeds, dyn.n_states)) * width
    if starts is not None:
        seeds = np.concatenate([np.asarray(starts, float).reshape(-1, dyn.n_states), seeds])
    f_scale = max(1.0, float(np.median(np.linalg.norm(dyn(t, seeds, uc), axis=1))))
    roots: list[np.ndarray] = []
    for x0 in seeds:
        try:
            sol = optimize.root(
                lambda x: dyn(t, x, uc), x0, jac=lambda x: dyn.jacobian(x, t=t, u=uc), method="hybr"
            )
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        x = sol.x
        if not np.all(np.isfinite(x)):
            continue
        res = float(np.linalg.norm(dyn(t, x, uc)))
        if res > residual_tol * f_scale:
            continue
        if np.any(x < box[:, 0] - 1e-9 * width) or np.any(x > box[:, 1] + 1e-9 * width):
            continue
        if any(np.max(np.abs(x - r) / width) < dedup for r in roots):
            continue
        roots.append(x)
    rows = []
    continuum: list[list[float]] = []
    for x in sorted(roots, key=lambda r: tuple(r)):
        lin = linearise(dyn, x, t=t, u=uc, tol=tol)
        if not _isolated(dyn, x, lin, width, t, uc, residual_tol * f_scale, tol):
            continuum.append([float(v) for v in x])
            continue
        rows.append(
            {
                **{n: float(v) for n, v in zip(dyn.states, x)},
                "residual": float(np.linalg.norm(lin.field.values)),
                "stability": lin.stability,
                "oscillatory": lin.oscillatory,
                "max_real": float(lin.eigenvalues.real.max()),
                "eigenvalues": lin.eigenvalues,
            }
        )
    cols = [*dyn.states, "residual", "stability", "oscillatory", "max_real", "eigenvalues",
            "distance_to_data"]
    out = pd.DataFrame(rows, columns=cols)
    out["distance_to_data"] = distance_to_data(dyn, out[list(dyn.states)].to_numpy(float), data,
                                                support_threshold, "fixed point")
    out.index.name = "fixed_point"
    out.attrs = {"states": list(dyn.states), "box": box.tolist(), "name": dyn.name,
                 "non_isolated": continuum}
    return out


def distance_to_data(dyn: Dynamics, x: np.ndarray, data: xr.Dataset | None, threshold: float,
                      what: str) -> np.ndarray:
    """Distance (std units) of each point ``x (M, S)`` to the data's support (NaN without data);
    an :class:`~sysid.analysis.ExtrapolationWarning` names those farther than ``threshold``
    (fixed points, orbit points: ``what``)."""
    if data is None or not len(x) or any(s not in data.data_vars for s in dyn.states):
        return np.full(len(x), np.nan)
    from sysid.analysis.fields import DataSupport, ExtrapolationWarning

    support = DataSupport.from_data(data, states=dyn.states, threshold=threshold)
    dist = support.distance(x)
    out = np.flatnonzero(dist > threshold)
    if out.size:
        where = "; ".join(", ".join(f"{n}={v:.4g}" for n, v in zip(dyn.states, x[i]))
                          + f" ({dist[i]:.2f} std)" for i in out[:3])
        warnings.warn(ExtrapolationWarning(
            f"{dyn.name}: {out.size} {what}(s) lie outside the data's support (farther than "
            f"{threshold:g} data-std units from every sample): {where}; the field there is an "
            "extrapolation - treat the location and stability with caution."), stacklevel=3)
    return dist


def _isolated(dyn: Dynamics, x: np.ndarray, lin: Linearisation, width: np.ndarray, t: float,
              uc: np.ndarray | None, f_tol: float, tol: float) -> bool:
    """False when ``x`` lies on a continuum of equilibria (a line or plane of fixed points).

    Only roots with a (near-)zero eigenvalue can; step 0.1 % of the box along each such
    eigenvector: on a continuum the field stays zero there, at an isolated degenerate point it
    grows (at least quadratically, far above ``f_tol``).
    """
    lam = lin.eigenvalues
    scale = max(1.0, float(np.max(np.abs(lam))))
    for k in np.flatnonzero(np.abs(lam) <= tol * scale):
        v = np.real(lin.eigenvectors[:, k])
        size = np.linalg.norm(v / width)
        if size == 0:
            continue
        step = 1e-3 * v / size
        if all(np.linalg.norm(dyn(t, x + sgn * step, uc)) <= f_tol for sgn in (1.0, -1.0)):
            return False
    return True


def _eig_error(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |λ_a - λ_b| after pairing eigenvalues by minimum total distance."""
    a, b = np.asarray(a, complex), np.asarray(b, complex)
    cost = np.abs(a[:, None] - b[None, :])
    ia, ib = optimize.linear_sum_assignment(cost)
    return float(cost[ia, ib].max())


def match_fixed_points(
    learned: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    scale: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Pair learned and reference fixed points (Hungarian matching on scaled distance).

    Parameters
    ----------
    learned, reference : pandas.DataFrame
        Outputs of :func:`find_fixed_points` over the same states.
    scale : mapping state -> float, optional
        Units in which distances are measured (default: the reference box width per state, else 1).

    Returns
    -------
    pandas.DataFrame
        One row per reference fixed point and per unmatched learned one: ``<state>_reference``,
        ``<state>_learned``, ``distance`` (scaled Euclidean), ``eigenvalue_error`` (largest
        difference of paired eigenvalues), ``stability_reference``, ``stability_learned``,
        ``same_stability``, and ``status`` in {"matched", "missing in learned", "extra in learned"}.
    """
    names = list(reference.attrs.get("states") or [c for c in reference.columns if c not in _NON_STATE])
    missing = [n for n in names if n not in learned.columns]
    if missing:
        raise DataError(f"match_fixed_points: learned fixed points have no columns {missing}.")
    if scale is None:
        box = np.asarray(reference.attrs.get("box", [[0.0, 1.0]] * len(names)), float)
        sc = box[:, 1] - box[:, 0]
    else:
        sc = np.array([float(scale.get(n, 1.0)) for n in names])
    xl = learned[names].to_numpy(float).reshape(-1, len(names))
    xr_ = reference[names].to_numpy(float).reshape(-1, len(names))
    rows = []
    pairs: list[tuple[int, int]] = []
    if len(xl) and len(xr_):
        cost = np.linalg.norm((xr_[:, None, :] - xl[None, :, :]) / sc, axis=-1)
        pairs = list(zip(*optimize.linear_sum_assignment(cost)))
    matched_r = {i for i, _ in pairs}
    matched_l = {j for _, j in pairs}
    for i, j in pairs:
        rr, ll = reference.iloc[i], learned.iloc[j]
        rows.append(
            {
                **{f"{n}_reference": rr[n] for n in names},
                **{f"{n}_learned": ll[n] for n in names},
                "distance": float(np.linalg.norm((xr_[i] - xl[j]) / sc)),
                "eigenvalue_error": _eig_error(ll["eigenvalues"], rr["eigenvalues"]),
                "stability_reference": rr["stability"],
                "stability_learned": ll["stability"],
                "same_stability": rr["stability"] == ll["stability"],
                "status": "matched",
            }
        )
    for i in sorted(set(range(len(xr_))) - matched_r):
        rr = reference.iloc[i]
        rows.append({**{f"{n}_reference": rr[n] for n in names}, "stability_reference": rr["stability"],
                     "status": "missing in learned"})
    for j in sorted(set(range(len(xl))) - matched_l):
        ll = learned.iloc[j]
        rows.append({**{f"{n}_learned": ll[n] for n in names}, "stability_learned": ll["stability"],
                     "status": "extra in learned"})
    cols = [*(f"{n}_reference" for n in names), *(f"{n}_learned" for n in names), "distance",
            "eigenvalue_error", "stability_reference", "stability_learned", "same_stability", "status"]
    out = pd.DataFrame(rows, columns=cols)
    out.attrs = {"non_isolated_reference": len(reference.attrs.get("non_isolated", [])),
                 "non_isolated_learned": len(learned.attrs.get("non_isolated", []))}
    return out


_NON_STATE = {"residual", "stability", "oscillatory", "max_real", "eigenvalues"}


def compare_fixed_points(
    learned: Any,
    reference: Any,
    *,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    data: xr.Dataset | None = None,
    margin: float = 0.25,
    n_seeds: int = 64,
    seed: int = 0,
    t: float = 0.0,
    u: Mapping[str, float] | Sequence[float] | None = None,
    params: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Find the fixed points of both in the same box and match them (:func:`match_fixed_points`).

    A fixed point of one field inside the box whose counterpart in the other field lies outside it
    (a learned logistic's carrying capacity K = 258 beyond data that end at 114, say) is followed:
    the other field's nearest root outside the box is searched in boxes up to 8 times as wide,
    so the table pairs the two rather than calling one "missing". Distances are still measured in
    units of the original box.

    ``params`` overrides the reference system's parameter values; the other options are those of
    :func:`find_fixed_points`.
    """
    ref = as_dynamics(reference, params=params)
    lrn = as_dynamics(learned, states=ref.states)
    box = state_box(ref.states, bounds=bounds, data=data, margin=margin)
    bnds = {n: (lo, hi) for n, (lo, hi) in zip(ref.states, box)}
    opts = {"n_seeds": n_seeds, "seed": seed, "t": t, "u": u}
    fr = find_fixed_points(ref, bounds=bnds, **opts)
    fl = find_fixed_points(lrn, bounds=bnds, **opts)
    fl_more = _follow_outside(lrn, fl, fr, box, opts)
    fr_more = _follow_outside(ref, fr, fl, box, opts)
    width = box[:, 1] - box[:, 0]
    return match_fixed_points(fl_more, fr_more, scale=dict(zip(ref.states, width)))


def _follow_outside(dyn: Dynamics, own: pd.DataFrame, other: pd.DataFrame, box: np.ndarray,
                    opts: dict[str, Any]) -> pd.DataFrame:
    """``own`` plus, for each fixed point of ``other`` with no counterpart in ``own`` (only when
    ``own`` has fewer points), the nearest root of ``dyn`` outside ``box``: searched in boxes
    2, 4 and 8 times as wide about the same centre (Newton from the other field's point alone can
    run to a different root, e.g. to 0 from below K/2 for a logistic), stopping at the first that
    holds one."""
    names = list(dyn.states)
    if len(own) >= len(other) or not len(other):
        return own
    width = box[:, 1] - box[:, 0]
    centre = box.mean(axis=1)
    have = own[names].to_numpy(float).reshape(-1, len(names))
    lonely = [x for x in other[names].to_numpy(float)
              if not len(have) or np.min(np.max(np.abs(have - x) / width, axis=1)) >= 0.05]
    if not lonely:
        return own
    for factor in (2.0, 4.0, 8.0):
        lo, hi = centre - factor * width / 2, centre + factor * width / 2
        wide = find_fixed_points(dyn, bounds=dict(zip(names, zip(lo, hi))), starts=np.asarray(lonely),
                                 **opts)
        xs = wide[names].to_numpy(float).reshape(-1, len(names))
        outside = np.flatnonzero(np.any((xs < box[:, 0]) | (xs > box[:, 1]), axis=1))
        if outside.size:
            picked = sorted({int(outside[np.argmin(np.linalg.norm((xs[outside] - x) / width, axis=1))])
                             for x in lonely})
            out = pd.concat([own, wide.iloc[picked]], ignore_index=True)
            out.index.name = own.index.name
            out.attrs = {**own.attrs, "outside_box": [list(map(float, xs[i])) for i in picked]}
            return out
    return own


__all__ = [
    "Linearisation",
    "classify",
    "linearise",
    "state_box",
    "distance_to_data",
    "find_fixed_points",
    "match_fixed_points",
    "compare_fixed_points",
]
