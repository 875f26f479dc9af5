"""The trajectory schema: CF discrete-sampling geometry (featureType = trajectory).

Dims ``("trajectory", "obs")``; coordinate ``trajectory`` (run ids, str); coordinate
``time(trajectory, obs)`` float64 with NaN after each run's last sample; one data variable per
measured quantity with attrs ``role`` ("state" or "input"), ``units`` and ``long_name``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from sysid.errors import DataError

TRAJ = "trajectory"
OBS = "obs"
TIME = "time"
ROLES = ("state", "input")


def _version() -> str:
    from sysid import __version__

    return __version__


def from_arrays(
    times: Sequence[np.ndarray],
    values: Mapping[str, Sequence[np.ndarray]],
    *,
    states: Sequence[str],
    inputs: Sequence[str] = (),
    runs: Sequence[str] | None = None,
    units: Mapping[str, str] | None = None,
    long_names: Mapping[str, str] | None = None,
    time_units: str = "",
    attrs: Mapping[str, object] | None = None,
) -> xr.Dataset:
    """Build a trajectory dataset from per-run arrays.

    Parameters
    ----------
    times : sequence of 1-D arrays
        One array of sample times per run.
    values : mapping of name to sequence of 1-D arrays
        For each state and input, one array per run, aligned with ``times``.
    states, inputs : sequence of str
        Which names in ``values`` are states and which are inputs (in this order).
    runs : sequence of str, optional
        Run ids; default ``"run0", "run1", ...``.
    units, long_names : mapping, optional
        Units and descriptive names per variable (``"time"`` for the time axis's units too).
    time_units : str
        Units of time (overridden by ``units["time"]`` when given).
    attrs : mapping, optional
        Extra dataset attributes (provenance).

    Returns
    -------
    xarray.Dataset
        The schema: dims ``(trajectory, obs)``, NaN padding after each run's last sample.

    Examples
    --------
    >>> import numpy as np
    >>> ds = from_arrays([np.array([0.0, 1.0])], {"x": [np.array([1.0, 2.0])]}, states=["x"])
    >>> ds["x"].dims
    ('trajectory', 'obs')
    """
    for arg, value in (("states", states), ("inputs", inputs)):
        if isinstance(value, str) or not hasattr(value, "__iter__"):
            raise DataError(f"from_arrays: {arg} must be a list of variable names; got "
                            f"{type(value).__name__} {value!r}.")
    units = dict(units or {})
    long_names = dict(long_names or {})
    states, inputs, run_ids = _checked(states, inputs, values, len(times), runs)
    names = states + inputs
    n_runs = len(run_ids)
    if isinstance(times, np.ndarray) and times.ndim == 2:  # runs of equal length: no per-run work
        time_arr = np.array(times, dtype=float, order="C")
        n_obs, full = time_arr.shape[1], True
    else:
        times = [np.asarray(t, dtype=float).ravel() for t in times]
        n_obs = max(len(t) for t in times)
        full = all(len(t) == n_obs for t in times)  # no padding: one copy per variable, not per run
        time_arr = np.array(times) if full else np.full((n_runs, n_obs), np.nan)
    for i, t in enumerate([] if full else times):
        time_arr[i, : len(t)] = t
    data_vars = {}
    for name in names:
        per_run = values[name]
        if len(per_run) != n_runs:
            raise DataError(
                f"from_arrays: {name!r} has {len(per_run)} runs but times has {n_runs}."
            )
        if full and isinstance(per_run, np.ndarray) and per_run.shape == (n_runs, n_obs):
            arr = np.array(per_run, dtype=float, order="C")  # one copy, laid out as the per-run path
        else:
            arr = _stacked(per_run, n_obs) if full else None
        if arr is not None:
            data_vars[name] = ((TRAJ, OBS), arr, _var_attrs(name, states, units, long_names))
            continue
        arr = np.full((n_runs, n_obs), np.nan)
        for i, v in enumerate(per_run):
            v = np.asarray(v, dtype=float).ravel()
            if len(v) != len(times[i]):
                raise DataError(
                    f"from_arrays: {name!r} in run {run_ids[i]!r} has {len(v)} values "
                    f"but {len(times[i])} times."
                )
            arr[i, : len(v)] = v
        data_vars[name] = ((TRAJ, OBS), arr, _var_attrs(name, states, units, long_names))
    t_units = str(units.get(TIME, time_units))
    return _dataset(data_vars, time_arr, run_ids, t_units, long_names, attrs)


def _checked(states: Sequence[str], inputs: Sequence[str], values: Mapping[str, Any], n_runs: int,
             runs: Sequence[str] | None) -> tuple[list[str], list[str], list[str]]:
    """:func:`from_arrays`' checks of the names and run ids: (states, inputs, run ids)."""
    states = list(states)
    inputs = list(inputs)
    names = states + inputs
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"from_arrays: names {dup} are given more than once in states/inputs.")
    reserved = [n for n in names if n in (TRAJ, OBS, TIME)]
    if reserved:
        raise DataError(
            f"from_arrays: variables may not be named {reserved} (reserved by the schema); rename them."
        )
    missing = [n for n in names if n not in values]
    if missing:
        raise DataError(f"from_arrays: no values for {missing}; values has {sorted(values)}.")
    if n_runs == 0:
        raise DataError("from_arrays: at least one run is needed; times is empty.")
    run_ids = [str(r) for r in runs] if runs is not None else [f"run{i}" for i in range(n_runs)]
    if len(run_ids) != n_runs:
        raise DataError(f"from_arrays: {len(run_ids)} run ids for {n_runs} runs of times.")
    if len(set(run_ids)) != n_runs:
        raise DataError(f"from_arrays: run ids must be unique; got {run_ids}.")
    return states, inputs, run_ids


