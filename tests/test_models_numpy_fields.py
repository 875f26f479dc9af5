"""The in-place form of a network's NumPy function (sysid.models.numpy_fields.in_place): the same
values as the plain function for every activation, argument subset, inputs and time, written into
the caller's array; fields without one say so."""

from __future__ import annotations

import numpy as np
import pytest

from sysid.models.numpy_fields import ACTIVATIONS, in_place, neural_function, physics_function


def _network(rng, activation: str, depth: int, arguments, has_inputs: bool, time_dependent: bool):
    S, I, W = 3, 2, 5
    n_in = (S if arguments is None else len(arguments)) + (I if has_inputs else 0) + int(time_dependent)
    sizes = [n_in] + [W] * depth + [2]
    weights = [(rng.normal(size=(b, a)), rng.normal(size=b)) for a, b in zip(sizes[:-1], sizes[1:])]
    return neural_function(weights, activation, x_mean=10.0 * rng.normal(size=S),
                           x_scale=rng.uniform(0.5, 3.0, S), u_mean=rng.normal(size=I),
                           u_scale=rng.uniform(0.5, 2.0, I), time_scale=2.5, outputs=[0, 2],
                           arguments=arguments, has_inputs=has_inputs, time_dependent=time_dependent)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_in_place_form_equals_the_plain_function(activation):
    rng = np.random.default_rng(0)
    R = 7
    for depth in (0, 1, 2):
        for arguments in (None, [2, 0]):
            for has_inputs in (False, True):
                for time_dependent in (False, True):
                    f = _network(rng, activation, depth, arguments, has_inputs, time_dependent)
                    g = in_place(f, R)
                    x = 10.0 * rng.normal(size=(R, 3))
                    u = rng.normal(size=(R, 2)) if has_inputs else None
                    for t in (rng.normal(size=R), 1.5):  # one time per row, or one for all
                        out = np.full((R, 2), np.nan)
                        assert g(t, x, u, out) is None
                        want = f(t, x, u)
                        # the scalings folded into the first and last layers: the same function
                        # in another order of float64 operations (measured below 1e-14 relative)
                        np.testing.assert_allclose(out, want, rtol=1e-11, atol=1e-12 * np.abs(want).max())
    # the buffers are the evaluator's own: a second evaluator, or a second call, is independent
    f = _network(rng, activation, 2, None, False, False)
    g1, g2 = in_place(f, 4), in_place(f, 4)
    x1, x2 = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    o1, o2 = np.empty((4, 2)), np.empty((4, 2))
    g1(0.0, x1, None, o1)
    g2(0.0, x2, None, o2)
    np.testing.assert_allclose(o1, f(0.0, x1, None), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(o2, f(0.0, x2, None), rtol=1e-11, atol=1e-12)


def test_fields_without_an_in_place_form_give_none():
    f = physics_function(lambda t, x, u, p, xp: -p["k"] * x, {"k": 0.5}, 1, False)
    assert in_place(f, 3) is None
    assert in_place(lambda t, x, u: -x, 3) is None


def test_the_folded_matrices_are_read_only():
    f = _network(np.random.default_rng(1), "tanh", 1, None, False, False)
    mats = f.in_place.args[0]
    assert all(not m.flags.writeable for m in mats)
    with pytest.raises(ValueError, match="read-only"):
        mats[0][0, 0] = 1.0


def test_hybrid_and_second_order_fields_evaluate_their_network_in_place():
    """A hybrid field (physics + a network on some states, with inputs) and a second-order field
    with a neural acceleration: the in-place form equals the plain function, and a physics-only
    second-order field has none."""
    import torch

    import sysid

    rng = np.random.default_rng(2)
    R = 6
    hyb = sysid.models.hybrid("lotka_volterra", neural_states=["predator"], width=8, depth=1,
                              seed=0).to(torch.float64)
    with torch.no_grad():  # a network that is not zero at the start
        for p in hyb.field.parameters():
            p.add_(0.1 * torch.randn(p.shape, dtype=torch.float64))
    osc = sysid.models.second_order(["q"], ["v"], inputs=["u"], width=8, depth=1, seed=0).to(torch.float64)
    for model, u in ((hyb, None), (osc, rng.normal(size=(R, 1)))):
        f = model.field.numpy_function()
        g = in_place(f, R)
        x = np.abs(rng.normal(size=(R, 2))) * 5.0 + 1.0
        out = np.full((R, 2), np.nan)
        g(0.5, x, u, out)
        want = f(0.5, x, u)
        np.testing.assert_allclose(out, want, rtol=1e-11, atol=1e-12 * np.abs(want).max())  # rounding
    spring = sysid.models.second_order(["q"], ["v"], acceleration=lambda t, x, u, p, xp: -p["k"] * x[..., :1],
                                       parameters={"k": 2.0}, dtype=torch.float64)
    assert in_place(spring.field.numpy_function(), R) is None


def test_physics_function_broadcasts_only_what_needs_it():
    decay = physics_function(lambda t, x, u, p, xp: -p["k"] * x, {"k": 0.5}, 1, False)
    x = np.array([[1.0], [2.0]])
    got = decay(0.0, x, None)
    assert got.shape == (2, 1) and got.flags.writeable  # the function's own array, no view
    np.testing.assert_array_equal(got, -0.5 * x)
    const = physics_function(lambda t, x, u, p, xp: p["c"], {"c": 3.0}, 2, False)
    got = const(0.0, np.zeros((4, 2)), None)  # a scalar broadcast to every row and output
    assert got.shape == (4, 2) and not got.flags.writeable
    np.testing.assert_array_equal(got, 3.0)
