"""Free-run simulation and k-step-ahead prediction of any dynamics on a dataset's sample times.

- Free run: each run starts from its first sample (or given initial states) and is integrated over
  the whole run with the run's measured inputs; nothing measured is used after the start.
- k-step-ahead: from every sample ``i`` whose states are all measured, integrate ``k`` sample
  intervals and compare the result with sample ``i + k``. The first ``k`` samples of each run have
  no k-step prediction (NaN). ``k = 1`` scores one-step prediction, large ``k`` tends to free run.

Both return a trajectory dataset (the sysid schema) on the data's sample times, so
:func:`sysid.analysis.trajectory_metrics` scores them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sysid.analysis.dynamics import Dynamics, as_dynamics, step_batch
from sysid.errors import ConfigError, DataError
from sysid.inputs import input_source
from sysid.solvers import SolverConfig, default_solver

Initial = Mapping[str, "float | Sequence[float]"]


def fitted_initial_states(model: object) -> pd.DataFrame | None:
    """The initial states a fit estimated, per training run: all states when the fit treated them
    as free (``FitConfig(initial_states="free")``), else only the unmeasured (latent) ones."""
    from sysid.training import FitResult

    if not isinstance(model, FitResult):
        return None
    if getattr(model.config, "initial_states", "measured") == "free" and not model.initial_states.empty:
        return model.initial_states
    return model.latent_initial


def _start_values(dyn: Dynamics, runs: list[str], initial: Initial | None,
                  estimated: pd.DataFrame | None) -> pd.DataFrame:
    """Runs x states: ``initial`` where given, else the fit's estimate for that run, else NaN (the
    data's first sample or the model's default then, by :func:`sysid.simulate`'s rule)."""
    table = pd.DataFrame(np.nan, index=pd.Index(runs, name="trajectory"), columns=list(dyn.states))
    if estimated is not None:
        est = estimated.copy()
        est.index = est.index.map(str)
        for name in est.columns.intersection(table.columns):
            table[name] = est[name].reindex(runs).to_numpy(dtype=float)
    initial = dict(initial or {})
    unknown = sorted(set(initial) - set(dyn.states))
    if unknown:
        raise DataError(f"initial: {unknown} are not states of {dyn.name}; its states are {list(dyn.states)}.")
    for name, value in initial.items():
        v = np.atleast_1d(np.asarray(value, dtype=float))
        if v.ndim != 1 or v.size not in (1, len(runs)):
            raise DataError(f"initial[{name!r}] has {v.size} values; give one, or one per run ({len(runs)}).")
        table[name] = np.broadcast_to(v, (len(runs),))
    return table


