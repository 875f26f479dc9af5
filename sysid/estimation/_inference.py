"""Shared machinery of multi-start, profile likelihood and the parametric bootstrap.

- :func:`with_parameters`: a copy of a model with some parameters set (and optionally fixed), the
  way a profile or a new start needs it, for any model (physics terms inside hybrids and
  second-order fields included).
- :func:`misfit`: the objective of a fitted result on its data as ``-2 log L`` of the fit's error
  model, from a free-run simulation (SciPy, tight tolerances) of every run from the initial states
  the fit estimated. Multi-start compares starts with it and the profile likelihood is made of it,
  so both judge every fit the same way whatever shooting method produced it.
- :func:`run_tasks`: run picklable top-level tasks serially or on any
  :class:`concurrent.futures.Executor` (a process pool, Dask's ``client.get_executor()``).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError, DataError, ParameterError

__all__ = ["Misfit", "misfit", "with_parameters", "free_parameters", "parameter_values", "run_tasks", "loss_kind",
           "n_estimated", "threshold", "quantile", "did_you_mean", "refit_config"]

#: error models whose noise scale is estimated: their likelihood is concentrated over it
CONCENTRATED = ("sse", "gaussian", "lognormal", "nmse", "relative")


def loss_kind(config: Any) -> str:
    """The error model of a fit's configuration, with aliases resolved ("log" -> "lognormal")."""
    loss = config.loss
    kind = loss if isinstance(loss, str) else loss.kind
    return {"mse": "nmse", "log": "lognormal"}.get(kind, kind)


def _loss_sigma(config: Any) -> Mapping[str, float]:
    loss = config.loss
    sigma = None if isinstance(loss, str) else getattr(loss, "sigma", None)
    return dict(sigma or {})


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices`` (empty when none is close)."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


# ---------------------------------------------------------------------------------------- models
def _physics_terms(model: Any) -> list[tuple[Any, str, Any]]:
    """``(parent module, attribute, PhysicsField)`` of every physics term of a model."""
    from sysid.models import PhysicsField

    out = []
    for _, parent in model.named_modules():
        for attr, child in parent.named_children():
            if isinstance(child, PhysicsField):
                out.append((parent, attr, child))
    return out


def parameter_values(model: Any) -> dict[str, float]:
    """Current value of every named parameter of a model or field, as floats."""
    import torch

    with torch.no_grad():
        return {n: float(v) for n, v in model.physical_parameters().items()}


def free_parameters(model: Any) -> pd.DataFrame:
    """The model's free (``vary``) named parameters: name, value, lower, upper, scale."""
    rows = []
    for _, _, term in _physics_terms(model):
        specs = term.parameter_specs()
        values = parameter_values(term)
        for name in term.free_names:
            p = specs[name]
            rows.append({"name": name, "value": float(values[name]), "lower": p.bounds[0],
                         "upper": p.bounds[1], "scale": p.effective_scale})
    return pd.DataFrame(rows, columns=["name", "value", "lower", "upper", "scale"])


def _inside(value: float, lo: float, hi: float) -> float:
    """``value`` moved strictly inside ``(lo, hi)`` when a saturated transform put it on a bound."""
    if lo < value < hi:
        return value
    if math.isfinite(lo) and math.isfinite(hi):
        eps = 1e-9 * (hi - lo)
        return min(max(value, lo + eps), hi - eps)
    if value <= lo:
        return lo + max(abs(lo), 1.0) * 1e-9
    return hi - max(abs(hi), 1.0) * 1e-9


def with_parameters(model: Any, values: Mapping[str, float] | None = None, *,
                    fixed: Iterable[str] = ()) -> Any:
    """A copy of ``model`` whose parameters start at their current values, updated by ``values``.

    Parameters
    ----------
    model : sysid.models.Model
        Any model with physics terms; it is not changed.
    values : mapping, optional
        New values by parameter name.
    fixed : iterable of str
        Parameters held fixed (``vary=False``) in the copy, e.g. the profiled one.

    Returns
    -------
    sysid.models.Model
        The copy; every physics term is rebuilt with the new :class:`~sysid.models.Parameter`
        specs (neural weights, scaling and metadata are copied unchanged).
    """
    import copy

    from sysid.models import PhysicsField

    values = dict(values or {})
    fixed = set(fixed)
    out = copy.deepcopy(model)
    seen: set[str] = set()
    for parent, attr, term in _physics_terms(out):
        specs = term.parameter_specs()
        current = parameter_values(term)
        new_specs = {}
        for name, p in specs.items():
            seen.add(name)
            vary = p.vary and name not in fixed
            if name in values:
                v = float(values[name])
            else:  # a transform saturated in float32 can put the current value on its bound
                v = _inside(current[name], *p.bounds) if vary else current[name]
            new_specs[name] = p.replace(value=v, vary=vary)
        rebuilt = PhysicsField(
            term.fn, new_specs, term.state_names, term.input_names, outputs=term.output_names,
            state_units=term.state_units, input_units=term.input_units,
            time_units=term.time_units, dtype=term.raw.dtype if term.raw.numel() else term.fixed.dtype,
            system=term.system)
        setattr(parent, attr, rebuilt)
    unknown = sorted((set(values) | fixed) - seen)
    if unknown:
        raise ParameterError(f"with_parameters: {unknown} are not parameters of the model; its "
                          f"parameters are {sorted(seen)}.{did_you_mean(unknown[0], sorted(seen))}")
    return out


