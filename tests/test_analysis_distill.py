"""sysid.analysis.distill: equations out of a network term, the equations file and the refit.

The "network" in the recovery tests is a known torch function (a parameter-free PhysicsField put in
the hybrid's neural slot) standing in for a trained network: it makes the tests fast and
deterministic, and it isolates what distill itself must get right (sampling on the support, the
library, the sparsity path, the selection) from how well a network was trained, which is the
fitting code's business. A real NeuralField goes through the same code path in
test_untrained_network_goes_through_the_same_path.
"""

from __future__ import annotations

import tomllib
import warnings

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import sysid
from sysid.analysis.distill import Distillation, distill
from sysid.data.schema import from_arrays
from sysid.errors import ConfigError
from sysid.models import PhysicsField, from_toml

A, B, C, D = 1.0, 0.5, 1.5, 0.3  # Lotka-Volterra: dx = A x - B x y, dy = D x y - C y


def _lv_data(noise: float = 0.02, seed: int = 0, n: int = 101):
    rng = np.random.default_rng(seed)
    times, xs, ys = [], [], []
    for x0, y0 in ((4.0, 1.0), (2.0, 3.0)):
        t = np.linspace(0.0, 10.0, n)
        sol = solve_ivp(lambda _, z: [A * z[0] - B * z[0] * z[1], D * z[0] * z[1] - C * z[1]],
                        (0, 10), [x0, y0], t_eval=t, rtol=1e-10, atol=1e-10)
        times.append(t)
        xs.append(sol.y[0] * (1 + noise * rng.standard_normal(t.size)))
        ys.append(sol.y[1] * (1 + noise * rng.standard_normal(t.size)))
    return from_arrays(times, {"x": xs, "y": ys}, states=["x", "y"], time_units="yr")


LV = {"name": "lv hybrid", "time_units": "yr", "states": {"x": "", "y": ""},
      "parameters": {"a": {"value": A, "bounds": [0, 10]}, "c": {"value": C, "bounds": [0, 10]}},
      "equations": {"dx": "a*x + nn(x, y)", "dy": "-c*y + nn(x, y)"}}


def _interaction(t, x, u, p, xp):
    return xp.stack([-B * x[..., 0] * x[..., 1], D * x[..., 0] * x[..., 1]])


def _lv_model():
    m = from_toml({"model": LV}, dtype=torch.float64)
    standin = PhysicsField(_interaction, {}, ["x", "y"], outputs=["x", "y"], dtype=torch.float64)
    m.field.neural = standin  # the known function in the network's slot
    return m


def test_lotka_volterra_interaction_terms_recovered_exactly():
    data = _lv_data()
    d = distill(_lv_model(), data)
    assert isinstance(d, Distillation)
    # exactly the true terms, nothing else
    assert {s: [t for t, _ in d.equations[s]] for s in d.targets} == {"x": ["x*y"], "y": ["x*y"]}
    cmp = d.compare({"x": "-b*x*y", "y": "d*x*y"}, parameters={"b": B, "d": D})
    assert list(cmp["term"]) == ["x*y", "x*y"] and cmp["match"].all()
    # 5 %: the tolerance; a noiseless stand-in is recovered to rounding (<1e-8)
    assert cmp["relative_error"].max() < 1e-8
    assert d.n_points["jitter"] > 0 and d.n_points["trajectories"] == d.n_points["data"]
    assert d.text() == "nn_x = -0.5*x*y\nnn_y = 0.3*x*y"
    assert d.latex() == ("\\begin{aligned}\n\\mathrm{nn}_{x} &= -0.5 x y \\\\\n"
                         "\\mathrm{nn}_{y} &= 0.3 x y\n\\end{aligned}")
    sel = d.path[d.path["selected"]]
    assert list(sel["n_terms"]) == [1, 1]


def test_compare_reports_missing_and_spurious_terms():
    d = distill(_lv_model(), _lv_data(), on="data")
    cmp = d.compare({"x": "-0.5*x*y + 0.1*x**2"})
    row = cmp.set_index("term").loc["x**2"]
    assert row["distilled"] == 0 and row["reference"] == pytest.approx(0.1) and not row["match"]
    with pytest.raises(ConfigError, match="reference states \\['z'\\] were not distilled"):
        d.compare({"z": "x"})


