"""Residual whiteness (as MATLAB's resid) and the recovered-parameter table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sysid.systems as systems
from sysid.analysis import parameter_table, residual_autocorrelation, whiteness_table
from sysid.data import from_arrays
from sysid.errors import ConfigError, DataError


def _with_residuals(e: np.ndarray, u: np.ndarray | None = None):
    t = np.arange(e.size, dtype=float)
    values = {"x": [e]}
    inputs = []
    if u is not None:
        values["u"] = [u]
        inputs = ["u"]
    data = from_arrays([t], values, states=["x"], inputs=inputs)
    pred = from_arrays([t], {"x": [np.zeros_like(e)], **({"u": [u]} if u is not None else {})},
                       states=["x"], inputs=inputs)
    return data, pred


def test_autocorrelation_matches_hand_formula_and_bands():
    rng = np.random.default_rng(0)
    e = rng.standard_normal(400)
    data, pred = _with_residuals(e)
    acf = residual_autocorrelation(data, pred, max_lag=5)
    r = acf["autocorrelation"].sel(run="run0", variable="x").values
    c = e - e.mean()
    expected = [np.sum(c[: c.size - k] * c[k:]) / np.sum(c * c) for k in range(6)]
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    assert float(acf["bound_99"].sel(run="run0")) == pytest.approx(2.5758293 / np.sqrt(400), rel=1e-6)
    assert float(acf["bound_95"].sel(run="run0")) == pytest.approx(1.9599640 / np.sqrt(400), rel=1e-6)
    q = 400 * 402 * sum(expected[k] ** 2 / (400 - k) for k in range(1, 6))
    assert float(acf["ljung_box"].sel(run="run0", variable="x")) == pytest.approx(q, rel=1e-10)
    assert float(acf["p_value"].sel(run="run0", variable="x")) == pytest.approx(stats.chi2.sf(q, 5), rel=1e-10)


def test_white_noise_passes_and_ar1_fails():
    rng = np.random.default_rng(1)
    white = rng.standard_normal(500)
    ar = np.zeros(500)
    for i in range(1, 500):
        ar[i] = 0.8 * ar[i - 1] + white[i]
    w = whiteness_table(residual_autocorrelation(*_with_residuals(white), max_lag=20))
    a = whiteness_table(residual_autocorrelation(*_with_residuals(ar), max_lag=20))
    # seeded white noise: p well above 1 %; AR(1) with 0.8: r_1 ≈ 0.8, far outside 2.58/sqrt(500)
    assert bool(w.loc[("run0", "x"), "white"])
    assert not bool(a.loc[("run0", "x"), "white"])
    assert a.loc[("run0", "x"), "outside_99"] > 0.2


def test_cross_correlation_with_inputs_detects_a_lagged_input():
    rng = np.random.default_rng(2)
    u = rng.standard_normal(300)
    e = np.roll(u, 3)  # residual = input three samples earlier: cross-correlation 1 at lag +3
    e[:3] = 0.0
    acf = residual_autocorrelation(*_with_residuals(e, u), max_lag=5)
    xc = acf["cross_correlation"].sel(run="run0", variable="x", input="u")
    assert int(xc["xlag"][int(np.argmax(xc.values))]) == 3
    assert float(xc.sel(xlag=3)) == pytest.approx(1.0, abs=0.02)


def test_pooled_runs_do_not_mix_samples():
    rng = np.random.default_rng(3)
    e1, e2 = rng.standard_normal(100), rng.standard_normal(80)
    t1, t2 = np.arange(100.0), np.arange(80.0)
    data = from_arrays([t1, t2], {"x": [e1, e2]}, states=["x"])
    pred = from_arrays([t1, t2], {"x": [0 * e1, 0 * e2]}, states=["x"])
    acf = residual_autocorrelation(data, pred, max_lag=4)
    assert float(acf["n_samples"].sel(run="all")) == 180
    assert list(acf["run"].values) == ["run0", "run1", "all"]


def test_residual_errors():
    data, pred = _with_residuals(np.ones(10))
    with pytest.raises(ConfigError, match="max_lag must be a positive integer"):
        residual_autocorrelation(data, pred, max_lag=0)
    with pytest.raises(DataError, match="not in both datasets"):
        residual_autocorrelation(data, pred, variables=["y"])
    with pytest.raises(ConfigError, match=r"alpha must be in \(0, 1\)"):
        whiteness_table(residual_autocorrelation(data, pred, max_lag=2), alpha=2)


def test_parameter_table_against_system_with_stderr():
    lv = systems.get("lotka_volterra")
    est = pd.DataFrame({"name": ["a", "b", "c", "d"], "value": [0.605, 0.028, 0.76, 0.024],
                        "units": ["", "", "", ""], "stderr": [0.01, 0.002, 0.01, np.nan], "vary": True})
    tab = parameter_table(est, lv)
    assert tab.loc["a", "percent_error"] == pytest.approx(10.0)
    assert tab.loc["c", "percent_error"] == pytest.approx(-5.0)
    assert tab.loc["a", "units"] == "1/year"  # taken from the system when the estimate has none
    assert tab.loc["a", "ci95_low"] == pytest.approx(0.605 - 1.959964 * 0.01, rel=1e-6)
    assert not tab.loc["a", "reference_in_ci"] and tab.loc["b", "reference_in_ci"]
    assert pd.isna(tab.loc["d", "reference_in_ci"])
    assert bool(tab.loc["d", "vary"])


def test_parameter_table_from_model_and_errors():
    from sysid.models import PhysicsField

    lv = systems.get("lotka_volterra")
    field = PhysicsField.from_system(lv, values={"a": 0.66})
    tab = parameter_table(field, lv)
    assert tab.loc["a", "percent_error"] == pytest.approx(20.0, rel=1e-5)  # float32 parameters
    assert tab.loc["b", "error"] == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(DataError, match=r"reference parameters \['k'\] are not among the estimates"):
        parameter_table({"a": 1.0}, {"k": 2.0})
    with pytest.raises(ConfigError, match="estimated must be a FitResult"):
        parameter_table(3.0)
    with pytest.raises(DataError, match="no 'value' column"):
        parameter_table(pd.DataFrame({"v": [1.0]}))