# --------------------------------------------------------------------------------------- misfit
@dataclass(frozen=True, kw_only=True)
class Misfit:
    """How well a fitted model explains its data, under the fit's error model.

    Attributes
    ----------
    kind : str
        The error model ("sse", "wls", "gaussian", "lognormal", "poisson", "nmse", "relative").
    deviance : float
        ``-2 log L`` up to a constant that depends only on the data; for error models with an
        estimated noise scale the likelihood is concentrated over it (e.g. ``n log(SSR / n)`` for
        "sse"). ``inf`` when the simulation fails or leaves the error model's domain.
    n : int
        Measured values compared.
    n_estimated : int
        Estimated parameters and initial states (the ``p`` of ``n - p`` degrees of freedom).
    ssr : dict
        Sum of squared residuals per measured state, in the error model's residual units.
    counts : dict
        Measured values per state.
    sigma : dict
        Noise standard deviation per state (given for "wls"; estimated, with ``n - p`` degrees
        of freedom, for the concentrated kinds; NaN for "poisson"), in residual units.
    predicted : xarray.Dataset or None
        The free-run simulation the residuals come from.
    """

    kind: str
    deviance: float
    n: int
    n_estimated: int
    ssr: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    sigma: dict[str, float] = field(default_factory=dict)
    predicted: xr.Dataset | None = None


def estimated_initial(result: Any) -> list[str]:
    """States whose initial value the fit estimated (per run): the latent ones, and with
    ``initial_states="free"`` the measured ones too, except ``known_initial``."""
    model = result.model
    cfg = result.config
    known = set(cfg.known_initial)
    return [s for s in model.state_names
            if s not in known and (s in model.latent_names or cfg.initial_states == "free")]


def n_estimated(result: Any) -> int:
    """Estimated named parameters plus estimated initial values over all training runs."""
    n_par = len(free_parameters(result.model))
    return n_par + len(estimated_initial(result)) * len(result.initial_states.index)


def _initial_values(result: Any, runs: list[str]) -> dict[str, list[float]]:
    table = result.initial_states
    missing = [r for r in runs if r not in table.index]
    if missing:
        raise DataError(
            f"the data has runs {missing} that the fit did not train on (it trained on "
            f"{list(table.index)}); pass the data given to sysid.fit.")
    return {s: [float(table.loc[r, s]) for r in runs] for s in table.columns}


def _residual(kind: str, y: np.ndarray, yhat: np.ndarray, spread: float) -> np.ndarray:
    if kind == "lognormal":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(yhat > 0, np.log(np.where(yhat > 0, yhat, 1.0)) - np.log(y), np.inf)
    if kind == "relative":
        return (yhat - y) / (np.abs(y) + 1e-3 * spread)
    return yhat - y


