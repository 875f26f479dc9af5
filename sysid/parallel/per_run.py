"""``fit_per_run``: one fit per run (subject, experiment) and the two-stage population summary.

The two-stage method (Sheiner & Beal's "standard two-stage"): fit each subject alone, then take
the mean and the standard deviation of the per-subject estimates. Rates, volumes and other
positive parameters are summarised on the log scale (their between-subject spread is
multiplicative, as in mixed-effects models with log-normal random effects): ``mean_log`` and
``sd_log``, and ``exp(mean_log)``, the geometric mean. Parameters that can be zero or negative are
summarised on their own scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError
from sysid.parallel.executors import TaskFailure, run_tasks
from sysid.parallel.many import FitTask, fit_task, own_checkpoint

__all__ = ["fit_per_run", "PerRunFit"]


@final
@dataclass(frozen=True, eq=False, kw_only=True)
class PerRunFit:
    """What :func:`fit_per_run` returns.

    Attributes
    ----------
    results : dict
        Run id -> :class:`~sysid.training.FitResult` or :class:`~sysid.parallel.TaskFailure`.
    """

    results: Mapping[str, Any]

    @property
    def failures(self) -> dict[str, TaskFailure]:
        """Runs whose fit failed."""
        return {r: v for r, v in self.results.items() if isinstance(v, TaskFailure)}

    def parameters(self) -> pd.DataFrame:
        """Combined parameter table: one row per (run, parameter) with ``value``, ``stderr``,
        ``lower``, ``upper``, ``units``, ``vary`` (runs whose fit failed are left out)."""
        frames = []
        for run, res in self.results.items():
            if isinstance(res, TaskFailure) or not len(res.parameters):
                continue
            df = res.parameters.copy()
            df.insert(0, "run", run)
            frames.append(df)
        if not frames:
            return pd.DataFrame(columns=["run", "name", "value", "stderr", "units"])
        return pd.concat(frames, ignore_index=True).set_index(["run", "name"])

    def values(self) -> pd.DataFrame:
        """Wide table: runs x parameters (fitted values)."""
        long = self.parameters()
        if long.empty:
            return pd.DataFrame()
        wide = long["value"].unstack("name")
        names = list(dict.fromkeys(long.index.get_level_values("name")))
        return wide[names]

    def population(self) -> pd.DataFrame:
        """The two-stage summary per parameter (free parameters only).

        Columns: ``scale`` ("log" when every estimate is positive, else "linear"), ``n_runs``,
        ``mean``, ``sd`` (on that scale; sd with ddof=1), ``typical`` (the geometric mean
        ``exp(mean)`` on the log scale, else the mean), ``cv`` (between-run coefficient of
        variation: ``sqrt(exp(sd**2) - 1)`` on the log scale, ``sd / |mean|`` otherwise),
        ``units``.
        """
        long = self.parameters()
        if long.empty:
            return pd.DataFrame(columns=["scale", "n_runs", "mean", "sd", "typical", "cv", "units"])
        rows = {}
        for name, g in long.groupby(level="name", sort=False):
            if "vary" in g and not bool(g["vary"].iloc[0]):
                continue
            v = g["value"].to_numpy(float)
            v = v[np.isfinite(v)]
            log = bool(v.size) and bool(np.all(v > 0))
            x = np.log(v) if log else v
            mean = float(x.mean()) if x.size else math.nan
            sd = float(x.std(ddof=1)) if x.size > 1 else math.nan
            rows[name] = {"scale": "log" if log else "linear", "n_runs": int(v.size), "mean": mean,
                          "sd": sd, "typical": math.exp(mean) if log else mean,
                          "cv": math.sqrt(math.expm1(sd * sd)) if log else
                          (sd / abs(mean) if mean else math.nan),
                          "units": str(g["units"].iloc[0]) if "units" in g else ""}
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.index.name = "name"
        return out


def fit_per_run(model: Any, data: xr.Dataset, config: Any = None, executor: Any = None, *,
                progress: bool = True,
                callback: Callable[[str, Any], None] | None = None) -> PerRunFit:
    """Fit ``model`` to each run of ``data`` separately (in parallel).

    Parameters
    ----------
    model : sysid.models.Model
        The starting model (every run's fit starts from it; never changed).
    data : xarray.Dataset
        Several runs (subjects, experiments).
    config : FitConfig, optional
        Settings of every fit.
    executor : optional
        Where the fits run (see :func:`sysid.fit_many`): local processes by default.
    progress : bool
        A progress bar over the runs.
    callback : callable, optional
        ``callback(run_id, result)`` as each fit comes back.

    Returns
    -------
    PerRunFit
        Per-run results, the combined parameter table (:meth:`PerRunFit.parameters`) and the
        two-stage population summary (:meth:`PerRunFit.population`).
    """
    from sysid.data import run_ids, select_runs, validate
    from sysid.models import Model

    if not isinstance(model, Model):
        raise ConfigError(f"fit_per_run: model must be a sysid.models.Model; got "
                          f"{type(model).__name__}.")
    validate(data, where="fit_per_run data")
    runs = run_ids(data)
    tasks = [FitTask(model=model, data=select_runs(data, [r]),
                     config=own_checkpoint(config, f"run_{r}"), label=f"run {r}") for r in runs]

    def forward(i: int, result: Any) -> None:
        if callback is not None:
            callback(runs[i], result)

    results = run_tasks(fit_task, tasks, executor=executor, labels=[t.label for t in tasks],
                        progress=progress, callback=forward, desc="per-run fits")
    return PerRunFit(results=dict(zip(runs, results)))
