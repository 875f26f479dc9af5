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
    from sysid.estimation.error_models import ALIASES

    return ALIASES.get(config.loss.kind, config.loss.kind)


def _loss_sigma(config: Any) -> dict[str, float]:
    return dict(config.loss.sigma or {})


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
        The error model (see :mod:`sysid.estimation.error_models`).
    deviance : float
        ``-2 log L`` of the error model (twice :meth:`ErrorModel.nll`, concentrated over the noise
        level where it is estimated: ``n log(SSR / n) + n (1 + log 2 pi)`` for "sse"). ``inf``
        when the simulation fails.
    n : int
        Residuals compared (measured entries of weighted states and outputs).
    n_estimated : int
        Estimated parameters and initial states (the ``p`` of ``n - p`` degrees of freedom).
    names : tuple of str
        The compared quantities (observed states, then measured outputs).
    ssr : dict
        Sum of squared scaled residuals (before the noise level) per quantity.
    counts : dict
        Residuals per quantity.
    sigma : dict
        Noise level per quantity as the error model defines it (given for "wls"; estimated with
        ``n - p`` degrees of freedom otherwise; a fraction of the spread for "nmse", of the
        magnitude for "relative", log units for "lognormal"; NaN for "poisson").
    spread : dict
        Standard deviation of each quantity's measurements (the unit of "nmse").
    weights : dict
        Per-quantity weights of the error model.
    predicted : xarray.Dataset or None
        The free-run simulation the residuals come from.
    """

    kind: str
    deviance: float
    n: int
    n_estimated: int
    names: tuple[str, ...] = ()
    ssr: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    sigma: dict[str, float] = field(default_factory=dict)
    spread: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
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


def _spread(values: np.ndarray) -> float:
    """Standard deviation of the measured values, as the fit scales a state (a constant one by
    its magnitude, or 1)."""
    vals = values[np.isfinite(values)]
    if vals.size == 0:
        return 1.0
    mean, sd = float(vals.mean()), float(vals.std())
    return sd if sd > 1e-12 * abs(mean) and sd > 0 else (abs(mean) or 1.0)


def misfit(result: Any, data: xr.Dataset, *, settings: Any = None) -> Misfit:
    """The fit's error-model objective on ``data`` from a free run of the fitted model.

    Every run is simulated from the initial states the fit used (``result.initial_states``) with
    SciPy at tight tolerances, on the data's own times and inputs, and compared with every
    measured state and output through the fit's error model
    (:func:`sysid.estimation.make_error_model`). As in the fit, a state's first sample is a
    residual only where its initial value is estimated.

    Parameters
    ----------
    result : FitResult
        A fit of ``data``.
    data : xarray.Dataset
        The data given to :func:`sysid.fit`.
    settings : sysid.SolverConfig, optional
        How to integrate (default the analysis default: SciPy RK45, rtol 1e-8, atol 1e-10).

    Returns
    -------
    Misfit
    """
    import torch

    from sysid.analysis import predict
    from sysid.data import run_ids
    from sysid.errors import SolverError
    from sysid.estimation.error_models import make_error_model

    kind = loss_kind(result.config)
    loss = result.config.loss
    model = result.model
    runs = run_ids(data)
    initial = _initial_values(result, runs)
    names = [s for s in model.observed if s in data.data_vars]
    names += [o for o in model.output_names if o in data.data_vars]
    p = n_estimated(result)
    em = make_error_model(kind, names, sigma=_loss_sigma(result.config) or None,
                          weights=loss.weights)
    raw = np.stack([data[s].values for s in names], -1).astype(float)
    spread = np.array([_spread(raw[..., j]) for j in range(len(names))])
    mask = np.isfinite(raw)
    free0 = set(estimated_initial(result))
    for j, s in enumerate(names):  # a start fixed to the measurement is the initial condition
        if s in model.state_names and s not in free0:
            mask[:, 0, j] = False
    t_obs = torch.as_tensor(np.where(mask, raw, 0.0))
    t_mask = torch.as_tensor(mask)
    t_spread = torch.as_tensor(spread)
    n = em.count(t_mask)
    weights = dict(zip(names, em.weight_vector(t_spread).tolist()))
    common = {"kind": kind, "n": n, "n_estimated": p, "names": tuple(names),
              "spread": dict(zip(names, spread.tolist())), "weights": weights}
    try:
        pred = predict(model, data, initial=initial, settings=settings)
    except SolverError:
        return Misfit(deviance=math.inf, **common)
    yhat = np.stack([pred[s].values for s in names], -1).astype(float)
    if not np.all(np.isfinite(yhat[mask])):
        return Misfit(deviance=math.inf, predicted=pred, **common)
    t_pred = torch.as_tensor(np.where(mask, yhat, np.where(np.isfinite(yhat), yhat, 0.0)))
    with torch.no_grad():
        em.check(t_obs, em.active(t_mask), runs)
        dev = 2.0 * float(em.nll(t_pred, t_obs, t_mask, t_spread))
        r = em.scaled_residuals(t_pred, t_obs, t_mask, t_spread)
        sigma = em.sigma(t_pred, t_obs, t_mask, t_spread, dof=p)
    act = em.active(t_mask).numpy()
    rr = r.numpy()
    ssr = {s: float(np.sum(rr[..., j][act[..., j]] ** 2)) for j, s in enumerate(names)}
    counts = {s: int(act[..., j].sum()) for j, s in enumerate(names)}
    return Misfit(deviance=dev if math.isfinite(dev) else math.inf, ssr=ssr, counts=counts,
                  sigma=dict(zip(names, sigma.tolist())), predicted=pred, **common)


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


def refit_config(config: Any, model: Any) -> Any:
    """The settings of a re-fit that starts at a known optimum (profile points, bootstrap
    replicates): one start, no progress bar, no checkpoint, and

    - for a model without network weights, the first-order settings (``epochs``, ``optimizer``,
      ``shooting``, ``warm_start``) at their defaults, so the fit goes straight to least squares
      from the start it is given (``Refine.first_order="auto"``; it was measured to take a few
      iterations from a neighbouring optimum, where a planned first-order stage costs hundreds
      of epochs and can leave the basin);
    - for a model with network weights, no derivative warm start (it would move the networks
      away from the optimum they start at).
    """
    from sysid.estimation.refinement import has_network_weights
    from sysid.training import FitConfig

    changes: dict[str, Any] = {"starts": 1, "progress": False,
                               "checkpoint": dataclasses.replace(config.checkpoint, path=None)}
    if has_network_weights(model):
        changes["warm_start"] = dataclasses.replace(config.warm_start, enabled=False)
    else:
        default = FitConfig()
        changes.update(epochs=default.epochs, optimizer=default.optimizer,
                       shooting=default.shooting, warm_start=default.warm_start,
                       checkpoint=default.checkpoint)
    return dataclasses.replace(config, **changes)


# ---------------------------------------------------------------------------------------- tasks
def run_tasks(fn: Callable[[Any], Any], payloads: Sequence[Any], executor: Any = None,
              *, where: str = "") -> list[Any]:
    """``[fn(p) for p in payloads]`` through :func:`sysid.parallel.executors.run_tasks`: results
    in the payloads' order, a :class:`~sysid.parallel.TaskFailure` in the place of a task that
    raised.

    ``executor`` None runs the tasks one after another in this process
    (:class:`~sysid.parallel.SerialExecutor`); otherwise any
    :class:`concurrent.futures.Executor` (:class:`~sysid.parallel.LocalPool`, a process pool,
    Dask's ``client.get_executor()``), a Dask ``distributed.Client`` or a scheduler address. In
    other processes ``fn`` must be a top-level function and the payloads picklable. Ctrl-C
    raises :class:`~sysid.parallel.Interrupted`.
    """
    from sysid.parallel.executors import SerialExecutor, _is_dask_client
    from sysid.parallel.executors import run_tasks as run

    if executor is None:
        executor = SerialExecutor()
    elif not (isinstance(executor, cf.Executor) or _is_dask_client(executor)
              or (isinstance(executor, str) and "://" in executor)):
        raise ConfigError(
            f"{where}: executor must be None (the tasks one after another in this process), a "
            f"concurrent.futures.Executor (sysid.parallel.LocalPool(4), a ProcessPoolExecutor, a "
            f"Dask client's get_executor()), a Dask distributed.Client or a scheduler address "
            f"such as 'tcp://host:8786'; got {type(executor).__name__}.")
    return run(fn, payloads, executor=executor, progress=False, desc=where)
