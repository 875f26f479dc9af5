"""Free runs: :func:`simulate`, the one function that runs dynamics forward from initial states.

:func:`simulate` takes a model (or any dynamics as :class:`sysid.models.Dynamics`, which is how
:func:`sysid.analysis.predict` runs reference systems and plain functions), initial states (or a
dataset whose first samples, times and inputs are used) and a :class:`~sysid.solvers.SolverConfig`,
and returns the same schema as the measurements. A torch method integrates all runs in one batched
solve (:func:`sysid.solvers.solve`); a SciPy method integrates run by run on the model's NumPy copy
(:func:`sysid.solvers.solve_scipy`), which is how stiff dynamics are simulated (``"Radau"``,
``"BDF"``). NumPy dynamics with ``dopri5`` (the default) are integrated by sysid's own stepper on
NumPy arrays (:func:`sysid.solvers.solve_numpy`) without importing torch: ``sysid simulate``
simulates a model file read by :func:`sysid.io.load_dynamics` this way. Inputs of every form go
through :func:`sysid.inputs.input_source`.

Initial states, one rule: for each run and state the first of

1. ``override[state]`` (any state; a number, one per run, or a DataFrame runs x states),
2. ``latent[state]`` (latent states only; same forms),
3. the given value: the run's first sample when ``initial`` is a dataset (a missing sample, NaN,
   counts as not given), or the mapping/array value,
4. the model's default ``latent_initial[state]`` (states the model does not observe),

and a state left without a value is a :class:`~sysid.errors.DataError` naming run and state.

A model with an encoder of its hidden states (:mod:`sysid.models.encoder`) simulated from a
dataset starts each run for which neither ``override`` nor ``latent`` gives a value at sample
``past - 1``: the measured states from the data there, the hidden states from the encoder reading
the first ``past`` samples; the states of the earlier samples are NaN (no prediction). ``encoder=``
forces (True) or turns off (False) this rule.
:func:`to_numpy_rhs` turns a model into a pure-NumPy ``f(t, y)`` for SciPy.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import json
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final

import numpy as np
import pandas as pd
import xarray as xr

from sysid.data.schema import TIME, from_block, from_arrays
from sysid.errors import ConfigError, DataError, SolverError
from sysid.inputs import InputSource, dataset_runs, input_source
from sysid.models.dynamics import INTERPOLATIONS, Dynamics
from sysid.models.numpy_fields import copies_agree, in_place
from sysid.solvers import SolverConfig, check_times, solve, solve_numpy, solver_from

if TYPE_CHECKING:  # torch is imported where a torch model is simulated, not with this module
    import torch

    from sysid.models.model import Model

__all__ = ["simulate", "to_numpy_rhs", "SolverConfig"]

InputSourceLike = xr.Dataset | pd.DataFrame | Callable[[float], Any] | Mapping[str, Any] | Sequence[float] | None
Values = Mapping[str, Any] | pd.DataFrame | None


@final
@dataclass(frozen=True, kw_only=True)
class _Target:
    """What is simulated: names, units and defaults, and the torch model and/or NumPy dynamics
    (with the measurement equations' ``outputs``, evaluated on the simulated states)."""

    view: Dynamics | None
    model: Model | None
    states: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    units: Mapping[str, str]
    time_units: str
    latent_initial: Mapping[str, float]
    interpolation: str

    def numpy(self) -> Dynamics:
        """The NumPy view (a model's float64 copy, made here: only SciPy and outputs need it)."""
        return self.view if self.view is not None else Dynamics.from_model(self.model, name="model")


def _target(model: Any, where: str) -> _Target:
    if isinstance(model, Dynamics):
        return _Target(view=model, model=None, states=model.states, inputs=model.inputs,
                       outputs=model.outputs if model.observe is not None else (),
                       units=dict(zip(model.states, model.state_units))
                       | dict(zip(model.inputs, model.input_units))
                       | dict(zip(model.outputs, model.output_units)),
                       time_units=model.time_units, latent_initial=dict(model.latent_initial),
                       interpolation=model.interpolation)
    from sysid.models.model import Model

    if isinstance(model, Model):
        return _Target(view=None, model=model, states=model.state_names, inputs=model.input_names,
                       outputs=model.output_names,
                       units=dict(zip(model.state_names, model.state_units))
                       | dict(zip(model.input_names, model.input_units))
                       | dict(zip(model.output_names, model.output_units)),
                       time_units=model.time_units, latent_initial=dict(model.latent_initial),
                       interpolation=model.input_interpolation)
    raise ConfigError(
        f"{where}: model must be a sysid.models.Model, or dynamics as sysid.models.Dynamics (see "
        f"sysid.analysis.as_dynamics); got {type(model).__name__}."
    )


@final
@dataclass(frozen=True, kw_only=True)
class _Plan:
    """The runs to simulate: ids, output times, the given initial values (NaN: not given), names."""

    ids: list[str]
    times: list[np.ndarray]
    given: np.ndarray
    data: xr.Dataset | None
    units: dict[str, str] = field(default_factory=dict)
    long_names: dict[str, str] = field(default_factory=dict)
    time_attrs: dict[str, Any] = field(default_factory=dict)
    #: The one array of output times of every run (``times=`` given), else None.
    grid: np.ndarray | None = None


def _plan_from_dataset(target: _Target, ds: xr.Dataset, times: Any, runs: Any, where: str) -> _Plan:
    if times is not None:
        raise ConfigError(
            f"{where}: times comes from the dataset when initial is a dataset; to simulate on other "
            "times pass initial as a mapping {state: value} with times=..."
        )
    if runs is not None:
        raise ConfigError(f"{where}: runs= applies to mapping/array initial states; the dataset names its runs.")
    ids, t_runs, keep = dataset_runs(ds, where)
    given = np.full((len(ids), len(target.states)), np.nan)
    units, long_names = dict(target.units), {}
    for j, name in enumerate(target.states):
        if name in ds.data_vars:
            given[:, j] = np.asarray(ds[name].values, dtype=float)[np.arange(len(ids)), [k[0] for k in keep]]
    for name in target.states + target.outputs + target.inputs:
        if name in ds.data_vars:
            units[name] = str(ds[name].attrs.get("units", "")) or units[name]
            long_names[name] = str(ds[name].attrs.get("long_name", name))
    return _Plan(ids=ids, times=t_runs, given=given, data=ds, units=units, long_names=long_names,
                 time_attrs=dict(ds[TIME].attrs))


def _plan_from_values(target: _Target, initial: Any, times: Any, runs: Any, where: str) -> _Plan:
    if times is None:
        raise ConfigError(f"{where}: times is required when initial is a mapping or an array.")
    tgrid = check_times(times, where)
    states = target.states
    if isinstance(initial, Mapping):
        unknown = [k for k in initial if k not in states]
        if unknown:
            raise DataError(f"{where}: initial values for unknown states {unknown}; the model's states are {list(states)}.")
        cols = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in initial.items()}
        n_runs = max((len(v) for v in cols.values()), default=1)
        bad = {k: len(v) for k, v in cols.items() if len(v) not in (1, n_runs) or np.ndim(initial[k]) > 1}
        if bad:
            raise DataError(f"{where}: initial values must be scalars or one value per run ({n_runs}); got lengths {bad}.")
        given = np.full((n_runs, len(states)), np.nan)
        for j, name in enumerate(states):
            if name in cols:
                given[:, j] = cols[name]
    else:
        arr = np.asarray(initial, dtype=float)
        given = arr[None] if arr.ndim == 1 else arr
        if given.ndim != 2 or given.shape[1] != len(states):
            n_given = arr.shape[-1] if arr.ndim >= 1 else 0
            raise DataError(f"{where}: y0 has {n_given} states but the model has {len(states)} ({list(states)}).")
    if runs is None:
        ids = list(_default_ids(given.shape[0]))
    else:
        ids = [str(r) for r in runs]
        if len(ids) != given.shape[0] or len(set(ids)) != len(ids):
            raise DataError(f"{where}: runs must be {given.shape[0]} unique ids; got {ids}.")
    finite = np.isfinite(given)
    if not finite.all():  # values the caller wrote down must be finite (NaN: not given, in a mapping)
        named = [states.index(k) for k in initial] if isinstance(initial, Mapping) else range(len(states))
        given_mask = np.zeros(given.shape, dtype=bool)
        given_mask[:, list(named)] = True
        bad = np.argwhere(given_mask & ~finite)
        if len(bad):
            r, j = bad[0]
            raise DataError(f"{where}: initial value of state {states[j]!r} in run {ids[r]!r} is not finite "
                            f"({given[r, j]}).")
    return _Plan(ids=ids, times=[tgrid] * len(ids), given=given, data=None, units=dict(target.units),
                 time_attrs={"units": target.time_units}, grid=tgrid)


