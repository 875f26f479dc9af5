"""Trajectory metrics per variable and per run: RMSE, NRMSE, fit % (as MATLAB's ``compare``), R².

All metrics are NaN-aware: a sample counts only where both the measured and the predicted value are
finite. Definitions, with ``y`` the measured (reference) and ``ŷ`` the predicted samples of one
variable in one run:

- ``rmse = sqrt(mean((y - ŷ)²))`` in the variable's units;
- ``nrmse = rmse / scale`` where ``scale`` is, by ``normalise=``, the range ``max(y) - min(y)``
  (default), the standard deviation of ``y`` (population, ``ddof=0``) or ``|mean(y)|``;
- ``fit_percent = 100 (1 - ‖y - ŷ‖ / ‖y - mean(y)‖)`` exactly as MATLAB's ``compare`` (100 is a
  perfect fit, 0 is as good as the mean, negative is worse than the mean);
- ``r2 = 1 - Σ(y - ŷ)² / Σ(y - mean(y))²``, so ``r2 = 1 - (1 - fit/100)²``.

A constant ``y`` makes nrmse, fit and R² undefined: they are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError, DataError

NORMALISATIONS = ("range", "std", "mean")
METRICS = ("rmse", "nrmse", "fit_percent", "r2")


def _pairs(y: np.ndarray, yhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    yhat = np.asarray(yhat, dtype=float).ravel()
    if y.shape != yhat.shape:
        raise DataError(f"metrics: y has {y.size} samples but the prediction has {yhat.size}.")
    ok = np.isfinite(y) & np.isfinite(yhat)
    return y[ok], yhat[ok]


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    """Root-mean-square error over samples where both are finite (NaN when there are none).

    Examples
    --------
    >>> rmse([1.0, 2.0, np.nan], [1.0, 4.0, 3.0])
    1.4142135623730951
    """
    a, b = _pairs(y, yhat)
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else float("nan")


def nrmse(y: np.ndarray, yhat: np.ndarray, *, normalise: str = "range") -> float:
    """RMSE divided by the range (default), the standard deviation or ``|mean|`` of ``y``."""
    if normalise not in NORMALISATIONS:
        raise ConfigError(f"normalise must be one of {list(NORMALISATIONS)}; got {normalise!r}.")
    a, b = _pairs(y, yhat)
    if not a.size:
        return float("nan")
    scale = {"range": np.ptp(a), "std": np.std(a), "mean": abs(np.mean(a))}[normalise]
    err = np.sqrt(np.mean((a - b) ** 2))
    return float(err / scale) if scale > 0 else float("nan")


def fit_percent(y: np.ndarray, yhat: np.ndarray) -> float:
    """MATLAB ``compare``'s fit: ``100 (1 - ‖y - ŷ‖ / ‖y - mean(y)‖)``.

    Examples
    --------
    >>> fit_percent([0.0, 1.0, 2.0], [0.0, 1.0, 2.0])
    100.0
    """
    a, b = _pairs(y, yhat)
    if not a.size:
        return float("nan")
    den = np.linalg.norm(a - a.mean())
    return float(100.0 * (1.0 - np.linalg.norm(a - b) / den)) if den > 0 else float("nan")


def r2(y: np.ndarray, yhat: np.ndarray) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` (NaN when ``y`` is constant)."""
    a, b = _pairs(y, yhat)
    if not a.size:
        return float("nan")
    ss_tot = np.sum((a - a.mean()) ** 2)
    return float(1.0 - np.sum((a - b) ** 2) / ss_tot) if ss_tot > 0 else float("nan")


def _all_metrics(y: np.ndarray, yhat: np.ndarray, normalise: str) -> list[float]:
    a, b = _pairs(y, yhat)
    return [rmse(a, b), nrmse(a, b, normalise=normalise), fit_percent(a, b), r2(a, b), float(a.size)]