def _dataset(data_vars: dict[str, Any], time_arr: np.ndarray, run_ids: list[str], t_units: str,
             long_names: Mapping[str, str], attrs: Mapping[str, object] | None) -> xr.Dataset:
    """The schema's Dataset around arrays already laid out ``(runs, obs)``."""
    return xr.Dataset(
        data_vars,
        coords={
            TRAJ: (TRAJ, np.array(run_ids, dtype=object)),
            TIME: ((TRAJ, OBS), time_arr, {"units": t_units, "long_name": long_names.get(TIME, "time")}),
        },
        attrs={
            "featureType": "trajectory",
            "Conventions": "CF-1.8",
            "source": "arrays",
            "sysid_version": _version(),
            **dict(attrs or {}),
        },
    )


def from_block(block: np.ndarray, *, states: Sequence[str], inputs: Sequence[str] = (),
               runs: Sequence[str] | None = None, units: Mapping[str, str] | None = None,
               long_names: Mapping[str, str] | None = None,
               attrs: Mapping[str, object] | None = None) -> xr.Dataset:
    """:func:`from_arrays` for runs of equal length whose times and values are already one
    C-ordered float64 array ``block`` ``(1 + V, runs, obs)``: ``block[0]`` the times,
    ``block[1 + i]`` the i-th of ``states + inputs``. The Dataset's variables are views of
    ``block`` (no copy: one allocation for the whole result; the caller hands it over and keeps
    no reference). Same names, checks, attributes and messages as :func:`from_arrays`.

    The Dataset's frame (the run ids and their index, the variables' names, dims and
    attributes) depends only on the arguments other than ``block``'s values: it is built once
    per distinct set of them and each call returns a shallow copy of it around ``block``
    (``Dataset.copy(data=...)``: its own variables and attribute dicts, the immutable index
    shared). Building an ``xarray.Dataset`` from scratch costs ~0.4 ms for 8 runs, ~2 ms for
    1000, which was most of a short ``sysid.simulate`` (issue #13); the copy ~0.05 ms.

    Examples
    --------
    >>> block = np.array([[[0.0, 1.0]], [[1.0, 2.0]]])
    >>> from_block(block, states=["x"])["x"].values.tolist()
    [[1.0, 2.0]]
    """
    names = list(states) + list(inputs)
    if block.dtype != np.float64 or not block.flags.c_contiguous or block.shape[0] != 1 + len(names):
        raise DataError(f"from_block: block must be C-ordered float64 (1 + {len(names)}, runs, obs); got "
                        f"{block.dtype} {block.shape}.")
    frame = _frame(block.shape[1:], names, states, inputs, runs, units, long_names, attrs)
    ds = frame.copy(deep=False, data={n: block[1 + i] for i, n in enumerate(names)})
    ds.variables[TIME].values = block[0]
    return ds


