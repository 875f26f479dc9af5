"""Forward simulation of a model into the trajectory schema, and export as a NumPy right-hand side.

:func:`simulate` is the one place a trained model is run forward for users: it takes initial
states (or a dataset whose first samples and inputs are used), integrates all runs in one batched
solve and returns the same schema as the measurements. :func:`to_numpy_rhs` turns a model into a
pure-NumPy ``f(t, y)`` for ``scipy.integrate.solve_ivp``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from sysid.data.schema import OBS, TIME, TRAJ, from_arrays, run_ids
from sysid.errors import ConfigError, DataError, SolverError
from sysid.models.interpolation import InputInterpolator, numpy_interpolant
from sysid.models.model import Model
from sysid.models.solver import SolverConfig, solve

__all__ = ["simulate", "to_numpy_rhs", "SolverConfig"]

InputSource = xr.Dataset | pd.DataFrame | Callable[[float], Any] | None


def _is_schema(ds: Any) -> bool:
    return isinstance(ds, xr.Dataset) and TIME in ds.coords and TRAJ in ds.dims and OBS in ds.dims


def _run_arrays(ds: xr.Dataset, where: str) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """Run ids, per-run valid times and the index of the valid samples."""
    if not _is_schema(ds):
        raise DataError(
            f"{where}: expected a trajectory dataset (dims ('trajectory', 'obs') and a 'time' "
            "coordinate), e.g. from sysid.load_csv; got a dataset without them."
        )
    ids = run_ids(ds)
    tt = np.asarray(ds[TIME].values, dtype=float)
    times, keep = [], []
    for i, rid in enumerate(ids):
        k = np.nonzero(~np.isnan(tt[i]))[0]
        if len(k) == 0:
            raise DataError(f"{where}: run {rid!r} has no samples.")
        times.append(tt[i, k])
        keep.append(k)
    return ids, times, keep


class _CallableInputs:
    """Inputs from a user function ``u(t) -> (I,) or (R, I)``, per run at absolute times."""

    def __init__(self, fn: Callable[[float], Any], n_runs: int, names: tuple[str, ...],
                 dtype: torch.dtype) -> None:
        self.fn, self.n_runs, self.names, self.dtype = fn, n_runs, names, dtype

    def _value(self, t: float) -> np.ndarray:
        v = np.asarray(self.fn(t), dtype=float)
        n_i = len(self.names)
        if v.shape == (n_i,) or (v.ndim == 0 and n_i == 1):
            return np.broadcast_to(v.reshape(1, n_i), (self.n_runs, n_i))
        if v.shape == (self.n_runs, n_i):
            return v
        raise DataError(
            f"simulate: the inputs function returned shape {v.shape} at t={t}; expected ({n_i},) for "
            f"the inputs {list(self.names)} (or ({self.n_runs}, {n_i}) for one row per run)."
        )

    def __call__(self, t_abs: torch.Tensor) -> torch.Tensor:
        ts = t_abs.detach().cpu().double().numpy()
        if np.all(ts == ts[0]):
            out = self._value(float(ts[0]))
        else:
            out = np.stack([self._value(float(tr))[r] for r, tr in enumerate(ts)])
        if not np.all(np.isfinite(out)):
            raise DataError(f"simulate: the inputs function returned NaN or inf near t={float(ts[0])}.")
        return torch.tensor(out, dtype=self.dtype)


def _interp_from_dataset(ds: xr.Dataset, names: tuple[str, ...], ids: list[str], kind: str,
                         dtype: torch.dtype, spans: list[tuple[float, float]],
                         offsets: np.ndarray) -> tuple[InputInterpolator, np.ndarray]:
    """Interpolator over each run's inputs in *relative* time (t - offset), and the sample times.

    Relative time keeps torchdiffeq's one-ulp left/right evaluations at input jumps intact (adding
    an offset afterwards would round them away).
    """
    where = "simulate (inputs)"
    src_ids, src_times, keep = _run_arrays(ds, where)
    missing = [n for n in names if n not in ds.data_vars]
    if missing:
        raise DataError(
            f"{where}: the model needs inputs {missing}; the dataset has variables {list(ds.data_vars)}."
        )
    if all(r in src_ids for r in ids):
        rows = [src_ids.index(r) for r in ids]
    elif len(src_ids) == 1:
        rows = [0] * len(ids)
    else:
        raise DataError(
            f"{where}: the inputs dataset has runs {src_ids} but the simulated runs are {ids}; give "
            "inputs with the same run ids, or a single run used for every run."
        )
    n = max(len(src_times[r]) for r in rows)
    t_arr = np.zeros((len(ids), n))
    u_arr = np.zeros((len(ids), n, len(names)))
    lengths = []
    for i, r in enumerate(rows):
        k = keep[r]
        t_arr[i, : len(k)] = src_times[r] - offsets[i]
        for j, name in enumerate(names):
            vals = np.asarray(ds[name].values[r], dtype=float)[k]
            bad = np.nonzero(~np.isfinite(vals))[0]
            if len(bad):
                raise DataError(
                    f"{where}: input {name!r} of run {src_ids[r]!r} is missing (NaN) at time "
                    f"{src_times[r][bad[0]]:g} ({len(bad)} samples); fill the gaps first (an explicit "
                    "choice, e.g. interpolate them) or give inputs as a function."
                )
            u_arr[i, : len(k), j] = vals
        lengths.append(len(k))
        lo, hi = spans[i]
        t0, t1 = src_times[r][0], src_times[r][-1]
        tol = 1e-9 * max(1.0, abs(t1))
        if lo < t0 - tol or hi > t1 + tol:
            raise DataError(
                f"{where}: inputs of run {src_ids[r]!r} cover [{t0:g}, {t1:g}] but run {ids[i]!r} is "
                f"simulated over [{lo:g}, {hi:g}]; provide inputs over the whole span."
            )
    jumps = np.unique(np.concatenate([t_arr[i, : lengths[i]] for i in range(len(ids))]))
    interp = InputInterpolator(torch.as_tensor(t_arr, dtype=dtype), torch.as_tensor(u_arr, dtype=dtype),
                               torch.as_tensor(lengths), kind)
    return interp, jumps


def _dataframe_inputs(df: pd.DataFrame, names: tuple[str, ...]) -> xr.Dataset:
    if "time" not in df.columns:
        raise DataError(f"simulate: an inputs DataFrame needs a 'time' column; it has {list(df.columns)}.")
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise DataError(f"simulate: the inputs DataFrame lacks columns {missing}; it has {list(df.columns)}.")
    t = df["time"].to_numpy(dtype=float)
    return from_arrays([t], {n: [df[n].to_numpy(dtype=float)] for n in names}, states=[], inputs=list(names))


def _initial_from_mapping(model: Model, initial: Mapping[str, Any], where: str) -> np.ndarray:
    states = model.state_names
    unknown = [k for k in initial if k not in states]
    if unknown:
        raise DataError(f"{where}: initial values for unknown states {unknown}; the model's states are {list(states)}.")
    missing = [n for n in model.observed if n not in initial]
    if missing:
        raise DataError(
            f"{where}: no initial value for the observed states {missing}; give every one of "
            f"{list(model.observed)} (latent states default to model.latent_initial)."
        )
    cols = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in initial.items()}
    n_runs = max(len(v) for v in cols.values())
    bad = {k: len(v) for k, v in cols.items() if len(v) not in (1, n_runs) or np.ndim(initial[k]) > 1}
    if bad:
        raise DataError(f"{where}: initial values must be scalars or one value per run ({n_runs}); got lengths {bad}.")
    y0 = np.zeros((n_runs, len(states)))
    for j, name in enumerate(states):
        y0[:, j] = cols[name] if name in cols else model.latent_initial.get(name, 0.0)
    return y0


def _apply_latent(model: Model, y0: np.ndarray, latent: Mapping[str, Any] | None, where: str) -> None:
    if not latent:
        return
    unknown = [k for k in latent if k not in model.latent_names]
    if unknown:
        raise DataError(f"{where}: latent values for {unknown}, which are not latent states {list(model.latent_names)}.")
    for k, v in latent.items():
        vals = np.atleast_1d(np.asarray(v, dtype=float))
        if len(vals) not in (1, y0.shape[0]):
            raise DataError(f"{where}: latent {k!r} needs 1 or {y0.shape[0]} values; got {len(vals)}.")
        y0[:, model.state_names.index(k)] = vals


def simulate(
    model: Model,
    initial: xr.Dataset | Mapping[str, Any] | np.ndarray | Sequence[Any],
    times: Sequence[float] | np.ndarray | None = None,
    *,
    inputs: InputSource = None,
    solver: SolverConfig = SolverConfig(),
    latent: Mapping[str, Any] | None = None,
    runs: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float64,
) -> xr.Dataset:
    """Simulate a model forward and return the trajectory schema (user units).

    Parameters
    ----------
    model : Model
        The model (not modified; it is copied when ``dtype`` differs from its own).
    initial : xarray.Dataset, mapping or array
        A trajectory dataset: every run starts from its first sample and is simulated on its own
        time grid, with the dataset's inputs unless ``inputs`` is given (``times`` must be None).
        Or a mapping ``{state: value or one value per run}`` or an array (R, S) / (S,) over all
        the model's states, simulated on ``times``.
    times : 1-D array, optional
        Output times (strictly increasing; the first is the initial time) for mapping/array
        initial states.
    inputs : xarray.Dataset, pandas.DataFrame or callable, optional
        Measured inputs (a dataset with the same run ids, or one run used for every run; a
        DataFrame with a ``time`` column and one column per input), interpolated per
        ``model.input_interpolation``; or ``u(t) -> (I,)`` (or (R, I)). Required when the model
        has inputs and ``initial`` carries none.
    solver : SolverConfig
        Method and tolerances (float64 with rtol 1e-4 / atol 1e-6 by default).
    latent : mapping, optional
        Initial values of latent states (a scalar or one per run); default from the dataset when
        it holds them, else ``model.latent_initial``.
    runs : sequence of str, optional
        Run ids for mapping/array initial states (default run0, run1, ...).
    dtype : torch.dtype
        Precision of the simulation (default float64).

    Returns
    -------
    xarray.Dataset
        Schema with every model state (role "state"), every output of the model's measurement
        equations (role "state" too: a measured quantity; attr ``equation``) and the inputs used
        (role "input") at the output times; units and long names from the dataset or the model.

    Notes
    -----
    All runs are integrated in one batched solve in *relative* time ``tau = t - t0_run`` on the
    union of the runs' relative output grids (so runs with different grids and start times share
    one solve); the field sees each run's absolute time. A fixed-step method with ``step=None``
    steps on that union grid. Measured inputs jump (zero-order hold) or kink (linear) at their
    sample times; adaptive methods step exactly onto those times (torchdiffeq ``jump_t``) rather
    than crossing them.

    Raises
    ------
    DataError
        For initial states or inputs that do not fit the model (naming states, runs, times).
    SolverError
        When the integration fails, with ``t_reached``.
    """
    where = "simulate"
    if not isinstance(model, Model):
        raise ConfigError(f"{where}: model must be a sysid.models.Model; got {type(model).__name__}.")
    if not isinstance(solver, SolverConfig):
        raise ConfigError(f"{where}: solver must be a SolverConfig; got {type(solver).__name__}.")
    states, in_names, out_names = model.state_names, model.input_names, model.output_names
    units = (dict(zip(states, model.state_units)) | dict(zip(in_names, model.input_units))
             | dict(zip(out_names, model.output_units)))
    long_names: dict[str, str] = {}
    time_attrs: dict[str, Any] = {"units": model.time_units, "long_name": "time"}
    source_inputs: InputSource = inputs
    if isinstance(initial, xr.Dataset):
        if times is not None:
            raise ConfigError(
                f"{where}: times comes from the dataset when initial is a dataset; to simulate on other "
                "times pass initial as a mapping {state: value} with times=..."
            )
        ids, t_runs, keep = _run_arrays(initial, where)
        missing = [n for n in model.observed if n not in initial.data_vars]
        if missing:
            raise DataError(
                f"{where}: the dataset has no variables for the observed states {missing}; it has "
                f"{list(initial.data_vars)}."
            )
        y0 = np.zeros((len(ids), len(states)))
        for j, name in enumerate(states):
            if name in initial.data_vars:
                first = np.asarray(initial[name].values, dtype=float)[np.arange(len(ids)), [k[0] for k in keep]]
                units[name] = str(initial[name].attrs.get("units", units[name])) or units[name]
                long_names[name] = str(initial[name].attrs.get("long_name", name))
            else:
                first = np.full(len(ids), np.nan)
            for r, rid in enumerate(ids):
                if np.isnan(first[r]):
                    if name in model.observed:
                        raise DataError(
                            f"{where}: state {name!r} is missing (NaN) at the first sample of run {rid!r} "
                            f"(time {t_runs[r][0]:g}); the simulation needs an initial value. Pass "
                            "initial={state: value} with times=, or drop the leading gap."
                        )
                    first[r] = model.latent_initial[name]
            y0[:, j] = first
        for n in (*in_names, *out_names):
            if n in initial.data_vars:
                long_names[n] = str(initial[n].attrs.get("long_name", n))
                units[n] = str(initial[n].attrs.get("units", units[n])) or units[n]
        if source_inputs is None and in_names:
            source_inputs = initial
        time_attrs = {**time_attrs, **dict(initial[TIME].attrs)}
    else:
        if times is None:
            raise ConfigError(f"{where}: times is required when initial is a mapping or an array.")
        tgrid = np.asarray(times, dtype=float)
        if tgrid.ndim != 1 or len(tgrid) == 0:
            raise ConfigError(f"{where}: times must be a non-empty 1-D array; got shape {tgrid.shape}.")
        if not np.all(np.isfinite(tgrid)):
            raise ConfigError(f"{where}: times must be finite; got {tgrid[~np.isfinite(tgrid)][:3].tolist()}.")
        back = np.nonzero(np.diff(tgrid) <= 0)[0]
        if len(back):
            k = int(back[0])
            raise ConfigError(
                f"{where}: times must be strictly increasing; time {tgrid[k + 1]:g} follows {tgrid[k]:g} "
                f"(positions {k + 1} and {k + 2})."
            )
        if isinstance(initial, Mapping):
            y0 = _initial_from_mapping(model, initial, where)
        else:
            arr = np.asarray(initial, dtype=float)
            arr = arr[None] if arr.ndim == 1 else arr
            if arr.ndim != 2 or arr.shape[1] != len(states):
                n_given = arr.shape[-1] if arr.ndim >= 1 else 0
                raise DataError(
                    f"{where}: y0 has {n_given} states but the model has {len(states)} ({list(states)})."
                )
            y0 = arr.copy()
        n_runs = y0.shape[0]
        ids = [str(r) for r in runs] if runs is not None else [f"run{i}" for i in range(n_runs)]
        if len(ids) != n_runs or len(set(ids)) != n_runs:
            raise DataError(f"{where}: runs must be {n_runs} unique ids; got {ids}.")
        t_runs = [tgrid] * n_runs
    if runs is not None and isinstance(initial, xr.Dataset):
        raise ConfigError(f"{where}: runs= applies to mapping/array initial states; the dataset names its runs.")
    _apply_latent(model, y0, latent, where)
    bad = np.argwhere(~np.isfinite(y0))
    if len(bad):
        r, j = bad[0]
        raise DataError(f"{where}: initial value of state {states[j]!r} in run {ids[r]!r} is not finite ({y0[r, j]}).")

    run_model = model if model.dtype == dtype else copy.deepcopy(model).to(dtype)
    offsets = np.array([t[0] for t in t_runs])
    rel = [t - t[0] for t in t_runs]
    grid = np.unique(np.concatenate(rel))
    spans = [(float(t[0]), float(t[-1])) for t in t_runs]

    u_fn: Callable[[torch.Tensor], torch.Tensor] | None = None  # called with absolute times
    u_rel: InputInterpolator | None = None  # called with relative times
    jumps: np.ndarray | None = None
    if in_names:
        if source_inputs is None:
            raise DataError(
                f"{where}: the model has inputs {list(in_names)}; give inputs= (a dataset, a DataFrame "
                "with a 'time' column, or a function u(t))."
            )
        if isinstance(source_inputs, pd.DataFrame):
            source_inputs = _dataframe_inputs(source_inputs, in_names)
        if isinstance(source_inputs, xr.Dataset):
            u_rel, jumps = _interp_from_dataset(source_inputs, in_names, ids, model.input_interpolation,
                                                dtype, spans, offsets)
            for n in in_names:
                if n in source_inputs.data_vars:
                    units[n] = str(source_inputs[n].attrs.get("units", "")) or units[n]
        elif callable(source_inputs):
            u_fn = _CallableInputs(source_inputs, len(ids), in_names, dtype)
        else:
            raise DataError(
                f"{where}: inputs must be a dataset, a DataFrame or a function; got {type(source_inputs).__name__}."
            )
    elif inputs is not None and not isinstance(initial, xr.Dataset):
        raise DataError(f"{where}: inputs were given but the model has no inputs.")

    off_t = torch.as_tensor(offsets, dtype=dtype)

    def inputs_at(tau: torch.Tensor, t_abs: torch.Tensor) -> torch.Tensor | None:
        if u_rel is not None:
            return u_rel(tau)
        return u_fn(t_abs) if u_fn is not None else None

    def rhs(tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t_abs = tau + off_t
        return run_model(t_abs, y, inputs_at(tau, t_abs))

    single_start = bool(np.all(offsets == offsets[0]))
    with torch.no_grad():
        try:
            sol = solve(rhs, torch.as_tensor(y0, dtype=dtype), torch.as_tensor(grid, dtype=dtype), solver,
                        context=where, jump_times=None if jumps is None else torch.as_tensor(jumps, dtype=dtype))
        except SolverError as exc:
            tr = exc.t_reached
            if tr is not None and single_start:
                tr = tr + float(offsets[0])
                msg = str(exc).replace(f"t={exc.t_reached:.6g}", f"t={tr:.6g}")
            else:
                msg = f"{exc} (time measured from each run's start)"
            raise SolverError(msg, t_reached=tr) from None
        out = sol.double().numpy()  # (N, R, S)
        values: dict[str, list[np.ndarray]] = {n: [] for n in states + out_names + in_names}
        for r in range(len(ids)):
            idx = np.searchsorted(grid, rel[r])
            for j, n in enumerate(states):
                values[n].append(out[idx, r, j])
        u_rows = None
        if in_names:
            u_rows = np.stack([
                inputs_at(torch.as_tensor(g, dtype=dtype), torch.as_tensor(g + offsets, dtype=dtype)).double().numpy()
                for g in grid
            ])
            for r in range(len(ids)):
                idx = np.searchsorted(grid, rel[r])
                for j, n in enumerate(in_names):
                    values[n].append(u_rows[idx, r, j])
        if out_names:  # measurement equations on the simulated states (absolute time)
            t_abs = torch.as_tensor(grid[:, None] + offsets[None, :], dtype=dtype)
            y = run_model.observe(t_abs, sol, None if u_rows is None else torch.as_tensor(u_rows, dtype=dtype))
            y = y.double().numpy()
            for r in range(len(ids)):
                idx = np.searchsorted(grid, rel[r])
                for j, n in enumerate(out_names):
                    values[n].append(y[idx, r, j])
    units[TIME] = str(time_attrs.get("units", ""))
    ds = from_arrays(
        t_runs, values, states=list(states + out_names), inputs=list(in_names), runs=ids, units=units,
        long_names={n: long_names.get(n, n) for n in states + out_names + in_names},
        attrs={"source": "sysid.simulate", "solver": json.dumps(solver.to_dict())},
    )
    for n in out_names:
        ds[n].attrs["equation"] = model.outputs.expressions[n].text  # type: ignore[union-attr]
    ds[TIME].attrs.update(time_attrs)
    return ds


def to_numpy_rhs(model: Model, inputs: InputSource = None) -> Callable[[float, np.ndarray], np.ndarray]:
    """The model as a pure-NumPy ``f(t, y)`` for ``scipy.integrate.solve_ivp`` (no torch at call time).

    Parameters
    ----------
    model : Model
        The model; its weights and parameter values are copied as float64 NumPy arrays.
    inputs : callable, xarray.Dataset or pandas.DataFrame, optional
        ``u(t) -> (I,)``, or measured inputs of one run (a single-run trajectory dataset or a
        DataFrame with a ``time`` column) interpolated with ``model.input_interpolation``.
        Required when the model has inputs.

    Returns
    -------
    callable
        ``f(t, y)`` with ``y`` of shape (S,) (or (S, K) for ``solve_ivp(..., vectorized=True)``),
        states in ``model.state_names`` order.

    Examples
    --------
    >>> from sysid.models import neural
    >>> f = to_numpy_rhs(neural(["x", "y"], width=8, depth=1))
    >>> f(0.0, np.array([1.0, 2.0])).shape
    (2,)
    """
    if not isinstance(model, Model):
        raise ConfigError(f"to_numpy_rhs: model must be a sysid.models.Model; got {type(model).__name__}.")
    field_fn = model.field.numpy_function()
    in_names = model.input_names
    u_fn: Callable[[float], np.ndarray] | None = None
    if in_names:
        if inputs is None:
            raise ConfigError(
                f"to_numpy_rhs: the model has inputs {list(in_names)}; give inputs= (a function u(t), a "
                "single-run dataset or a DataFrame with a 'time' column)."
            )
        if isinstance(inputs, pd.DataFrame):
            inputs = _dataframe_inputs(inputs, in_names)
        if isinstance(inputs, xr.Dataset):
            ids, t_runs, keep = _run_arrays(inputs, "to_numpy_rhs (inputs)")
            if len(ids) != 1:
                raise DataError(
                    f"to_numpy_rhs: inputs must hold one run; the dataset has {ids}. Select one with "
                    "ds.isel(trajectory=[k])."
                )
            missing = [n for n in in_names if n not in inputs.data_vars]
            if missing:
                raise DataError(f"to_numpy_rhs: the inputs dataset lacks {missing}.")
            u_arr = np.stack([np.asarray(inputs[n].values[0], dtype=float)[keep[0]] for n in in_names], axis=-1)
            if not np.all(np.isfinite(u_arr)):
                raise DataError("to_numpy_rhs: the inputs dataset has missing (NaN) values; fill them first.")
            u_fn = numpy_interpolant(t_runs[0], u_arr, model.input_interpolation)
        elif callable(inputs):
            user = inputs
            n_i = len(in_names)

            def u_fn(t: float) -> np.ndarray:
                return np.asarray(user(t), dtype=float).reshape(n_i)
        else:
            raise DataError(f"to_numpy_rhs: inputs must be a function, a dataset or a DataFrame; got {type(inputs).__name__}.")
    n_s = len(model.state_names)

    def f(t: float, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        if y.shape[0] != n_s:
            raise DataError(f"to_numpy_rhs: y has {y.shape[0]} states but the model has {n_s} ({list(model.state_names)}).")
        x = y.T if y.ndim == 2 else y[None, :]
        u = None
        if u_fn is not None:
            u = np.broadcast_to(u_fn(t), (x.shape[0], len(in_names)))
        dx = field_fn(t, x, u)
        return dx.T if y.ndim == 2 else dx[0]

    return f
