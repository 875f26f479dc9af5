"""Fitting through measurement equations: the loss compares the outputs y = g(x, u, p) with data.

Two tanks in series, only the lower one measured, through a level sensor that saturates at 1 m:
the upper tank is hidden and the sensor output is not a state. Data from SciPy (solve_ivp at
tight tolerances) with 5 mm sensor noise.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import sysid
import sysid.analysis
from sysid.models import from_toml
from sysid.training import FitConfig, Optimizer

K1, K2, HMAX, NOISE = 0.5, 0.4, 1.0, 0.005
TANK = {
    "states": {"h1": {"units": "m", "initial": 0.3}, "h2": {"units": "m", "initial": 0.2}},
    "inputs": {"u": "m/s"},
    "parameters": {"k1": {"value": 0.3, "bounds": [0, 10], "units": "m^0.5/s"},
                   "k2": {"value": 0.3, "bounds": [0, 10], "units": "m^0.5/s"},
                   "hmax": {"value": HMAX, "units": "m", "fixed": True}},
    "equations": {"dh1": "-k1*sqrt(max(h1, 0)) + u",
                  "dh2": "k1*sqrt(max(h1, 0)) - k2*sqrt(max(h2, 0))"},
    "outputs": {"y": {"equation": "clip(h2, 0, hmax)", "units": "m"}},
}


def inflow(t, run):
    return 0.35 + 0.15 * np.sin(0.3 * t + run) + 0.1 * np.sin(0.11 * t + 2 * run)


def two_tank_record(n_runs=2, n_obs=31, seed=0):
    """Sensor readings y = clip(h2, 0, 1 m) + noise of a SciPy simulation, and the inflow u."""
    rng = np.random.default_rng(seed)
    times, values = [], {"y": [], "u": [], "h2": []}
    for run in range(n_runs):
        t = np.linspace(0.0, 60.0, n_obs)

        def rhs(tt, h):
            q1 = K1 * np.sqrt(max(h[0], 0.0))
            return [-q1 + inflow(tt, run), q1 - K2 * np.sqrt(max(h[1], 0.0))]

        sol = solve_ivp(rhs, (0, 60), [0.3, 0.2], t_eval=t, rtol=1e-10, atol=1e-12)
        times.append(t)
        values["y"].append(np.clip(sol.y[1], 0, HMAX) + NOISE * rng.standard_normal(t.size))
        values["u"].append(inflow(t, run))
        values["h2"].append(sol.y[1])
    truth = values.pop("h2")
    ds = sysid.from_arrays(times, values, states=["y"], inputs=["u"],
                           units={"y": "m", "u": "m/s"}, time_units="s")
    return ds, truth


def test_hidden_tank_through_a_saturating_sensor_recovers_both_outflow_constants():
    ds, truth = two_tank_record()
    assert max(h.max() for h in truth) > 1.2  # the sensor really saturates part of the time
    model = from_toml(TANK)
    cfg = FitConfig(epochs=10, seed=0, progress=False, dtype="float64", shooting="single",
                    known_initial=("h1", "h2"), optimizer=Optimizer(lr=0.05), refine=True)
    result = sysid.fit(model, ds, cfg)
    values = result.parameters.set_index("name")["value"]
    # 5 mm noise on 62 readings: Gauss-Newton stderr 0.0015 (k1) and 0.0003 (k2), and the
    # estimates land 0.2 % and 0.1 % from the truth; 2 % also covers the RK4 error at 2 s steps
    assert values["k1"] == pytest.approx(K1, rel=0.02)
    assert values["k2"] == pytest.approx(K2, rel=0.02)
    assert values["hmax"] == HMAX  # fixed
    pred = sysid.analysis.predict(result, ds)
    rmse = float(np.sqrt(np.nanmean((pred["y"].values - ds["y"].values) ** 2)))
    assert rmse < 2 * NOISE  # the output fits to the sensor noise
    # the untrained model was far off: the fit, not the start, explains the data
    start = sysid.analysis.predict(model, ds)
    assert float(np.sqrt(np.nanmean((start["y"].values - ds["y"].values) ** 2))) > 10 * NOISE
    assert result.model.output_names == ("y",) and result.model.observed == ()


def test_output_weights_and_missing_output_column_name_the_output():
    ds, _ = two_tank_record(n_runs=1, n_obs=11)
    model = from_toml(TANK)
    with pytest.raises(sysid.errors.DataError, match=r"measured variables \['y'\] are not in the data"):
        sysid.fit(model, ds.rename({"y": "level"}), FitConfig(epochs=1, progress=False))
    with pytest.raises(sysid.errors.ConfigError, match=r"weights name \['h2'\].*measured states are \['y'\]"):
        sysid.fit(model, ds, FitConfig(epochs=1, progress=False, loss={"weights": {"h2": 2.0}}))


def test_joint_least_squares_compares_the_outputs():
    """The joint least squares predicts the sensor reading y = clip(h2, 0, hmax), not a state."""
    import torch

    from sysid.estimation.least_squares import solve
    from sysid.estimation.problem import from_data

    ds, _ = two_tank_record(n_runs=2, n_obs=31)
    p = from_data(from_toml(TANK), ds, loss="sse", known_initial=("h1", "h2"))
    assert p.error_model.states == ("y",)
    assert p.n_residuals == 62  # every reading, the first ones too (an output is no initial state)
    x, conv = solve(p)
    assert conv.converged
    values = dict(zip(p.names, p.values(torch.as_tensor(x))))
    # as the fit above: 0.2 % and 0.1 % from the truth; 2 % covers the RK4 grid
    assert values["k1"] == pytest.approx(K1, rel=0.02)
    assert values["k2"] == pytest.approx(K2, rel=0.02)
