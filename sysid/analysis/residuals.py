"""Residual analysis as MATLAB's ``resid``: autocorrelation of residuals with confidence bands.

Residuals are ``e = y_measured - y_predicted`` per run and state. MATLAB's ``resid`` scores
one-step-ahead prediction errors; the equivalent here is ``predict(model, data, k=1)``. For a good
model the residuals are white: their autocorrelation at lags ``k >= 1`` stays inside
``± z / sqrt(N)`` (``z`` = 1.96 for 95 %, 2.576 for 99 %, the band MATLAB draws by default), and
residuals are uncorrelated with past inputs.

The autocorrelation at lag ``k`` (in samples; meaningful for evenly sampled runs) is the biased
estimate ``r_k = c_k / c_0``, ``c_k = (1/N) Σ (e_t - ē)(e_{t+k} - ē)`` over pairs where both
residuals are finite. The Ljung–Box statistic ``Q = N (N + 2) Σ_{k=1..K} r_k² / (N - k)`` is
compared with a chi-squared distribution with ``K`` degrees of freedom.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from sysid.errors import ConfigError, DataError

Z = {0.95: stats.norm.ppf(0.975), 0.99: stats.norm.ppf(0.995)}


def _xcorr(a: np.ndarray, b: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Biased correlation of ``a`` and ``b`` shifted by each lag (b later for positive lags)."""
    a = a - np.nanmean(a)
    b = b - np.nanmean(b)
    n = np.count_nonzero(np.isfinite(a) & np.isfinite(b))
    na, nb = np.sqrt(np.nansum(a * a)), np.sqrt(np.nansum(b * b))
    out = np.full(lags.size, np.nan)
    if n == 0 or na == 0 or nb == 0:
        return out
    for i, k in enumerate(lags):
        if k >= 0:
            prod = a[: a.size - k] * b[k:] if k else a * b
        else:
            prod = a[-k:] * b[: b.size + k]
        out[i] = np.nansum(prod) / (na * nb)
    return out


