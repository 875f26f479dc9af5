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