@functools.lru_cache(maxsize=8)
def _default_ids(n_runs: int) -> tuple[str, ...]:
    """``run0, run1, ...``: the ids of runs given without ``runs=`` (made once per count; the
    same string objects each call, so the result's frame is found by identity)."""
    return tuple(f"run{i}" for i in range(n_runs))


def _values_table(values: Values, target: _Target, ids: list[str], allowed: Sequence[str], what: str,
                  where: str) -> np.ndarray:
    """Per-run values ``(R, S)`` (NaN: not given) from ``{state: number or one per run}`` or a
    DataFrame of runs x states."""
    out = np.full((len(ids), len(target.states)), np.nan)
    if values is None:
        return out
    if isinstance(values, pd.DataFrame):
        keys = [str(c) for c in values.columns]
        position = {str(r): i for i, r in reversed(list(enumerate(values.index)))}  # first wins
        rows = [position.get(r) for r in ids]  # one lookup per run (was O(runs^2))
    elif isinstance(values, Mapping):
        keys, rows = [str(k) for k in values], None
    else:
        raise ConfigError(f"{where}: {what} must be a mapping {{state: value}} or a DataFrame (runs x states); "
                          f"got {type(values).__name__}.")
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise DataError(f"{where}: {what} values for {unknown}, which are not {what} states {list(allowed)}.")
    for key in keys:
        j = target.states.index(key)
        if rows is not None:
            col = np.asarray(values[key].to_numpy(dtype=float))
            out[:, j] = [col[i] if i is not None else np.nan for i in rows]
            continue
        v = np.atleast_1d(np.asarray(values[key], dtype=float))
        if v.ndim != 1 or v.size not in (1, len(ids)):
            raise DataError(f"{where}: {what} {key!r} needs 1 or {len(ids)} values; got {v.size}.")
        out[:, j] = v
    return out


