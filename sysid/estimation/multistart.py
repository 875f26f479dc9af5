"""Multi-start: fit from several starting points and keep the best optimum.

``FitConfig(starts=N)`` (or :func:`multistart`) fits the model ``N`` times: start 0 from the
values the user gave, starts 1 .. N-1 from points drawn within each free parameter's bounds
(see :func:`draw_starts`). Every start is judged by the same objective, ``-2 log L`` of the fit's
error model from a free run of the fitted model (:func:`sysid.estimation.misfit`), so the choice
does not depend on the shooting method or training details. The fits are grouped into distinct
optima; ``FitResult.starts`` lists every start with its loss, its parameter values and the
optimum it reached.

The fits run serially by default, or on any :class:`concurrent.futures.Executor`
(``ProcessPoolExecutor``, Dask's ``client.get_executor()``): each task is the top-level function
:func:`fit_start` of a picklable payload, and the result does not depend on where it ran.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError, FitError
from sysid.estimation._inference import (
    free_parameters,
    misfit,
    parameter_values,
    run_tasks,
    with_parameters,
)

__all__ = ["multistart", "draw_starts", "fit_start", "distinct_optima", "SPREAD"]

#: Where a parameter's bounds leave a side open, starts are drawn up to this factor around the
#: user's value (a decade either side for a positive parameter with only a lower bound).
SPREAD = 10.0

# stream of the start draws, independent of the fit's own use of the seed
_STREAM = 0x6D756C74


def _draw_range(value: float, lo: float, hi: float, scale: float,
                spread: float) -> tuple[float, float, bool]:
    """``(low, high, log)`` of the draws of one parameter."""
    if lo >= 0.0 and value > 0.0:  # positive: log-uniform
        if lo > 0.0 and math.isfinite(hi):
            return lo, hi, True
        a = max(lo, value / spread) if lo > 0 else value / spread
        if math.isfinite(hi):
            a = min(a, hi / spread)
            return a, hi, True
        return a, value * spread, True
    a = lo if math.isfinite(lo) else value - spread * scale
    b = hi if math.isfinite(hi) else value + spread * scale
    return a, b, False


def draw_starts(model: Any, n: int, *, seed: int = 0, spread: float = SPREAD) -> pd.DataFrame:
    """Starting values of the free parameters for ``n`` starts.

    Row 0 holds the model's own values. The other rows are drawn independently per parameter:

    - a positive parameter (lower bound >= 0) is drawn log-uniformly: between its bounds when
      both are finite and the lower one is above 0; otherwise from ``value / spread`` (or the
      lower bound, if higher) to the upper bound, or to ``value * spread`` when there is none;
    - any other parameter uniformly between its bounds, an open side replaced by
      ``value -/+ spread * scale`` (``scale``: the parameter's scale, ``|value|`` or 1).

    Draws never land on a bound.

    Parameters
    ----------
    model : sysid.models.Model
    n : int
        Number of starts (>= 1).
    seed : int
        Same seed, same draws.
    spread : float
        Factor (> 1) that closes open bounds, see above.

    Returns
    -------
    pandas.DataFrame
        ``n`` rows (index ``start``), one column per free parameter.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"multi-start: starts must be an integer >= 1; got {n!r}.")
    if not (isinstance(spread, (int, float)) and math.isfinite(spread) and spread > 1):
        raise ConfigError(f"multi-start: spread must be a finite number > 1; got {spread!r}.")
    table = free_parameters(model)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM]))
    cols: dict[str, np.ndarray] = {}
    for row in table.itertuples():
        a, b, log = _draw_range(row.value, row.lower, row.upper, row.scale, spread)
        u = rng.uniform(size=n - 1)
        draws = np.exp(np.log(a) + u * (np.log(b) - np.log(a))) if log else a + u * (b - a)
        inside = (draws > row.lower) & (draws < row.upper)
        draws = np.where(inside, draws, 0.5 * (a + b) if not log else math.sqrt(a * b))
        cols[row.name] = np.concatenate([[row.value], draws])
    return pd.DataFrame(cols, index=pd.RangeIndex(n, name="start"),
                        columns=list(table["name"]))


def fit_start(payload: tuple) -> tuple[Any, float]:
    """One start: ``(model, data, config, validation, values)`` -> ``(FitResult, loss)``, the loss
    being :func:`~sysid.estimation.misfit`'s deviance on ``data``.

    A top-level function so executors in other processes (a process pool, Dask) can run it.
    """
    from sysid.training import fit

    model, data, config, validation, values = payload
    start = with_parameters(model, values) if values else model
    result = fit(start, data, config, validation=validation)
    return result, misfit(result, data).deviance


