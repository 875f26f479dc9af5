"""Frozen folded weights give the same field values as folding at every call."""

from __future__ import annotations

import contextlib

import pytest
import torch

from sysid.models.neural import NeuralField, frozen_weights

D = torch.float64


@pytest.mark.parametrize("kw", [
    {},
    {"depth": 0},
    {"inputs": ["u"], "time_dependent": True},
    {"arguments": ["y"], "outputs": ["x"]},
])
def test_frozen_weights_equal_the_per_call_folding(kw):
    field = NeuralField(["x", "y"], width=6, depth=kw.pop("depth", 2), seed=3, **kw).to(D)
    field.set_scaling({"names": ["x", "y", "u"], "mean": [1.0, -2.0, 0.5],
                       "scale": [3.0, 0.5, 2.0], "time_scale": 4.0})
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=gen, dtype=D)
    u = torch.randn(5, 1, generator=gen, dtype=D) if field.input_names else None
    t = torch.linspace(0.0, 1.0, 5, dtype=D)
    with torch.no_grad():
        plain = field(t, x, u)
        with frozen_weights(field):
            assert field._frozen is not None
            frozen = field(t, x, u)
    assert field._frozen is None  # folded afresh after the block
    # the same products in the same order: identical (float64)
    assert torch.equal(plain, frozen)


def test_calls_with_gradients_inside_the_block_fold_afresh():
    field = NeuralField(["x"], width=4, depth=1, seed=0).to(D)
    x = torch.ones(3, 1, dtype=D)
    with frozen_weights(field):
        with torch.no_grad():
            field.layers[-1].bias.add_(1.0)  # a change the frozen copy does not see ...
        y = field(torch.tensor(0.0, dtype=D), x)  # ... but a call with gradients does
        y.sum().backward()
    assert field.layers[0].weight.grad is not None
    with torch.no_grad():
        assert torch.equal(y.detach(), field(torch.tensor(0.0, dtype=D), x))


@pytest.mark.parametrize("kw, same_mean", [
    ({}, True),  # the direct path: the network on the scaled states
    ({"inputs": ["u"], "time_dependent": True}, True),
    ({}, False),  # another mean: the networks folded once, called as usual
    ({"arguments": ["y"], "outputs": ["x"]}, True),
])
def test_scaled_rhs_folded_once_gives_the_same_values_and_gradients(kw, same_mean):
    from sysid.training.loss import ScaledRhs

    field = NeuralField(["x", "y"], width=6, depth=2, seed=3, **kw).to(D)
    field.set_scaling({"names": ["x", "y", "u"], "mean": [1.0, -2.0, 0.5],
                       "scale": [3.0, 0.5, 2.0], "time_scale": 4.0})
    mean = torch.tensor([1.0, -2.0] if same_mean else [0.5, -1.0], dtype=D)
    rhs = ScaledRhs(field, mean, torch.tensor([2.5, 0.75], dtype=D))
    if "outputs" in kw:  # a field of one state: scaled by that state's scale only
        rhs = ScaledRhs(field, mean[:1], torch.tensor([2.5], dtype=D))
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(5, 2, generator=gen, dtype=D)
    u = torch.randn(5, 1, generator=gen, dtype=D) if field.input_names else None
    t = torch.linspace(0.0, 1.0, 5, dtype=D)
    weights = [layer.weight for layer in field.layers]

    def value_and_grads(fold):
        with rhs.folded() if fold else contextlib.nullcontext():
            y = rhs(t, z, u) + rhs(t, 0.5 * z, u)  # two evaluations, one fold
        grads = torch.autograd.grad(y.pow(2).sum(), weights)
        return y.detach(), grads

    plain, g_plain = value_and_grads(False)
    folded, g_folded = value_and_grads(True)
    assert rhs._direct is None and field._frozen is None  # the block leaves nothing behind
    # the same function; the scalings multiply in another order (float64 rounding)
    torch.testing.assert_close(folded, plain, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_folded, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


_WRITTEN_CASES = [
    ("tanh", 0, {}), ("tanh", 1, {}), ("tanh", 3, {}), ("sigmoid", 2, {}), ("relu", 2, {}),
    ("tanh", 2, {"inputs": ["u"], "time_dependent": True}),
]


def _scaled_field(activation, depth, kw):
    field = NeuralField(["x", "y"], width=5, depth=depth, activation=activation, seed=1,
                        **kw).to(D)
    field.set_scaling({"names": ["x", "y", "u"], "mean": [1.0, -2.0, 0.5],
                       "scale": [3.0, 0.5, 2.0], "time_scale": 4.0})
    with torch.no_grad():  # biases away from zero, so every term of the folding counts
        for layer in field.layers:
            layer.bias.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(7))
    return field, torch.tensor([2.5, 0.75], dtype=D)


