"""Checks of the trajectory schema, shared by the loaders and :func:`validate`.

The loaders call the per-run checks with spreadsheet row numbers so an error names the row the
user sees in the file; :func:`validate` runs the same checks on a dataset, vectorised over runs,
and names samples (1-based) instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import xarray as xr

from sysid.data.schema import OBS, ROLES, TIME, TRAJ
from sysid.errors import DataError


class DataWarning(UserWarning):
    """Data that loads but deserves attention (a constant column, for instance)."""


def fmt(value: float) -> str:
    """A float as the shortest text that reads back to the same number."""
    value = float(value)
    if np.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return repr(int(value))
    return repr(value)


def check_run_time(
    t: np.ndarray,
    *,
    run: str,
    context: str,
    label: Callable[[int], str],
    order_hint: str = "",
    duplicate_hint: str = "",
) -> None:
    """Raise DataError unless ``t`` (one run's times) is finite and strictly increasing.

    Parameters
    ----------
    t : 1-D array
        The run's sample times, in file order.
    run : str
        The run id, as the user knows it.
    context : str
        Prefix of the message: the function and the file, e.g. ``"load_csv: data.csv"``.
    label : callable
        Maps a 0-based index into ``t`` to the user's name for it (``"row 12"``).
    order_hint, duplicate_hint : str
        What the user can do about unsorted or duplicated times.
    """
    finite = np.isfinite(t)
    if not finite.all():
        i = int(np.argmax(~finite))
        what = "missing (empty or NaN)" if np.isnan(t[i]) else f"{t[i]} (infinite)"
        raise DataError(
            f"{context}: time must be a finite number; run {run!r} has time {what} at {label(i)}. "
            "Fill in the time or remove the row."
        )
    d = np.diff(t)
    if (d < 0).any():
        i = int(np.argmax(d < 0)) + 1
        raise DataError(
            f"{context}: time must increase within each run; run {run!r} has time {fmt(t[i])} at "
            f"{label(i)} after {fmt(t[i - 1])} at {label(i - 1)}.{order_hint}"
        )
    if (d == 0).any():
        i = int(np.argmax(d == 0)) + 1
        raise DataError(
            f"{context}: time must not repeat within a run; run {run!r} has time {fmt(t[i])} twice, "
            f"at {label(i - 1)} and {label(i)}.{duplicate_hint}"
        )


def check_run_length(n: int, *, run: str, context: str, min_samples: int) -> None:
    """Raise DataError when a run has fewer than ``min_samples`` samples."""
    if n < min_samples:
        raise DataError(
            f"{context}: run {run!r} has {n} sample{'s' if n != 1 else ''}; at least {min_samples} "
            f"are needed (min_samples={min_samples}). Remove the run or add samples."
        )


def sampling_attrs(times: list[np.ndarray]) -> dict[str, object]:
    """Statistics of the sampling intervals over all runs, as dataset attributes.

    Returns ``dt_min``, ``dt_median``, ``dt_max`` (in time units) and ``sampling``
    ("regular" when every interval equals the median within 1e-6 relative, else "irregular").
    """
    steps = [np.diff(np.asarray(t, dtype=float)) for t in times]
    d = np.concatenate(steps) if steps else np.empty(0)
    if d.size == 0:
        return {}
    med = float(np.median(d))
    regular = bool(np.all(np.abs(d - med) <= 1e-6 * abs(med)))
    return {
        "dt_min": float(d.min()),
        "dt_median": med,
        "dt_max": float(d.max()),
        "sampling": "regular" if regular else "irregular",
    }


def warn_constant(name: str, values: np.ndarray, *, context: str) -> None:
    """Warn (DataWarning) when a column's non-missing values are all equal."""
    v = values[~np.isnan(values)]
    if v.size >= 2 and v.min() == v.max():
        warnings.warn(
            f"{context}: column {name!r} is constant ({fmt(v[0])}); it carries no dynamics, and "
            "scaling gives it scale 1.",
            DataWarning,
            stacklevel=3,
        )


def _where(ds: xr.Dataset, where: str | None) -> str:
    source = where if where is not None else ds.attrs.get("source", "dataset")
    return f"validate: {source}"


def validate(ds: xr.Dataset, *, min_samples: int = 2, where: str | None = None) -> xr.Dataset:
    """Check that ``ds`` follows the trajectory schema; return it unchanged.

    Checks: dims ``(trajectory, obs)``; unique run ids; a 2-D float ``time`` coordinate that is
    finite for each run's samples, NaN only after the run's last sample, strictly increasing;
    at least ``min_samples`` samples per run; at least one state; every data variable has
    ``role`` in {"state", "input"}, dims ``(trajectory, obs)``, no infinite values and no values
    in the padding; no state or input entirely missing.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset to check.
    min_samples : int
        Fewest samples a run may have.
    where : str, optional
        What to call the data in messages (a file name); default the ``source`` attribute.

    Returns
    -------
    xarray.Dataset
        ``ds`` itself.

    Raises
    ------
    DataError
        Naming the run, variable and sample (1-based) of the first problem found.

    Examples
    --------
    >>> import numpy as np
    >>> from sysid.data import from_arrays
    >>> ds = from_arrays([np.array([0.0, 1.0])], {"x": [np.array([1.0, 2.0])]}, states=["x"])
    >>> validate(ds) is ds
    True
    """
    if not isinstance(ds, xr.Dataset):
        raise DataError(f"validate: expected an xarray.Dataset; got {type(ds).__name__}.")
    ctx = _where(ds, where)
    ids, inside = _check_layout(ds, ctx, min_samples)
    states = [name for name, var in ds.data_vars.items()
              if _check_variable(name, var, ids, inside, ctx) == "state"]
    if not states:
        raise DataError(f"{ctx}: the dataset has no state variable (role='state'); variables are "
                        f"{list(ds.data_vars)}.")
    return ds


def _check_layout(ds: xr.Dataset, ctx: str, min_samples: int) -> tuple[list[str], np.ndarray]:
    """Dims, run ids and the time coordinate; returns the run ids and the (run, obs) mask of samples."""
    for dim in (TRAJ, OBS):
        if dim not in ds.dims:
            raise DataError(
                f"{ctx}: the dataset has no {dim!r} dimension; dims are {list(ds.dims)}. Build it with "
                "sysid.data.from_arrays, from_dataframe or load_csv."
            )
    if TIME not in ds.coords or ds[TIME].dims != (TRAJ, OBS):
        raise DataError(
            f"{ctx}: the dataset needs a 'time' coordinate with dims (trajectory, obs); "
            f"coordinates are {list(ds.coords)}."
        )
    ids = [str(r) for r in ds[TRAJ].values]
    dup = sorted({r for r in ids if ids.count(r) > 1})
    if dup:
        raise DataError(f"{ctx}: run ids must be unique; {dup} appear more than once.")
    if not np.issubdtype(ds[TIME].dtype, np.floating):
        raise DataError(
            f"{ctx}: time must be float (numbers in time units); got dtype {ds[TIME].dtype}. "
            "Convert datetimes to numbers from an origin (load_csv does this for ISO dates)."
        )
    T = np.asarray(ds[TIME].values, dtype=float)
    n_obs = T.shape[1]
    present = ~np.isnan(T)
    lengths = present.sum(axis=1)
    inside = np.arange(n_obs)[None, :] < lengths[:, None]
    gaps = inside & ~present
    if gaps.any():
        r, i = np.argwhere(gaps)[0]
        raise DataError(
            f"{ctx}: run {ids[r]!r} has no time at sample {i + 1} but later samples have times; time "
            "may be missing only after a run's last sample (the padding)."
        )
    if np.isinf(T).any():
        r, i = np.argwhere(np.isinf(T))[0]
        raise DataError(f"{ctx}: run {ids[r]!r} has time {T[r, i]} at sample {i + 1}; time must be finite.")
    step_ok = np.diff(T, axis=1) > 0
    bad = inside[:, 1:] & ~step_ok
    if bad.any():
        r, i = np.argwhere(bad)[0]
        check_run_time(
            T[r, : lengths[r]], run=ids[r], context=ctx, label=lambda k: f"sample {k + 1}"
        )
    for r, n in enumerate(lengths):
        check_run_length(int(n), run=ids[r], context=ctx, min_samples=min_samples)
    return ids, inside


def _check_variable(name: str, var: xr.DataArray, ids: list[str], inside: np.ndarray, ctx: str) -> str:
    """Role, dims, dtype, units and values of one data variable; returns its role."""
    role = var.attrs.get("role")
    if role not in ROLES:
        raise DataError(
            f"{ctx}: variable {name!r} has role {role!r}; it must be one of {list(ROLES)}. "
            f"Set ds[{name!r}].attrs['role']."
        )
    if var.dims != (TRAJ, OBS):
        raise DataError(f"{ctx}: variable {name!r} has dims {var.dims}; expected ('trajectory', 'obs').")
    if not np.issubdtype(var.dtype, np.floating):
        raise DataError(f"{ctx}: variable {name!r} has dtype {var.dtype}; expected float.")
    if not isinstance(var.attrs.get("units", ""), str):
        raise DataError(f"{ctx}: variable {name!r} has units {var.attrs['units']!r}; units must be a string.")
    v = np.asarray(var.values, dtype=float)
    if np.isinf(v).any():
        r, i = np.argwhere(np.isinf(v))[0]
        raise DataError(
            f"{ctx}: {name!r} is {v[r, i]} in run {ids[r]!r} at sample {i + 1}; values must be "
            "finite (NaN marks a missing measurement)."
        )
    stray = ~inside & ~np.isnan(v)
    if stray.any():
        r, i = np.argwhere(stray)[0]
        raise DataError(
            f"{ctx}: {name!r} has a value in run {ids[r]!r} at sample {i + 1}, after the run's last "
            "time; pad values with NaN where time is NaN."
        )
    if not (~np.isnan(v)).any():
        raise DataError(
            f"{ctx}: {role} {name!r} has no values (every sample is missing). Drop it or give "
            "measurements."
        )
    return str(role)


__all__ = ["DataWarning", "validate", "check_run_time", "check_run_length", "sampling_attrs", "warn_constant"]
