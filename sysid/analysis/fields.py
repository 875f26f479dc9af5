"""Vector-field comparison on a grid and on the data's support, and extrapolation warnings.

A learned field is only meaningful where there was data. :class:`DataSupport` measures that: every
state is scaled by its mean and standard deviation over the training data ("std units"), and the
distance of a point to the support is its Euclidean distance, in std units, to the nearest training
sample (a k-d tree). A point is *inside* the support when that distance is at most ``threshold``
(default 0.25 std units). Support weights are a Gaussian kernel density of the training samples
with bandwidth ``threshold``, scaled to a maximum of 1.

Field errors are measured in scaled units too: component ``i`` of ``f_learned - f_reference`` is
divided by state ``i``'s std, and the *normalised error* at a point is the norm of that vector
divided by the root-mean-square of the scaled reference field over the training samples (one number
for the whole field, so the error does not blow up near fixed points where ``f`` is small).

:func:`check_support` warns with :class:`ExtrapolationWarning` (the largest distance, the run and
the first time outside) when simulated trajectories leave the support.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr
from scipy.spatial import cKDTree

from sysid.analysis.dynamics import Dynamics, as_dynamics
from sysid.analysis.fixed_points import state_box
from sysid.errors import ConfigError, DataError


class ExtrapolationWarning(UserWarning):
    """A simulation or evaluation left the region of state space covered by the training data."""


def _samples(data: xr.Dataset, names: Sequence[str]) -> np.ndarray:
    missing = [n for n in names if n not in data.data_vars]
    if missing:
        raise DataError(f"the data has no variables {missing}; it has {list(data.data_vars)}.")
    x = np.stack([data[n].values.ravel() for n in names], axis=-1)
    return x[np.all(np.isfinite(x), axis=1)]


@final
@dataclass(frozen=True, kw_only=True)
class DataSupport:
    """Where the training data lies in state space (see the module docstring).

    Build it with :meth:`from_data`. Attributes: ``states``, ``mean`` and ``scale`` (per state),
    ``points`` (scaled training samples), ``threshold`` (std units).
    """

    states: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    points: np.ndarray = field(repr=False)
    threshold: float = 0.25
    _tree: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ConfigError(f"DataSupport.threshold must be > 0 (std units); got {self.threshold}.")
        if len(self.points) == 0:
            raise DataError("DataSupport: the data has no sample where every state is finite.")
        object.__setattr__(self, "_tree", cKDTree(self.points))

    @classmethod
    def from_data(
        cls,
        data: xr.Dataset,
        *,
        states: Sequence[str] | None = None,
        threshold: float = 0.25,
        max_points: int = 20_000,
        seed: int = 0,
    ) -> DataSupport:
        """The support of a trajectory dataset's states (subsampled to ``max_points``, seeded)."""
        from sysid.data import state_names

        names = tuple(states) if states is not None else tuple(state_names(data))
        x = _samples(data, names)
        if x.shape[0] == 0:
            raise DataError(f"DataSupport: no sample of {list(names)} has every state finite.")
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        if x.shape[0] > max_points:
            x = x[np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False)]
        return cls(states=names, mean=mean, scale=scale, points=(x - mean) / scale, threshold=threshold)

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, float))
        if x.shape[-1] != len(self.states):
            raise DataError(f"points have {x.shape[-1]} columns; the support has states {list(self.states)}.")
        return (x - self.mean) / self.scale

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Distance (std units) of each point ``(M, S)`` to the nearest training sample."""
        d, _ = self._tree.query(self._scaled(x))
        return np.asarray(d, float)

    def inside(self, x: np.ndarray) -> np.ndarray:
        """Whether each point is within ``threshold`` of the training data."""
        return self.distance(x) <= self.threshold

    def weights(self, x: np.ndarray) -> np.ndarray:
        """Gaussian kernel density of the training samples at ``x`` (bandwidth ``threshold``), max 1."""
        z = self._scaled(x)
        h = self.threshold
        out = np.zeros(len(z))
        neighbours = self._tree.query_ball_point(z, r=4 * h)
        for i, idx in enumerate(neighbours):
            if idx:
                d2 = np.sum((self.points[idx] - z[i]) ** 2, axis=1)
                out[i] = np.exp(-0.5 * d2 / h**2).sum()
        peak = out.max()
        return out / peak if peak > 0 else out


def check_support(
    support: DataSupport,
    trajectories: xr.Dataset,
    *,
    warn: bool = True,
    stacklevel: int = 2,
) -> pd.DataFrame:
    """How far each run of ``trajectories`` strays from the training data; warn if it leaves.

    Returns
    -------
    pandas.DataFrame
        Per run: ``max_distance`` (std units), ``fraction_outside`` (of samples),
        ``first_time_outside`` (NaN when never) and ``inside`` (bool).

    Warns
    -----
    ExtrapolationWarning
        When some run leaves the support (``warn=True``), naming the runs, the largest distance and
        the threshold.
    """
    from sysid.data import run_ids, run_values

    missing = [n for n in support.states if n not in trajectories.data_vars]
    if missing:
        raise DataError(
            f"check_support: the trajectories have no states {missing}; the support is over "
            f"{list(support.states)}."
        )
    rows = []
    times, columns = run_values(trajectories, support.states)  # read once, not a Dataset per run
    for i, r in enumerate(run_ids(trajectories)):
        x = np.stack([columns[n][i] for n in support.states], axis=-1)
        t = times[i]
        ok = np.all(np.isfinite(x), axis=1)
        d = np.full(len(t), np.nan)
        if ok.any():
            d[ok] = support.distance(x[ok])
        out = d > support.threshold
        rows.append(
            {
                "run": r,
                "max_distance": float(np.nanmax(d)) if ok.any() else float("nan"),
                "fraction_outside": float(out[ok].mean()) if ok.any() else float("nan"),
                "first_time_outside": float(t[np.argmax(out)]) if out.any() else float("nan"),
                "inside": not bool(out.any()),
            }
        )
    df = pd.DataFrame(rows).set_index("run")
    left = df[~df["inside"]]
    if warn and len(left):
        worst = left["max_distance"].idxmax()
        warnings.warn(
            f"the simulation leaves the region covered by the training data in runs {list(left.index)}: "
            f"run {worst!r} reaches {left.loc[worst, 'max_distance']:.3g} std units from the nearest "
            f"training sample (threshold {support.threshold:g}) first at t={left.loc[worst, 'first_time_outside']:.6g}. "
            f"The learned dynamics there is extrapolated; trust it less.",
            ExtrapolationWarning,
            stacklevel=stacklevel,
        )
    return df


@final
@dataclass(frozen=True, kw_only=True)
class FieldComparison:
    """A learned field compared with a reference field.

    Attributes
    ----------
    grid : xarray.Dataset
        On a 2-D grid of two states (others fixed): ``learned`` and ``reference``
        ``(component, y, x)``, ``error`` (scaled norm), ``normalised_error``, ``distance`` to the
        data, ``weight`` (support density) and ``inside``.
    summary : pandas.Series
        RMS normalised error: ``grid`` (unweighted), ``support_weighted``, ``inside_support``,
        ``outside_support``, ``at_data`` (at the training samples), plus ``fraction_inside`` and
        ``field_scale`` (the normaliser).
    """

    grid: xr.Dataset
    summary: pd.Series

    def to_dict(self) -> dict[str, float]:
        """The summary as plain floats (NaN as None)."""
        return {k: (None if not np.isfinite(v) else float(v)) for k, v in self.summary.items()}


def _rms(x: np.ndarray, w: np.ndarray | None = None) -> float:
    x = np.asarray(x, float)
    if x.size == 0:
        return float("nan")
    if w is None:
        return float(np.sqrt(np.mean(x**2)))
    s = w.sum()
    return float(np.sqrt(np.sum(w * x**2) / s)) if s > 0 else float("nan")


def field_error(
    learned: Any,
    reference: Any,
    data: xr.Dataset,
    *,
    axes: tuple[str, str] | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    margin: float = 0.25,
    n: int = 41,
    fixed: Mapping[str, float] | None = None,
    t: float = 0.0,
    u: Mapping[str, float] | Sequence[float] | None = None,
    threshold: float = 0.25,
    params: Mapping[str, float] | None = None,
) -> FieldComparison:
    """Compare two vector fields on a grid and on the training data's support.

    Parameters
    ----------
    learned, reference : Model, FitResult, System, Dynamics or callable
        The fields; a callable takes the reference's state names.
    data : xarray.Dataset
        The training data (defines the support, the scaling and, by default, the grid's range).
    axes : (str, str), optional
        The two states spanning the grid; default the first two states.
    bounds : mapping, optional
        Grid range per state; default the data's range widened by ``margin`` each side.
    n : int
        Grid points per axis.
    fixed : mapping, optional
        Values of the states not on the grid (default: their data mean).
    t, u : optional
        Time and constant inputs at which both fields are evaluated.
    threshold : float
        Support threshold in std units (see :class:`DataSupport`).
    params : mapping, optional
        Reference system parameter overrides.

    Returns
    -------
    FieldComparison
    """
    ref = as_dynamics(reference, params=params)
    lrn = as_dynamics(learned, states=ref.states)
    if tuple(lrn.states) != tuple(ref.states):
        raise DataError(f"field_error: learned states {list(lrn.states)} differ from the reference's {list(ref.states)}.")
    if ref.n_states < 2 and axes is None:
        raise ConfigError("field_error: a grid needs two states; the system has one. Use field_error_at_data.")
    axes = tuple(axes) if axes is not None else (ref.states[0], ref.states[1])
    bad = [a for a in axes if a not in ref.states]
    if bad or len(axes) != 2 or axes[0] == axes[1]:
        raise ConfigError(f"field_error: axes must be two different states of {list(ref.states)}; got {list(axes)}.")
    support = DataSupport.from_data(data, states=ref.states, threshold=threshold)
    uc = ref.constant_inputs(u, purpose="field comparisons")
    box = state_box(list(axes), bounds=bounds, data=data, margin=margin)
    gx = np.linspace(box[0, 0], box[0, 1], n)
    gy = np.linspace(box[1, 0], box[1, 1], n)
    X, Y = np.meshgrid(gx, gy)
    pts = np.tile(support.mean, (X.size, 1))
    for name, val in (fixed or {}).items():
        if name not in ref.states:
            raise ConfigError(f"field_error: fixed state {name!r} is not a state of {list(ref.states)}.")
        pts[:, ref.states.index(name)] = float(val)
    i, j = ref.states.index(axes[0]), ref.states.index(axes[1])
    pts[:, i], pts[:, j] = X.ravel(), Y.ravel()
    fl, fr = lrn(t, pts, uc), ref(t, pts, uc)
    xs = support.points * support.scale + support.mean
    fr_data, fl_data = ref(t, xs, uc), lrn(t, xs, uc)
    field_scale = _rms(np.linalg.norm(fr_data / support.scale, axis=1)) or 1.0
    err = np.linalg.norm((fl - fr) / support.scale, axis=1)
    nerr = err / field_scale
    dist = support.distance(pts)
    inside = dist <= threshold
    w = support.weights(pts)
    err_data = np.linalg.norm((fl_data - fr_data) / support.scale, axis=1) / field_scale
    shape = X.shape
    comps = list(ref.states)
    grid = xr.Dataset(
        {
            "learned": (("component", axes[1], axes[0]), fl.T.reshape(len(comps), *shape)),
            "reference": (("component", axes[1], axes[0]), fr.T.reshape(len(comps), *shape)),
            "error": ((axes[1], axes[0]), err.reshape(shape)),
            "normalised_error": ((axes[1], axes[0]), nerr.reshape(shape)),
            "distance": ((axes[1], axes[0]), dist.reshape(shape)),
            "weight": ((axes[1], axes[0]), w.reshape(shape)),
            "inside": ((axes[1], axes[0]), inside.reshape(shape)),
        },
        coords={
            axes[0]: (axes[0], gx, {"units": ref.state_units[i], "long_name": _long(data, axes[0])}),
            axes[1]: (axes[1], gy, {"units": ref.state_units[j], "long_name": _long(data, axes[1])}),
            "component": np.array(comps, dtype=object),
        },
        attrs={"fixed": {n: float(pts[0, k]) for k, n in enumerate(ref.states) if n not in axes},
               "threshold": threshold, "field_scale": field_scale, "t": t},
    )
    grid["normalised_error"].attrs = {"long_name": "normalised field error", "units": "1"}
    grid["distance"].attrs = {"long_name": "distance to training data", "units": "std units"}
    summary = pd.Series(
        {
            "grid": _rms(nerr),
            "support_weighted": _rms(nerr, w),
            "inside_support": _rms(nerr[inside]),
            "outside_support": _rms(nerr[~inside]),
            "at_data": _rms(err_data),
            "fraction_inside": float(inside.mean()),
            "field_scale": field_scale,
        },
        name="rms normalised field error",
    )
    return FieldComparison(grid=grid, summary=summary)


def _long(data: xr.Dataset, name: str) -> str:
    return str(data[name].attrs.get("long_name", name)) if name in data else name


def field_error_at(
    learned: Any,
    reference: Any,
    points: np.ndarray,
    *,
    t: float = 0.0,
    u: Mapping[str, float] | Sequence[float] | None = None,
    params: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Raw difference ``f_learned - f_reference`` at points ``(M, S)`` (user units per time)."""
    ref = as_dynamics(reference, params=params)
    lrn: Dynamics = as_dynamics(learned, states=ref.states)
    uc = ref.constant_inputs(u, purpose="field comparisons")
    pts = np.atleast_2d(np.asarray(points, float))
    return lrn(t, pts, uc) - ref(t, pts, uc)


__all__ = [
    "ExtrapolationWarning",
    "DataSupport",
    "check_support",
    "FieldComparison",
    "field_error",
    "field_error_at",
]
