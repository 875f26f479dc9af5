"""The NumPy view of dynamics: adapters, input interpolation and the guarded SciPy integrator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import PchipInterpolator

import sysid
import sysid.systems as systems
from sysid.analysis import Dynamics, Integration, as_dynamics, input_function, integrate
from sysid.errors import ConfigError, DataError, SolverError
from sysid.solvers import SolverConfig


def test_system_model_and_callable_agree():
    lv = systems.get("lotka_volterra")
    pts = np.array([[30.0, 4.0], [10.0, 20.0], [50.0, 7.0]])
    expected = np.stack([lv.numpy_rhs()(0.0, p) for p in pts])
    sys_dyn = as_dynamics(lv)
    np.testing.assert_allclose(sys_dyn(0.0, pts), expected, rtol=1e-14)
    assert sys_dyn.state_units == ("thousands", "thousands") and sys_dyn.time_units == "year"
    model = sysid.models.physics(lv, dtype=torch.float64)
    np.testing.assert_allclose(as_dynamics(model)(0.0, pts), expected, rtol=1e-12)
    fn = as_dynamics(lv.numpy_rhs(), states=["prey", "predator"])
    np.testing.assert_allclose(fn(0.0, pts), expected, rtol=1e-14)
    np.testing.assert_allclose(fn(0.0, pts[0]), expected[0], rtol=1e-14)  # one state in, one out
    vec = as_dynamics(lambda t, y: np.stack([-y[0], -2 * y[1]]), states=["a", "b"], vectorized=True)
    np.testing.assert_allclose(vec(0.0, pts), -pts * [1, 2])
    params = as_dynamics(lv, params={"a": 1.0})
    np.testing.assert_allclose(params(0.0, pts[:1])[0, 0], (1.0 - 0.028 * 4.0) * 30.0)


def test_adapter_errors():
    with pytest.raises(ConfigError, match=r"expected a sysid Model, FitResult, System \(or its catalogue name\) or a function"):
        as_dynamics(3.0)
    with pytest.raises(KeyError, match="did you mean"):
        as_dynamics("lotka_voltera")
    assert as_dynamics("lotka_volterra").states == ("prey", "predator")
    with pytest.raises(ConfigError, match=r"\['zz'\] are not parameters of system 'lotka_volterra'"):
        as_dynamics(systems.get("lotka_volterra"), params={"zz": 1.0})
    dyn = as_dynamics(lambda t, y: -y, states=["x"])
    with pytest.raises(DataError, match=r"states have 2 columns but the dynamics has 1 states \['x'\]"):
        dyn(0.0, np.zeros((3, 2)))
    with pytest.raises(ConfigError, match="state names must be unique"):
        Dynamics(fn=lambda t, x, u: x, states=("x", "x"))
    with pytest.raises(ConfigError, match="SolverConfig: rtol must be a positive number; got 0.0"):
        SolverConfig(method="RK45", rtol=0.0)
    with pytest.raises(ConfigError, match=r"'euler' is a torch method; SciPy integrates with one of RK45"):
        integrate(dyn, [1.0], [0.0, 1.0], settings=SolverConfig(method="euler"))


def test_integration_is_a_deprecated_alias_of_the_analysis_solver_config():
    with pytest.warns(DeprecationWarning, match=r"Integration is deprecated; pass sysid.SolverConfig"):
        cfg = Integration(rtol=1e-6, max_step=0.5)
    # the analysis default with the given settings replaced
    assert cfg == SolverConfig(method="RK45", rtol=1e-6, atol=1e-10, max_step=0.5)


def test_integrate_matches_closed_form_and_reports_blow_up():
    dyn = as_dynamics(lambda t, y: y**2, states=["x"])
    t = np.linspace(0.0, 0.9, 10)
    sol = integrate(dyn, [1.0], t)
    # x' = x², x(0) = 1: x = 1 / (1 - t); tolerance rtol 1e-8 of the default settings
    np.testing.assert_allclose(sol.y[0], 1 / (1 - t), rtol=1e-6)
    with pytest.raises(SolverError, match="integration failed|non-finite values") as info:
        integrate(dyn, [1.0], np.linspace(0.0, 2.0, 5))
    assert info.value.t_reached is not None and 0.99 < info.value.t_reached <= 1.0 + 1e-6
    with pytest.raises(DataError, match="contains NaN or inf"):
        integrate(dyn, [np.nan], t)
    with pytest.raises(DataError, match="strictly increasing"):
        integrate(dyn, [1.0], t[::-1])


def test_input_interpolation_kinds():
    t = np.array([0.0, 1.0, 2.0, 4.0])
    v = np.array([0.0, 1.0, 0.0, 2.0])
    q = np.array([-1.0, 0.5, 1.0, 3.0, 9.0])
    zoh = input_function(t, v, kind="zoh")(q)[:, 0]
    np.testing.assert_array_equal(zoh, [0.0, 0.0, 1.0, 0.0, 2.0])  # held before/after the samples
    lin = input_function(t, v, kind="linear")(q)[:, 0]
    np.testing.assert_allclose(lin, [0.0, 0.5, 1.0, 1.0, 2.0])
    cub = input_function(t, v, kind="cubic")(q)[:, 0]
    np.testing.assert_allclose(cub[1:4], PchipInterpolator(t, v)(q[1:4]), rtol=1e-12)  # as the models'
    with pytest.raises(ConfigError, match="interpolation must be one of"):
        input_function(t, v, kind="spline")
    with pytest.raises(DataError, match="input 'u' has no finite samples"):
        input_function(t, np.full(4, np.nan), names=["u"])
