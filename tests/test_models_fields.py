"""Shared checks over every model type, plus the construction errors of each field."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sysid.models as sm
from sysid.errors import ConfigError, ParameterError
from sysid.models.neural import ACTIVATIONS as NEURAL_ACTIVATIONS
from sysid.models import (
    HybridField,
    Model,
    NeuralField,
    Parameter,
    PhysicsField,
    SecondOrderField,
)


def forced_spring(t, x, u, p, xp):
    """Forced damped spring, states (x, v), input F."""
    return xp.stack([x[..., 1], (u[..., 0] - p["c"] * x[..., 1] - p["k"] * x[..., 0]) / p["m"]])


def spring_acc(t, x, u, p, xp):
    """Acceleration of a spring with a fixed offset parameter."""
    return xp.stack([-p["k"] * (x[..., 0] - p["x0"]) - p["c"] * x[..., 1]])


SPRING_PARAMS = {
    "m": Parameter(1.5, bounds=(0.1, 10.0), units="kg"),
    "c": Parameter(0.3, bounds=(0.0, math.inf), units="N s/m"),
    "k": Parameter(4.0, units="N/m"),
}


def _cases() -> dict[str, callable]:
    return {
        "neural": lambda dt: sm.neural(["x", "y"], width=16, depth=2, seed=3).to(dt),
        "neural_inputs_time": lambda dt: sm.neural(["x", "y"], ["u1", "u2"], width=8, depth=1,
                                                   time_dependent=True, activation="softplus").to(dt),
        "physics_fn": lambda dt: sm.physics(forced_spring, SPRING_PARAMS, ["x", "v"], ["F"], dtype=dt),
        "physics_system": lambda dt: sm.physics("lotka_volterra", free=["a", "d"], dtype=dt),
        "hybrid_all": lambda dt: sm.hybrid("lotka_volterra", width=8, dtype=dt),
        "hybrid_subset": lambda dt: sm.hybrid(forced_spring, SPRING_PARAMS, ["x", "v"], ["F"],
                                              neural_states=["v"], width=8, activation="silu", dtype=dt),
        "second_order_physics": lambda dt: sm.second_order(
            ["q"], ["w"], acceleration=spring_acc,
            parameters={"k": Parameter(2.0, bounds=(0, 50)), "c": 0.1,
                        "x0": Parameter(0.5, vary=False)}, dtype=dt),
        "second_order_neural": lambda dt: sm.second_order(["q1", "q2"], ["v1", "v2"], inputs=["F"],
                                                          width=8, dtype=dt),
        "second_order_hybrid": lambda dt: sm.second_order(
            ["q"], ["w"], acceleration=spring_acc, neural=True, width=8,
            parameters={"k": Parameter(2.0, bounds=(0, 50)), "c": 0.1, "x0": 0.2}, dtype=dt),
    }


CASES = _cases()


def _batch(model: Model, dtype: torch.dtype, b: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, len(model.state_names), generator=g, dtype=dtype) + 0.5
    u = torch.rand(b, len(model.input_names), generator=g, dtype=dtype) if model.input_names else None
    t = torch.rand(b, generator=g, dtype=dtype)
    return t, x, u


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_shape_dtype_and_scalar_time(case, dtype):
    model = CASES[case](dtype)
    t, x, u = _batch(model, dtype)
    out = model(t, x, u)
    assert out.shape == x.shape
    assert out.dtype == dtype
    assert bool(torch.isfinite(out).all())
    # a 0-d time gives the same as that time repeated per row
    out0 = model(t[0], x, u)
    out1 = model(t[0].expand(len(t)), x, u)
    torch.testing.assert_close(out0, out1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_reach_every_free_parameter(case):
    model = CASES[case](torch.float64)
    t, x, u = _batch(model, torch.float64)
    # a generic loss; every trainable tensor must receive a non-zero gradient somewhere
    loss = (model(t, x, u) ** 2).sum() + model(t, x * 1.7, u).sum()
    loss.backward()
    params = dict(model.named_parameters())
    assert params, "every model type has something to train"
    for name, p in params.items():
        assert p.grad is not None, name
        assert float(p.grad.abs().sum()) > 0.0, name
    # fixed parameters are buffers, never trainable
    for spec_name, spec in model.field.parameter_specs().items():
        if not spec.vary:
            assert all(spec_name not in n for n in params), spec_name


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_seed_same_result(case):
    a, b = CASES[case](torch.float32), CASES[case](torch.float32)
    t, x, u = _batch(a, torch.float32)
    torch.testing.assert_close(a(t, x, u), b(t, x, u), rtol=0, atol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_function_matches_torch(case):
    model = CASES[case](torch.float64)
    t, x, u = _batch(model, torch.float64)
    with torch.no_grad():
        want = model(t, x, u).numpy()
    got = model.field.numpy_function()(t.numpy(), x.numpy(), None if u is None else u.numpy())
    # float64 on both sides: only summation-order rounding differs
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_different_seeds_differ_and_global_rng_untouched():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = NeuralField(["x"], seed=0, width=8)
    after = torch.rand(3)
    torch.testing.assert_close(before, after)  # construction did not consume global RNG draws
    b = NeuralField(["x"], seed=1, width=8)
    assert not torch.equal(a.layers[0].weight, b.layers[0].weight)


def test_small_output_initialisation():
    f = NeuralField(["x", "y"], width=64, depth=2, seed=0)
    x = torch.randn(256, 2)
    with torch.no_grad():
        out = f(torch.tensor(0.0), x)
    # last layer is 0.1 x Glorot: outputs of order 0.1 for unit inputs, far below O(1)
    assert float(out.abs().mean()) < 0.15
    assert float(out.abs().mean()) > 1e-4
    assert torch.all(f.layers[-1].bias == 0)


def test_scaling_normalises_inputs_and_outputs():
    f = NeuralField(["x"], ["u"], width=8, depth=1, time_dependent=True, seed=0)
    t, x, u = torch.tensor([0.4]), torch.tensor([[3.0]]), torch.tensor([[-1.0]])
    raw = f(t, x, u)
    scaling = {"names": ["x", "u"], "mean": [1.0, 2.0], "scale": [4.0, 0.5], "time_scale": 10.0}
    f.set_scaling(scaling)
    scaled = f(t * 10.0, x * 4.0 + 1.0, u * 0.5 + 2.0)
    # same normalised point, output multiplied by x_scale / time_scale = 0.4
    torch.testing.assert_close(scaled, raw * 0.4)
    f.set_scaling(None)
    torch.testing.assert_close(f(t, x, u), raw)


def test_scaling_from_data_scaling_object():
    from sysid.data import Scaling

    m = sm.neural(["x"], width=4, depth=1)
    m.set_scaling(Scaling(names=("x",), mean=np.array([2.0]), scale=np.array([3.0]), time_scale=5.0))
    assert float(m.field.x_scale[0]) == 3.0 and float(m.field.time_scale) == 5.0


def test_scaling_errors():
    f = NeuralField(["x"], ["u"], width=4, depth=1)
    with pytest.raises(ConfigError, match=r"no statistics for \['u'\]"):
        f.set_scaling({"names": ["x"], "mean": [0.0], "scale": [1.0], "time_scale": 1.0})
    with pytest.raises(ConfigError, match="scales positive"):
        f.set_scaling({"names": ["x", "u"], "mean": [0.0, 0.0], "scale": [1.0, 0.0], "time_scale": 1.0})
    with pytest.raises(ConfigError, match="time_scale must be positive"):
        f.set_scaling({"names": ["x", "u"], "mean": [0.0, 0.0], "scale": [1.0, 1.0], "time_scale": -1})
    with pytest.raises(ConfigError, match="lacks keys"):
        f.set_scaling({"names": ["x"]})
    with pytest.raises(ConfigError, match="expected a sysid.data.Scaling"):
        f.set_scaling(3.0)


def test_neural_field_errors():
    with pytest.raises(ConfigError, match=r"unknown activation 'swishy'; choose one of \["):
        NeuralField(["x"], activation="swishy")
    with pytest.raises(ConfigError, match="width must be an integer >= 1; got 0"):
        NeuralField(["x"], width=0)
    with pytest.raises(ConfigError, match="depth must be an integer >= 0; got -1"):
        NeuralField(["x"], depth=-1)
    with pytest.raises(ConfigError, match=r"names \['x'\] appear more than once"):
        NeuralField(["x", "x"])
    with pytest.raises(ConfigError, match=r"names \['x'\] are both states and inputs"):
        NeuralField(["x"], ["x"])
    with pytest.raises(ConfigError, match="must be a list of names, not the string 'xy'"):
        NeuralField("xy")
    with pytest.raises(ConfigError, match=r"outputs must be a non-empty subset of the states \['x'\]"):
        NeuralField(["x"], outputs=["z"])
    f = NeuralField(["x", "v"], width=4, depth=1)
    with pytest.raises(ConfigError, match=r"x has 3 states on its last axis but the field has 2 \(\['x', 'v'\]\)"):
        f(torch.tensor(0.0), torch.zeros(1, 3))
    g = NeuralField(["x"], ["u"], width=4, depth=1)
    with pytest.raises(ConfigError, match=r"needs inputs \['u'\] but u is None"):
        g(torch.tensor(0.0), torch.zeros(1, 1))


def test_physics_parameter_names_checked():
    with pytest.raises(ParameterError, match=r"it reads \['k'\] which are not given"):
        PhysicsField(forced_spring, {"m": 1.0, "c": 0.1}, ["x", "v"], ["F"])
    with pytest.raises(ParameterError, match=r"it never reads \['zeta'\]"):
        PhysicsField(forced_spring, {**SPRING_PARAMS, "zeta": 1.0}, ["x", "v"], ["F"])
    with pytest.raises(ParameterError, match="must be a Python identifier"):
        PhysicsField(forced_spring, {"a.b": 1.0}, ["x", "v"], ["F"])
    with pytest.raises(ParameterError, match=r"value 20.0 outside bounds \[0.1, 10.0\]"):
        PhysicsField(forced_spring, {**SPRING_PARAMS, "m": Parameter(20.0, bounds=(0.1, 10.0))},
                     ["x", "v"], ["F"])


def test_physics_output_and_call_errors():
    def wrong_count(t, x, u, p, xp):
        return xp.stack([x[..., 0] * p["k"]])

    with pytest.raises(ConfigError, match=r"returned \(1,\) values on the last axis but the field has 2 outputs"):
        PhysicsField(wrong_count, {"k": 1.0}, ["x", "v"])

    def broken(t, x, u, p, xp):
        return xp.stack([x[..., 5] * p["k"]])

    with pytest.raises(ConfigError, match="on a test state .* raised IndexError"):
        PhysicsField(broken, {"k": 1.0}, ["x"])
    with pytest.raises(ConfigError, match="fn must be callable"):
        PhysicsField("not a function", {"k": 1.0}, ["x"])


def test_physics_constant_output_broadcasts():
    def source(t, x, u, p, xp):
        return xp.stack([p["q"] + 0.0 * t])

    f = PhysicsField(source, {"q": 2.0}, ["c"])
    out = f(torch.tensor(0.0), torch.zeros(4, 1))
    assert out.shape == (4, 1)
    assert torch.all(out == 2.0)


def test_from_system_free_values_and_errors():
    f = PhysicsField.from_system("lotka_volterra", free=["a"], values={"b": 0.05}, dtype=torch.float64)
    table = f.parameter_table().set_index("name")
    assert table.loc["b", "value"] == pytest.approx(0.05, rel=1e-14)
    assert bool(table.loc["a", "vary"]) and not bool(table.loc["b", "vary"])
    assert f.free_names == ("a",)
    assert f.system == "lotka_volterra"
    assert f.state_units and f.time_units
    with pytest.raises(ParameterError, match=r"has no parameters \['zz'\]; its parameters are \['a', 'b', 'c', 'd'\]"):
        PhysicsField.from_system("lotka_volterra", values={"zz": 1.0})
    with pytest.raises(ParameterError, match=r"free names \['q'\] are not parameters"):
        PhysicsField.from_system("lotka_volterra", free=["q"])
    with pytest.raises(ParameterError, match="outside bounds"):
        PhysicsField.from_system("lotka_volterra", values={"a": -1.0})


def test_set_values_keeps_bounds():
    f = PhysicsField.from_system("lotka_volterra", free=["a", "b"], dtype=torch.float64)
    f.set_values({"a": 0.9})
    assert float(f.physical_parameters()["a"].detach()) == pytest.approx(0.9, rel=1e-12)
    with pytest.raises(ParameterError, match=r"Parameter 'a': value -0.5 outside bounds \[0.0, inf\]"):
        f.set_values({"a": -0.5})
    with pytest.raises(ParameterError, match=r"\['c'\] are not free parameters"):
        f.set_values({"c": 1.0})


def test_hybrid_subset_neural_zero_elsewhere():
    model = CASES["hybrid_subset"](torch.float64)
    phys = model.field.physics
    t, x, u = _batch(model, torch.float64)
    diff = model(t, x, u) - phys(t, x, u)
    assert torch.all(diff[:, 0] == 0)  # x' has no neural term
    assert torch.all(diff[:, 1] != 0)


def test_hybrid_errors():
    phys = PhysicsField(forced_spring, SPRING_PARAMS, ["x", "v"], ["F"])
    with pytest.raises(ConfigError, match=r"neural term's states \['v', 'x'\] must equal"):
        HybridField(phys, NeuralField(["v", "x"]))
    with pytest.raises(ConfigError, match=r"produces \['x', 'v'\] but neural_states is \['v'\]"):
        HybridField(phys, NeuralField(["x", "v"]), neural_states=["v"])
    with pytest.raises(ConfigError, match=r"neural_states \['z'\] are not outputs"):
        HybridField(phys, NeuralField(["x", "v"]), neural_states=["z"])
    with pytest.raises(ConfigError, match="physics must be a VectorField"):
        HybridField(forced_spring, NeuralField(["x", "v"]))
    with pytest.raises(ConfigError, match=r"neural_inputs \['G'\] are not inputs"):
        sm.hybrid(forced_spring, SPRING_PARAMS, ["x", "v"], ["F"], neural_inputs=["G"])


def test_hybrid_neural_without_inputs_selects_columns():
    m = sm.hybrid(forced_spring, SPRING_PARAMS, ["x", "v"], ["F"], neural_inputs=[], width=4,
                  dtype=torch.float64)
    assert m.field.neural.input_names == ()
    t, x, u = _batch(m, torch.float64)
    expected = m.field.physics(t, x, u) + m.field.neural(t, x)
    torch.testing.assert_close(m(t, x, u), expected)


def test_second_order_structure_and_errors():
    m = CASES["second_order_physics"](torch.float64)
    x = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    out = m(torch.tensor(0.0, dtype=torch.float64), x)
    # q' = w; w' = -k (q - x0) - c w = -2 * 0.5 - 0.1 * 0.5
    torch.testing.assert_close(out, torch.tensor([[0.5, -1.05]], dtype=torch.float64))
    acc = NeuralField(["q", "v"], outputs=["v"])
    with pytest.raises(ConfigError, match="need one velocity per position"):
        SecondOrderField(acc, ["q"], ["v", "w"])
    with pytest.raises(ConfigError, match=r"must be positions \+ velocities"):
        SecondOrderField(acc, ["v"], ["q"])
    with pytest.raises(ConfigError, match=r"must output the velocities' derivatives \['v'\]"):
        SecondOrderField(NeuralField(["q", "v"]), ["q"], ["v"])
    with pytest.raises(ConfigError, match="give an acceleration function, neural=True, or both"):
        sm.second_order(["q"], ["v"], neural=False)


def test_model_observed_latent_and_errors():
    m = sm.neural(["x", "v", "z"], width=4, depth=1, observed=["z", "x"])
    assert m.observed == ("x", "z")
    assert m.latent_names == ("v",)
    assert m.latent_initial == {"v": 0.0}
    with pytest.raises(ConfigError, match=r"unknown \['w'\]"):
        sm.neural(["x"], observed=["w"])
    with pytest.raises(ConfigError, match="observed is empty"):
        sm.neural(["x"], observed=[])
    with pytest.raises(ConfigError, match=r"input_interpolation must be one of \['zoh', 'linear', 'cubic'\]"):
        sm.neural(["x"], input_interpolation="spline")
    with pytest.raises(ConfigError, match="metadata must be JSON-serialisable"):
        sm.neural(["x"], metadata={"f": object()})
    with pytest.raises(ConfigError, match=r"latent_initial names \['x'\] are not latent states"):
        Model(NeuralField(["x", "v"]), observed=["x"], latent_initial={"x": 1.0})
    with pytest.raises(ConfigError, match=r"gives derivatives of \['v'\] only"):
        Model(NeuralField(["x", "v"], outputs=["v"]))
    with pytest.raises(ConfigError, match="a physics function needs parameters"):
        sm.physics(forced_spring)
    with pytest.raises(ConfigError, match="a catalogue system brings its own parameters"):
        sm.physics("lotka_volterra", parameters={"a": 1.0})


def test_parameter_table_units_and_values():
    m = sm.physics(forced_spring, SPRING_PARAMS, ["x", "v"], ["F"], dtype=torch.float64)
    table = m.parameter_table()
    assert list(table["name"]) == ["m", "c", "k"]
    assert list(table["units"]) == ["kg", "N s/m", "N/m"]
    np.testing.assert_allclose(table["value"], [1.5, 0.3, 4.0], rtol=1e-14)
    assert table.loc[0, "lower"] == 0.1 and table.loc[0, "upper"] == 10.0


def _unfolded_neural(f, t, x, u):
    """The NeuralField formula written out without folding (normalise, MLP, rescale)."""
    z = (x - f.x_mean) / f.x_scale
    parts = [z[..., f._arg_idx]]
    if f.input_names:
        parts.append((u - f.u_mean) / f.u_scale)
    if f.time_dependent:
        parts.append((t / f.time_scale).reshape(-1, 1).expand(*x.shape[:-1], 1))
    h = torch.cat(parts, dim=-1)
    act = NEURAL_ACTIVATIONS[f.activation][0]  # torch.tanh (sysid evaluates it as sigmoids)
    for layer in list(f.layers)[:-1]:
        h = act(layer(h))
    return f.layers[-1](h) * (f.x_scale[f._out_idx] / f.time_scale)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 4e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("kw", [
    {},
    {"depth": 0},
    {"inputs": ["u"], "time_dependent": True, "arguments": ["v", "x"], "outputs": ["v"]},
])
def test_folded_forward_equals_unfolded_formula(dtype, tol, kw):
    # forward folds the scales into the first/last layer; it must equal the plain formula up to
    # rounding (tol: a few ulp of float32 / float64, relative to the output's largest entry) in
    # value and in the gradients of weights and inputs; float32 4e-6: the tanh evaluated as
    # sigmoids (weights times 2 and 4, the shift 2 s - 1 moved into the biases) measured up to
    # 1.6e-6 in the gradients, ~13 ulp (1e-6 held before). Offsets (1e3) far above the scales test
    # that the means are not folded into the bias (which would cancel in float32).
    f = NeuralField(["x", "v"], width=8, depth=kw.pop("depth", 2), seed=3, **kw).to(dtype)
    f.set_scaling({"names": ["x", "v", "u"], "mean": [1e3, -2.0, 3.0], "scale": [5.0, 0.5, 2.0],
                   "time_scale": 7.0})
    with torch.no_grad():
        for layer in f.layers:
            layer.bias.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(1))
            layer.weight.mul_(3.0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 2, generator=gen, dtype=dtype) * torch.tensor([5.0, 0.5], dtype=dtype)
    x = (x + torch.tensor([1e3, -2.0], dtype=dtype)).requires_grad_(True)
    u = (torch.randn(16, 1, generator=gen, dtype=dtype) + 3.0) if f.input_names else None
    t = torch.linspace(0, 10, 16, dtype=dtype)
    grads = []
    for fn in (f, lambda t_, x_, u_: _unfolded_neural(f, t_, x_, u_)):
        f.zero_grad()
        x.grad = None
        out = fn(t, x, u)
        (out * torch.arange(1.0, out.shape[-1] + 1, dtype=dtype)).sum().backward()
        grads.append([out.detach().clone(), x.grad.clone()]
                     + [p.grad.clone() for p in f.parameters()])
    for a, b in zip(*grads):
        assert float((a - b).abs().max()) <= tol * float(b.abs().max())


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_tanh_network_evaluated_as_sigmoids_is_the_tanh_network(depth):
    # torch evaluates a tanh network as the same network of sigmoids (NeuralField._layers); the
    # NumPy copy keeps np.tanh. Weights 3x the initial ones and random biases so that the
    # activations reach saturation and the bias rewrites (b - W 1) matter.
    for dtype, rtol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        f = NeuralField(["a", "b"], width=16, depth=depth, seed=depth).to(dtype)
        with torch.no_grad():
            gen = torch.Generator().manual_seed(0)
            for layer in f.layers:
                layer.weight.mul_(3.0)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen, dtype=dtype))
        x = torch.randn(200, 2, generator=torch.Generator().manual_seed(1), dtype=dtype) * 2
        with torch.no_grad():
            got = f(torch.tensor(0.0), x).double().numpy()
        want = f.numpy_function()(0.0, x.double().numpy(), None)
        # float64: rounding of the rewritten weights; float32: ~2 ulp of 7 digits through the
        # layers, relative to the largest output (outputs near zero carry the same absolute error)
        assert np.abs(got - want).max() <= rtol * np.abs(want).max()
        assert float(np.abs(want).max()) > 0.1  # a field far from zero
