"""The reference-system catalogue: registry, specs, and one right-hand side on NumPy and torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sysid.systems as systems
from sysid.backend import NUMPY, TORCH
from sysid.errors import ConfigError, ParameterError, SysidError
from sysid.systems import FIELDS, ParameterSpec, System, UnknownSystemError

ALL = systems.list()

REQUIRED = [
    "harmonic_oscillator", "damped_oscillator", "pendulum", "duffing", "van_der_pol", "lorenz",
    "mass_spring_damper", "lotka_volterra", "competitive_lotka_volterra", "fitzhugh_nagumo",
    "logistic", "sir", "seir", "first_order_kinetics", "reaction_chain", "pk_one_compartment",
    "goodwin", "solow",
]


def _growth_rhs(t, x, u, p, xp):
    return xp.stack([p["k"] * x[..., 0]])


def _toy(**overrides):
    spec = dict(
        name="toy", title="Toy", field="physics", states=("x",), state_units=("m",),
        parameters=(ParameterSpec(name="k", default=1.0, bounds=(0.0, math.inf)),),
        rhs=_growth_rhs, y0=(1.0,), t_span=(0.0, 1.0), time_units="s",
        reference="none", description="x' = k x",
    )
    spec.update(overrides)
    return System(**spec)


def test_catalogue_has_the_required_systems_in_every_field():
    assert set(REQUIRED) <= set(ALL)
    assert len(ALL) >= 14
    assert {systems.get(n).field for n in ALL} == set(FIELDS)
    assert ALL == sorted(ALL)
    assert systems.list("economics") == ["goodwin", "solow"]
    assert all(systems.get(n).field == "epidemiology" for n in systems.list("epidemiology"))
    # list() must not leak into the package as the builtin's replacement
    import builtins

    assert builtins.list is list


def test_list_rejects_unknown_field():
    with pytest.raises(ConfigError, match=r"field must be one of .*'physics'.*got 'astrology'"):
        systems.list("astrology")


@pytest.mark.parametrize("name", ALL)
def test_every_system_is_complete(name):
    s = systems.get(name)
    assert s.name == name
    assert s.title and s.reference and s.description
    assert len(s.state_units) == len(s.states) and len(s.input_units) == len(s.inputs)
    assert len(s.y0) == len(s.states) and s.t_span[0] < s.t_span[1]
    for spec in s.parameters:
        lo, hi = spec.bounds
        assert lo <= spec.default <= hi
        # rates, capacities and masses are physical: nothing named like a rate may go negative
        if spec.units.startswith("1/") and name not in ("solow", "duffing"):
            assert lo >= 0.0, (name, spec.name)
    assert s.units["time"] == s.time_units


def test_lotka_volterra_matches_the_stan_case_study():
    lv = systems.get("lotka_volterra")
    assert lv.parameter_names == ("a", "b", "c", "d")
    assert lv.defaults() == {"a": 0.55, "b": 0.028, "c": 0.80, "d": 0.024}
    assert lv.states == ("prey", "predator")
    f = lv.numpy_rhs()
    u, v = 30.0, 5.0
    np.testing.assert_allclose(f(0.0, np.array([u, v])),
                               [(0.55 - 0.028 * v) * u, (-0.80 + 0.024 * u) * v], rtol=1e-15)


def test_pendulum_is_measured_from_hanging_down():
    p = systems.get("pendulum")
    assert p.order == 2 and p.parameter_names == ("w2", "c")
    f = p.numpy_rhs({"w2": 4.0, "c": 0.5})
    # at the bottom (theta=0) at rest nothing moves; at theta=pi/2 gravity pulls back with w2
    np.testing.assert_allclose(f(0.0, np.array([0.0, 0.0])), [0.0, 0.0], atol=0)
    np.testing.assert_allclose(f(0.0, np.array([math.pi / 2, 2.0])), [2.0, -4.0 - 1.0], rtol=1e-15)


@pytest.mark.parametrize("name", [n for n in ALL if systems.get(n).order == 2])
def test_second_order_systems_put_velocities_first_in_the_rhs(name):
    s = systems.get(name)
    rng = np.random.default_rng(3)
    x = rng.normal(size=len(s.states))
    u = (lambda t: np.ones(len(s.inputs))) if s.inputs else None
    dx = s.numpy_rhs(inputs=u)(0.0, x)
    n = len(s.states) // 2
    np.testing.assert_array_equal(dx[:n], x[n:])


def _random_batch(s: System, rng: np.random.Generator, batch: int = 16):
    scale = np.abs(np.asarray(s.y0)) + 1.0
    x = rng.uniform(0.2, 1.5, size=(batch, len(s.states))) * scale
    u = rng.normal(size=(batch, len(s.inputs))) if s.inputs else None
    return x, u


@pytest.mark.parametrize("name", ALL)
def test_torch_and_numpy_rhs_agree_batched(name):
    s = systems.get(name)
    rng = np.random.default_rng(0)
    x, u = _random_batch(s, rng)
    p = s.defaults()
    out_np = s.rhs(0.3, x, u, p, NUMPY)
    assert out_np.shape == x.shape
    # batched NumPy equals row-by-row NumPy (the SciPy call shape (S,))
    rows = np.stack([s.rhs(0.3, x[i], None if u is None else u[i], p, NUMPY) for i in range(len(x))])
    np.testing.assert_allclose(out_np, rows, rtol=1e-14, atol=0)
    p_t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in p.items()}
    x_t = torch.tensor(x, dtype=torch.float64)
    u_t = None if u is None else torch.tensor(u, dtype=torch.float64)
    out_t = s.rhs(torch.tensor(0.3, dtype=torch.float64), x_t, u_t, p_t, TORCH)
    assert out_t.shape == x_t.shape and out_t.dtype == torch.float64
    # same float64 arithmetic in both libraries: agreement to a few ulps
    np.testing.assert_allclose(out_t.detach().numpy(), out_np, rtol=1e-12, atol=1e-12)
    # gradients reach every parameter (hybrid models train them through this rhs)
    grads = torch.autograd.grad(out_t.pow(2).sum(), list(p_t.values()))
    for (pname, _), g in zip(p_t.items(), grads):
        assert torch.isfinite(g) and g.abs() > 0, (name, pname)


def test_numpy_rhs_checks_parameters_and_inputs():
    lorenz = systems.get("lorenz")
    with pytest.raises(ParameterError, match=r"no parameter 'sigmaa' \(did you mean 'sigma'\?\); "
                                             r"its parameters are \['sigma', 'rho', 'beta'\]"):
        lorenz.numpy_rhs({"sigmaa": 1.0})
    with pytest.raises(ParameterError, match=r"'sigma' of system 'lorenz': value -1.0 outside bounds"):
        lorenz.numpy_rhs({"sigma": -1.0})
    with pytest.raises(ParameterError, match=r"'rho' must be finite; got nan"):
        lorenz.numpy_rhs({"rho": float("nan")})
    with pytest.raises(ParameterError, match=r"'rho' must be a number; got 'big'"):
        lorenz.numpy_rhs({"rho": "big"})
    with pytest.raises(ConfigError, match=r"'lorenz' has no inputs; inputs= must be None"):
        lorenz.numpy_rhs(inputs=lambda t: [0.0])
    duffing = systems.get("duffing")
    with pytest.raises(ConfigError, match=r"has inputs \['u'\]; pass inputs=u .*lambda t: \[0.0\]"):
        duffing.numpy_rhs()
    f = duffing.numpy_rhs(inputs=lambda t: [1.0, 2.0])
    with pytest.raises(ConfigError, match=r"inputs\(t\) must return 1 values; it returned shape \(2,\)"):
        f(0.0, np.array([0.0, 0.0]))
    # a forcing enters the acceleration one to one
    g = duffing.numpy_rhs({"delta": 0.0, "alpha": 0.0, "beta": 0.0}, inputs=lambda t: [0.7])
    np.testing.assert_allclose(g(0.0, np.array([1.0, 2.0])), [2.0, 0.7], rtol=1e-15)


def test_get_unknown_system_suggests_the_closest():
    with pytest.raises(UnknownSystemError, match=r"No reference system 'lotka_voltera' "
                                                 r"\(did you mean 'lotka_volterra'\?\)"):
        systems.get("lotka_voltera")
    with pytest.raises(KeyError):  # also a KeyError for dict-like callers
        systems.get("nope")
    assert issubclass(UnknownSystemError, SysidError)


def test_register_adds_and_refuses_duplicates():
    toy = _toy(name="toy_registered")
    assert systems.register(toy) is toy
    try:
        assert systems.get("toy_registered") is toy and "toy_registered" in systems.list()
        with pytest.raises(ConfigError, match=r"'toy_registered' is already in the catalogue; pass "
                                              r"replace=True"):
            systems.register(_toy(name="toy_registered"))
        other = _toy(name="toy_registered", y0=(2.0,))
        assert systems.register(other, replace=True) is other
    finally:
        from sysid.systems import base

        base._REGISTRY.pop("toy_registered", None)
    with pytest.raises(ConfigError, match=r"expected a System; got dict"):
        systems.register({"name": "x"})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Bad Name"}, r"name must be lower case"),
        ({"field": "astrology"}, r"field must be one of"),
        ({"state_units": ("m", "s")}, r"2 state_units for 1 states \['x'\]"),
        ({"y0": (1.0, 2.0)}, r"y0 has 2 values but there are 1 states \['x'\]"),
        ({"t_span": (1.0, 0.0)}, r"t_span must be \(start, end\) with start < end"),
        ({"order": 2}, r"order 2 needs positions then velocities"),
        ({"order": 3}, r"order must be 1 or 2; got 3"),
        ({"inputs": ("u",)}, r"0 input_units for 1 inputs \['u'\]"),
        ({"states": ("k",), }, r"names \['k'\] are used more than once"),
        ({"rhs": "x' = k x"}, r"rhs must be callable"),
    ],
)
def test_system_checks_itself_at_construction(overrides, message):
    with pytest.raises(ConfigError, match=message):
        _toy(**overrides)


def test_parameter_spec_checks_default_and_bounds():
    with pytest.raises(ConfigError, match=r"'k': default -1.0 must be finite and inside bounds \[0.0, inf\]"):
        ParameterSpec(name="k", default=-1.0, bounds=(0.0, math.inf))
    with pytest.raises(ConfigError, match=r"'k': bounds must be \(lower, upper\) with lower <= upper"):
        ParameterSpec(name="k", default=1.0, bounds=(2.0, 0.0))
    with pytest.raises(ConfigError, match=r"name must be a Python identifier; got 'k 1'"):
        ParameterSpec(name="k 1", default=1.0)
    spec = ParameterSpec(name="k", default=1, bounds=(0, 2))
    assert spec.default == 1.0 and isinstance(spec.default, float) and spec.bounds == (0.0, 2.0)
    with pytest.raises(AttributeError):
        spec.default = 3.0  # frozen


@pytest.mark.parametrize("items, shape", [
    ([np.arange(3.0), np.arange(3.0) * 2], (3, 2)),  # the fast path: float64 arrays of one shape
    ([np.ones((2, 4)), np.zeros((2, 4)), np.full((2, 4), 3.0)], (2, 4, 3)),
    ([np.arange(3.0), 1.5], (3, 2)),  # a scalar broadcast against the arrays
    ([np.arange(3, dtype=np.float32), np.arange(3.0)], (3, 2)),  # float32 items become float64
    ([np.ones((2, 1)), np.arange(3.0)], (2, 3, 2)),  # shapes that broadcast
    ([np.arange(3), np.arange(3.0)], (3, 2)),  # integers become floats
])
def test_numpy_stack_matches_broadcast_then_stack(items, shape):
    got = NUMPY.stack(items)
    want = np.stack(np.broadcast_arrays(*[np.asarray(i, dtype=float) for i in items]), axis=-1)
    assert got.shape == shape and got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    got[...] = -1.0  # a new array: the items are not views of it
    assert all(np.all(np.asarray(i) != -1.0) for i in items)