def distinct_optima(losses: np.ndarray, values: np.ndarray, *, loss_tol: float = 0.1,
                    rtol: float = 0.02) -> np.ndarray:
    """Group fits into optima: id 0 is the best; fits share an id when their losses differ by at
    most ``loss_tol`` (deviance units: 0.1 is far inside any confidence region) and every
    parameter agrees within ``rtol`` relative. Non-finite losses get id -1.

    Parameters
    ----------
    losses : ndarray (K,)
    values : ndarray (K, P)
    """
    ids = np.full(len(losses), -1, dtype=int)
    order = [i for i in np.argsort(losses, kind="stable") if np.isfinite(losses[i])]
    reps: list[int] = []
    for i in order:
        for k, j in enumerate(reps):
            same_loss = abs(losses[i] - losses[j]) <= loss_tol
            scale = np.maximum(np.maximum(np.abs(values[i]), np.abs(values[j])), 1e-12)
            if same_loss and np.all(np.abs(values[i] - values[j]) <= rtol * scale):
                ids[i] = k
                break
        else:
            ids[i] = len(reps)
            reps.append(i)
    return ids


def multistart(model: Any, data: xr.Dataset, config: Any = None, *, starts: int | None = None,
               executor: Any = None, validation: xr.Dataset | None = None,
               spread: float = SPREAD) -> Any:
    """Fit from ``starts`` starting points and return the best fit, with every start listed.

    Parameters
    ----------
    model : sysid.models.Model
        The model; its current parameter values are start 0.
    data : xarray.Dataset
        Training data.
    config : FitConfig, optional
        Settings of every fit (``config.starts`` is the default number of starts).
    starts : int, optional
        Number of starts; overrides ``config.starts``.
    executor : concurrent.futures.Executor, optional
        Runs the fits (default: one after another in this process).
    validation : xarray.Dataset, optional
        Passed to every fit.
    spread : float
        See :func:`draw_starts`.

    Returns
    -------
    FitResult
        The fit with the lowest loss; its ``starts`` table has one row per start: ``start``,
        ``loss`` (``-2 log L`` of the error model, up to a data constant; inf for a failed fit),
        ``stopped_reason``, the fitted value of every free parameter, and ``optimum`` (0 for the
        best optimum, 1, 2, ... for the others in order of loss, -1 for failed fits). Its
        ``message`` says how many distinct optima were found and which start won.
    """
    from sysid.data import validate
    from sysid.parallel import TaskFailure
    from sysid.training import FitConfig

    cfg = config if config is not None else FitConfig()
    n = cfg.starts if starts is None else starts
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"multi-start: starts must be an integer >= 1; got {n!r}.")
    validate(data, where="fit data")  # a data error is the user's, not a failed start
    one = dataclasses.replace(cfg, starts=1)
    draws = draw_starts(model, int(n), seed=cfg.seed, spread=spread)
    payloads = [(model, data, one, validation, {} if k == 0 else draws.loc[k].to_dict())
                for k in range(int(n))]
    outs = run_tasks(fit_start, payloads, executor, where="multi-start")
    failed = {k: o for k, o in enumerate(outs) if isinstance(o, TaskFailure)}
    if len(failed) == len(outs):
        raise FitError(f"multi-start: every one of the {len(outs)} starts failed; the first: "
                       f"{failed[0]}")
    results = [None if k in failed else o[0] for k, o in enumerate(outs)]
    losses = np.array([math.inf if k in failed else o[1] for k, o in enumerate(outs)])
    names = list(draws.columns)
    fitted = np.array([[math.nan] * len(names) if r is None else
                       [parameter_values(r.model)[p] for p in names] for r in results])
    fitted = fitted.reshape(len(results), len(names))
    ids = distinct_optima(losses, fitted)
    best = int(np.argmin(np.where(np.isfinite(losses), losses, np.inf)))
    reasons = [f"failed: {failed[k].error_type}: {failed[k].message}" if r is None
               else str(r.stopped_reason) for k, r in enumerate(results)]
    table = pd.DataFrame({"start": np.arange(len(results)), "loss": losses,
                          "stopped_reason": reasons})
    for k, p in enumerate(names):
        table[p] = fitted[:, k]
    table["optimum"] = ids
    n_opt = int(ids.max()) + 1 if ids.size else 0
    found = [float(losses[ids == k].min()) for k in range(n_opt)]
    note = (f"multi-start: {len(results)} starts, {n_opt} distinct optim{'um' if n_opt == 1 else 'a'}"
            f" (losses {', '.join(f'{v:.6g}' for v in found)}); best from start {best}")
    if failed:
        note += f"; {len(failed)} start(s) failed (see FitResult.starts)"
    if not math.isfinite(losses[best]):
        note = f"multi-start: none of the {len(results)} starts gave a usable fit"
    chosen = results[best]
    message = f"{chosen.message}; {note}" if chosen.message else note
    provenance = chosen.model.metadata.get("fit")
    if isinstance(provenance, dict) and isinstance(provenance.get("config"), dict):
        provenance["config"]["starts"] = int(n)
        provenance["start"] = best
    return dataclasses.replace(chosen, starts=table, message=message, config=cfg)