def _to_dataset(
    dyn: Dynamics,
    data: xr.Dataset,
    runs: list[str],
    times: list[np.ndarray],
    states: list[np.ndarray],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """Predictions as a schema dataset, with units/long names from the data (or the dynamics)."""
    from sysid.data import from_arrays, run_values

    values: dict[str, list[np.ndarray]] = {n: [s[:, j] for s in states] for j, n in enumerate(dyn.states)}
    values.update(run_values(data, dyn.inputs, runs=runs)[1])
    if dyn.outputs and dyn.observe is not None:  # measurement equations on the predicted states
        ys = []
        for i, r in enumerate(runs):
            u = np.stack([values[n][i] for n in dyn.inputs], -1) if dyn.inputs else None
            ys.append(np.asarray(dyn.observe(np.asarray(times[i], float), states[i], u), dtype=float))
        for j, name in enumerate(dyn.outputs):
            values[name] = [y[:, j] for y in ys]
    shown = (*dyn.states, *dyn.outputs)
    units = {n: str(data[n].attrs.get("units", u)) if n in data else u
             for n, u in zip(shown, (*dyn.state_units, *dyn.output_units))}
    units.update({n: str(data[n].attrs.get("units", "")) for n in dyn.inputs})
    long_names = {n: str(data[n].attrs.get("long_name", n)) for n in (*shown, *dyn.inputs) if n in data}
    units["time"] = str(data["time"].attrs.get("units", dyn.time_units))
    return from_arrays(
        times, values, states=list(shown), inputs=list(dyn.inputs), runs=runs,
        units=units, long_names=long_names, attrs=dict(attrs),
    )


def predict(
    model: Any,
    data: xr.Dataset,
    *,
    k: int | None = None,
    initial: Initial | None = None,
    runs: Sequence[str] | None = None,
    interpolation: str | None = None,
    settings: SolverConfig | None = None,
    states: Sequence[str] | None = None,
    params: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """Simulate ``model`` on the data's sample times: free run (``k=None``) or k-step-ahead.

    Parameters
    ----------
    model : Model, FitResult, System, Dynamics or callable ``f(t, y)``
        The dynamics (see :func:`sysid.analysis.as_dynamics`).
    data : xarray.Dataset
        Measured trajectories (sysid schema); its inputs drive the simulation.
    k : int, optional
        Steps ahead; None for free-run simulation.
    initial : mapping, optional
        Initial values for states (a number for all runs or one per run). Free run only. Each
        state starts from the first of: ``initial``, a FitResult's estimate for that run
        (``initial_states`` of a fit with free initial states, else ``latent_initial``), the run's
        first sample, the model's ``latent_initial`` - :func:`sysid.simulate`'s one rule, with
        ``initial`` and the estimates as its ``override``.
    runs : sequence of str, optional
        Runs to predict; default all.
    interpolation : {"zoh", "linear", "cubic"}, optional
        How the measured inputs are interpolated between samples; default the model's own
        (``Model.input_interpolation``), "linear" for other dynamics.
    settings : SolverConfig, optional
        How to integrate; default the analysis default (SciPy RK45, rtol 1e-8, atol 1e-10). A
        free run is :func:`sysid.simulate`; a torch method (e.g. "dopri5") needs a Model or
        FitResult, and k-step prediction needs a SciPy method.
    states, params : optional
        Forwarded to :func:`as_dynamics` (state names of a plain callable; system parameters).

    Returns
    -------
    xarray.Dataset
        The prediction in the trajectory schema, same runs and times as ``data``.
    """
    from sysid.data import run_ids, select_runs
    from sysid.training import FitResult

    dyn = as_dynamics(model, states=states, params=params)
    interpolation = interpolation or dyn.interpolation
    all_runs = run_ids(data)
    runs = list(all_runs if runs is None else runs)
    bad = [r for r in runs if r not in all_runs]
    if bad:
        raise DataError(f"predict: runs {bad} are not in the data; runs are {all_runs}.")
    missing_inputs = [n for n in dyn.inputs if n not in data.data_vars]
    if missing_inputs:
        raise DataError(
            f"predict: {dyn.name} needs inputs {list(dyn.inputs)} but the data has no {missing_inputs}."
        )
    if k is None:
        from sysid.models import Model
        from sysid.simulation import simulate

        target = model.model if isinstance(model, FitResult) else model
        sub = data if runs == all_runs else select_runs(data, runs)
        start = _start_values(dyn, runs, initial, fitted_initial_states(model))
        out = simulate(target if isinstance(target, Model) else dyn, sub, override=start,
                       solver=settings if settings is not None else default_solver("analysis"),
                       interpolation=interpolation)
        out.attrs["prediction"] = "free run"
        return out
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"predict: k must be a positive integer (steps ahead) or None; got {k!r}.")
    if initial:
        raise ConfigError("predict: initial= applies to free run only; k-step starts from measured samples.")
    return _k_step(dyn, data, runs, int(k), interpolation, settings)


def _k_step(
    dyn: Dynamics,
    data: xr.Dataset,
    runs: list[str],
    k: int,
    interpolation: str,
    settings: SolverConfig | None,
) -> xr.Dataset:
    from sysid.data import run_values, select_runs

    latent = [n for n in dyn.states if n not in data.data_vars]
    if latent:
        raise DataError(
            f"predict: k-step prediction needs every state measured; the data has no {latent}. "
            f"Use free run (k=None) with initial= for unmeasured states."
        )
    times, columns = run_values(data, dyn.states, runs=runs)
    rows_run, rows_start, x0 = [], [], []
    for i in range(len(runs)):  # every start whose states are all measured, k samples before the end
        y = np.stack([columns[n][i] for n in dyn.states], -1)
        starts = np.flatnonzero(np.all(np.isfinite(y[:max(len(y) - k, 0)]), axis=1))
        rows_run.append(np.full(starts.size, i))
        rows_start.append(starts)
        x0.append(y[starts])
    preds = [np.full((len(t), dyn.n_states), np.nan) for t in times]
    rr, ss = np.concatenate(rows_run), np.concatenate(rows_start)
    if rr.size:
        x = np.concatenate(x0).astype(float)
        padded = np.full((len(runs), max(len(t) for t in times)), np.nan)
        for i, t in enumerate(times):
            padded[i, :len(t)] = t
        src = input_source(select_runs(data, runs) if dyn.inputs else None, dyn.inputs, runs,
                           kind=interpolation, where="predict")
        u = _batch_inputs([src.numpy(i) for i in range(len(runs))], rr) if src is not None else None
        for j in range(k):
            x = step_batch(dyn, x, padded[rr, ss + j], padded[rr, ss + j + 1], u=u, settings=settings)
        bounds = np.cumsum([0] + [a.size for a in rows_start])
        for i in range(len(runs)):
            preds[i][rows_start[i] + k] = x[bounds[i]:bounds[i + 1]]
    return _to_dataset(dyn, data, runs, times, preds, {"prediction": f"{k}-step ahead"})


def _batch_inputs(
    ufns: list[Callable[[np.ndarray], np.ndarray] | None], rows_run: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """One input function for a batch of rows from several runs: row m uses its run's inputs."""
    groups = [(i, np.flatnonzero(rows_run == i)) for i in range(len(ufns))]
    groups = [(i, g) for i, g in groups if g.size]

    def u(tt: np.ndarray) -> np.ndarray:
        out = None
        for i, g in groups:
            vals = ufns[i](tt[g])
            if out is None:
                out = np.empty((tt.size, vals.shape[-1]))
            out[g] = vals
        return out

    return u


__all__ = ["predict", "fitted_initial_states"]
