"""Trajectory metrics, predictions (free run, k-step) and compare() against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sysid.analysis import (
    Dynamics,
    compare,
    fit_percent,
    markdown_table,
    metrics_table,
    nrmse,
    predict,
    r2,
    rmse,
    trajectory_metrics,
    valid_prediction_time,
)
from sysid.data import from_arrays
from sysid.errors import ConfigError, DataError

# y = [1, 2, 3, 4], ŷ = [1, 2, 3, 5]: residual [0, 0, 0, 1]
Y = np.array([1.0, 2.0, 3.0, 4.0])
YH = np.array([1.0, 2.0, 3.0, 5.0])


def test_scalar_metrics_match_hand_computation():
    assert rmse(Y, YH) == pytest.approx(0.5, rel=1e-15)  # sqrt(1/4)
    assert nrmse(Y, YH) == pytest.approx(0.5 / 3.0, rel=1e-15)  # range 4 - 1 = 3
    assert nrmse(Y, YH, normalise="std") == pytest.approx(0.5 / math.sqrt(1.25), rel=1e-15)
    assert nrmse(Y, YH, normalise="mean") == pytest.approx(0.5 / 2.5, rel=1e-15)
    # MATLAB compare: 100 (1 - ||y - ŷ|| / ||y - mean y||) = 100 (1 - 1/sqrt(5))
    assert fit_percent(Y, YH) == pytest.approx(100 * (1 - 1 / math.sqrt(5)), rel=1e-14)
    assert r2(Y, YH) == pytest.approx(1 - 1 / 5, rel=1e-14)
    # r2 = 1 - (1 - fit/100)^2 holds by definition
    assert r2(Y, YH) == pytest.approx(1 - (1 - fit_percent(Y, YH) / 100) ** 2, rel=1e-14)


def test_metrics_ignore_nan_pairs():
    y = np.append(Y, [np.nan, 7.0])
    yh = np.append(YH, [3.0, np.nan])
    assert rmse(y, yh) == pytest.approx(0.5, rel=1e-15)
    assert fit_percent(y, yh) == pytest.approx(100 * (1 - 1 / math.sqrt(5)), rel=1e-14)
    assert math.isnan(rmse([np.nan], [1.0]))


def test_constant_reference_gives_nan_fit_and_r2():
    assert math.isnan(fit_percent([2.0, 2.0, 2.0], [2.0, 2.1, 2.0]))
    assert math.isnan(r2([2.0, 2.0, 2.0], [2.0, 2.1, 2.0]))
    assert math.isnan(nrmse([2.0, 2.0], [2.0, 2.1]))


def test_bad_normalisation_and_shapes_raise():
    with pytest.raises(ConfigError, match="normalise must be one of"):
        nrmse(Y, YH, normalise="max")
    with pytest.raises(DataError, match="y has 4 samples but the prediction has 3"):
        rmse(Y, YH[:3])


def _two_runs(shift: float = 0.0):
    t0, t1 = np.arange(4.0), np.arange(3.0)
    return from_arrays(
        [t0, t1],
        {"x": [Y, np.array([0.0, 1.0, 0.0])], "v": [Y * 2, np.array([1.0, 2.0, 4.0]) + shift]},
        states=["x", "v"], runs=["A", "B"], units={"x": "m", "v": "m/s", "time": "s"},
    )


def test_trajectory_metrics_per_run_variable_and_pooled():
    data = _two_runs()
    pred = data.copy(deep=True)
    pred["x"].loc[{"trajectory": "A"}] = np.append(YH, np.nan)[: pred.sizes["obs"]]
    m = trajectory_metrics(data, pred, held_out=["B"])
    assert m["rmse"].dims == ("run", "variable")
    assert list(m["run"].values) == ["A", "B", "all train", "all held-out"]
    assert m["fit_percent"].sel(run="A", variable="x") == pytest.approx(100 * (1 - 1 / math.sqrt(5)))
    assert m["fit_percent"].sel(run="A", variable="v") == pytest.approx(100.0)
    assert m["rmse"].sel(run="B", variable="x") == 0.0
    assert m["set"].sel(run="B") == "held-out"
    assert m["units"].sel(variable="v") == "m/s"
    # the pooled "all train" row is run A alone here
    assert m["r2"].sel(run="all train", variable="x") == pytest.approx(0.8)
    assert int(m["n_samples"].sel(run="A", variable="x")) == 4
    table = metrics_table(m)
    assert list(table.columns) == ["set", "units", "rmse", "nrmse", "fit_percent", "r2", "n_samples"]
    md = markdown_table(table)
    assert md.splitlines()[0].startswith("| run / variable | set | units | rmse")
    assert "| A / x | train | m | 0.5 | 0.1667 | 55.28 | 0.8 | 4 |" in md


def test_trajectory_metrics_errors():
    data = _two_runs()
    shifted = data.assign_coords(time=data["time"] + 0.5)
    with pytest.raises(DataError, match="run 'A' has 4 samples in the data but the prediction"):
        trajectory_metrics(data, shifted)
    with pytest.raises(DataError, match=r"held_out runs \['C'\] are not in the data"):
        trajectory_metrics(data, data, held_out=["C"])
    with pytest.raises(DataError, match=r"variables \['w'\] are not in both datasets"):
        trajectory_metrics(data, data, variables=["w"])
    with pytest.raises(DataError, match=r"the prediction has no runs \['B'\]"):
        trajectory_metrics(data, data.isel(trajectory=[0]))


def test_compare_identical_datasets_is_perfect():
    data = _two_runs()
    c = compare(data, data)
    assert np.all(c.metrics["rmse"].values == 0.0)
    assert np.allclose(c.metrics["fit_percent"].values, 100.0)
    assert np.allclose(c.metrics["r2"].values, 1.0)
    # never exceeds the threshold: valid for the whole run, censored
    assert c.valid_time.loc["A", "valid_time"] == 3.0 and bool(c.valid_time.loc["A", "censored"])
    assert "### Valid prediction time" in c.to_markdown()
    d = c.to_dict()
    assert d["metrics"][0]["fit_percent"] == 100.0


def test_valid_prediction_time_first_crossing():
    t = np.linspace(0.0, 10.0, 101)
    y = np.sin(t)
    ref = from_arrays([t], {"x": [y]}, states=["x"])
    sigma = np.std(y)
    pred = from_arrays([t], {"x": [y + 0.1 * sigma * t]}, states=["x"])
    # normalised error is 0.1 t: it first exceeds 0.405 at the sample t = 4.1
    table, err = valid_prediction_time(ref, pred, threshold=0.405)
    assert table.loc["run0", "valid_time"] == pytest.approx(4.1)
    assert not table.loc["run0", "censored"]
    assert err["normalised_error"].values[0, 50] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="threshold must be > 0"):
        valid_prediction_time(ref, pred, threshold=0.0)


def _decay_data(n: int = 41):
    t = np.linspace(0.0, 4.0, n)
    return from_arrays([t, t[:30]], {"x": [np.exp(-t), 2 * np.exp(-t[:30])]}, states=["x"], runs=["r0", "r1"])


def test_free_run_and_k_step_match_closed_form():
    data = _decay_data()

    def wrong_rate(t, y):  # dx/dt = -2 x instead of -x
        return -2.0 * y

    free = predict(wrong_rate, data, states=["x"])
    t = data["time"].values[0]
    # free run from x(0) = 1: exp(-2t); solver tolerance 1e-8 relative
    np.testing.assert_allclose(free["x"].values[0], np.exp(-2 * t), rtol=1e-6, atol=1e-9)
    k = 3
    ks = predict(wrong_rate, data, k=k, states=["x"])
    dt = t[1] - t[0]
    expected = np.exp(-t[:-k]) * np.exp(-2 * k * dt)  # from the measured sample k steps earlier
    np.testing.assert_allclose(ks["x"].values[0, k:], expected, rtol=1e-6)
    assert np.all(np.isnan(ks["x"].values[0, :k]))
    expected_r1 = 2 * np.exp(-t[: 30 - k]) * np.exp(-2 * k * dt)
    np.testing.assert_allclose(ks["x"].values[1, k:30], expected_r1, rtol=1e-6)
    # the exact model predicts the data at every horizon
    exact = predict(lambda t, y: -y, data, k=5, states=["x"])
    m = trajectory_metrics(data, exact)
    assert float(m["fit_percent"].sel(run="all", variable="x")) > 99.9999


def test_k_step_error_grows_with_horizon():
    data = _decay_data()
    fits = [float(trajectory_metrics(data, predict(lambda t, y: -1.3 * y, data, k=k, states=["x"]))["rmse"]
                  .sel(run="r0", variable="x")) for k in (1, 4, 16)]
    assert fits[0] < fits[1] < fits[2]


def test_free_run_with_inputs_matches_closed_form():
    # dx/dt = -x + u, u = t: x = t - 1 + (x0 + 1) exp(-t); linear interpolation of u is exact
    t = np.linspace(0.0, 3.0, 31)
    x_true = t - 1 + 2.0 * np.exp(-t)
    data = from_arrays([t], {"x": [x_true], "u": [t]}, states=["x"], inputs=["u"])
    dyn = Dynamics(fn=lambda tt, x, u: -x + u, states=("x",), inputs=("u",))
    out = predict(dyn, data)
    np.testing.assert_allclose(out["x"].values[0], x_true, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(out["u"].values[0], t)
    assert out["u"].attrs["role"] == "input"
    ks = predict(dyn, data, k=2)
    np.testing.assert_allclose(ks["x"].values[0, 2:], x_true[2:], rtol=1e-6, atol=1e-8)


def test_predict_errors():
    data = _decay_data()
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        predict(lambda t, y: -y, data, k=0, states=["x"])
    with pytest.raises(ConfigError, match="needs states="):
        predict(lambda t, y: -y, data)
    # the free run is sysid.simulate: its one rule for initial states, and its message
    with pytest.raises(DataError, match=r"no initial value for the observed states \['v'\] in run 'r0'.*"
                                        r"predict's initial="):
        predict(lambda t, y: [-y[1], y[0]], data, states=["x", "v"])
    with pytest.raises(DataError, match=r"runs \['zz'\] are not in the data"):
        predict(lambda t, y: -y, data, runs=["zz"], states=["x"])
    with pytest.raises(DataError, match=r"k-step prediction needs every state measured; the data has no \['v'\]"):
        predict(lambda t, y: [-y[1], y[0]], data, k=1, states=["x", "v"])
    # an unmeasured state given explicitly works
    out = predict(lambda t, y: [y[1], -y[0]], data, states=["x", "v"], initial={"v": 0.0})
    np.testing.assert_allclose(out["x"].values[0], np.cos(data["time"].values[0]), rtol=1e-6, atol=1e-8)


def test_latent_states_start_from_the_fit_estimate_then_the_model_default():
    import pandas as pd

    import sysid
    import sysid.systems as systems

    osc = systems.get("harmonic_oscillator")
    model = sysid.models.physics(osc, observed=["x"], dtype=torch.float64)
    t = np.linspace(0.0, 6.0, 61)
    data = from_arrays([t, t], {"x": [np.cos(t), np.cos(t)]}, states=["x"], runs=["a", "b"])
    # the model's default latent start v(0) = 0 gives x = cos t in both runs
    free = predict(model, data)
    np.testing.assert_allclose(free["x"].values, np.cos([t, t]), atol=1e-6)
    # a fit's per-run estimate v0 = 1 for run b: x = cos t + sin t there (omega = 1)
    result = sysid.FitResult(model=model, history=pd.DataFrame(), parameters=pd.DataFrame(),
                             solver_stats={}, config=sysid.FitConfig(), stopped_reason="completed",
                             latent_initial=pd.DataFrame({"v": [1.0]}, index=pd.Index(["b"], name="trajectory")))
    out = predict(result, data)
    np.testing.assert_allclose(out["x"].sel(trajectory="b").values, np.cos(t) + np.sin(t), atol=1e-6)
    np.testing.assert_allclose(out["x"].sel(trajectory="a").values, np.cos(t), atol=1e-6)
    # initial= overrides both
    out = predict(result, data, initial={"v": [2.0, 2.0]})
    np.testing.assert_allclose(out["v"].values[:, 0], [2.0, 2.0])


def test_compare_two_dynamics_and_argument_errors():
    data = _decay_data()
    c = compare(lambda t, y: -1.1 * y, lambda t, y: -y, data=data)
    t = data["time"].values[0]
    # learned exp(-1.1 t) vs reference exp(-t), both from the data's first sample (1.0)
    np.testing.assert_allclose(c.predicted["x"].values[0], np.exp(-1.1 * t), rtol=1e-6)
    np.testing.assert_allclose(c.reference["x"].values[0], np.exp(-t), rtol=1e-6)
    expected = rmse(np.exp(-t), np.exp(-1.1 * t))
    assert float(c.metrics["rmse"].sel(run="r0", variable="x")) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="comparing two dynamics needs data="):
        compare(lambda t, y: -y, lambda t, y: -y)
    with pytest.raises(ConfigError, match="k-step prediction is scored against measured trajectories"):
        compare(lambda t, y: -y, lambda t, y: -y, data=data, k=2)
    with pytest.raises(ConfigError, match="k-step needs dynamics to simulate"):
        compare(data, data, k=2)


def test_top_level_verbs():
    import sysid
    import sysid.analysis
    import sysid.reporting

    assert sysid.compare is sysid.analysis.compare
    assert sysid.report is sysid.reporting.report