@pytest.mark.parametrize("sigmoid_form", [True, False])
@pytest.mark.parametrize("activation, depth, kw", _WRITTEN_CASES + [("softplus", 2, {})])
def test_layers_transpose_is_the_gradient_of_the_folding(monkeypatch, sigmoid_form, activation,
                                                        depth, kw):
    import importlib

    # (the module: sysid.models.neural as an attribute is the constructor function)
    monkeypatch.setattr(importlib.import_module("sysid.models.neural"), "TANH_AS_SIGMOID",
                        sigmoid_form)
    field, unit = _scaled_field(activation, depth, kw)
    factors = field._fold_factors(unit)
    layers = field._layers(unit, factors)
    flat = [x for pair in layers for x in pair]
    for a, b in zip(flat, [x for pair in field._layers(unit) for x in pair]):
        assert torch.equal(a, b)  # the factors made once are those made at every call
    gen = torch.Generator().manual_seed(2)
    upstream = [torch.randn(x.shape, generator=gen, dtype=D) for x in flat]
    own = [p for layer in field.layers for p in (layer.weight, layer.bias)]
    expected = torch.autograd.grad(flat, own, upstream)
    got = field._layers_transpose(upstream, factors)
    for a, b in zip(got, expected):
        # the same linear map applied in another order (float64 rounding of a few products)
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("activation, depth, kw", _WRITTEN_CASES)
def test_written_backward_is_autograds_gradient(activation, depth, kw):
    field, unit = _scaled_field(activation, depth, kw)
    assert field._written_backward
    gen = torch.Generator().manual_seed(4)
    z = torch.randn(9, 2, generator=gen, dtype=D)
    u = torch.randn(9, 1, generator=gen, dtype=D) if field.input_names else None
    t = torch.linspace(0.0, 2.0, 9, dtype=D)
    target = torch.randn(9, 2, generator=gen, dtype=D)
    coef = torch.tensor([0.7, 1.9], dtype=D)
    leaves = [(w.detach().requires_grad_(), b.detach().requires_grad_())
              for w, b in field._layers(unit)]
    flat = [x for pair in leaves for x in pair]
    value = (coef * (field.network(t, z, u, leaves) - target).pow(2)).sum()
    expected = torch.autograd.grad(value, flat)
    with torch.no_grad():
        got_value, got = field._squared_error_gradient(
            [(w.detach(), b.detach()) for w, b in leaves], field._arguments(t, z, u), target, coef)
    # the same sums in another order (float64 rounding)
    assert float(got_value) == pytest.approx(float(value.detach()), rel=1e-13)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.is_contiguous()
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_activations_without_a_derivative_from_their_output_are_not_written():
    # softplus's derivative is sigmoid of its input, not a function of its output: autograd
    assert not NeuralField(["x"], width=3, depth=1, activation="softplus")._written_backward


@pytest.mark.parametrize("kw", [{}, {"arguments": ["y"], "outputs": ["x"], "time_dependent": True}])
def test_numpy_function_in_scaled_coordinates_is_the_field_of_the_scaled_states(kw):
    import numpy as np

    field = NeuralField(["x", "y"], width=6, depth=2, seed=5, **kw).to(D)
    field.set_scaling({"names": ["x", "y"], "mean": [1.0, -2.0], "scale": [3.0, 0.5],
                       "time_scale": 4.0})
    mean, scale = np.array([0.5, -1.0]), np.array([2.5, 0.75])
    plain, scaled = field.numpy_function(), field.numpy_function(coordinates=(mean, scale))
    z = np.random.default_rng(0).normal(size=(5, 2))
    t = np.linspace(0.0, 1.0, 5)
    out = field._out_idx.numpy()
    want = plain(t, mean + scale * z, None) / scale[out]
    # the same function, its scalings composed in another order (float64 rounding)
    np.testing.assert_allclose(scaled(t, z, None), want, rtol=1e-12, atol=1e-12)