#: The frames of :func:`from_block`'s recent results (least recently used first), and the lock
#: that keeps their order consistent when threads build results at once.
_FRAMES: dict[tuple, xr.Dataset] = {}
_FRAMES_KEPT = 16
_FRAMES_LOCK = threading.Lock()


def _frame(shape: tuple[int, ...], names: list[str], states: Sequence[str], inputs: Sequence[str],
           runs: Sequence[str] | None, units: Mapping[str, str] | None,
           long_names: Mapping[str, str] | None, attrs: Mapping[str, object] | None) -> xr.Dataset:
    """The Dataset of :func:`from_block` with placeholder values (zero-memory, read-only: every
    variable is replaced in the copies), kept for the arguments' next call."""
    try:
        key = (shape, tuple(names), tuple(states), tuple(runs) if runs is not None else None,
               tuple((units or {}).items()), tuple((long_names or {}).items()),
               tuple((attrs or {}).items()))
        with _FRAMES_LOCK:
            frame = _FRAMES.pop(key, None)
    except TypeError:  # an argument that cannot be a key (e.g. a list in attrs): no reuse
        key, frame = None, None
    if frame is None:
        units = dict(units or {})
        long_names = dict(long_names or {})
        states, inputs, run_ids = _checked(states, inputs, dict.fromkeys(names), shape[0], runs)
        blank = np.broadcast_to(np.float64(0.0), shape)
        data_vars = {n: ((TRAJ, OBS), blank, _var_attrs(n, states, units, long_names)) for n in names}
        frame = _dataset(data_vars, blank, run_ids, str(units.get(TIME, "")), long_names, attrs)
    if key is not None:
        with _FRAMES_LOCK:
            _FRAMES[key] = frame  # most recently used last
            if len(_FRAMES) > _FRAMES_KEPT:
                del _FRAMES[next(iter(_FRAMES))]
    return frame


def _stacked(per_run: Sequence[Any], n_obs: int) -> np.ndarray | None:
    """The runs' values as one ``(runs, n_obs)`` float array when each is a flat array of
    ``n_obs`` values (one C copy); None otherwise (the per-run loop checks, pads and words it)."""
    if not all(isinstance(v, np.ndarray) and v.shape == (n_obs,) for v in per_run):
        return None
    return np.array(per_run, dtype=float)  # (np.stack costs a Python call per run)


def _var_attrs(name: str, states: Sequence[str], units: Mapping[str, str],
               long_names: Mapping[str, str]) -> dict[str, str]:
    return {
        "role": "state" if name in states else "input",
        "units": str(units.get(name, "")),
        "long_name": str(long_names.get(name, name)),
    }


def state_names(ds: xr.Dataset) -> list[str]:
    """Names of the state variables, in dataset order."""
    return [str(n) for n, v in ds.data_vars.items() if v.attrs.get("role") == "state"]


def input_names(ds: xr.Dataset) -> list[str]:
    """Names of the input variables, in dataset order."""
    return [str(n) for n, v in ds.data_vars.items() if v.attrs.get("role") == "input"]


def run_ids(ds: xr.Dataset) -> list[str]:
    """Run ids as strings."""
    return [str(r) for r in ds[TRAJ].values]


def _position(ds: xr.Dataset, run_id: str, func: str) -> int | None:
    """Row of ``run_id`` through the trajectory index (no list of all run ids is built: callers
    loop over thousands of runs); None when ids repeat (the slow path handles it)."""
    try:
        i = ds.indexes[TRAJ].get_loc(run_id)
    except KeyError:
        raise DataError(f"{func}: no run {run_id!r}; runs are {run_ids(ds)}.") from None
    return int(i) if isinstance(i, (int, np.integer)) else None


def run_length(ds: xr.Dataset, run_id: str) -> int:
    """Number of samples of one run (the time NaN padding excluded)."""
    i = _position(ds, run_id, "run_length")
    t = ds[TIME].values[i] if i is not None else ds[TIME].sel({TRAJ: run_id}).values
    return int(np.count_nonzero(~np.isnan(t)))


