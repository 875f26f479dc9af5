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
