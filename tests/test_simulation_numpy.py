"""to_numpy_rhs: a pure-NumPy right-hand side that agrees with the torch model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from test_models_fields import CASES, SPRING_PARAMS, forced_spring

import sysid.models as sm
from sysid.data import from_arrays
from sysid.errors import ConfigError, DataError
from sysid.models import SolverConfig
from sysid.simulation import simulate, to_numpy_rhs


def _inputs(model):
    n = len(model.input_names)
    return (lambda t: np.array([np.sin(t + k) for k in range(n)])) if n else None


def _points(model, seed=0, n=20):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 3.0, n), rng.uniform(0.2, 1.5, (n, len(model.state_names)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_export_matches_torch_float64(case):
    model = CASES[case](torch.float64)
    u_fn = _inputs(model)
    f = to_numpy_rhs(model, inputs=u_fn)
    ts, ys = _points(model)
    for t, y in zip(ts, ys):
        u = None if u_fn is None else torch.tensor(u_fn(t))[None]
        with torch.no_grad():
            want = model(torch.tensor(t, dtype=torch.float64), torch.tensor(y)[None], u)[0].numpy()
        got = f(t, y)
        assert isinstance(got, np.ndarray) and got.shape == y.shape
        # the requirement is 1e-6 relative; in float64 the two agree to rounding
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", sorted(CASES))
def test_numpy_export_of_float32_model(case):
    model = CASES[case](torch.float32)
    u_fn = _inputs(model)
    f = to_numpy_rhs(model, inputs=u_fn)
    ts, ys = _points(model, seed=1)
    for t, y in zip(ts, ys):
        u = None if u_fn is None else torch.tensor(u_fn(t), dtype=torch.float32)[None]
        with torch.no_grad():
            want = model(torch.tensor(t, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)[None], u)[0]
        got = f(t, y)
        # the export computes in float64 from the float32 weights; torch rounds every operation to
        # float32 (2^-24 ~ 6e-8 each), so agreement is 1e-6 of the output's magnitude
        np.testing.assert_allclose(got, want.double().numpy(), rtol=1e-6,
                                   atol=1e-6 * float(np.abs(got).max()))


def test_vectorized_calls_and_no_torch_at_call_time(monkeypatch):
    model = CASES["hybrid_subset"](torch.float64)
    f = to_numpy_rhs(model, inputs=lambda t: np.array([np.cos(t)]))
    ys = np.array([[0.1, 0.5, 1.0], [0.3, -0.2, 0.0]])  # (S, K) as solve_ivp(vectorized=True) passes
    cols = np.stack([f(0.7, ys[:, k]) for k in range(3)], axis=1)

    def forbidden(*args, **kwargs):
        raise AssertionError("torch was called")

    for name in ("tensor", "as_tensor", "stack", "cat", "tanh", "sigmoid", "exp", "matmul"):
        monkeypatch.setattr(torch, name, forbidden)
    monkeypatch.setattr(torch.nn.functional, "linear", forbidden)
    np.testing.assert_allclose(f(0.7, ys), cols, rtol=1e-14)


def test_solve_ivp_of_export_matches_simulate():
    model = sm.hybrid(forced_spring, SPRING_PARAMS, ["x", "v"], ["F"], neural_states=["v"], width=8,
                      dtype=torch.float64)
    model = sm.Model(model.field, input_interpolation="cubic")
    t = np.linspace(0.0, 10.0, 101)
    force = np.sin(0.9 * t) + 0.3 * np.cos(2.3 * t)
    data = from_arrays([t], {"x": [np.full(101, 0.4)], "v": [np.zeros(101)], "F": [force]},
                       states=["x", "v"], inputs=["F"])
    sim = simulate(model, data, solver=SolverConfig(rtol=1e-10, atol=1e-10))
    f = to_numpy_rhs(model, inputs=data)
    sol = solve_ivp(f, (0.0, 10.0), [0.4, 0.0], t_eval=t, method="DOP853", rtol=1e-10, atol=1e-10)
    assert sol.status == 0
    # two independent integrators at 1e-10; solve_ivp steps across the 100 PCHIP knots (jumps in
    # the input's second derivative) where sysid steps onto them: measured 3e-8 apart
    np.testing.assert_allclose(sol.y[0], sim["x"].values[0], atol=2e-7)
    np.testing.assert_allclose(sol.y[1], sim["v"].values[0], atol=2e-7)


def test_export_errors():
    model = CASES["physics_fn"](torch.float64)
    # the same message and type as simulate's (one input normaliser, sysid.inputs)
    with pytest.raises(DataError, match=r"the model has inputs \['F'\]; give inputs="):
        to_numpy_rhs(model)
    t = np.linspace(0, 1, 3)
    two = from_arrays([t, t], {"F": [t, t]}, states=[], inputs=["F"])
    with pytest.raises(DataError, match=r"inputs must hold one run; the dataset has \['run0', 'run1'\]"):
        to_numpy_rhs(model, inputs=two)
    f = to_numpy_rhs(model, inputs=lambda s: [0.0])
    with pytest.raises(DataError, match=r"y has 3 states but the model has 2 \(\['x', 'v'\]\)"):
        f(0.0, np.zeros(3))
    with pytest.raises(ConfigError, match="model must be a sysid.models.Model"):
        to_numpy_rhs(model.field)


@pytest.mark.parametrize("kind", ["zoh", "linear", "cubic"])
def test_inputs_read_in_numpy_equal_the_torch_interpolation(kind):
    """simulate's NumPy path reads sampled inputs on one relative grid (and constants) without
    torch: the same float64 values as the torch interpolation, at samples, between them, outside."""
    from sysid.inputs import input_source

    t = np.linspace(0.0, 4.0, 9)
    u = [np.stack([np.sin(2 * t + k), np.cos(t) * k], axis=-1) for k in range(3)]
    ds = from_arrays([t, t + 5.0, t - 1.0], {"a": [v[:, 0] for v in u], "b": [v[:, 1] for v in u]},
                     states=[], inputs=["a", "b"], runs=["r0", "r1", "r2"])
    src = input_source(ds, ("a", "b"), ["r0", "r1", "r2"], kind=kind, where="test")
    offsets = np.array([0.0, 5.0, -1.0])
    fast, ref = src.numpy_batch(offsets), src.torch(torch.float64, offsets)
    taus = np.concatenate([t, t[:-1] + 0.37 * np.diff(t), [-0.5, 4.0 + 1e-12, 9.0]])
    for tau in taus:  # exactly equal: the same IEEE operations in the same order
        want = ref(torch.tensor(tau, dtype=torch.float64), None).numpy()
        np.testing.assert_array_equal(fast(float(tau)), want)
    # runs on different relative grids, and functions, keep the torch interpolation
    ragged = from_arrays([t, t[:5]], {"a": [u[0][:, 0], u[1][:5, 0]], "b": [u[0][:, 1], u[1][:5, 1]]},
                         states=[], inputs=["a", "b"])
    assert input_source(ragged, ("a", "b"), ["run0", "run1"], kind=kind, where="test").numpy_batch(
        np.zeros(2)) is None
    assert input_source(lambda s: np.array([s, 1.0]), ("a", "b"), ["run0"], kind=kind,
                        where="test").numpy_batch(np.zeros(1)) is None
    const = input_source({"a": [1.0, 2.0], "b": 3.0}, ("a", "b"), ["r0", "r1"], kind=kind, where="test")
    np.testing.assert_array_equal(const.numpy_batch(np.zeros(2))(0.7), [[1.0, 3.0], [2.0, 3.0]])


def test_outputs_of_many_runs_are_the_equations_on_each_simulated_sample():
    """The measurement equations are evaluated on every run's samples in one call: each value is
    the equation of that run's simulated states at that time (exactly: the same float64 ops)."""
    m = sm.physics("sir", outputs={"cases": "gamma * I", "share": "I / (S + I + R)"}, observed=["I"],
                   dtype=torch.float64)
    gamma = float(m.field.physical_parameters()["gamma"].detach().double())
    sim = simulate(m, {"S": [990.0, 900.0, 950.0], "I": [10.0, 5.0, 1.0], "R": 0.0}, np.linspace(0, 20, 11))
    s, i, r = (sim[n].values for n in ("S", "I", "R"))
    np.testing.assert_array_equal(sim["cases"].values, gamma * i)
    np.testing.assert_array_equal(sim["share"].values, i / (s + i + r))
    assert sim["cases"].attrs["equation"] == "gamma * I" and sim["cases"].attrs["role"] == "state"


