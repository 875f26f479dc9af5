"""Models from equations files (TOML) and measurement equations (outputs) on any model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import sysid
import sysid.analysis
from sysid.errors import ConfigError, ModelFileError, ParameterError
from sysid.expressions import ExpressionError
from sysid.models import HybridField, NeuralField, Outputs, Parameter, PhysicsField, from_toml

PENDULUM = """\
[model]
name = "driven pendulum"
time_units = "s"

[model.states]
theta = "rad"
v = { units = "rad/s" }

[model.inputs]
u = "rad/s^2"

[model.parameters]
w2 = { value = 9.0, bounds = [0, 100], units = "1/s^2" }
c = { value = 0.3, bounds = [0, 10], units = "1/s" }

[model.equations]
dtheta = "v"
dv = "-w2*sin(theta) - c*v + u"
"""

TANK = {
    "states": {"h1": {"units": "m", "initial": 0.3}, "h2": {"units": "m", "initial": 0.2}},
    "inputs": {"u": "m/s"},
    "parameters": {"k1": {"value": 0.5, "bounds": [0, 10]}, "k2": {"value": 0.4, "bounds": [0, 10]},
                   "hmax": {"value": 1.0, "units": "m", "fixed": True}},
    "equations": {"dh1": "-k1*sqrt(max(h1, 0)) + u",
                  "dh2": "k1*sqrt(max(h1, 0)) - k2*sqrt(max(h2, 0))"},
    "outputs": {"y": {"equation": "clip(h2, 0, hmax)", "units": "m"}},
}


def forcing(t):
    return np.array([0.8 * np.sin(1.3 * t)])


@pytest.fixture
def pendulum_file(tmp_path):
    path = tmp_path / "pendulum.toml"
    path.write_text(PENDULUM)
    return path


def test_pendulum_from_toml_matches_scipy(pendulum_file):
    m = from_toml(pendulum_file, dtype=torch.float64)
    assert isinstance(m.field, PhysicsField)
    assert m.state_names == ("theta", "v") and m.input_names == ("u",)
    assert m.state_units == ("rad", "rad/s") and m.input_units == ("rad/s^2",) and m.time_units == "s"
    assert m.metadata["name"] == "driven pendulum"
    assert m.metadata["equations"]["equations"]["dv"] == "-w2*sin(theta) - c*v + u"
    t = np.linspace(0.0, 6.0, 61)

    def rhs(tt, y):
        return [y[1], -9.0 * np.sin(y[0]) - 0.3 * y[1] + forcing(tt)[0]]

    ref = solve_ivp(rhs, (0, 6), [0.5, 0.0], t_eval=t, rtol=1e-11, atol=1e-12).y
    sim = sysid.simulate(m, {"theta": 0.5, "v": 0.0}, t, inputs=forcing,
                         solver=sysid.SolverConfig(method="dopri5", rtol=1e-10, atol=1e-12))
    # both integrate the same ODE to ~1e-10; the difference is the solvers' error
    np.testing.assert_allclose(sim["theta"].values[0], ref[0], atol=1e-7)
    np.testing.assert_allclose(sim["v"].values[0], ref[1], atol=1e-7)
    assert sim["theta"].attrs["units"] == "rad" and sim["u"].attrs["units"] == "rad/s^2"
    # the NumPy export (analysis, SciPy) evaluates the same equations
    f = sysid.simulation.to_numpy_rhs(m, inputs=forcing)
    np.testing.assert_allclose(f(0.7, np.array([0.2, -0.1])), rhs(0.7, [0.2, -0.1]), rtol=1e-14)


def test_hybrid_network_reads_only_its_arguments():
    table = {"states": {"theta": "rad", "v": "rad/s"}, "inputs": {"u": ""},
             "parameters": {"w2": {"value": 9.0, "bounds": [0, 100]}},
             "equations": {"dtheta": "v", "dv": "-w2*sin(theta) + u + nn(theta, v)"},
             "neural": {"width": 8, "depth": 1}}
    m = from_toml(table)
    assert isinstance(m.field, HybridField) and isinstance(m.field.neural, NeuralField)
    net = m.field.neural
    assert net.arguments == ("theta", "v") and net.input_names == () and not net.time_dependent
    assert net.output_names == ("v",) and net.width == 8
    assert m.field.physics.parameter_specs().keys() == {"w2"}
    # an argument list with an input and time: the network reads u and t, not theta
    table["equations"] = {"dtheta": "v + nn(t, v, u)", "dv": "-w2*sin(theta) + u + nn(t, v, u)"}
    net = from_toml(table).field.neural
    assert net.arguments == ("v",) and net.input_names == ("u",) and net.time_dependent
    assert net.output_names == ("theta", "v")
    # two different argument lists: two networks, nested hybrids
    table["equations"] = {"dtheta": "v + nn(theta)", "dv": "-w2*sin(theta) + u + nn(v)"}
    field = from_toml(table).field
    assert isinstance(field.physics, HybridField)
    assert {field.neural.arguments, field.physics.neural.arguments} == {("theta",), ("v",)}


def test_network_weights_do_not_see_other_states():
    table = {"states": {"a": "", "b": "", "c": ""}, "parameters": {},
             "equations": {"da": "-a + nn(a, b)", "db": "-b", "dc": "-c"}, "neural": {"width": 4}}
    m = from_toml(table)
    x = torch.tensor([[0.3, -0.2, 0.0], [0.3, -0.2, 50.0]])
    out = m(torch.tensor(0.0), x)
    assert torch.allclose(out[0, 0], out[1, 0])  # c changed, nn(a, b) did not


def test_save_load_round_trip_needs_no_import(tmp_path, pendulum_file):
    text = PENDULUM.replace("+ u", "+ u + nn(theta, v)") + "\n[model.neural]\nwidth = 8\n"
    pendulum_file.write_text(text)
    m = from_toml(pendulum_file)
    path = sysid.save_model(m, tmp_path / "model")
    manifest = (path / "model.json").read_text()
    assert '"import"' not in manifest and "nn(theta, v)" in manifest
    loaded = sysid.load_model(path)  # no allow_import, no functions=
    t = np.linspace(0, 3, 31)
    a = sysid.simulate(m, {"theta": 0.5, "v": 0.0}, t, inputs=forcing)
    b = sysid.simulate(loaded, {"theta": 0.5, "v": 0.0}, t, inputs=forcing)
    np.testing.assert_array_equal(a["theta"].values, b["theta"].values)
    assert loaded.metadata["equations"] == m.metadata["equations"]


def test_tampered_equation_in_a_model_file_is_refused(tmp_path, pendulum_file):
    path = sysid.save_model(from_toml(pendulum_file), tmp_path / "model")
    data = json.loads((path / "model.json").read_text())
    data["model"]["field"]["function"]["equations"]["equations"]["v"] = "__import__('os').system('x')"
    blob = json.dumps(data).encode()
    (path / "model.json").write_bytes(blob)
    # an attacker who also rewrites the folder's size/sha256 list gets past the integrity check;
    # the equation is still only parsed, and refused
    files = json.loads((path / "manifest.json").read_text())
    files["files"]["model.json"] = {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(files))
    with pytest.raises(ModelFileError, match=r"attribute access \('\.system'\)"):
        sysid.load_model(path)


def test_two_tank_outputs_simulate_and_predict():
    m = from_toml(TANK)
    assert m.observed == () and m.output_names == ("y",) and m.measured == ("y",)
    assert m.latent_initial == {"h1": 0.3, "h2": 0.2}
    table = m.parameter_table().set_index("name")
    assert list(table.index) == ["k1", "k2", "hmax"] and not table.loc["hmax", "vary"]
    assert isinstance(m.outputs, Outputs) and m.outputs.parameter_specs().keys() == {"hmax"}
    t = np.linspace(0, 40, 81)
    sim = sysid.simulate(m, {"h1": 0.3, "h2": 0.2}, t, inputs=lambda tt: np.array([0.45]),
                         solver=sysid.SolverConfig(method="dopri5", rtol=1e-10, atol=1e-12))
    # the sensor saturates: y = min(h2, 1 m) exactly, with the units and equation kept
    assert sim["h2"].values.max() > 1.05
    np.testing.assert_array_equal(sim["y"].values, np.clip(sim["h2"].values, 0, 1.0))
    assert sim["y"].attrs["units"] == "m" and sim["y"].attrs["equation"] == "clip(h2, 0, hmax)"
    # a measured record of y only: predict starts the hidden levels from latent_initial
    record = sim[["y", "u"]]
    pred = sysid.analysis.predict(m, record)
    # SciPy's RK45 at rtol 1e-8 against dopri5 at 1e-10: the same solution to ~1e-7
    np.testing.assert_allclose(pred["y"].values, sim["y"].values, atol=1e-6)
    assert pred["y"].attrs["units"] == "m"
    metrics = sysid.analysis.trajectory_metrics(record, pred)
    assert list(metrics["variable"].values) == ["y"]


def test_outputs_on_python_factories_with_their_own_parameters():
    def decay(t, x, u, p, xp):
        return xp.stack([-p["k"] * x[..., 0]])

    m = sysid.models.physics(decay, {"k": Parameter(0.5, bounds=(0, 5))}, ["A"],
                             outputs={"C": "A / V"}, output_parameters={"V": Parameter(2.0, bounds=(0, 10))},
                             output_units={"C": "mg/L"})
    assert m.observed == () and m.output_names == ("C",) and m.output_units == ("mg/L",)
    assert set(m.physical_parameters()) == {"k", "V"}
    y = m.observe(torch.tensor(0.0), torch.tensor([[4.0]]))
    assert float(y.detach()) == pytest.approx(2.0)
    m.outputs.set_values({"V": 4.0})
    assert float(m.observe(torch.tensor(0.0), torch.tensor([[4.0]])).detach()) == pytest.approx(1.0)
    # a catalogue system: outputs read its parameters by name
    sir = sysid.models.physics("sir", outputs={"cases": "gamma * I"}, observed=["I"])
    assert sir.outputs.shared_names == ("gamma",) and sir.measured == ("I", "cases")
    g = sir.outputs.numpy_function({"gamma": 0.5})
    np.testing.assert_allclose(g(0.0, np.array([[900.0, 10.0, 90.0]])), [[5.0]])
    nm = sysid.models.neural(["x"], width=4, outputs={"y": "2*x"})
    assert nm.measured == ("y",)


@pytest.mark.parametrize("change, error, match", [
    (lambda t: t.update(statez={}), ConfigError, "unknown key 'statez' in .model.; .* Did you mean 'states'"),
    (lambda t: t["equations"].pop("dh2"), ConfigError, r"no equation for \['h2'\]"),
    (lambda t: t["equations"].update(h2="0"), ConfigError, "write dh2"),
    (lambda t: t["equations"].update(dq="0"), ConfigError, "'dq' is not d<state>"),
    (lambda t: t["parameters"].update(k3=1.0), ParameterError, r"\['k3'\] are declared but no equation reads"),
    (lambda t: t["parameters"]["k1"].update(value=20.0), ParameterError, "outside bounds"),
    (lambda t: t["parameters"]["k1"].update(bounds=[0]), ConfigError, r"bounds must be \[lower, upper\]"),
    (lambda t: t["parameters"]["k1"].update(fixed="yes"), ConfigError, "fixed must be true or false"),
    (lambda t: t["parameters"]["k1"].update(unit="m"), ConfigError, "Did you mean 'units'"),
    (lambda t: t["states"]["h2"].update(measured=True), ConfigError, "initial is the starting guess"),
    (lambda t: t["outputs"].update(h1="h1"), ConfigError, "'h1' is already a state"),
    (lambda t: t["states"].update(sin="m"), ConfigError, "'sin' is reserved"),
    (lambda t: t["states"].update(t="s"), ConfigError, "'t' is reserved"),
    (lambda t: t["equations"].update(dh1="-k1*h1.real"), ExpressionError, r"attribute access.*\n.*-k1\*h1\.real\n.*\^"),
    (lambda t: t["equations"].update(dh1="-k1*h3"), ExpressionError, "unknown name 'h3'.*did you mean 'h[12]'"),
    (lambda t: t["equations"].update(dh1="-k1*h1 - nn(h1)"), ExpressionError, r"write '\+ nn\(\.\.\.\)'"),
    (lambda t: t.update(neural={"width": 8}), ConfigError, "no equation has one"),
    (lambda t: t.update(kind="physics:pendulum"), ConfigError, 'kind = "equations"'),
    (lambda t: (t.pop("outputs"), t["parameters"].pop("hmax"), t["states"]["h1"].update(measured=False),
                t["states"]["h2"].update(measured=False)), ConfigError, "no state is measured"),
])
def test_equations_errors_name_the_key(change, error, match):
    table = json.loads(json.dumps(TANK))
    change(table)
    with pytest.raises(error, match=match):
        from_toml(table)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        from_toml(bad)
    bad.write_text('[model.states]\nx = "m"\n[model.equations]\ndx = "__import__(\'os\')"\n')
    with pytest.raises(ExpressionError, match=f"equations file '{bad}'.*unknown function '__import__'"):
        from_toml(bad)