def _initial_states(target: _Target, plan: _Plan, latent: Values, override: Values, where: str) -> np.ndarray:
    """The one rule (module docstring): override > latent > given > the model's default > error."""
    latent_names = [n for n in target.states if n in target.latent_initial]
    y0 = plan.given.copy()
    for what, values, allowed in (("latent", latent, latent_names), ("override", override, target.states)):
        if values is not None:
            table = _values_table(values, target, plan.ids, allowed, what, where)
            y0 = np.where(np.isfinite(table), table, y0)
    for name in latent_names:  # the model's defaults where nothing was given
        j = target.states.index(name)
        y0[:, j] = np.where(np.isnan(y0[:, j]), target.latent_initial[name], y0[:, j])
    if np.isfinite(y0).all():
        return y0
    for r in np.flatnonzero(~np.isfinite(y0).all(axis=1)):  # the first run without a value
        rid = plan.ids[r]
        bad = [target.states[j] for j in np.flatnonzero(~np.isfinite(y0[r]))]
        if plan.data is None:
            why = "not given"
        elif all(n not in plan.data.data_vars for n in bad):
            why = f"the dataset has no variables for them; it has {list(plan.data.data_vars)}"
        else:
            why = f"missing (NaN) at the first sample of the run (time {plan.times[r][0]:g})"
        example = "{" + ", ".join(f"{n!r}: value" for n in bad) + "}"
        raise DataError(
            f"{where}: no initial value for the observed states {bad} in run {rid!r}: {why}. Give "
            f"them ({example} as simulate's override= or predict's initial=), or drop the leading gap."
        )
    return y0


def _encoder_runs(target: _Target, plan: _Plan, latent: Values, override: Values,
                  encoder: bool | None, where: str) -> list[bool]:
    """Which runs start from the model's encoder (the module docstring's rule)."""
    enc = target.model.encoder if target.model is not None else None
    R = len(plan.ids)
    if encoder is not None and not isinstance(encoder, bool):
        raise ConfigError(f"{where}: encoder must be True, False or None (automatic); got {encoder!r}.")
    if encoder is True and enc is None:
        raise ConfigError(f"{where}: encoder=True, but the model has no encoder (build it with "
                          f"encoder=sysid.models.Encoder(past=...)).")
    if enc is None or encoder is False:
        return [False] * R
    if plan.data is None:
        if encoder:
            raise ConfigError(f"{where}: encoder=True reads the first {enc.past} samples of each "
                              f"run; pass initial as a dataset of measured runs.")
        return [False] * R
    given = np.zeros(R, dtype=bool)
    for what, values, allowed in (("latent", latent, [n for n in target.states if n in target.latent_initial]),
                                  ("override", override, target.states)):
        given |= np.isfinite(_values_table(values, target, plan.ids, allowed, what, where)).any(axis=1)
    if encoder and given.any():
        raise ConfigError(f"{where}: encoder=True estimates the hidden states, but latent= or "
                          f"override= gives initial values for run {plan.ids[int(np.argmax(given))]!r}; "
                          f"give one or the other.")
    return [not g for g in given]


def _encode(target: _Target, plan: _Plan, use: list[bool], source: InputSource | None,
            where: str) -> tuple[_Plan, list[int]]:
    """The plan with runs that use the encoder starting at sample ``past - 1`` (measured states
    from the data there, hidden states from the encoder), and each run's first simulated sample."""
    import torch

    if not any(use):
        return plan, [0] * len(use)
    enc = target.model.encoder
    k = enc.past - 1
    firsts = [k if u else 0 for u in use]
    ds = plan.data
    missing = [n for n in enc.measured if n not in ds.data_vars]
    if missing:
        raise DataError(f"{where}: the model's encoder reads {list(enc.measured)}, but the dataset has "
                        f"no {missing}. Give the hidden states (latent=...) or simulate with encoder=False.")
    _, _, keep = dataset_runs(ds, where)
    given, times = plan.given.copy(), list(plan.times)
    observed = [j for j, n in enumerate(target.states) if n in enc.measured]
    latent = [target.states.index(n) for n in enc.latent]
    for r, rid in enumerate(plan.ids):
        if not use[r]:
            continue
        t = plan.times[r]
        if len(t) < enc.past:
            raise DataError(
                f"{where}: the model's encoder reads the first {enc.past} samples of a run to "
                f"estimate its hidden states {list(enc.latent)}; run {rid!r} has {len(t)}. Give them "
                f"(latent=...) and simulate with encoder=False, or a longer record.")
        enc.check_sampling(t[:enc.past], f"{where} (run {rid!r})")
        rows = keep[r][:enc.past]
        y = np.stack([np.asarray(ds[n].values, dtype=float)[r, rows] for n in enc.measured], axis=-1)
        start = [target.states[j] for j in observed if not np.isfinite(y[-1, enc.measured.index(target.states[j])])]
        if start:
            raise DataError(f"{where}: run {rid!r} has no measurement of {start} at sample {enc.past} "
                            f"(time {t[k]:g}), where the encoder's simulation starts.")
        u = source.values_at(r, t[:enc.past]) if (source is not None and enc.inputs) else None
        dtype = enc.y_mean.dtype
        with torch.no_grad():
            x = enc(torch.as_tensor(y, dtype=dtype),
                    None if u is None else torch.as_tensor(u, dtype=dtype)).double().numpy()
        for j in observed:
            given[r, j] = y[-1, enc.measured.index(target.states[j])]
        given[r, latent] = x
        times[r] = t[k:]
    return dataclasses.replace(plan, given=given, times=times, grid=None), firsts