def misfit(result: Any, data: xr.Dataset, *, settings: Any = None) -> Misfit:
    """The fit's error-model objective on ``data`` from a free run of the fitted model.

    Every run is simulated from the initial states the fit used (``result.initial_states``) with
    SciPy at tight tolerances, on the data's own times and inputs.

    Parameters
    ----------
    result : FitResult
        A fit of ``data``.
    data : xarray.Dataset
        The data given to :func:`sysid.fit`.
    settings : sysid.analysis.Integration, optional
        SciPy solver settings (default RK45, rtol 1e-8, atol 1e-10).

    Returns
    -------
    Misfit
    """
    from sysid.analysis import Integration, predict
    from sysid.data import run_ids
    from sysid.errors import SolverError

    kind = loss_kind(result.config)
    model = result.model
    runs = run_ids(data)
    initial = _initial_values(result, runs)
    observed = [s for s in model.observed if s in data.data_vars]
    p = n_estimated(result)
    counts, ssr = {}, {}
    ys = {s: data[s].values.copy() for s in observed}
    free0 = set(estimated_initial(result))
    for s in observed:  # a start fixed to the measurement is the initial condition, not a residual
        if s not in free0:
            ys[s][:, 0] = np.nan
    for s in observed:
        counts[s] = int(np.isfinite(ys[s]).sum())
    n = sum(counts.values())
    try:
        pred = predict(model, data, initial=initial, settings=settings or Integration())
    except SolverError:
        return Misfit(kind=kind, deviance=math.inf, n=n, n_estimated=p, counts=counts)
    dev = 0.0
    pois = 0.0
    for s in observed:
        y = ys[s]
        yhat = pred[s].values
        ok = np.isfinite(y)
        spread = float(np.nanstd(y)) or 1.0
        if kind == "lognormal" and np.any(y[ok] <= 0):
            raise DataError(f"the lognormal error model needs positive measurements; {s!r} has "
                            f"{float(np.min(y[ok])):g}.")
        r = _residual(kind, y[ok], yhat[ok], spread)
        if not np.all(np.isfinite(r)):
            return Misfit(kind=kind, deviance=math.inf, n=n, n_estimated=p, counts=counts)
        if kind == "poisson":
            mu = yhat[ok]
            if np.any(mu <= 0):
                return Misfit(kind=kind, deviance=math.inf, n=n, n_estimated=p, counts=counts)
            yy = y[ok]
            with np.errstate(divide="ignore", invalid="ignore"):
                term = np.where(yy > 0, yy * np.log(yy / mu), 0.0)
            pois += float(2.0 * np.sum(term - (yy - mu)))
        w = 1.0 / spread**2 if kind == "nmse" else 1.0
        ssr[s] = float(w * np.sum(r * r))
    dof = max(n - p, 1)
    sigma: dict[str, float] = {}
    if kind == "poisson":
        dev = pois
        sigma = {s: math.nan for s in observed}
    elif kind == "wls":
        given = _loss_sigma(result.config)
        sigma = {s: float(given.get(s, 1.0)) for s in observed}
        dev = sum(ssr[s] / sigma[s] ** 2 for s in observed)
    elif kind == "gaussian":
        dev = sum(counts[s] * math.log(max(ssr[s], 1e-300) / counts[s]) for s in observed if counts[s])
        sigma = {s: math.sqrt(ssr[s] / max(counts[s] * dof / n, 1e-12)) for s in observed}
    else:  # one noise scale shared by the states (relative weights fixed by the error model)
        total = sum(ssr.values())
        dev = n * math.log(max(total, 1e-300) / n)
        s2 = total / dof
        for st in observed:
            w = 1.0 / (float(np.nanstd(ys[st])) or 1.0) ** 2 if kind == "nmse" else 1.0
            sigma[st] = math.sqrt(s2 / w)
    return Misfit(kind=kind, deviance=float(dev), n=n, n_estimated=p, ssr=ssr, counts=counts,
                  sigma=sigma, predicted=pred)


def threshold(level: float, kind: str, n: int, p: int) -> float:
    """The rise of the deviance above its minimum that bounds a ``level`` confidence interval.

    For known noise ("wls", "poisson") the likelihood-ratio threshold ``chi2(1).ppf(level)``.
    When the noise scale is estimated and concentrated out, ``n log(1 + F(1, n-p).ppf(level) /
    (n - p))``: the same test with its exact small-sample calibration (for a model linear in its
    parameters it reproduces the t interval ``estimate +/- t(n-p) * stderr``; it tends to the
    chi-square threshold as ``n`` grows). With 20 samples and 3 estimates the chi-square value
    would give 92.5 % intervals instead of 95 %.
    """
    from scipy import stats

    if kind in CONCENTRATED and n - p >= 1:
        f = float(stats.f.ppf(level, 1, n - p))
        return float(n * math.log1p(f / (n - p)))
    return float(stats.chi2.ppf(level, 1))


def quantile(level: float, kind: str, n: int, p: int) -> float:
    """Two-sided quantile of the Wald interval ``estimate +/- q * stderr`` that matches
    :func:`threshold`: Student's t with ``n - p`` degrees of freedom when the noise level is
    estimated, the normal one otherwise (``q**2`` is the threshold of a linear model)."""
    from scipy import stats

    if kind in CONCENTRATED and n - p >= 1:
        return float(stats.t.ppf(0.5 + level / 2, n - p))
    return float(stats.norm.ppf(0.5 + level / 2))


def refit_config(config: Any) -> Any:
    """The settings of a re-fit that starts at a known optimum (profile points, bootstrap
    replicates): one start, no derivative warm start (it would move the start away from the
    optimum it is given), no progress bar, no checkpoints."""
    changes: dict[str, Any] = {"starts": 1, "progress": False}
    ws = config.warm_start
    changes["warm_start"] = False if isinstance(ws, bool) else dataclasses.replace(ws, enabled=False)
    ck = config.checkpoint
    if ck is not None:
        changes["checkpoint"] = None if isinstance(ck, str) else dataclasses.replace(ck, path=None)
    return dataclasses.replace(config, **changes)


# ---------------------------------------------------------------------------------------- tasks
def run_tasks(fn: Callable[[Any], Any], payloads: Sequence[Any], executor: Any = None,
              *, where: str = "") -> list[Any]:
    """``[fn(p) for p in payloads]``, serially or on an executor, in the payloads' order.

    ``fn`` must be a top-level function and the payloads picklable when the executor runs tasks
    in other processes (a process pool, Dask). Ctrl-C cancels the tasks not yet started.
    """
    if executor is None:
        return [fn(p) for p in payloads]
    if not isinstance(executor, cf.Executor):
        raise ConfigError(
            f"{where}: executor must be a concurrent.futures.Executor (a ProcessPoolExecutor, "
            f"or a Dask client's get_executor()); got {type(executor).__name__}.")
    futures = [executor.submit(fn, p) for p in payloads]
    try:
        return [f.result() for f in futures]
    except BaseException:
        for f in futures:
            f.cancel()
        raise