def test_one_block_result_equals_from_arrays_and_checks_its_block():
    """simulate's result for runs on one grid is built around one (1 + V, R, N) allocation: the
    same Dataset as from_arrays of the same values, each variable a C-ordered (R, N) array."""
    from sysid.data.schema import from_block

    t = np.linspace(0.0, 1.0, 4)
    x = np.arange(8.0).reshape(2, 4)
    block = np.stack([np.tile(t, (2, 1)), x, -x])
    got = from_block(block, states=["x"], inputs=["u"], runs=["a", "b"], units={"time": "s", "x": "m"})
    want = from_arrays([t, t], {"x": list(x), "u": list(-x)}, states=["x"], inputs=["u"], runs=["a", "b"],
                       units={"time": "s", "x": "m"})
    assert got.identical(want) and got["x"].values.flags.c_contiguous
    with pytest.raises(DataError, match=r"block must be C-ordered float64 \(1 \+ 2, runs, obs\)"):
        from_block(block[:2], states=["x"], inputs=["u"])
    with pytest.raises(DataError, match="run ids must be unique"):
        from_block(block, states=["x"], inputs=["u"], runs=["a", "a"])


def test_block_results_share_no_mutable_state():
    """from_block reuses the frame of an earlier call with the same names, runs and attributes
    (issue #13): each result still owns its values, times and attribute dicts, so changing one
    leaves the others and later results as they were."""
    from sysid.data.schema import from_block

    t = np.linspace(0.0, 1.0, 4)

    def block(scale):
        x = scale * np.arange(8.0).reshape(2, 4)
        return np.stack([np.tile(t, (2, 1)), x, -x])

    kw = dict(states=["x"], inputs=["u"], runs=["a", "b"], units={"time": "s", "x": "m"},
              attrs={"source": "test"})
    first = from_block(block(1.0), **kw)
    first["x"].values[0, 0] = 99.0
    first["time"].values[0, 0] = -1.0
    first.attrs["source"] = "changed"
    first["x"].attrs["units"] = "km"
    first["time"].attrs["units"] = "h"
    second = from_block(block(2.0), **kw)
    want = from_arrays([t, t], {"x": list(2.0 * np.arange(8.0).reshape(2, 4)),
                                "u": list(-2.0 * np.arange(8.0).reshape(2, 4))},
                       states=["x"], inputs=["u"], runs=["a", "b"], units={"time": "s", "x": "m"},
                       attrs={"source": "test"})
    assert second.identical(want)
    assert second["x"].values.flags.c_contiguous and second["x"].values.flags.writeable
    assert first["x"].values[0, 0] == 99.0 and first.attrs["source"] == "changed"
    # other runs or names: another frame
    other = from_block(block(1.0), **{**kw, "runs": ["c", "d"]})
    assert list(other["trajectory"].values) == ["c", "d"] and other["x"].attrs["units"] == "m"


