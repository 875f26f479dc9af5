"""The joint least-squares refinement and its covariance, against closed forms and SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import curve_fit, least_squares

from sysid import datasets
from sysid.data import from_arrays
from sysid.errors import ConfigError, ParameterError
from sysid.estimation.covariance import uncertainty
from sysid.estimation.least_squares import solve
from sysid.training import Refine
from sysid.estimation.problem import from_data
from sysid.models import Parameter, physics


def bod_data():
    """BOD with the known y(0) = 0 as the first sample (the published problem's initial state)."""
    ds = datasets.load("bod")
    t = np.concatenate([[0.0], ds["time"].values[0]])
    y = np.concatenate([[0.0], ds["demand"].values[0]])
    return from_arrays([t], {"y": [y]}, states=["y"], runs=["bod"])


def census_data():
    ds = datasets.load("us_population")
    t, n = ds["time"].values[0], ds["population"].values[0]
    keep = t <= 1910
    return from_arrays([t[keep]], {"N": [n[keep]]}, states=["N"], runs=["us"])


def test_bod_reaches_the_closed_form_least_squares_optimum():
    data = bod_data()
    t, y = data["time"].values[0][1:], data["y"].values[0][1:]
    ref, _ = curve_fit(lambda tt, a, k: a * (1 - np.exp(-k * tt)), t, y, p0=[20, 0.5])
    p = from_data(physics("first_order_kinetics", values={"A": 10.0, "k": 0.2}), data, loss="sse")
    x, conv = solve(p)
    assert conv.reason == "converged" and conv.converged
    assert conv.predicted_decrease < 1e-10 and conv.gradient_norm < 1e-5
    values = dict(zip(p.names, p.values(torch.as_tensor(x))))
    # RK4 accuracy is 1e-2 of the noise level: the optimum moves by ~1e-3 relative at most
    assert values["A"] == pytest.approx(ref[0], rel=2e-3)
    assert values["k"] == pytest.approx(ref[1], rel=2e-3)
    assert values["A"] == pytest.approx(19.143, rel=0.01)  # Bates & Watts
    assert values["k"] == pytest.approx(0.5311, rel=0.01)
    u = uncertainty(p, torch.as_tensor(x))
    se = dict(zip(u.names, u.stderr))
    # R nls: 2.496, 0.2035 (same Gauss-Newton approximation; 2 % for the ODE's accuracy)
    assert se["A"] == pytest.approx(2.496, rel=0.02)
    assert se["k"] == pytest.approx(0.2035, rel=0.02)
    assert u.dof == 4
    # Student t with 4 degrees of freedom, as R's confint for nls-like Wald intervals
    assert u.quantile == pytest.approx(2.776445, rel=1e-5)
    assert u.correlation.loc["A", "k"] == pytest.approx(u.covariance.loc["A", "k"] / (se["A"] * se["k"]))


def test_free_initial_state_moves_and_matches_scipy():
    """The census logistic with the 1790 population estimated: the joint refinement moves the
    initial state off the measurement to the least-squares optimum of the closed form."""
    data = census_data()
    t, n = data["time"].values[0], data["N"].values[0]

    def closed(q):
        r, k, n0 = q
        return k / (1 + (k / n0 - 1) * np.exp(-r * (t - t[0]))) - n

    ref = least_squares(closed, [0.03, 200.0, 4.0], x_scale="jac", xtol=1e-14, ftol=1e-14).x
    p = from_data(physics("logistic", values={"r": 0.02, "K": 300.0}), data, loss="sse",
                  initial_states="free")
    x, conv = solve(p)
    assert conv.converged
    values = dict(zip(p.names, p.values(torch.as_tensor(x))))
    assert p.names == ["r", "K", "x0[us].N"]
    assert values["r"] == pytest.approx(ref[0], rel=2e-3)
    assert values["K"] == pytest.approx(ref[1], rel=2e-3)
    assert values["x0[us].N"] == pytest.approx(ref[2], rel=2e-3)
    assert values["x0[us].N"] != pytest.approx(n[0], rel=1e-3)  # it moved off the 1790 census


def test_iteration_limit_is_reported_not_hidden():
    p = from_data(physics("first_order_kinetics", values={"A": 10.0, "k": 0.2}), bod_data(), loss="sse")
    x, conv = solve(p, Refine(max_iterations=2))
    assert conv.reason == "iteration_limit" and not conv.converged
    assert conv.predicted_decrease > 1e-6


def test_hold_fixes_a_parameter_for_a_profile():
    p = from_data(physics("first_order_kinetics", values={"A": 10.0, "k": 0.2}), bod_data(),
                  loss="sse", hold={"k": 0.6})
    assert p.names == ["A"]
    x, conv = solve(p)
    assert conv.converged
    data = bod_data()
    t, y = data["time"].values[0][1:], data["y"].values[0][1:]
    g = 1 - np.exp(-0.6 * t)
    assert float(p.values(torch.as_tensor(x))[0]) == pytest.approx(float(g @ y / (g @ g)), rel=2e-3)
    with pytest.raises(ParameterError, match=r"cannot hold \['kk'\]"):
        from_data(physics("first_order_kinetics"), bod_data(), hold={"kk": 1.0})


def _decay(t, x, u, p, xp):
    return xp.stack([-p["a"] * p["b"] * x[..., 0]])


def test_product_of_parameters_is_named_as_not_identifiable():
    t = np.linspace(0, 4, 12)
    y = 5 * np.exp(-0.6 * t) * (1 + 0.01 * np.sin(7 * t))
    data = from_arrays([t], {"x": [y]}, states=["x"], runs=["r"])
    model = physics(_decay, {"a": Parameter(1.0, bounds=(0, math.inf)),
                             "b": Parameter(0.3, bounds=(0, math.inf))}, states=["x"])
    p = from_data(model, data, loss="sse")
    x, conv = solve(p)
    u = uncertainty(p, torch.as_tensor(x))
    text = " ".join(u.warnings)
    assert "'a'" in text and "'b'" in text and "not identifiable" in text
    values = dict(zip(p.names, p.values(torch.as_tensor(x))))
    assert values["a"] * values["b"] == pytest.approx(0.6, rel=0.01)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="Refine: method must be one of"):
        Refine(method="newton")
    with pytest.raises(ConfigError, match="Refine: accuracy must be a finite number > 0"):
        Refine(accuracy=-1.0)
    with pytest.raises(ConfigError, match="initial_states must be 'measured' or 'free'"):
        from_data(physics("first_order_kinetics"), bod_data(), initial_states="guess")
    tiny = from_data(physics("first_order_kinetics"), _two_samples(), initial_states="free")
    assert (tiny.n_residuals, tiny.size) == (2, 3)
    with pytest.raises(ConfigError, match="method='lm' needs at least as many residuals"):
        solve(tiny, Refine(method="lm"))


def _two_samples():
    return from_arrays([np.array([0.0, 1.0])], {"y": [np.array([1.0, 5.0])]}, states=["y"], runs=["r"])