def _run_torch(target: _Target, plan: _Plan, y0: np.ndarray, source: InputSource | None,
               solver: SolverConfig, dtype: torch.dtype, where: str,
               block: np.ndarray | None = None) -> np.ndarray | list[np.ndarray]:
    """All runs in one batched torch solve in relative time on the union of the runs' grids:
    ``(R, N, S)`` when the runs share one relative grid (the usual case; a solve on the model's
    NumPy copy writes it into ``block``, :func:`_block`), else one ``(N_r, S)`` array per run."""
    import torch

    if dtype is None:
        dtype = torch.float64
    if target.model is None:
        raise ConfigError(
            f"{where}: {solver.method!r} integrates a torch model; these dynamics are NumPy "
            "(a reference system, a function or a model file read by sysid.io.load_dynamics). Use "
            "dopri5 (the default) or a SciPy method, e.g. SolverConfig(method='RK45')."
        )
    model = target.model
    tensors = [*model.parameters(), *model.buffers()]
    own = next((t.dtype for t in tensors if t.is_floating_point()), torch.get_default_dtype())  # model.dtype
    run_model = model if own == dtype else copy.deepcopy(model).to(dtype)
    offsets, grid, rel = _relative_grid(plan)
    u_at = source.torch(dtype, offsets) if source is not None else None
    jumps = source.jumps(offsets) if source is not None else None
    try:
        numpy_rhs = _numpy_rhs(run_model, y0, offsets, u_at, source, solver, dtype,
                               tensors if run_model is model else None)
        if numpy_rhs is not None:  # no torch evaluation in the solve: nothing to fold
            out = solve_numpy(numpy_rhs[0], np.asarray(y0, dtype=float), grid, solver, context=where,
                              jump_times=jumps, out=_in_block(block, len(target.states), rel),
                              into=numpy_rhs[1])
        else:
            from sysid.models.neural import frozen_weights

            off_t = torch.as_tensor(offsets, dtype=dtype)

            def rhs(tau: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
                t_abs = tau + off_t
                return run_model(t_abs, y, u_at(tau, t_abs) if u_at is not None else None)

            with torch.no_grad(), frozen_weights(run_model):  # the networks' scalings folded once
                out = solve(rhs, torch.as_tensor(y0, dtype=dtype), torch.as_tensor(grid, dtype=dtype), solver,
                            context=where, jump_times=None if jumps is None else torch.as_tensor(jumps, dtype=dtype)
                            ).double().numpy()  # (N, R, S)
    except SolverError as exc:
        raise _absolute(exc, offsets) from None
    return _per_run(out, grid, rel)


def _run_numpy(target: _Target, plan: _Plan, y0: np.ndarray, source: InputSource | None,
               solver: SolverConfig, where: str, block: np.ndarray | None = None) -> np.ndarray | list[np.ndarray]:
    """NumPy dynamics with ``dopri5``: all runs in one solve by sysid's stepper on NumPy arrays
    (:func:`sysid.solvers.solve_numpy`), in relative time on the union of the runs' grids, as
    :func:`_run_torch` integrates a model's NumPy copy (the same steps and values). Inputs are
    read in NumPy when every run has the same relative sample times (or they are constants,
    zero-order hold or linear: no torch), else run by run at absolute times."""
    fn = target.view.fn
    offsets, grid, rel = _relative_grid(plan)
    same_start = bool(np.all(offsets == offsets[0]))
    n_runs = len(plan.ids)
    u_batch = source.numpy_batch(offsets) if source is not None else None
    u_runs = ([source.numpy(r) for r in range(n_runs)]
              if source is not None and u_batch is None else None)

    def rhs(tau: float, y: np.ndarray) -> np.ndarray:
        t_abs = np.full(n_runs, tau + offsets[0]) if same_start else tau + offsets
        if u_batch is not None:
            u = u_batch(tau)
        elif u_runs is not None:
            u = np.stack([np.asarray(g(t), dtype=float).reshape(-1) for g, t in zip(u_runs, t_abs)])
        else:
            u = None
        return fn(t_abs, y, u)

    jumps = source.jumps(offsets) if source is not None else None
    try:
        out = solve_numpy(rhs, np.asarray(y0, dtype=float), grid, solver, context=where,
                          jump_times=jumps, out=_in_block(block, len(target.states), rel))
    except SolverError as exc:
        raise _absolute(exc, offsets) from None
    return _per_run(out, grid, rel)


def _per_run(out: np.ndarray, grid: np.ndarray, rel: list[np.ndarray] | None) -> np.ndarray | list[np.ndarray]:
    """A batched solve ``(N, R, S)`` on ``grid`` as ``(R, N, S)`` when every run is on that grid
    (``rel`` None), else each run's ``(N_r, S)`` at its own relative times."""
    if rel is None:
        return out.transpose(1, 0, 2)
    return [out[np.searchsorted(grid, t), r, :] for r, t in enumerate(rel)]


def _absolute(exc: SolverError, offsets: np.ndarray) -> SolverError:
    """A solve's error with the time reached in absolute time (runs that share a start), or
    said to be measured from each run's start."""
    tr = exc.t_reached
    if tr is not None and np.all(offsets == offsets[0]):
        tr = tr + float(offsets[0])
        msg = str(exc).replace(f"t={exc.t_reached:.6g}", f"t={tr:.6g}")
    else:
        msg = f"{exc} (time measured from each run's start)"
    return SolverError(msg, t_reached=tr)


def _relative_grid(plan: _Plan) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
    """Each run's start, the union of the runs' relative grids and, only when those grids
    differ, each run's relative times (None: every run on the one grid)."""
    times, first = plan.times, plan.grid
    if first is not None:  # times= given: one array for all runs, nothing to merge
        return np.full(len(times), first[0]), first - first[0], None
    offsets = np.array([t[0] for t in times])
    if len({len(t) for t in times}) == 1:
        rel_all = np.array(times) - offsets[:, None]
        if np.all(rel_all == rel_all[0]):
            return offsets, rel_all[0], None
    rel = [t - t[0] for t in times]
    return offsets, np.unique(np.concatenate(rel)), rel


def _numpy_rhs(model: Model, y0: np.ndarray, offsets: np.ndarray,
               u_at: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None,
               source: InputSource | None, solver: SolverConfig, dtype: torch.dtype,
               tensors: list[torch.Tensor] | None = None) -> tuple[Callable[[float, np.ndarray], np.ndarray],
                                                                   Callable[..., None] | None] | None:
    """The batched field on the model's NumPy copy, for the default dopri5 in float64, and its
    in-place form (:func:`sysid.models.numpy_fields.in_place`; None for a field without one),
    or None.

    Evaluated by NumPy, a field costs no torch dispatch: on 8 runs of a small network or a
    physics model an evaluation is 2-3x cheaper (issue #13). It is used only when it agrees with
    the torch model at the initial states (of up to 8 runs, :func:`_agree_at_start`; within 1e-9
    relative: the same float64 arithmetic in another order), so a field whose NumPy copy fails or
    differs keeps the torch path. Sampled inputs on one relative grid for all runs, and constants,
    are read in NumPy too
    (:meth:`~sysid.inputs.InputSource.numpy_batch`: the same values); others through ``u_at``.
    """
    import torch

    if solver.method != "dopri5" or solver.adjoint or dtype != torch.float64:
        return None
    same_start = bool(np.all(offsets == offsets[0]))
    off = float(offsets[0])
    try:
        has_u = u_at is not None
        u_np = source.numpy_batch(offsets) if source is not None else None

        def inputs_at(tau: float) -> np.ndarray | None:
            if u_np is not None:
                return u_np(tau)
            if has_u:
                return u_at(torch.tensor(tau, dtype=torch.float64), torch.as_tensor(tau + offsets)).numpy()
            return None

        with np.errstate(all="ignore"):
            f = _numpy_copy(model, np.asarray(y0, dtype=float), offsets, inputs_at, tensors)
        if f is None:
            return None
    except Exception:  # noqa: BLE001 - a field without a working NumPy copy keeps the torch path
        return None

    def numpy_rhs(tau: float, y: np.ndarray) -> np.ndarray:
        t_abs = tau + off if same_start else tau + offsets
        return np.asarray(f(t_abs, y, inputs_at(tau)), dtype=float).reshape(y.shape)

    def autonomous_rhs(tau: float, y: np.ndarray) -> np.ndarray:
        # no inputs, one start: the field's own float64 (R, S) array, as it agreed at the start
        return f(tau + off, y, None)

    # the copy agreed with the model, so its outputs are the (R, S) states' derivatives
    g = in_place(f, len(y0)) if np.ndim(y0) == 2 else None

    def numpy_into(tau: float, y: np.ndarray, out: np.ndarray) -> None:
        g(tau + off if same_start else tau + offsets, y, inputs_at(tau), out)

    def autonomous_into(tau: float, y: np.ndarray, out: np.ndarray) -> None:
        g(tau + off, y, None, out)

    if same_start and u_np is None and not has_u:
        return autonomous_rhs, (autonomous_into if g is not None else None)
    return numpy_rhs, (numpy_into if g is not None else None)


#: Per model, the NumPy copy of its field that agreed with it, with the state it was made from
#: (:func:`_numpy_copy`); an entry goes with its model.
_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: Models with more weights than this are not fingerprinted (the copy of their bytes would cost
#: more than the check it saves); their copy is made and checked at every call.
_FINGERPRINT_NUMEL = 1 << 20


def _fingerprint(model: Model, tensors: list[torch.Tensor] | None = None) -> tuple | None:
    """What a model's field and its NumPy copy are made of: its submodules (held by the cache
    entry, so a replaced one is seen: its id is not reused), every parameter's and buffer's
    dtype, shape and bytes, the physical parameters' values (which a block such as
    ``PhysicsField.values_from`` may set without touching a tensor), and the field's structure
    (:func:`_structure`). None for a model too big to fingerprint cheaply, or tensors NumPy
    cannot read. ``tensors``: the model's parameters and buffers, when the caller has them."""
    import torch

    if tensors is None:
        tensors = [*model.parameters(), *model.buffers()]
    if sum(t.numel() for t in tensors) > _FINGERPRINT_NUMEL:
        return None
    try:
        with torch.no_grad():
            values = tuple((k, v.detach().double().cpu().numpy().tobytes())
                           for k, v in model.physical_parameters().items())
        return (tuple(itertools.islice(model.modules(), 1, None)),
                tuple((t.dtype, t.shape, (t.detach() if t.requires_grad else t).numpy().tobytes())
                      for t in tensors), values, _structure(model))
    except (TypeError, RuntimeError):  # e.g. bfloat16, which NumPy has no type for
        return None


def _structure(model: Model) -> tuple:
    """What of a model's field its plain attributes decide: the field's structure as its model file
    records it (activation, states read, inputs, time dependence, ...) and the functions of its
    physics terms (held, so a replaced one is seen: its id is not reused)."""
    return model.field.spec(), tuple(m.fn for m in model.modules() if hasattr(m, "fn"))


def _numpy_copy(model: Model, y0: np.ndarray, offsets: np.ndarray,
                inputs_at: Callable[[float], np.ndarray | None],
                tensors: list[torch.Tensor] | None = None) -> Callable[..., np.ndarray] | None:
    """The model's field as NumPy ``f(t, x, u)`` when it agrees with the torch model, else None.

    A copy is made (``model.field.numpy_function()``) and checked at the initial states
    (:func:`_agree_at_start`) once per state of the model: a copy that agreed is kept with the
    model's :func:`_fingerprint` and used again while the fingerprint is the same (the same
    weights, parameter values and modules give the same function). Making and checking the copy
    cost ~0.2 ms, more than the whole solve of a few runs of a small network (issue #13). The
    fingerprint also holds the field's structure and physics functions (:func:`_structure`), so
    a plain attribute changed after construction (a physics term's function, a network's
    activation) makes a new copy too.
    """
    state = _fingerprint(model, tensors)
    kept = _COPIES.get(model) if state is not None else None
    if kept is not None and kept[0] == state:
        return kept[1]
    f = model.field.numpy_function()
    if not _agree_at_start(model, f, y0, offsets, inputs_at(0.0)):
        return None
    if state is not None:
        _COPIES[model] = (state, f)
    return f


#: Runs on which the NumPy copy is checked against the torch model: a field is evaluated row by
#: row, so a copy that is right on these is the same function; checking all 1000 runs of a batch
#: cost a tenth of their solve (issue #13).
_CHECK_ROWS = 8


def _agree_at_start(model: Model, f: Callable[..., np.ndarray], y0: np.ndarray, offsets: np.ndarray,
                    u0: np.ndarray | None) -> bool:
    """Whether the NumPy copy ``f`` and the torch model give the same derivatives at the initial
    states of up to :data:`_CHECK_ROWS` runs spread over the batch (first and last included)."""
    import torch

    rows = np.unique(np.linspace(0, len(y0) - 1, min(len(y0), _CHECK_ROWS)).round().astype(int))
    u = None if u0 is None else np.asarray(u0, dtype=float)[rows]  # inputs: one row per run
    got = np.asarray(f(offsets[rows], y0[rows], u), dtype=float).reshape(len(rows), -1)
    with torch.no_grad():
        want = model(torch.as_tensor(offsets[rows]), torch.as_tensor(y0[rows]),
                     None if u is None else torch.as_tensor(u)).numpy().reshape(len(rows), -1)
    return copies_agree(got, want, rtol=1e-9, atol=1e-12)  # float64 rounding


def _run_scipy(target: _Target, plan: _Plan, y0: np.ndarray, source: InputSource | None,
               solver: SolverConfig, where: str) -> list[np.ndarray]:
    """With SciPy on the NumPy right-hand side: explicit methods integrate the runs together in
    stacked solves when the inputs are absent or constant; implicit methods and sampled or
    function inputs run by run (vectorised for implicit Jacobians);
    :func:`sysid.solvers.ivp.solve_scipy_runs`."""
    from sysid.solvers.ivp import solve_scipy_runs

    fn = target.numpy().fn
    offsets = np.array([float(t[0]) for t in plan.times])
    n_inputs = len(target.inputs)
    ufns = [source.numpy(r) for r in range(len(plan.ids))] if source is not None else None

    def f_rows(tau: float, x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        t_abs = offsets[rows] + tau
        if ufns is None:
            u = None
        elif source is not None and source.constant is not None:
            u = source.constant[rows]
        elif (rows == rows[0]).all():  # one run (K states at once for an implicit Jacobian)
            u = np.broadcast_to(ufns[rows[0]](t_abs[0]), (rows.size, n_inputs))
        else:
            u = np.stack([np.broadcast_to(ufns[r](t), (n_inputs,)) for r, t in zip(rows, t_abs)])
        return fn(t_abs, x, u)

    # sampled inputs kink or jump at each run's own sample times, and a function is called run by
    # run: stacking pays off without inputs or with constant ones
    stack = source is None or source.constant is not None
    return solve_scipy_runs(f_rows, y0, plan.times, solver, context=where, ids=plan.ids,
                            states=target.states, time_units=target.time_units, stack=stack)


def _result(target: _Target, plan: _Plan, states: np.ndarray | list[np.ndarray], source: InputSource | None,
            solver: SolverConfig, block: np.ndarray | None = None) -> xr.Dataset:
    """The schema: states, the measurement equations' outputs (role "state": measured quantities)
    evaluated on them, and the inputs used. ``states``: ``(R, N, S)`` when every run has the same
    times (its columns go to the dataset as they are; already in ``block``, :func:`_block`, when
    the solve wrote them there), else one ``(N_r, S)`` array per run."""
    if isinstance(states, np.ndarray):
        values: dict[str, Any] = {n: states[:, :, j] for j, n in enumerate(target.states)}
    else:
        values = {n: [s[:, j] for s in states] for j, n in enumerate(target.states)}
    units = dict(plan.units)
    u_runs = ([None] * len(plan.times) if source is None
              else [source.values_at(r, t) for r, t in enumerate(plan.times)])
    times = plan.grid if plan.grid is not None else plan.times  # times=: one grid, broadcast
    if target.outputs:
        observe = target.numpy().observe
        if isinstance(states, np.ndarray) and target.view is None:
            # a model's measurement equations are elementwise: every run's rows in one call
            R, N, S = states.shape
            u_rows = None if source is None else np.concatenate(u_runs)
            t_rows = np.broadcast_to(np.asarray(times, dtype=float), (R, N)).reshape(-1)
            y = np.asarray(observe(t_rows, states.reshape(R * N, S),
                                   u_rows), dtype=float).reshape(R, N, -1)
            values.update({n: y[:, :, j] for j, n in enumerate(target.outputs)})
        else:
            ys = [np.asarray(observe(t, x, u), dtype=float).reshape(len(t), -1)
                  for t, x, u in zip(plan.times, states, u_runs)]
            for j, n in enumerate(target.outputs):
                values[n] = [y[:, j] for y in ys]
    if source is not None:
        for j, n in enumerate(target.inputs):
            values[n] = [u[:, j] for u in u_runs]
        units |= dict(source.units)
    time_attrs = {"units": target.time_units, "long_name": "time", **plan.time_attrs}
    units[TIME] = str(time_attrs.get("units", ""))
    shown = target.states + target.outputs
    kw: dict[str, Any] = dict(states=list(shown), inputs=list(target.inputs), runs=plan.ids, units=units,
                              long_names={n: plan.long_names.get(n, n) for n in shown + target.inputs},
                              attrs={"source": "sysid.simulate", "solver": _solver_json(solver)})
    if isinstance(states, np.ndarray):  # one grid: the times and every variable in one allocation
        names = list(shown + target.inputs)
        if block is None:
            block = np.empty((1 + len(names), *states.shape[:2]))
        solved = np.may_share_memory(states, block)  # a NumPy solve wrote the states there
        block[0] = times
        for i in range(len(target.states) if solved else 0, len(names)):
            block[1 + i] = values[names[i]]
        ds = from_block(block, **kw)
    else:
        if plan.grid is not None:  # one grid, copied once
            times = np.broadcast_to(plan.grid, (len(plan.times), len(plan.grid)))
        ds = from_arrays(times, values, **kw)
    variables = ds.variables  # attributes set on the variables: no DataArray built for it
    if target.model is not None and target.model.outputs is not None:
        for n in target.outputs:
            variables[n].attrs["equation"] = target.model.outputs.expressions[n].text
    variables[TIME].attrs.update(time_attrs)
    return ds


@functools.lru_cache(maxsize=64)
def _solver_json(solver: SolverConfig) -> str:
    """The settings as the dataset's ``solver`` attribute (a frozen config: written once)."""
    return json.dumps(solver.to_dict())


def simulate(
    model: Model | Dynamics,
    initial: xr.Dataset | Mapping[str, Any] | np.ndarray | Sequence[Any],
    times: Sequence[float] | np.ndarray | None = None,
    *,
    inputs: InputSourceLike = None,
    solver: SolverConfig | str | None = None,
    latent: Values = None,
    override: Values = None,
    runs: Sequence[str] | None = None,
    interpolation: str | None = None,
    dtype: torch.dtype | None = None,
    encoder: bool | None = None,
) -> xr.Dataset:
    """Simulate a model forward and return the trajectory schema (user units).

    Parameters
    ----------
    model : Model or Dynamics
        A model (never modified; copied when ``dtype`` differs from its own), or NumPy dynamics
        (:class:`sysid.models.Dynamics`, e.g. from :func:`sysid.analysis.as_dynamics`), which need
        a SciPy method.
    initial : xarray.Dataset, mapping or array
        A trajectory dataset: every run starts from its first sample and is simulated on its own
        time grid, with the dataset's inputs unless ``inputs`` is given (``times`` must be None).
        Or a mapping ``{state: value or one value per run}`` or an array (R, S) / (S,) over all
        the model's states, simulated on ``times``.
    times : 1-D array, optional
        Output times (finite, strictly increasing, else DataError; the first is the initial time)
        for mapping/array initial states.
    inputs : dataset, DataFrame, callable or constants, optional
        Measured inputs, ``u(t)``, or constant values (see :mod:`sysid.inputs`). Required when the
        model has inputs and ``initial`` carries none.
    solver : SolverConfig or str, optional
        How to integrate; default ``default_solver("simulate")`` (dopri5, rtol 1e-6, atol 1e-8);
        a method name means that method with the other defaults. An adaptive method keeps each
        run's own error within rtol/atol at every step, as if that run were simulated alone: a
        run's result does not depend on the runs simulated with it (beyond rounding and the
        finer steps a more demanding run imposes). A SciPy method ("RK45", "Radau",
        "BDF", ...) integrates run by run on the model's NumPy copy: use "Radau" or "BDF" for stiff
        dynamics.
    latent, override : mapping or DataFrame, optional
        Initial values (``{state: number or one per run}``, or a DataFrame of runs x states whose
        NaN or absent rows mean "not given"): ``latent`` for latent states, ``override`` for any
        state. See the module docstring for the one rule that picks each initial value.
    runs : sequence of str, optional
        Run ids for mapping/array initial states (default run0, run1, ...).
    interpolation : {"zoh", "linear", "cubic"}, optional
        How sampled inputs are interpolated; default the model's own.
    dtype : torch.dtype, optional
        Precision of a torch simulation (default float64; SciPy and NumPy dynamics always run in
        float64).
    encoder : bool, optional
        For a model with an encoder of its hidden states (``model.encoder``) and a dataset
        ``initial``: None (default) starts every run without ``latent``/``override`` values at
        sample ``past - 1``, its hidden states estimated from the first ``past`` samples (the
        earlier samples' states are NaN); True requires that for every run; False never uses
        the encoder (hidden states from ``latent``, else ``latent_initial``).

    Returns
    -------
    xarray.Dataset
        Schema with every model state (role "state"), every output of the model's measurement
        equations (role "state" too: a measured quantity; attr ``equation``) and the inputs used
        (role "input") at the output times; units and long names from the dataset or the model;
        attrs ``solver``.

    Notes
    -----
    With a torch method all runs are integrated in one batched solve in *relative* time
    ``tau = t - t0_run`` on the union of the runs' relative output grids; the field sees each run's
    absolute time. A fixed-step method takes ``substeps`` steps per interval of that union grid (or
    ``ceil(gap / step)``). Measured inputs jump (zero-order hold) or kink (linear) at their sample
    times; adaptive torch methods step exactly onto those times rather than crossing them.

    Raises
    ------
    DataError
        For initial states, times or inputs that do not fit the model (naming states, runs, times).
    SolverError
        When the integration fails, with ``t_reached`` (absolute time) and a hint.
    """
    where = "simulate"
    target = _target(model, where)
    if not isinstance(solver, (SolverConfig, str, type(None))):
        raise ConfigError(f"{where}: solver must be a SolverConfig or a method name; got {type(solver).__name__}.")
    solver = solver_from(solver, "simulate")
    kind = interpolation or target.interpolation
    if kind not in INTERPOLATIONS:
        raise ConfigError(f"{where}: interpolation must be one of {list(INTERPOLATIONS)}; got {kind!r}.")
    if isinstance(initial, xr.Dataset):
        plan = _plan_from_dataset(target, initial, times, runs, where)
        source = inputs if inputs is not None or not target.inputs else initial
    else:
        plan = _plan_from_values(target, initial, times, runs, where)
        source = inputs
    use = _encoder_runs(target, plan, latent, override, encoder, where)
    spans = [(float(t[0]), float(t[-1])) for t in plan.times] if source is not None else None
    full, firsts = plan, [0] * len(plan.ids)
    if not any(use):
        y0 = _initial_states(target, plan, latent, override, where)
    src = input_source(source, target.inputs, plan.ids, kind=kind, where=where, spans=spans)
    if any(use):  # the encoder reads the inputs too
        plan, firsts = _encode(target, plan, use, src, where)
        y0 = _initial_states(target, plan, latent, override, where)
    block = None if any(use) else _block(target, plan)
    if solver.backend == "scipy":
        states = _run_scipy(target, plan, y0, src, solver, where)
    elif target.model is None and solver.method == "dopri5" and not solver.adjoint:
        states = _run_numpy(target, plan, y0, src, solver, where, block)
    else:
        states = _run_torch(target, plan, y0, src, solver, dtype, where, block)
    # samples the encoder read before a run's start have no prediction
    if any(firsts):
        states = [np.concatenate([np.full((k, x.shape[1]), np.nan), x]) if k else x
                  for k, x in zip(firsts, states)]
    return _result(target, full, states, src, solver, block)


def _block(target: _Target, plan: _Plan) -> np.ndarray | None:
    """The result's one allocation ``(1 + V, R, N)`` (times, then states, outputs, inputs: see
    :func:`sysid.data.schema.from_block`) when every run has ``N`` samples, else None. A NumPy
    solve on one grid writes the states straight into it (no copy: for 1000 runs the copy and a
    second allocation of the solution cost a tenth of the solve, issue #13)."""
    first = plan.times[0]
    if plan.grid is None and not all(len(t) == len(first) for t in plan.times):  # grid: one for all
        return None
    return np.empty((1 + len(target.states + target.outputs + target.inputs), len(plan.times), len(first)))


def _in_block(block: np.ndarray | None, n_states: int, rel: list[np.ndarray] | None) -> np.ndarray | None:
    """Where a batched solve on one grid writes its ``(N, R, S)`` solution: the states' planes
    of ``block``; None without a block or when the runs' grids differ."""
    return None if block is None or rel is not None else block[1:1 + n_states].transpose(2, 1, 0)


def to_numpy_rhs(model: Model, inputs: InputSourceLike = None) -> Callable[[float, np.ndarray], np.ndarray]:
    """The model as a pure-NumPy ``f(t, y)`` for SciPy's integrators (no torch at call time).

    Parameters
    ----------
    model : Model
        The model; its weights and parameter values are copied as float64 NumPy arrays.
    inputs : callable, xarray.Dataset, pandas.DataFrame or constants, optional
        ``u(t) -> (I,)``, measured inputs of one run (a single-run trajectory dataset or a
        DataFrame with a ``time`` column) interpolated with ``model.input_interpolation``, or
        constant values (see :mod:`sysid.inputs`). Required when the model has inputs.

    Returns
    -------
    callable
        ``f(t, y)`` with ``y`` of shape (S,) (or (S, K) for vectorised calls), states in
        ``model.state_names`` order.

    Examples
    --------
    >>> from sysid.models import neural
    >>> f = to_numpy_rhs(neural(["x", "y"], width=8, depth=1))
    >>> f(0.0, np.array([1.0, 2.0])).shape
    (2,)
    """
    from sysid.models.model import Model

    where = "to_numpy_rhs"
    if not isinstance(model, Model):
        raise ConfigError(f"{where}: model must be a sysid.models.Model; got {type(model).__name__}.")
    if isinstance(inputs, xr.Dataset):
        ids = dataset_runs(inputs, f"{where} (inputs)")[0]
        if len(ids) != 1:
            raise DataError(f"{where}: inputs must hold one run; the dataset has {ids}. Select one with "
                            "ds.isel(trajectory=[k]).")
    src = input_source(inputs, model.input_names, ["run0"], kind=model.input_interpolation, where=where)
    u_fn = src.numpy(0) if src is not None else None
    field_fn = model.field.numpy_function()
    n_s, n_i = len(model.state_names), len(model.input_names)

    def f(t: float, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=float)
        if y.shape[0] != n_s:
            raise DataError(f"{where}: y has {y.shape[0]} states but the model has {n_s} ({list(model.state_names)}).")
        x = y.T if y.ndim == 2 else y[None, :]
        u = None if u_fn is None else np.broadcast_to(u_fn(t), (x.shape[0], n_i))
        dx = field_fn(t, x, u)
        return dx.T if y.ndim == 2 else dx[0]

    return f
