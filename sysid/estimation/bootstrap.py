"""Parametric bootstrap: parameter intervals from re-fits of data simulated from the fit.

Each replicate is the fitted model's free run from the fitted initial states (the same runs,
times, inputs and missing samples as the data) plus noise drawn from the fitted error model:
Gaussian with the estimated (or, for "wls", the given) standard deviation of each state,
multiplicative for "lognormal", proportional to the magnitude for "relative", Poisson counts for
"poisson". Every replicate is fitted again with the original settings, starting from the fitted
values and initial states, and the intervals are the quantiles of the replicate estimates. Unlike the Jacobian
intervals this needs no linearisation, and, unlike profiles, for hybrid models it includes the
network's uncertainty (the network is re-fitted in every replicate).

Replicates are independent tasks (:func:`bootstrap_replicate`) with their own random streams
(``SeedSequence(seed).spawn``), so the result is the same serially or on any executor.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError
from sysid.estimation._inference import (
    Misfit,
    free_parameters,
    misfit,
    parameter_values,
    refit_config,
    run_tasks,
)

__all__ = ["bootstrap", "BootstrapResult", "bootstrap_replicate", "simulate_replicate"]

# replicates whose re-fit ended like this are not counted
_FAILED = ("diverged", "failed")


@dataclass(frozen=True, kw_only=True)
class BootstrapResult:
    """Parametric-bootstrap estimates and percentile intervals.

    Attributes
    ----------
    intervals : pandas.DataFrame
        Indexed by parameter: ``estimate`` (the fit's), ``lower``, ``upper`` (quantiles
        ``(1 -/+ level) / 2`` of the replicate estimates), ``stderr`` (their standard deviation),
        ``bias`` (their mean minus the estimate).
    samples : pandas.DataFrame
        One row per replicate: ``replicate``, ``stopped_reason``, the estimate of every free
        parameter (NaN for a failed re-fit).
    level : float
    n : int
        Replicates requested.
    n_failed : int
        Replicates whose re-fit failed (left out of the intervals).
    seed : int
    """

    intervals: pd.DataFrame
    samples: pd.DataFrame
    level: float
    n: int
    n_failed: int
    seed: int

    def _facts(self) -> list[tuple[str, str]]:
        return [("level", f"{100 * self.level:g} % (percentile intervals)"),
                ("replicates", f"{self.n} requested, {self.n_failed} failed"),
                ("seed", str(self.seed))]

    def summary(self) -> str:
        """A short text report: level, replicate counts, seed and the interval table
        (estimate, lower, upper, the replicates' standard deviation and bias)."""
        from sysid._display import text_block

        return text_block("sysid BootstrapResult", self._facts(), self.intervals, index=True)

    def __repr__(self) -> str:
        """One line: replicates, level and each parameter's interval."""
        shown = [f"{n}=[{r['lower']:.4g}, {r['upper']:.4g}]"
                 for n, r in self.intervals.head(6).iterrows()]
        return (f"BootstrapResult(n={self.n}, failed={self.n_failed}, level={self.level:g}, "
                "intervals={" + ", ".join(shown) + "})")

    def _repr_html_(self) -> str:
        """HTML for Jupyter: the facts of ``summary()``, the interval table and a histogram of
        the replicate estimates of up to four parameters."""
        from matplotlib.figure import Figure

        from sysid._display import block, facts_html, figure_png, table_html

        names = list(self.intervals.index[:4])
        parts = [facts_html(self._facts()), table_html(self.intervals, index=True)]
        if names:
            fig = Figure(figsize=(2.6 * len(names), 2.2), layout="constrained")
            for ax, name in zip(fig.subplots(1, len(names), squeeze=False)[0], names):
                v = self.samples[name].to_numpy(float) if name in self.samples else np.array([])
                v = v[np.isfinite(v)]
                if v.size:
                    ax.hist(v, bins=min(20, max(5, v.size // 5)), color="C0", alpha=0.7)
                row = self.intervals.loc[name]
                for col in ("lower", "upper"):
                    ax.axvline(float(row[col]), color="C3", lw=0.8)
                ax.axvline(float(row["estimate"]), color="k", lw=1)
                ax.set_xlabel(str(name))
            parts.append(figure_png(fig))
        return block("sysid BootstrapResult", parts, "sysid-bootstrap")


def simulate_replicate(fitted: Misfit, data: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    """The data with every measured value of the compared states and outputs replaced by the
    fitted prediction plus a draw of the fitted error model's noise (missing samples stay
    missing; a state with weight 0 keeps its data).

    ``fitted`` is :func:`sysid.estimation.misfit` of the fit; its ``sigma`` is the noise level as
    the error model defines it (data units for "sse", "wls", "gaussian"; a fraction of the
    spread for "nmse", of the magnitude for "relative"; log units for "lognormal").
    """
    out = data.copy(deep=True)
    kind = fitted.kind
    for name in fitted.names:
        w = fitted.weights.get(name, 1.0)
        if w <= 0:
            continue
        y = data[name].values
        mean = fitted.predicted[name].values
        level = fitted.sigma[name] / np.sqrt(w)
        eps = rng.standard_normal(mean.shape)
        if kind == "poisson":
            draw = rng.poisson(np.clip(np.nan_to_num(mean), 0.0, None)).astype(float)
        elif kind == "lognormal":
            draw = mean * np.exp(level * eps)
        elif kind == "relative":
            draw = mean + level * (np.abs(mean) + 1e-3 * fitted.spread[name]) * eps
        elif kind == "nmse":
            draw = mean + level * fitted.spread[name] * eps
        else:
            draw = mean + level * eps
        out[name] = (data[name].dims, np.where(np.isfinite(y), draw, np.nan), data[name].attrs)
    return out


def bootstrap_replicate(payload: tuple) -> dict[str, Any]:
    """One replicate: ``(model, initial states, data, fitted misfit, config, seed_sequence)`` ->
    ``{"stopped_reason": ..., "values": {name: value}}``. A top-level function so executors in
    other processes can run it."""
    from sysid.errors import SolverError
    from sysid.training import fit

    model, initial, data, fitted, config, seq = payload
    rng = np.random.default_rng(seq)
    replicate = simulate_replicate(fitted, data, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a failed replicate is counted, not warned about
        try:
            res = fit(model, replicate, config, initial=initial)
        except SolverError:
            return {"stopped_reason": "failed", "values": {}}
    return {"stopped_reason": str(res.stopped_reason), "values": parameter_values(res.model)}


def bootstrap(result: Any, data: xr.Dataset, *, n: int = 200, level: float = 0.95,
              executor: Any = None, seed: int = 0) -> BootstrapResult:
    """Parametric-bootstrap percentile intervals of a fit's free parameters.

    Parameters
    ----------
    result : FitResult
        The fit; its settings (without the derivative warm start) fit every replicate.
    data : xarray.Dataset
        The data given to :func:`sysid.fit` (its times, inputs and missing samples are kept).
    n : int
        Replicates (each one re-fit; 200 or more for 95 % intervals).
    level : float
        Confidence level.
    executor : concurrent.futures.Executor, optional
        Runs the replicates; default one after another.
    seed : int
        Same seed, same replicates, whatever the executor.

    Returns
    -------
    BootstrapResult
    """
    from sysid.parallel import TaskFailure
    from sysid.training import FitResult

    if not isinstance(result, FitResult):
        raise ConfigError(f"bootstrap: expected the FitResult of sysid.fit; got "
                          f"{type(result).__name__}.")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ConfigError(f"bootstrap: n must be an integer >= 2 (replicates); got {n!r}.")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ConfigError(f"bootstrap: level must be a number in (0, 1), e.g. 0.95; got {level!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"bootstrap: seed must be an integer >= 0; got {seed!r}.")
    base = misfit(result, data)
    if base.predicted is None or not math.isfinite(base.deviance):
        raise ConfigError("bootstrap: the fitted model cannot be simulated over the data; "
                          "bootstrap a fit that converged.")
    cfg = refit_config(result.config, result.model)
    seqs = np.random.SeedSequence(int(seed)).spawn(int(n))
    payloads = [(result.model, result.initial_states, data, base, cfg, s) for s in seqs]
    outs = run_tasks(bootstrap_replicate, payloads, executor, where="bootstrap")
    names = list(free_parameters(result.model)["name"])
    estimate = parameter_values(result.model)
    rows = []
    outs = [{"stopped_reason": f"failed: {o.error_type}: {o.message}", "values": {}}
            if isinstance(o, TaskFailure) else o for o in outs]
    for k, o in enumerate(outs):
        ok = not o["stopped_reason"].startswith(_FAILED)
        rows.append({"replicate": k, "stopped_reason": o["stopped_reason"],
                     **{p: (o["values"].get(p, math.nan) if ok else math.nan) for p in names}})
    samples = pd.DataFrame(rows, columns=["replicate", "stopped_reason", *names])
    good = samples[names].dropna()
    lo_q, hi_q = 0.5 - level / 2, 0.5 + level / 2
    records = []
    for p in names:
        v = good[p].to_numpy(dtype=float)
        records.append({"name": p, "estimate": estimate[p],
                        "lower": float(np.quantile(v, lo_q)) if v.size else math.nan,
                        "upper": float(np.quantile(v, hi_q)) if v.size else math.nan,
                        "stderr": float(np.std(v, ddof=1)) if v.size > 1 else math.nan,
                        "bias": float(np.mean(v) - estimate[p]) if v.size else math.nan})
    n_failed = int(n) - len(good)
    if n_failed:
        from sysid.training import FitWarning

        warnings.warn(f"bootstrap: {n_failed} of {n} replicate fits failed and are left out of "
                      f"the intervals.", FitWarning, stacklevel=2)
    return BootstrapResult(intervals=pd.DataFrame(records).set_index("name"), samples=samples,
                           level=float(level), n=int(n), n_failed=n_failed, seed=int(seed))