def test_numpy_copy_follows_a_replaced_physics_function():
    """A plain attribute changed after construction (here a physics term's function) is part of
    the fingerprint too: the next simulate makes a new copy and follows the new function."""
    import copy

    import sysid

    model = sysid.models.physics("logistic", values={"r": 0.5, "K": 10.0}).to(torch.float64)
    t = np.linspace(0.0, 4.0, 9)
    y0 = np.array([[1.0], [2.0]])
    before = simulate(model, y0, t)
    logistic = model.field.fn

    def faster(t, x, u, p, xp):
        return 3.0 * logistic(t, x, u, p, xp)

    model.field.fn = faster
    after = simulate(model, y0, t)
    fresh = simulate(copy.deepcopy(model), y0, t)
    assert after.identical(fresh)
    assert not np.allclose(after["N"].values, before["N"].values)


@pytest.mark.parametrize("change", ["no_grad", "data", "load_state_dict", "new_layer", "scaling"])
def test_numpy_copy_follows_every_change_of_the_model(change):
    """simulate keeps a model's checked NumPy copy while the model is the same (issue #13); a
    change of its weights by any route (in place without autograd, through ``.data``, which
    torch's version counters do not see, a loaded state, a replaced layer, a new scaling) makes
    a new copy: the result equals that of a fresh model with the changed weights."""
    import copy

    import sysid

    net = sysid.models.neural(["x", "y"], width=8, depth=1, seed=0).to(torch.float64)
    t = np.linspace(0.0, 4.0, 9)
    y0 = np.array([[1.0, 0.5], [0.2, -0.3]])
    before = simulate(net, y0, t)
    layer = net.field.layers[0]
    if change == "no_grad":
        with torch.no_grad():
            layer.weight.mul_(3.0)
    elif change == "data":
        layer.weight.data.mul_(3.0)
    elif change == "load_state_dict":
        state = {k: v * 3.0 for k, v in net.state_dict().items()}
        net.load_state_dict(state)
    elif change == "new_layer":
        net.field.layers[0] = torch.nn.Linear(layer.in_features, layer.out_features).to(torch.float64)
    else:
        net.set_scaling({"names": ["x", "y"], "mean": [1.0, 0.0], "scale": [5.0, 2.0], "time_scale": 3.0})
    after = simulate(net, y0, t)
    fresh = simulate(copy.deepcopy(net), y0, t)
    assert after.identical(fresh)
    assert not np.allclose(after["x"].values, before["x"].values)