def get_run(ds: xr.Dataset, run_id: str) -> xr.Dataset:
    """One run as a Dataset with a single ``time`` dimension (padding removed), for plotting.

    Examples
    --------
    >>> import numpy as np
    >>> ds = from_arrays([np.array([0.0, 1.0])], {"x": [np.array([1.0, 2.0])]}, states=["x"])
    >>> get_run(ds, "run0")["x"].dims
    ('time',)
    """
    i = _position(ds, run_id, "get_run")
    if i is not None and _plain_layout(ds):
        # built from the arrays directly: the xarray selection below costs milliseconds per run,
        # which metrics and reports over 10 000 runs paid tens of thousands of times
        t_row = ds[TIME].values[i]
        n = int(np.count_nonzero(~np.isnan(t_row)))
        data = {str(k): xr.Variable(TIME, v.values[i, :n], dict(v.attrs))
                for k, v in ds.data_vars.items()}
        coords = {TIME: xr.Variable(TIME, t_row[:n], dict(ds[TIME].attrs))}
        for k, c in ds.coords.items():
            if k not in (TIME, TRAJ):
                coords[str(k)] = xr.Variable((), c.values[i], dict(c.attrs))
        return xr.Dataset(data, coords=coords, attrs={**ds.attrs, "trajectory": run_id})
    one = ds.sel({TRAJ: run_id})
    n = run_length(ds, run_id)
    one = one.isel({OBS: slice(0, n)})
    t = one[TIME].values
    out = one.drop_vars([TIME, TRAJ]).rename({OBS: TIME}).assign_coords({TIME: (TIME, t, ds[TIME].attrs)})
    out.attrs = {**ds.attrs, "trajectory": run_id}
    return out


def run_values(ds: xr.Dataset, names: Sequence[str] = (),
               runs: Sequence[str] | None = None) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
    """Each run's times and the values of ``names`` (padding removed), as :func:`get_run` gives
    them, read from the padded arrays once: for loops over thousands of runs (metrics, reports),
    where building a Dataset per run cost milliseconds each.

    Parameters
    ----------
    ds : xarray.Dataset
        A trajectory dataset.
    names : sequence of str
        Variables to return (on ``(trajectory, obs)``).
    runs : sequence of str, optional
        Run ids, in the order wanted; default all, in the dataset's order.

    Returns
    -------
    times : list of ndarray
        Per run, its sample times.
    values : dict
        Per name, a list of per-run value arrays (aligned with ``times``).

    Examples
    --------
    >>> ds = from_arrays([np.array([0.0, 1.0]), np.array([0.0])],
    ...                  {"x": [np.array([1.0, 2.0]), np.array([3.0])]}, states=["x"])
    >>> t, v = run_values(ds, ["x"])
    >>> [a.tolist() for a in t], [a.tolist() for a in v["x"]]
    ([[0.0, 1.0], [0.0]], [[1.0, 2.0], [3.0]])
    """
    ids = run_ids(ds) if runs is None else [str(r) for r in runs]
    names = [str(n) for n in names]
    if not (_plain_layout(ds) and all(ds[n].dims == (TRAJ, OBS) for n in names)):
        ones = [get_run(ds, r) for r in ids]
        return ([o[TIME].values for o in ones], {n: [o[n].values for o in ones] for n in names})
    if runs is None:
        rows = np.arange(len(ids))
    else:
        rows = np.array([_position(ds, r, "run_values") for r in ids], dtype=object)
        if any(r is None for r in rows):  # repeated ids: the slow path handles them
            ones = [get_run(ds, r) for r in ids]
            return ([o[TIME].values for o in ones], {n: [o[n].values for o in ones] for n in names})
        rows = rows.astype(np.int64)
    t = ds[TIME].values[rows]
    lengths = np.count_nonzero(~np.isnan(t), axis=1)
    arrays = {n: ds[n].values[rows] for n in names}
    return ([t[i, :k] for i, k in enumerate(lengths)],
            {n: [a[i, :k] for i, k in enumerate(lengths)] for n, a in arrays.items()})


def _plain_layout(ds: xr.Dataset) -> bool:
    """Data variables on (trajectory, obs), per-run coordinates on (trajectory,) only."""
    return (all(v.dims == (TRAJ, OBS) for v in ds.data_vars.values())
            and ds[TIME].dims == (TRAJ, OBS)
            and all(c.dims == (TRAJ,) for k, c in ds.coords.items() if k not in (TIME, TRAJ)))


__all__ = [
    "TRAJ",
    "OBS",
    "TIME",
    "ROLES",
    "from_arrays",
    "from_block",
    "state_names",
    "input_names",
    "run_ids",
    "run_length",
    "get_run",
    "run_values",
]
