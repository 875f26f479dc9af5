"""``compare``: learned dynamics against measured data or against a reference ODE.

The learned system and the reference are integrated from the same initial states with the same
inputs on the same sample times; the trajectory metrics between them are computed per run and
variable, and the *valid prediction time* of each run is the time from the run's start until the
normalised error first exceeds a threshold (the measure used for chaotic systems, e.g. Pathak et al.
2018, Phys. Rev. Lett. 120, 024102):

    E(t) = sqrt( mean_i ((ŷ_i(t) - y_i(t)) / σ_i)² )

with ``σ_i`` the standard deviation of reference variable ``i`` over all runs. When the error never
exceeds the threshold the valid time is the run's duration and ``censored`` is True.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr

from sysid.analysis.fields import DataSupport, check_support
from sysid.analysis.metrics import metrics_table, trajectory_metrics
from sysid.analysis.prediction import predict
from sysid.analysis.tables import jsonable, markdown_table
from sysid.errors import ConfigError, DataError
from sysid.solvers import SolverConfig


@final
@dataclass(frozen=True, kw_only=True)
class Comparison:
    """The result of :func:`compare`.

    Attributes
    ----------
    metrics : xarray.Dataset
        :func:`trajectory_metrics` of the prediction against the reference, dims ``(run, variable)``.
    predicted, reference : xarray.Dataset
        The two sets of trajectories compared (sysid schema, same runs and times).
    error : xarray.Dataset
        ``normalised_error(trajectory, obs)``: E(t) above, with the time coordinate.
    valid_time : pandas.DataFrame
        Per run: ``valid_time`` (time units), ``censored`` (never exceeded), ``duration``.
    support : pandas.DataFrame or None
        :func:`check_support` of the prediction against the training data, when given.
    threshold : float
        The error threshold of the valid prediction time.
    """

    metrics: xr.Dataset
    predicted: xr.Dataset
    reference: xr.Dataset
    error: xr.Dataset
    valid_time: pd.DataFrame
    support: pd.DataFrame | None
    threshold: float

    def table(self) -> pd.DataFrame:
        """Metrics as a flat DataFrame indexed by (run, variable)."""
        return metrics_table(self.metrics)

    def to_markdown(self) -> str:
        """Metrics and valid prediction times as Markdown tables."""
        parts = ["### Trajectory metrics", "", markdown_table(self.table()), "",
                 f"### Valid prediction time (normalised error < {self.threshold:g})", "",
                 markdown_table(self.valid_time)]
        if self.support is not None:
            parts += ["", "### Distance from the training data (std units)", "", markdown_table(self.support)]
        return "\n".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """All numbers as plain JSON types."""
        return {
            "metrics": jsonable(self.table()),
            "valid_time": jsonable(self.valid_time),
            "support": None if self.support is None else jsonable(self.support),
            "threshold": self.threshold,
            "normalise": self.metrics.attrs.get("normalise"),
        }

    # -- display ---------------------------------------------------------------------------------
    def _pooled(self) -> pd.DataFrame:
        """Metrics of all samples of each set pooled (the ``"all ..."`` rows), one row per set and
        variable; the per-run rows when the metrics were not pooled."""
        table = self.table().reset_index()
        runs = {str(r) for r in self.valid_time.index}
        pooled = table[~table["run"].astype(str).isin(runs)]
        return pooled if len(pooled) else table

    def _facts(self) -> list[tuple[str, str]]:
        runs = [str(r) for r in self.valid_time.index]
        table = self._pooled()
        facts = [("runs", f"{len(runs)} ({', '.join(runs[:6])}" + (", ..." if len(runs) > 6 else "")
                          + ")"),
                 ("variables", ", ".join(map(str, dict.fromkeys(table["variable"]))))]
        if "nrmse" in table.columns:
            facts.append((f"NRMSE ({self.metrics.attrs.get('normalise', 'range')}), pooled",
                          f"best {float(table['nrmse'].min()):.4g}, worst "
                          f"{float(table['nrmse'].max()):.4g}"))
        vt = self.valid_time
        if len(vt):
            frac = vt["valid_time"] / vt["duration"].where(vt["duration"] > 0)
            facts.append((f"valid prediction time (error < {self.threshold:g})",
                          f"median {float(frac.median()):.0%} of a run; "
                          f"{int(vt['censored'].sum())} of {len(vt)} runs never exceed it"))
        if self.support is not None and len(self.support) and "inside" in self.support.columns:
            left = int((~self.support["inside"].astype(bool)).sum())
            facts.append(("leaves the training data", f"{left} of {len(self.support)} runs"))
        return facts

    def _per_variable(self) -> pd.DataFrame:
        table = self._pooled()
        cols = [c for c in ("run", "variable", "set", "rmse", "nrmse", "fit_percent", "r2")
                if c in table.columns]
        return table[cols].rename(columns={"run": "pooled over"})

    def summary(self) -> str:
        """A short text report: runs and variables compared, the best and worst pooled NRMSE,
        the valid prediction time as a fraction of each run (median), support checks, and the
        trajectory metrics of each variable over all samples of each set (training, held-out)."""
        from sysid._display import text_block

        return text_block("sysid Comparison", self._facts(), self._per_variable())

    def __repr__(self) -> str:
        """One line: runs, variables and the worst pooled NRMSE."""
        table = self._pooled()
        variables = list(dict.fromkeys(map(str, table["variable"])))
        worst = float(table["nrmse"].max()) if "nrmse" in table.columns else float("nan")
        return (f"Comparison(runs={len(self.valid_time)}, variables={variables}, "
                f"worst_nrmse={worst:.4g})")

    def _repr_html_(self) -> str:
        """HTML for Jupyter: the facts of ``summary()``, the per-variable metrics and the
        normalised error against time for up to four runs with the threshold."""
        from matplotlib.figure import Figure

        from sysid._display import block, facts_html, figure_png, table_html

        fig = Figure(figsize=(4.0, 2.2), layout="constrained")
        ax = fig.subplots()
        err = self.error["normalised_error"]
        for i, run in enumerate(self.error["trajectory"].values[:4]):
            e = err.sel(trajectory=run)
            t = self.error["time"].sel(trajectory=run).values
            ok = np.isfinite(t)
            ax.plot(t[ok], e.values[ok], lw=1, label=str(run), color=f"C{i}")
        ax.axhline(self.threshold, color="C3", ls="--", lw=0.8)
        ax.set_ylabel("normalised error")
        ax.set_xlabel("time")
        ax.legend(fontsize=7)
        parts = [facts_html(self._facts()), table_html(self._per_variable()), figure_png(fig)]
        return block("sysid Comparison", parts, "sysid-comparison")



def valid_prediction_time(
    reference: xr.Dataset,
    predicted: xr.Dataset,
    *,
    threshold: float = 0.4,
    variables: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, xr.Dataset]:
    """Valid prediction time per run and the normalised error series (see the module docstring).

    Returns
    -------
    (pandas.DataFrame, xarray.Dataset)
        The per-run table (``valid_time``, ``censored``, ``duration``) and the error series.
    """
    from sysid.data import run_ids, state_names

    if not threshold > 0:
        raise ConfigError(f"threshold must be > 0; got {threshold}.")
    from sysid.data import run_values

    names = list(variables) if variables is not None else [n for n in state_names(reference) if n in predicted]
    sigma = np.array([np.nanstd(reference[n].values) for n in names])
    sigma = np.where(sigma > 0, sigma, 1.0)
    t_all = reference["time"].values
    e_all = np.full(t_all.shape, np.nan)
    rows = []
    runs = run_ids(reference)
    t_ref, ref_v = run_values(reference, names)  # read once, not a Dataset per run
    t_pred, pred_v = run_values(predicted, names, runs=runs)
    for i, r in enumerate(runs):
        ti = t_ref[i]
        if t_pred[i].size != ti.size:
            raise DataError(
                f"valid_prediction_time: run {r!r} has {ti.size} reference samples but "
                f"{t_pred[i].size} predicted ones."
            )
        y = np.stack([ref_v[n][i] for n in names], -1)
        p = np.stack([pred_v[n][i] for n in names], -1)
        sq = ((p - y) / sigma) ** 2
        cnt = np.sum(np.isfinite(sq), axis=-1)
        ei = np.where(cnt > 0, np.sqrt(np.nansum(sq, axis=-1) / np.maximum(cnt, 1)), np.nan)
        e_all[i, : ti.size] = ei
        over = np.flatnonzero(ei > threshold)
        duration = float(ti[-1] - ti[0])
        if over.size:
            rows.append({"run": r, "valid_time": float(ti[over[0]] - ti[0]), "censored": False, "duration": duration})
        else:
            rows.append({"run": r, "valid_time": duration, "censored": True, "duration": duration})
    err = xr.Dataset(
        {"normalised_error": (("trajectory", "obs"), e_all, {"long_name": "normalised error", "units": "1"})},
        coords={"trajectory": reference["trajectory"].values,
                "time": (("trajectory", "obs"), t_all, reference["time"].attrs)},
        attrs={"threshold": threshold, "variables": list(names)},
    )
    return pd.DataFrame(rows).set_index("run"), err


def _is_dataset(x: Any) -> bool:
    return isinstance(x, xr.Dataset)


def compare(
    model: Any,
    reference: Any,
    *,
    data: xr.Dataset | None = None,
    k: int | None = None,
    initial: Mapping[str, float | Sequence[float]] | None = None,
    held_out: Sequence[str] = (),
    training_data: xr.Dataset | None = None,
    threshold: float = 0.4,
    normalise: str = "range",
    support_threshold: float = 0.25,
    interpolation: str | None = None,
    settings: SolverConfig | None = None,
    params: Mapping[str, float] | None = None,
) -> Comparison:
    """Compare learned dynamics (or trajectories) with a reference (dynamics or trajectories).

    Parameters
    ----------
    model : Model, FitResult, System, Dynamics, callable, or xarray.Dataset
        The learned dynamics, or trajectories already simulated. A plain callable ``f(t, y)``
        takes the data's states in the data's order.
    reference : xarray.Dataset, System, Model, Dynamics or callable
        Measured/reference trajectories, or reference dynamics (a :mod:`sysid.systems` system is
        integrated with :func:`scipy.integrate.solve_ivp`).
    data : xarray.Dataset, optional
        When both ``model`` and ``reference`` are dynamics: the runs whose first samples (initial
        states), sample times and inputs drive both simulations.
    k : int, optional
        Score k-step-ahead prediction instead of free run (only against trajectories).
    initial : mapping, optional
        Initial values for states not measured at a run's first sample (free run).
    held_out : sequence of str
        Runs not used for training, reported separately.
    training_data : xarray.Dataset, optional
        The training data: the prediction is checked against its support and an
        :class:`~sysid.analysis.ExtrapolationWarning` is issued when it leaves it.
    threshold : float
        Normalised-error threshold of the valid prediction time.
    normalise : {"range", "std", "mean"}
        NRMSE normalisation.
    support_threshold : float
        Distance (std units) beyond which a state is outside the training data's support.
    interpolation, settings, params
        Input interpolation, solver settings (a SolverConfig; default the analysis default, SciPy
        RK45 with rtol 1e-8, atol 1e-10) and reference-system parameter overrides.

    Returns
    -------
    Comparison

    Examples
    --------
    >>> import numpy as np
    >>> from sysid.data import from_arrays
    >>> ds = from_arrays([np.linspace(0, 1, 5)], {"x": [np.arange(5.0)]}, states=["x"])
    >>> float(compare(ds, ds).metrics["fit_percent"].sel(run="run0", variable="x"))
    100.0
    """
    if _is_dataset(reference):
        ref_ds = reference
        if _is_dataset(model):
            pred = model
            if k is not None:
                raise ConfigError("compare: k-step needs dynamics to simulate; model is a dataset.")
        else:
            pred = predict(model, ref_ds, k=k, initial=initial, interpolation=interpolation,
                           settings=settings, params=params, states=_state_names(ref_ds))
    else:
        if k is not None:
            raise ConfigError(
                "compare: k-step prediction is scored against measured trajectories; pass the "
                "data as reference (compare(model, data, k=...))."
            )
        if data is None and _is_dataset(model):
            data = model
        if data is None:
            raise ConfigError(
                "compare: comparing two dynamics needs data= (a dataset whose runs give the initial "
                "states, sample times and inputs for both)."
            )
        ref_ds = predict(reference, data, initial=initial, interpolation=interpolation,
                         settings=settings, params=params, states=_state_names(data))
        pred = model if _is_dataset(model) else predict(
            model, data, initial=initial, interpolation=interpolation, settings=settings,
            states=_state_names(ref_ds))
    from sysid.data import run_ids, state_names

    have = set(run_ids(pred))  # once: a list per run was quadratic in the runs
    missing = [r for r in run_ids(ref_ds) if r not in have]
    if missing:
        raise DataError(f"compare: the prediction has no runs {missing}.")
    names = [n for n in state_names(ref_ds) if n in pred.data_vars]
    metrics = trajectory_metrics(ref_ds, pred, variables=names, normalise=normalise, held_out=held_out)
    valid, err = valid_prediction_time(ref_ds, pred, threshold=threshold, variables=names)
    support = None
    if training_data is not None:
        sup = DataSupport.from_data(training_data, states=state_names(pred), threshold=support_threshold)
        support = check_support(sup, pred, stacklevel=3)
    return Comparison(metrics=metrics, predicted=pred, reference=ref_ds, error=err, valid_time=valid,
                      support=support, threshold=threshold)


def _state_names(ds: xr.Dataset) -> list[str]:
    from sysid.data import state_names

    return state_names(ds)


__all__ = ["Comparison", "compare", "valid_prediction_time"]
