"""``sweep``: grid or random search over fit settings and model options, ranked by held-out error.

Every trial is one fit on the training part of the data, scored by its free-run error on the
held-out part (whole runs held out, or the end of every run); the trials run at once on an
executor like :func:`sysid.fit_many`.

Keys name what a trial changes: ``"epochs"`` or ``"fit.epochs"`` (a
:class:`~sysid.training.FitConfig` field; a dotted path such as ``"optimizer.lr"`` reaches into a
part), and ``"model.width"`` (a keyword of the model factory). Values: a grid lists the values of
each key (every combination is tried); a random search gives per key a list (uniform choice) or one of
``{"uniform": [lo, hi]}``, ``{"log_uniform": [lo, hi]}``, ``{"int_uniform": [lo, hi]}`` (both ends
included) and draws ``samples`` trials.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError, SolverError
from sysid.parallel.executors import Interrupted, TaskFailure, run_tasks
from sysid.parallel.many import FitTask, own_checkpoint

__all__ = ["sweep", "SweepResult", "Holdout", "split_holdout", "held_out_error", "DISTRIBUTIONS"]

DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform")
MIN_RUNS_FOR_RUN_HOLDOUT = 4


@final
@dataclass(frozen=True, kw_only=True)
class Holdout:
    """What a sweep holds out to score each trial: whole runs, or the end of every run.

    Parameters
    ----------
    runs : float or tuple of str, optional
        A fraction of the runs (the last ones, as :func:`sysid.data.split_runs`) or their ids.
    time : float, optional
        The last ``time`` fraction of every run's time span (a forecast of each run's end).
    """

    runs: float | tuple[str, ...] | None = None
    time: float | None = None

    def __post_init__(self) -> None:
        if (self.runs is None) == (self.time is None):
            raise ConfigError("Holdout: give exactly one of runs= (a fraction or run ids) and "
                              f"time= (a fraction of each run's span); got runs={self.runs!r}, "
                              f"time={self.time!r}.")
        if isinstance(self.runs, list):
            object.__setattr__(self, "runs", tuple(self.runs))
        if isinstance(self.runs, float) and not 0 < self.runs < 1:
            raise ConfigError(f"Holdout: runs as a fraction must lie in (0, 1); got {self.runs!r}.")
        if self.time is not None and not (isinstance(self.time, (int, float)) and 0 < self.time < 1):
            raise ConfigError(f"Holdout: time must be a fraction in (0, 1); got {self.time!r}.")

    def describe(self) -> str:
        """In words, for tables and logs."""
        if self.time is not None:
            return f"the last {self.time:.0%} of every run's time span"
        if isinstance(self.runs, tuple):
            return f"runs {list(self.runs)}"
        return f"the last {self.runs:.0%} of the runs"


def default_holdout(data: xr.Dataset) -> Holdout:
    """A quarter of the runs with at least 4 runs, else the last 20 % of every run."""
    from sysid.data import run_ids

    if len(run_ids(data)) >= MIN_RUNS_FOR_RUN_HOLDOUT:
        return Holdout(runs=0.25)
    return Holdout(time=0.2)


def split_holdout(data: xr.Dataset, holdout: Holdout) -> tuple[xr.Dataset, xr.Dataset, dict]:
    """``(train, evaluation data, scoring)``: for runs, the held-out runs; for time, the whole data
    with ``scoring["after"]`` = the cut time per run (only later samples are scored)."""
    from sysid.data import run_ids, split_runs, split_time

    if holdout.time is not None:
        head, _tail = split_time(data, holdout.time)
        t = data["time"].values
        t0, t1 = np.nanmin(t, axis=1), np.nanmax(t, axis=1)
        cut = t1 - holdout.time * (t1 - t0)
        return head, data, {"after": dict(zip(run_ids(data), cut.tolist()))}
    runs = list(holdout.runs) if isinstance(holdout.runs, tuple) else holdout.runs
    train, test = split_runs(data, runs)
    return train, test, {"after": None}


def held_out_error(result: Any, evaluation: xr.Dataset, scoring: Mapping[str, Any],
                   spread: Mapping[str, float]) -> dict[str, float]:
    """Free-run error on the scored samples: per measured state RMSE / ``spread[state]`` and their
    mean as ``"score"`` (inf when the simulation fails)."""
    from sysid.analysis import predict
    from sysid.solvers import SolverConfig
    from sysid.data import run_ids

    try:
        pred = predict(result, evaluation,
                       settings=SolverConfig(method="RK45", rtol=1e-6, atol=1e-9))
    except SolverError:
        return {"score": math.inf}
    after = scoring.get("after")
    t = evaluation["time"].values
    mask = np.isfinite(t)
    if after is not None:
        mask &= t > np.array([after[r] for r in run_ids(evaluation)])[:, None]
    out: dict[str, float] = {}
    for s, scale in spread.items():
        y = evaluation[s].values
        p = pred[s].values[:, :y.shape[1]]
        ok = mask & np.isfinite(y)
        err = p[ok] - y[ok]
        out[f"error_{s}"] = (float(np.sqrt(np.mean(err * err))) / scale
                             if ok.any() and np.all(np.isfinite(err)) else math.inf)
    out["score"] = float(np.mean(list(out.values()))) if out else math.inf
    return out


@dataclass(frozen=True, kw_only=True)
class _TrialTask:
    task: FitTask
    evaluation: xr.Dataset
    scoring: dict
    spread: dict


@final
@dataclass(frozen=True, eq=False, kw_only=True)
class Trial:
    """One scored trial (what a sweep worker returns)."""

    result: Any
    errors: dict[str, float]
    seconds: float


def trial_task(payload: _TrialTask) -> Trial:
    """Worker side of a sweep: fit, then score on the held-out part."""
    from sysid.training import fit

    t0 = time.perf_counter()
    task = payload.task
    result = fit(task.model, task.data, task.config)
    errors = held_out_error(result, payload.evaluation, payload.scoring, payload.spread)
    return Trial(result=result, errors=errors, seconds=time.perf_counter() - t0)


@final
@dataclass(frozen=True, eq=False, kw_only=True)
class SweepResult:
    """What :func:`sweep` returns.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per trial, best first: ``trial``, the swept keys, ``score`` (mean held-out NRMSE
        over the measured states), ``error_<state>``, ``stopped_reason``, ``seconds``, ``failure``.
    settings : tuple of dict
        The swept values of each trial (in trial order).
    configs : tuple of FitConfig
        The full config of each trial.
    results : tuple
        FitResult (or TaskFailure) of each trial.
    holdout : str
        What was held out, in words.
    """

    table: pd.DataFrame
    settings: tuple[dict[str, Any], ...]
    configs: tuple[Any, ...]
    results: tuple[Any, ...]
    holdout: str

    @property
    def best_trial(self) -> int:
        """Index of the trial with the lowest held-out error."""
        scored = self.table[np.isfinite(self.table["score"])]
        if scored.empty:
            raise ConfigError("sweep: no trial produced a finite held-out error; see the 'failure' "
                              "column of the table.")
        return int(scored["trial"].iloc[0])

    @property
    def best_config(self) -> Any:
        """The FitConfig of the best trial."""
        return self.configs[self.best_trial]

    @property
    def best_settings(self) -> dict[str, Any]:
        """The swept values of the best trial."""
        return dict(self.settings[self.best_trial])

    @property
    def best_result(self) -> Any:
        """The FitResult of the best trial."""
        return self.results[self.best_trial]


def _draw(spec: Any, key: str, rng: np.random.Generator) -> Any:
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"sweep: random key '{key}' has an empty list of choices.")
        return spec[int(rng.integers(0, len(spec)))]
    if isinstance(spec, Mapping) and len(spec) == 1:
        (kind, bounds), = spec.items()
        if kind in DISTRIBUTIONS and isinstance(bounds, (list, tuple)) and len(bounds) == 2:
            lo, hi = bounds
            if kind == "int_uniform":
                return int(rng.integers(int(lo), int(hi) + 1))
            if kind == "log_uniform":
                if not 0 < lo < hi:
                    raise ConfigError(f"sweep: '{key}' log_uniform needs 0 < low < high; got "
                                      f"{list(bounds)}.")
                return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
            return float(rng.uniform(float(lo), float(hi)))
    raise ConfigError(f"sweep: random key '{key}' must be a list of choices or one of "
                      f"{{'uniform': [lo, hi]}}, {{'log_uniform': [lo, hi]}}, "
                      f"{{'int_uniform': [lo, hi]}}; got {spec!r}.")


def trials(grid: Mapping[str, Sequence[Any]] | None, random: Mapping[str, Any] | None,
           samples: int | None, seed: int) -> list[dict[str, Any]]:
    """The settings of every trial: the grid's combinations, or ``samples`` random draws (with
    both, each grid combination with ``samples`` draws of the random keys)."""
    if not grid and not random:
        raise ConfigError("sweep: give grid= (values per key) or random= (distributions per key).")
    grid = dict(grid or {})
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"sweep: grid key '{key}' must list at least one value; got "
                              f"{values!r}.")
    combos = [dict(zip(grid, vals)) for vals in itertools.product(*grid.values())] if grid else [{}]
    if not random:
        if samples is not None:
            raise ConfigError("sweep: samples= sets the number of random draws; it needs random=.")
        return combos
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"sweep: a random search needs samples= (an integer >= 1); got "
                          f"{samples!r}.")
    overlap = sorted(set(grid) & set(random))
    if overlap:
        raise ConfigError(f"sweep: keys {overlap} are in both grid and random; give each once.")
    rng = np.random.default_rng([seed, 2])
    return [{**c, **{k: _draw(spec, k, rng) for k, spec in random.items()}}
            for c in combos for _ in range(samples)]


def _split_key(key: str) -> tuple[str, str]:
    if key.startswith("model."):
        return "model", key[len("model."):]
    if key.startswith("fit."):
        return "fit", key[len("fit."):]
    return "fit", key


def apply_settings(config: Any, settings: Mapping[str, Any]) -> Any:
    """``config`` with the ``fit`` keys of ``settings`` replaced (dotted paths reach into parts)."""
    from sysid.training import FitConfig

    options = config.to_dict()
    changed = False
    for key, value in settings.items():
        space, path = _split_key(key)
        if space != "fit":
            continue
        node = options
        parts = path.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise ConfigError(f"sweep: key '{key}': '{p}' is not a part of FitConfig with "
                                  f"fields.")
            node = node[p]
        node[parts[-1]] = value
        changed = True
    if not changed:
        return config
    options = {k: v for k, v in options.items() if v is not None}
    try:
        return FitConfig.from_dict(options)
    except ConfigError as exc:
        raise ConfigError(f"sweep: trial {dict(settings)}: {exc}") from None


def _data_spread(data: xr.Dataset, states: Sequence[str]) -> dict[str, float]:
    out = {}
    for s in states:
        v = data[s].values
        sd = float(np.nanstd(v)) if np.isfinite(v).any() else 0.0
        out[s] = sd if sd > 0 else 1.0
    return out


def sweep(model: Any, data: xr.Dataset, base_config: Any = None, *,
          grid: Mapping[str, Sequence[Any]] | None = None, random: Mapping[str, Any] | None = None,
          samples: int | None = None, executor: Any = None,
          validation: Holdout | xr.Dataset | None = None, seed: int = 0, progress: bool = True,
          callback: Callable[[int, Any], None] | None = None) -> SweepResult:
    """Search fit settings (and model options) by held-out error.

    Parameters
    ----------
    model : sysid.models.Model or callable
        A model (only fit settings are swept), or a factory ``factory(**model_options) -> Model``
        called in this process with the ``"model.*"`` keys of each trial.
    data : xarray.Dataset
        All the data; the held-out part is split off (see ``validation``).
    base_config : FitConfig, optional
        Settings of every trial before the swept keys are applied.
    grid, random, samples
        See the module docstring.
    executor : optional
        Where the trials run (see :func:`sysid.fit_many`).
    validation : Holdout or xarray.Dataset, optional
        What scores a trial: a :class:`Holdout`, or separate held-out runs (then ``data`` is
        all training data). Default: a quarter of the runs with at least 4 runs, else the last
        20 % of every run (said in :attr:`SweepResult.holdout`).
    seed : int
        Seed of the random draws.
    progress : bool
        A progress bar over the trials.
    callback : callable, optional
        ``callback(trial_index, trial)`` as each trial comes back.

    Returns
    -------
    SweepResult
        The table sorted by held-out error, each trial's config and result, the best of them.
    """
    from sysid.data import state_names, validate
    from sysid.models import Model
    from sysid.training import FitConfig

    base_config = base_config if base_config is not None else FitConfig()
    if not isinstance(base_config, FitConfig):
        raise ConfigError(f"sweep: base_config must be a FitConfig; got "
                          f"{type(base_config).__name__}.")
    validate(data, where="sweep data")
    settings = trials(grid, random, samples, seed)
    model_keys = sorted({k for s in settings for k in s if _split_key(k)[0] == "model"})
    if isinstance(model, Model):
        if model_keys:
            raise ConfigError(f"sweep: keys {model_keys} change the model; pass a factory "
                              f"(a function of those options returning a Model) instead of a Model.")
        factory: Callable[..., Any] = lambda **_: model  # noqa: E731
    elif callable(model):
        factory = model
    else:
        raise ConfigError(f"sweep: model must be a sysid.models.Model or a factory returning one; "
                          f"got {type(model).__name__}.")
    if isinstance(validation, xr.Dataset):
        validate(validation, where="sweep validation")
        train, evaluation, scoring, where = data, validation, {"after": None}, "the validation runs"
    else:
        holdout = validation if validation is not None else default_holdout(data)
        if not isinstance(holdout, Holdout):
            raise ConfigError(f"sweep: validation must be a Holdout or a dataset of held-out runs; "
                              f"got {type(validation).__name__}.")
        train, evaluation, scoring = split_holdout(data, holdout)
        where = holdout.describe()
    payloads, configs = [], []
    spread = None
    for i, s in enumerate(settings):
        cfg = apply_settings(base_config, s)
        options = {_split_key(k)[1]: v for k, v in s.items() if _split_key(k)[0] == "model"}
        try:
            m = factory(**options)
        except TypeError as exc:
            raise ConfigError(f"sweep: the model factory does not take {options}: {exc}") from None
        if not isinstance(m, Model):
            raise ConfigError(f"sweep: the model factory returned {type(m).__name__}, not a Model.")
        if spread is None:
            spread = _data_spread(data if not isinstance(validation, xr.Dataset) else
                                  xr.concat([data, validation], "trajectory"),
                                  [n for n in m.observed if n in state_names(data)])
        configs.append(cfg)
        payloads.append(_TrialTask(task=FitTask(model=m, data=train,
                                                config=own_checkpoint(cfg, f"trial_{i:03d}"),
                                                label=f"trial {i}"),
                                   evaluation=evaluation, scoring=scoring, spread=spread))
    try:
        out = run_tasks(trial_task, payloads, executor=executor,
                        labels=[f"trial {i}" for i in range(len(payloads))], progress=progress,
                        callback=callback, desc="sweep")
    except Interrupted as exc:  # keep the trials that finished
        raise Interrupted(exc.results, partial=_result(settings, configs, exc.results, where)) \
            from None
    return _result(settings, configs, out, where)


def _result(settings: list[dict], configs: list, out: list, where: str) -> SweepResult:
    rows = []
    for i, (s, trial) in enumerate(zip(settings, out)):
        row: dict[str, Any] = {"trial": i, **s}
        if isinstance(trial, TaskFailure):
            row.update({"score": math.inf, "stopped_reason": "failed", "seconds": math.nan,
                        "failure": f"{trial.error_type}: {trial.message}"})
        else:
            row.update(trial.errors)
            row.update({"stopped_reason": str(trial.result.stopped_reason),
                        "seconds": trial.seconds, "failure": ""})
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["score", "trial"], kind="stable").reset_index(drop=True)
    results = tuple(t if isinstance(t, TaskFailure) else t.result for t in out)
    return SweepResult(table=table, settings=tuple(settings), configs=tuple(configs),
                       results=results, holdout=where)