def test_equations_file_round_trip_and_refit(tmp_path):
    data = _lv_data(noise=0.0, n=41)
    d = distill(_lv_model(), data)
    table = tomllib.loads(d.to_toml())
    assert table == d.to_dict()
    eqs = table["model"]["equations"]
    assert eqs == {"dx": "a*x + (c_x_1*x*y)", "dy": "-c*y + (c_y_1*x*y)"}
    path = d.write(tmp_path / "distilled.toml")
    m = from_toml(path, dtype=torch.float64)
    # the file's model is the hybrid with the stand-in: same field at any point (float64 rounding)
    x = torch.tensor([[3.0, 2.0], [0.5, 4.0]], dtype=torch.float64)
    np.testing.assert_allclose(m.field(torch.zeros(()), x).detach(),
                               _lv_model().field(torch.zeros(()), x).detach(), rtol=1e-12, atol=1e-12)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        d.write(path)
    cfg = sysid.FitConfig(epochs=5, dtype="float64", progress=False, warm_start=False,
                          shooting="single")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = d.refit(data, cfg)
    tab = refit.table()
    assert list(tab["fit"]) == ["original", "distilled"]
    # noise-free data, started at the truth: both simulate it to the solvers' error (rk4, 40 steps)
    assert refit.refit_nrmse < 0.01 and refit.original_nrmse < 0.01
    assert refit.refit_loss < 1e-4 and np.isnan(refit.original_loss)  # a bare Model has no loss
    p = refit.result.parameters.set_index("name")["value"]
    assert p["c_x_1"] == pytest.approx(-B, rel=0.05) and p["c_y_1"] == pytest.approx(D, rel=0.05)


def test_pendulum_missing_friction_is_linear_damping():
    g, c = 9.0, 0.3
    t = np.linspace(0, 8, 161)
    sol = solve_ivp(lambda _, z: [z[1], -g * np.sin(z[0]) - c * z[1]], (0, 8), [1.0, 0.0],
                    t_eval=t, rtol=1e-10, atol=1e-10)
    data = from_arrays([t], {"theta": [sol.y[0]], "v": [sol.y[1]]}, states=["theta", "v"])
    m = from_toml({"model": {"states": {"theta": "rad", "v": "rad/s"},
                             "parameters": {"w2": {"value": g, "bounds": [0, 100]}},
                             "equations": {"dtheta": "v", "dv": "-w2*sin(theta) + nn(theta, v)"}}},
                  dtype=torch.float64)
    m.field.neural = PhysicsField(lambda t, x, u, p, xp: xp.stack([-c * x[..., 1]]), {},
                                  ["theta", "v"], outputs=["v"], dtype=torch.float64)
    d = distill(m, data, library="polynomial+trig", degree=3)
    assert d.targets == ("v",)
    assert d.equations["v"] == (("v", pytest.approx(-c, rel=0.05)),)
    assert d.to_dict()["model"]["equations"]["dv"] == "-w2*sin(theta) + (c_v_1*v)"


def test_whole_field_and_user_terms():
    data = _lv_data(noise=0.0)
    d = distill(_lv_model(), data, term="field", library=["x", "y", "x*y", "x/(1 + x)"])
    assert d.text() == "dx/dt = 1*x - 0.5*x*y\ndy/dt = -1.5*y + 0.3*x*y"
    m = d.symbolic_model()
    assert set(m.field.parameter_specs()) == {"c_x_1", "c_x_2", "c_y_1", "c_y_2"}


def test_untrained_network_goes_through_the_same_path():
    data = _lv_data()
    m = from_toml({"model": LV}, dtype=torch.float64)
    d = distill(m, data, on="data")
    # a random network is some smooth function: the selection picks a few terms and explains most
    assert all(d.r2[s] > 0.5 for s in d.targets) and all(d.equations[s] for s in d.targets)


def test_network_of_an_input():
    t = np.linspace(0, 10, 201)
    sol = solve_ivp(lambda tt, z: [-0.5 * z[0] + 2 * np.sin(tt)], (0, 10), [1.0], t_eval=t,
                    rtol=1e-10, atol=1e-10)
    data = from_arrays([t], {"x": [sol.y[0]], "u": [np.sin(t)]}, states=["x"], inputs=["u"])
    m = from_toml({"model": {"states": {"x": "mol"}, "inputs": {"u": "mol/s"},
                             "parameters": {"k": {"value": 0.5, "units": "1/s"}},
                             "equations": {"dx": "-k*x + nn(x, u)"}}}, dtype=torch.float64)
    m.field.neural = PhysicsField(lambda t, x, u, p, xp: xp.stack([2 * u[..., 0]]), {}, ["x"], ["u"],
                                  outputs=["x"], dtype=torch.float64)
    d = distill(m, data)
    assert d.variables == ("x", "u") and d.equations["x"] == (("u", pytest.approx(2.0, rel=1e-8)),)
    table = d.to_dict()["model"]
    assert table["equations"] == {"dx": "-k*x + (c_x_1*u)"}
    assert table["parameters"]["k"]["units"] == "1/s" and table["inputs"] == {"u": {"units": "mol/s"}}


def test_errors_say_what_must_be():
    data = _lv_data()
    m = _lv_model()
    with pytest.raises(ConfigError, match="term must be one of"):
        distill(m, data, term="net")
    with pytest.raises(ConfigError, match="library must be one of"):
        distill(m, data, library="fourier")
    with pytest.raises(ConfigError, match="degree must be a whole number >= 1; got 0"):
        distill(m, data, degree=0)
    with pytest.raises(ConfigError, match="threshold must be >= 0"):
        distill(m, data, threshold=-1)
    phys = from_toml({"model": {**LV, "equations": {"dx": "a*x", "dy": "-c*y"}}})
    with pytest.raises(ConfigError, match="not a HybridField"):
        distill(phys, data)