def residual_autocorrelation(
    data: xr.Dataset,
    predicted: xr.Dataset,
    *,
    max_lag: int = 25,
    variables: Sequence[str] | None = None,
) -> xr.Dataset:
    """Autocorrelation of residuals per run and variable, with 95 % and 99 % bands.

    Parameters
    ----------
    data, predicted : xarray.Dataset
        Measured and predicted trajectories (same runs and times).
    max_lag : int
        Largest lag in samples.
    variables : sequence of str, optional
        States to analyse (default those in both datasets).

    Returns
    -------
    xarray.Dataset
        ``autocorrelation(run, variable, lag)`` for lags ``0..max_lag``;
        ``cross_correlation(run, variable, input, xlag)`` with each input for lags
        ``-max_lag..max_lag`` (residual later than input for positive lags; only when the data has
        inputs); ``bound_95(run)``, ``bound_99(run)``, ``n_samples(run)``; and per (run, variable)
        ``ljung_box`` (Q), ``p_value``, ``outside_99`` (fraction of lags 1..max_lag outside the
        99 % band). Runs include ``"all"``: the runs' residuals concatenated with NaN gaps between
        them so no lag pairs samples of different runs.
    """
    from sysid.data import input_names, run_ids, run_values, state_names

    if not isinstance(max_lag, (int, np.integer)) or max_lag < 1:
        raise ConfigError(f"max_lag must be a positive integer; got {max_lag!r}.")
    names = list(variables) if variables is not None else [n for n in state_names(data) if n in predicted]
    missing = [n for n in names if n not in predicted.data_vars or n not in data.data_vars]
    if missing or not names:
        raise DataError(f"residual_autocorrelation: variables {missing or names} are not in both datasets.")
    inputs = input_names(data)
    runs = run_ids(data)
    res, uin = [], []
    td, dv = run_values(data, [*names, *inputs])  # read once, not a Dataset per run
    tp, pv = run_values(predicted, names, runs=runs)
    for i, r in enumerate(runs):
        if td[i].size != tp[i].size or not np.allclose(td[i], tp[i]):
            raise DataError(f"residual_autocorrelation: run {r!r} is sampled at other times in the prediction.")
        res.append(np.stack([dv[n][i] - pv[n][i] for n in names], -1))
        uin.append(np.stack([dv[n][i] for n in inputs], -1) if inputs else np.zeros((td[i].size, 0)))
    gap = np.full((max_lag, len(names)), np.nan)
    res.append(np.concatenate([x for r in res for x in (r, gap)])[:-max_lag])
    ugap = np.full((max_lag, len(inputs)), np.nan)
    uin.append(np.concatenate([x for u in uin for x in (u, ugap)])[:-max_lag])
    labels = [*runs, "all"]
    lags = np.arange(max_lag + 1)
    xlags = np.arange(-max_lag, max_lag + 1)
    acf = np.full((len(labels), len(names), lags.size), np.nan)
    xcf = np.full((len(labels), len(names), len(inputs), xlags.size), np.nan)
    n_samp = np.zeros(len(labels))
    for i, e in enumerate(res):
        n_samp[i] = np.count_nonzero(np.all(np.isfinite(e), axis=1))
        for j in range(len(names)):
            acf[i, j] = _xcorr(e[:, j], e[:, j], lags)
            for q in range(len(inputs)):
                xcf[i, j, q] = _xcorr(uin[i][:, q], e[:, j], xlags)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound95 = Z[0.95] / np.sqrt(n_samp)
        bound99 = Z[0.99] / np.sqrt(n_samp)
        nk = n_samp[:, None, None] - lags[None, None, 1:]
        q_stat = n_samp[:, None] * (n_samp[:, None] + 2) * np.nansum(acf[:, :, 1:] ** 2 / nk, axis=-1)
    p_val = stats.chi2.sf(q_stat, df=max_lag)
    outside = np.mean(np.abs(acf[:, :, 1:]) > bound99[:, None, None], axis=-1)
    units = [str(data[n].attrs.get("units", "")) for n in names]
    out = xr.Dataset(
        {
            "autocorrelation": (("run", "variable", "lag"), acf, {"long_name": "residual autocorrelation", "units": "1"}),
            "bound_95": ("run", bound95, {"long_name": "95 % confidence band", "units": "1"}),
            "bound_99": ("run", bound99, {"long_name": "99 % confidence band", "units": "1"}),
            "n_samples": ("run", n_samp),
            "ljung_box": (("run", "variable"), q_stat),
            "p_value": (("run", "variable"), p_val),
            "outside_99": (("run", "variable"), outside),
        },
        coords={
            "run": np.array(labels, dtype=object),
            "variable": np.array(names, dtype=object),
            "lag": ("lag", lags, {"long_name": "lag", "units": "samples"}),
            "units": ("variable", np.array(units, dtype=object)),
        },
        attrs={"max_lag": int(max_lag)},
    )
    if inputs:
        out["cross_correlation"] = (("run", "variable", "input", "xlag"), xcf,
                                    {"long_name": "input-residual cross-correlation", "units": "1"})
        out = out.assign_coords(input=np.array(inputs, dtype=object), xlag=("xlag", xlags, {"units": "samples"}))
    return out


def whiteness_table(acf: xr.Dataset, *, alpha: float = 0.01) -> pd.DataFrame:
    """Per run and variable: Ljung–Box Q, p-value, lags outside the 99 % band, and ``white``.

    ``white`` is True when the Ljung–Box p-value is above ``alpha``.
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1); got {alpha}.")
    df = acf[["ljung_box", "p_value", "outside_99"]].to_dataframe()
    df = df[[c for c in ("ljung_box", "p_value", "outside_99") if c in df.columns]]
    df["white"] = df["p_value"] > alpha
    return df


__all__ = ["residual_autocorrelation", "whiteness_table"]