def _aligned(run: str, td: np.ndarray, tp: np.ndarray, d: list[np.ndarray],
             p: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One run's data and prediction (samples x variables) after checking they share times."""
    if td.shape != tp.shape or not np.allclose(td, tp, rtol=1e-9, atol=1e-12 * max(1.0, np.abs(td).max())):
        raise DataError(
            f"metrics: run {run!r} has {td.size} samples in the data but the prediction has "
            f"{tp.size} at other times; simulate at the data's sample times (e.g. "
            f"sysid.analysis.predict(model, data))."
        )
    return np.stack(d, -1), np.stack(p, -1)


def trajectory_metrics(
    data: xr.Dataset,
    predicted: xr.Dataset,
    *,
    variables: Sequence[str] | None = None,
    normalise: str = "range",
    held_out: Sequence[str] = (),
    pooled: bool = True,
) -> xr.Dataset:
    """Metrics between measured (or reference) and predicted trajectories, per run and variable.

    Parameters
    ----------
    data, predicted : xarray.Dataset
        Trajectory datasets (the sysid schema) with the same runs sampled at the same times.
    variables : sequence of str, optional
        Which variables to score; default the data's states that the prediction also has.
    normalise : {"range", "std", "mean"}
        What NRMSE divides by (see the module docstring).
    held_out : sequence of str
        Runs that were not used for training; the ``set`` coordinate marks them ``"held-out"``,
        the others ``"train"``.
    pooled : bool
        Also score all samples of each set pooled together, as runs named ``"all train"`` and
        ``"all held-out"`` (``"all"`` when nothing is held out).

    Returns
    -------
    xarray.Dataset
        Dims ``(run, variable)``; variables ``rmse`` (variable units), ``nrmse``, ``fit_percent``,
        ``r2``, ``n_samples``; coords ``set(run)`` and ``units(variable)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sysid.data import from_arrays
    >>> ds = from_arrays([np.arange(4.0)], {"x": [np.array([0.0, 1, 2, 3])]}, states=["x"])
    >>> float(trajectory_metrics(ds, ds)["fit_percent"].sel(run="run0", variable="x"))
    100.0
    """
    from sysid.data import run_ids, run_values, state_names

    if normalise not in NORMALISATIONS:
        raise ConfigError(f"normalise must be one of {list(NORMALISATIONS)}; got {normalise!r}.")
    runs = run_ids(data)
    pred_runs = set(run_ids(predicted))
    missing_runs = [r for r in runs if r not in pred_runs]
    if missing_runs:
        raise DataError(f"metrics: the prediction has no runs {missing_runs}; it has {sorted(pred_runs)}.")
    known = set(runs)
    unknown_held = [r for r in held_out if r not in known]
    if unknown_held:
        raise DataError(f"metrics: held_out runs {unknown_held} are not in the data; runs are {runs}.")
    if variables is None:
        names = [n for n in state_names(data) if n in predicted.data_vars]
        if not names:
            raise DataError(
                f"metrics: the data's states {state_names(data)} are not in the prediction "
                f"(it has {list(predicted.data_vars)})."
            )
    else:
        names = list(variables)
        bad = [n for n in names if n not in data.data_vars or n not in predicted.data_vars]
        if bad:
            raise DataError(
                f"metrics: variables {bad} are not in both datasets; data has {list(data.data_vars)}, "
                f"the prediction has {list(predicted.data_vars)}."
            )
    held = set(held_out)
    td, dv = run_values(data, names)  # read once: a Dataset per run cost ms x thousands of runs
    tp, pv = run_values(predicted, names, runs=runs)
    per_run = {r: _aligned(r, td[i], tp[i], [dv[n][i] for n in names], [pv[n][i] for n in names])
               for i, r in enumerate(runs)}
    labels: list[str] = list(runs)
    sets: list[str] = ["held-out" if r in held else "train" for r in runs]
    values = [[_all_metrics(per_run[r][0][:, j], per_run[r][1][:, j], normalise) for j in range(len(names))] for r in runs]
    if pooled:
        groups = [("train", [r for r in runs if r not in held]), ("held-out", [r for r in runs if r in held])]
        for group, members in groups:
            if not members:
                continue
            label = f"all {group}" if held else "all"
            y = np.concatenate([per_run[r][0] for r in members])
            yh = np.concatenate([per_run[r][1] for r in members])
            labels.append(label)
            sets.append(group)
            values.append([_all_metrics(y[:, j], yh[:, j], normalise) for j in range(len(names))])
    arr = np.asarray(values, dtype=float)  # (run, variable, metric)
    units = [str(data[n].attrs.get("units", "")) for n in names]
    out = xr.Dataset(
        {
            m: (("run", "variable"), arr[:, :, i])
            for i, m in enumerate((*METRICS, "n_samples"))
        },
        coords={
            "run": np.array(labels, dtype=object),
            "variable": np.array(names, dtype=object),
            "set": ("run", np.array(sets, dtype=object)),
            "units": ("variable", np.array(units, dtype=object)),
        },
        attrs={"normalise": normalise, "description": "NRMSE = RMSE / " + normalise + " of the data"},
    )
    out["rmse"].attrs = {"long_name": "root-mean-square error", "units": "variable units"}
    out["nrmse"].attrs = {"long_name": f"RMSE / {normalise} of the data", "units": "1"}
    out["fit_percent"].attrs = {"long_name": "fit (MATLAB compare)", "units": "%"}
    out["r2"].attrs = {"long_name": "coefficient of determination", "units": "1"}
    out["n_samples"].attrs = {"long_name": "samples scored", "units": "1"}
    return out


def metrics_table(metrics: xr.Dataset) -> pd.DataFrame:
    """The metrics dataset as a flat DataFrame indexed by (run, variable), with set and units."""
    df = metrics[[*METRICS, "n_samples"]].to_dataframe()
    df["n_samples"] = df["n_samples"].astype(int)
    cols = [c for c in ("set", "units") if c in df.columns]
    return df[[*cols, *METRICS, "n_samples"]]


__all__ = [
    "NORMALISATIONS",
    "METRICS",
    "rmse",
    "nrmse",
    "fit_percent",
    "r2",
    "trajectory_metrics",
    "metrics_table",
]
