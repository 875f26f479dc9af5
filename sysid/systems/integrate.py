"""Integrate a reference system with SciPy into the trajectory schema.

The integration itself is :func:`sysid.solvers.solve_scipy` (the one guarded SciPy call: a
finiteness check in the right-hand side, a work budget, and a :class:`~sysid.errors.SolverError`
carrying SciPy's message and the time reached on every failure).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from sysid.data import from_arrays
from sysid.errors import ConfigError, DataError, ParameterError
from sysid.solvers import SolverConfig, solve_scipy
from sysid.solvers import check_times as _check_times
from sysid.systems.base import System, did_you_mean, get

METHODS = ("RK45", "DOP853", "LSODA", "BDF", "Radau")

InputFn = Callable[[float], Any]


def resolve_system(system: System | str, where: str) -> System:
    """A :class:`System` from an instance or a catalogue name."""
    if isinstance(system, System):
        return system
    if isinstance(system, str):
        return get(system)
    raise ConfigError(f"{where}: system must be a System or a catalogue name; got {type(system).__name__}.")


def check_method(method: str, rtol: float, atol: float, where: str) -> None:
    """Reject an unknown solver method or a non-positive tolerance."""
    if method not in METHODS:
        raise ConfigError(f"{where}: method must be one of {list(METHODS)}; got {method!r}.")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, (int, float)) or not math.isfinite(tol) or tol <= 0:
            raise ConfigError(f"{where}: {name} must be a positive number; got {tol!r}.")


def check_times(t: Any, where: str) -> np.ndarray:
    """Output times as a 1-D float array with at least 2 finite, strictly increasing values
    (:func:`sysid.solvers.check_times`; DataError otherwise)."""
    return _check_times(t, where, minimum=2, name="t")


def check_initial(system: System, y0: Any, where: str) -> np.ndarray:
    """Initial states as an array of shape ``(R, S)`` (a single ``(S,)`` state gives R = 1).

    ``y0`` is an array ``(S,)`` or ``(R, S)`` in the system's state order, or a mapping state
    name -> value (or one value per run) naming every state; an unknown or missing name is a
    :class:`~sysid.errors.ParameterError` naming it.
    """
    if isinstance(y0, Mapping):
        y0 = _initial_from_mapping(system, y0, where)
    try:
        arr = np.asarray(y0, dtype=float)
    except (TypeError, ValueError):
        raise DataError(
            f"{where}: y0 must be numbers: an array of shape ({len(system.states)},) or (runs, "
            f"{len(system.states)}) or a mapping state -> value over {list(system.states)}; got "
            f"{type(y0).__name__} {_short(y0)}."
        ) from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != len(system.states):
        given = arr.shape[-1] if arr.ndim else 0
        raise DataError(
            f"{where}: y0 has {given} values per run (shape {np.shape(y0)}) but system "
            f"{system.name!r} has {len(system.states)} states {list(system.states)}; pass y0 of "
            f"shape ({len(system.states)},) or (runs, {len(system.states)})."
        )
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        r, s = bad[0]
        raise DataError(
            f"{where}: y0 must be finite; state {system.states[s]!r} of run {r} is {arr[r, s]}."
        )
    return arr


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _initial_from_mapping(system: System, y0: Mapping[Any, Any], where: str) -> np.ndarray:
    """``{state: value or one value per run}`` as an array ``(S,)`` or ``(R, S)``."""
    states = list(system.states)
    unknown = [k for k in y0 if k not in states]
    if unknown:
        folded = [s for s in states if s.lower() == str(unknown[0]).lower()]
        hint = f" (did you mean {folded[0]!r}?)" if folded else did_you_mean(str(unknown[0]), states)
        raise ParameterError(
            f"{where}: y0 names {unknown} that are not states of system {system.name!r}{hint}; "
            f"its states are {states}."
        )
    missing = [k for k in states if k not in y0]
    if missing:
        raise ParameterError(
            f"{where}: y0 gives no initial value for state(s) {missing} of system "
            f"{system.name!r}; a mapping must name every state of {states} (its typical initial "
            f"state is {dict(zip(states, map(float, system.y0)))})."
        )
    columns = []
    for name in states:
        try:
            columns.append(np.asarray(y0[name], dtype=float))
        except (TypeError, ValueError):
            raise DataError(f"{where}: y0[{name!r}] must be a number or one number per run; got "
                            f"{_short(y0[name])}.") from None
    ndims = {c.ndim for c in columns}
    if ndims == {0}:
        return np.stack(columns)
    sizes = {c.size for c in columns if c.ndim == 1}
    if ndims - {0, 1} or len(sizes) != 1:
        raise DataError(
            f"{where}: y0 values must be one number or one number per run for every state; got "
            f"{ {n: np.shape(y0[n]) for n in states} } (shapes per state)."
        )
    runs = sizes.pop()
    return np.stack([np.broadcast_to(c, (runs,)) for c in columns], axis=1)


def check_run_inputs(system: System, inputs: Any, n_runs: int, where: str) -> list[InputFn | None]:
    """One input function (or None) per run from a callable or a per-run sequence of callables."""
    if inputs is None or callable(inputs):
        fns = [inputs] * n_runs
    elif isinstance(inputs, Sequence) and not isinstance(inputs, (str, bytes)):
        fns = list(inputs)
        if len(fns) != n_runs:
            raise ConfigError(
                f"{where}: {len(fns)} input functions for {n_runs} runs; pass one callable for all "
                f"runs or one per run."
            )
    else:
        raise ConfigError(
            f"{where}: inputs must be a callable u(t) or a list of them (one per run); got "
            f"{type(inputs).__name__}."
        )
    for fn in fns:
        system.check_inputs(fn)
    return fns


def sample_inputs(system: System, fn: InputFn | None, t: np.ndarray) -> np.ndarray:
    """Input values ``u(t_k)`` as an array ``(N, I)``."""
    n_in = len(system.inputs)
    out = np.empty((len(t), n_in))
    if fn is None:
        return out
    for k, tk in enumerate(t):
        u = np.asarray(fn(float(tk)), dtype=float).reshape(-1)
        if u.shape != (n_in,):
            raise ConfigError(
                f"System {system.name!r}: inputs(t) must return {n_in} values {list(system.inputs)}; "
                f"it returned shape {u.shape} at t={tk}."
            )
        out[k] = u
    return out


def solve_one(
    system: System,
    y0: np.ndarray,
    t: np.ndarray,
    params: Mapping[str, float],
    inputs: InputFn | None,
    *,
    method: str,
    rtol: float,
    atol: float,
    run_id: str,
) -> np.ndarray:
    """Solve one run; return the states at ``t`` as an array ``(N, S)``.

    Raises
    ------
    SolverError
        When SciPy fails or the right-hand side returns NaN/inf, with the time reached.
    """
    where = f"integrate {system.name!r} (run {run_id!r}, method {method!r})"
    sol = solve_scipy(system.numpy_rhs(params, inputs), y0, t,
                      SolverConfig(method=method, rtol=rtol, atol=atol), context=where,
                      states=system.states, time_units=system.time_units)
    return sol.y.T.copy()


def build_dataset(
    system: System,
    times: list[np.ndarray],
    states: list[np.ndarray],
    inputs: list[np.ndarray],
    run_ids: list[str],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """The schema dataset from per-run times, states ``(N, S)`` and inputs ``(N, I)``."""
    values: dict[str, list[np.ndarray]] = {}
    for j, name in enumerate(system.states):
        values[name] = [y[:, j] for y in states]
    for j, name in enumerate(system.inputs):
        values[name] = [u[:, j] for u in inputs]
    long_names = {n: n for n in (*system.states, *system.inputs)}
    return from_arrays(
        times, values, states=system.states, inputs=system.inputs, runs=run_ids,
        units=system.units, long_names=long_names, attrs=dict(attrs),
    )


def system_attrs(system: System, params: Mapping[str, float], method: str, rtol: float,
                 atol: float) -> dict[str, Any]:
    """Provenance attributes (netCDF-safe: strings and numbers; parameters as JSON)."""
    return {
        "system": system.name,
        "system_title": system.title,
        "system_reference": system.reference,
        "parameters": json.dumps(dict(params)),
        "solver_method": method,
        "solver_rtol": float(rtol),
        "solver_atol": float(atol),
    }


def integrate(
    system: System | str,
    y0: Any,
    t: Any,
    *,
    params: Mapping[str, float] | None = None,
    inputs: InputFn | Sequence[InputFn] | None = None,
    method: str = "LSODA",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    run_id: str | Sequence[str] | None = None,
) -> xr.Dataset:
    """Integrate a reference system with SciPy and return the trajectory schema.

    Parameters
    ----------
    system : System or str
        A system or its catalogue name.
    y0 : array_like, shape (S,) or (R, S), or mapping
        Initial state(s) in the system's state order; R initial states give R runs. Or a
        mapping naming every state, ``{"x": 1.0, "v": 0.0}`` (values may be one per run).
    t : array_like, shape (N,)
        Output times (strictly increasing); integration runs from ``t[0]`` to ``t[-1]``.
    params : mapping, optional
        Parameter values overriding the defaults (unknown names raise ParameterError).
    inputs : callable or sequence of callables, optional
        ``u(t)`` returning an array of shape ``(I,)``, one for all runs or one per run; required
        exactly when the system has inputs. Values at the output times are stored as input
        variables.
    method : {"LSODA", "RK45", "DOP853", "BDF", "Radau"}
        :func:`scipy.integrate.solve_ivp` method.
    rtol, atol : float
        Solver tolerances.
    run_id : str or sequence of str, optional
        Run ids; default ``"run0"`` (and ``"run1", ...`` for several runs).

    Returns
    -------
    xarray.Dataset
        The trajectory schema with units, roles and provenance attrs (``system``, ``parameters``
        as JSON, ``solver_method``, ``solver_rtol``, ``solver_atol``).

    Raises
    ------
    SolverError
        With SciPy's message and ``t_reached`` when the integration fails or the right-hand side
        returns NaN/inf.
    ParameterError, DataError, ConfigError
        For unknown parameters, bad ``y0``/``t``, bad inputs or options.

    Examples
    --------
    >>> import numpy as np
    >>> ds = integrate("logistic", [10.0], np.linspace(0, 100, 5),
    ...                params={"r": 0.05, "K": 200.0})
    >>> round(float(ds["N"][0, -1]), 3)
    177.302
    """
    where = "integrate"
    sys_ = resolve_system(system, where)
    check_method(method, rtol, atol, where)
    p = sys_.resolve_parameters(params)
    times = check_times(t, where)
    init = check_initial(sys_, y0, where)
    n_runs = init.shape[0]
    fns = check_run_inputs(sys_, inputs, n_runs, where)
    if run_id is None:
        ids = [f"run{i}" for i in range(n_runs)]
    elif isinstance(run_id, str):
        ids = [run_id] if n_runs == 1 else [f"{run_id}_{i}" for i in range(n_runs)]
    else:
        ids = [str(r) for r in run_id]
        if len(ids) != n_runs:
            raise ConfigError(f"{where}: {len(ids)} run ids for {n_runs} initial states.")
    traj = [
        solve_one(sys_, init[i], times, p, fns[i], method=method, rtol=rtol, atol=atol,
                  run_id=ids[i])
        for i in range(n_runs)
    ]
    u = [sample_inputs(sys_, fns[i], times) for i in range(n_runs)]
    return build_dataset(sys_, [times] * n_runs, traj, u, ids,
                         system_attrs(sys_, p, method, rtol, atol))


__all__ = ["METHODS", "integrate"]
