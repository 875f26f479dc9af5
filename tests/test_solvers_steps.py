"""The fixed-step loops (float step sizes on one grid, precomputed step columns on a grid per row)
give what stepping with ``rk_step`` one step at a time gives."""

from __future__ import annotations

import pytest
import torch

from sysid.solvers.steps import TABLEAUS, march, rk_step

D = torch.float64


def _rhs(t, z, u):
    return -0.7 * z + torch.sin(t)[..., None] * z.flip(-1) + (0.0 if u is None else u)


@pytest.mark.parametrize("method", sorted(TABLEAUS))
def test_one_grid_equals_per_row_grids(method):
    t = torch.tensor([0.0, 0.3, 0.35, 1.0, 2.2], dtype=D)
    counts = [2, 1, 3, 5]
    z0 = torch.tensor([[1.0, -0.5], [0.2, 0.3], [2.0, 1.0]], dtype=D)
    tab = TABLEAUS[method]
    one = torch.stack(march(_rhs, z0, t, counts, tab))
    rows = torch.stack(march(_rhs, z0, t.expand(3, -1), counts, tab))
    # the same steps; only the rounding of h * w differs (float vs tensor products)
    assert torch.allclose(one, rows, rtol=1e-13, atol=1e-14)
    assert one.shape == (5, 3, 2)
    # the reference: rk_step with tensor step sizes, one step at a time (the previous loop)
    tw = torch.stack([t, t * 1.5, t + 0.2])  # a grid per row
    z, ref = z0, [z0]
    for k, m in enumerate(counts):
        h = (tw[:, k + 1] - tw[:, k]) / m
        for j in range(m):
            z = rk_step(_rhs, tw[:, k] + (tw[:, k + 1] - tw[:, k]) * (j / m), h, z, tab)
        ref.append(z)
    got = torch.stack(march(_rhs, z0, tw, counts, tab))
    assert torch.allclose(got, torch.stack(ref), rtol=1e-13, atol=1e-14)


def test_one_grid_inputs_gap_index_and_gradients():
    t = torch.tensor([0.0, 0.5, 1.5], dtype=D)
    seen = []

    def inputs(tt, k):
        seen.append(k)
        return torch.full((2, 1), float(k + 1), dtype=D) * tt

    w = torch.tensor(0.4, dtype=D, requires_grad=True)
    z0 = torch.ones(2, 1, dtype=D)
    out = march(lambda s, z, u: -w * z + u, z0, t, [2, 3], TABLEAUS["rk4"], inputs=inputs)
    rows = march(lambda s, z, u: -w * z + u, z0, t.expand(2, -1), [2, 3], TABLEAUS["rk4"],
                 inputs=lambda tt, k: torch.full((2, 1), float(k + 1), dtype=D) * tt[:, None])
    assert sorted(set(seen)) == [0, 1]  # every stage is told its own sample gap
    assert torch.allclose(out[-1], rows[-1], rtol=1e-13)
    out[-1].sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad)


@pytest.mark.parametrize("rows", [False, True])
def test_checkpointed_segments_give_the_same_values_and_gradients(rows):
    w = torch.tensor([[0.3, -1.1], [0.9, -0.2]], dtype=D, requires_grad=True)

    def rhs(t, z, u):
        return torch.tanh(z @ w) - 0.1 * z

    t = torch.linspace(0.0, 3.0, 12, dtype=D)
    t = torch.stack([t, t * 1.2]) if rows else t
    z0 = torch.tensor([[1.0, 0.5], [-0.3, 0.8]], dtype=D)
    counts = [2] * 11
    results = []
    for checkpoint in (None, 1, 3, 5, 100):
        w.grad = None
        out = torch.stack(march(rhs, z0, t, counts, TABLEAUS["rk4"], checkpoint=checkpoint))
        out.pow(2).sum().backward()
        results.append((out.detach(), w.grad.clone()))
    for out, grad in results[1:]:
        # the same steps recomputed: identical forward values and gradients (rounding aside)
        assert out.shape == (12, 2, 2)
        assert torch.allclose(out, results[0][0], rtol=1e-14, atol=1e-15)
        assert torch.allclose(grad, results[0][1], rtol=1e-12, atol=1e-14)


def test_checkpoint_steps_is_for_fixed_steps_without_the_adjoint():
    from sysid.errors import ConfigError
    from sysid.solvers import SolverConfig

    assert SolverConfig(method="rk4", checkpoint_steps=50).checkpoint_steps == 50
    with pytest.raises(ConfigError, match="checkpoint_steps=50 applies to the torch fixed-step"):
        SolverConfig(method="dopri5", checkpoint_steps=50)
    with pytest.raises(ConfigError, match="with adjoint=True"):
        SolverConfig(method="rk4", adjoint=True, checkpoint_steps=50)
    with pytest.raises(ConfigError, match="checkpoint_steps must be an integer >= 1; got 0"):
        SolverConfig(method="rk4", checkpoint_steps=0)


def test_a_fit_with_checkpointed_windows_equals_the_direct_one():
    import numpy as np

    import sysid

    t = np.linspace(0.0, 6.0, 40)
    ds = sysid.from_arrays([t, t], {"x": [np.cos(t), 0.5 * np.cos(1.1 * t)],
                                    "v": [-np.sin(t), -0.55 * np.sin(1.1 * t)]}, states=["x", "v"])
    model = sysid.models.neural(["x", "v"], width=8, depth=1, seed=0)
    fits = []
    for steps in (None, 7):
        cfg = sysid.FitConfig(epochs=6, dtype="float64", progress=False, refine={"enabled": False},
                              warm_start={"epochs": 5}, shooting="single",
                              solver={"method": "rk4", "checkpoint_steps": steps})
        fits.append(sysid.fit(model, ds, cfg))
    a, b = (f.history["loss"].to_numpy() for f in fits)
    # the same gradients, so the same optimisation path (float64 rounding aside)
    assert np.allclose(a, b, rtol=1e-9) and len(a) == 6
