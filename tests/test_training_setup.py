"""The vectorised fit setup gives what the per-run, per-state computation gave.

``smooth_runs`` once looped over runs and states calling ``local_polynomial``; it now fits every
window of every run and state at once (a shared filter for fully measured windows, a weighted fit
for windows with gaps). ``make_windows`` once looped over runs. Both must give the same numbers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sysid.data.smoothing import local_polynomial, smooth_runs
from sysid.training.windows import make_windows


def _loop(t, y, mask, lengths, points):
    """The previous ``smooth_runs``: one ``local_polynomial`` per run and state."""
    R, N, S = y.shape
    val, d1, d2 = (np.full((R, N, S), np.nan) for _ in range(3))
    for r in range(R):
        n = int(lengths[r])
        for j in range(S):
            v, a, _ = local_polynomial(t[r, :n], y[r, :n, j], mask[r, :n, j], points, 2)
            _, _, c = local_polynomial(t[r, :n], y[r, :n, j], mask[r, :n, j],
                                       points + points // 2 * 2, 3)
            val[r, :n, j], d1[r, :n, j], d2[r, :n, j] = v, a, c
    return val, d1, d2


def _runs(seed=1):
    """Regular and irregular grids, runs shorter than a window (1, 2, 5 samples), gaps."""
    rng = np.random.default_rng(seed)
    lengths = np.array([40, 1, 2, 5, 12, 30, 40])
    R, N, S = len(lengths), 40, 3
    t = np.full((R, N), np.nan)
    y = np.full((R, N, S), np.nan)
    m = np.zeros((R, N, S), bool)
    for r, n in enumerate(lengths):
        t[r, :n] = np.sort(rng.uniform(0, 5, n)) if r % 2 else 0.5 + np.arange(n) * 0.1
        y[r, :n] = np.sin(t[r, :n, None] * [1.0, 2.0, 3.0]) + 0.01 * rng.standard_normal((n, S))
        m[r, :n] = rng.uniform(size=(n, S)) > (0.3 if r > 3 else 0.0)
    m[-1, 10:30, 1] = False  # a long gap
    return t, np.where(m, y, np.nan), m, lengths


@pytest.mark.parametrize("points", [3, 6, 7, 9])
def test_vectorised_smoothing_equals_the_per_run_loop(points):
    t, y, m, lengths = _runs()
    for old, new in zip(_loop(t, y, m, lengths, points), smooth_runs(t, y, m, lengths, points)):
        # NaN exactly where the loop had NaN (padding, windows with too few samples)
        assert np.array_equal(np.isnan(old), np.isnan(new))
        ok = np.isfinite(old)
        # the same least-squares fits solved in another order: equal to rounding (values are
        # O(1), second derivatives of the irregular grid up to ~1e2)
        assert np.allclose(new[ok], old[ok], rtol=1e-9, atol=1e-9)


def test_smoothing_without_second_derivatives():
    t, y, m, lengths = _runs()
    v, a, b = smooth_runs(t, y, m, lengths, 7, second=False)
    v2, a2, _ = smooth_runs(t, y, m, lengths, 7)
    assert np.isnan(b).all()
    assert np.array_equal(v, v2, equal_nan=True) and np.array_equal(a, a2, equal_nan=True)


def test_smoothing_of_nothing():
    v, a, b = smooth_runs(np.zeros((2, 0)), np.zeros((2, 0, 1)), np.zeros((2, 0, 1), bool),
                          np.array([0, 0]), 7)
    assert v.shape == a.shape == b.shape == (2, 0, 1)


def test_windows_equal_the_per_run_construction():
    lengths = torch.tensor([4, 3, 1, 0, 7, 2])
    for horizon, stride in [(3, 1), (3, 2), (5, 3), (2, 7)]:
        w = make_windows(lengths, horizon, stride)
        runs, starts = [], []
        for r, n in enumerate(lengths.tolist()):
            s = list(range(0, max(n - 1, 0), stride))
            runs += [r] * len(s)
            starts += s
        assert w.run.tolist() == runs and w.start.tolist() == starts
        raw = torch.tensor(starts)[:, None] + torch.arange(horizon)
        last = (lengths[torch.tensor(runs)] - 1)[:, None]
        assert torch.equal(w.valid, raw <= last) and torch.equal(w.idx, torch.minimum(raw, last))


class _FailingBackward(torch.autograd.Function):
    """Identity whose backward raises a SolverError the first ``fails`` times (an adjoint solve
    that runs out of steps inside ``loss.backward()``)."""

    fails = 0

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        from sysid.errors import SolverError

        if _FailingBackward.fails > 0:
            _FailingBackward.fails -= 1
            raise SolverError("the adjoint ran out of steps (test)", t_reached=0.0)
        return g


def _decay(t, x, u, p, xp):
    return xp.stack([_FailingBackward.apply(-p["k"] * x[..., 0])])


def test_a_failure_in_the_backward_pass_is_rolled_back():
    import sysid
    from sysid.models import Parameter

    t = np.linspace(0.0, 4.0, 21)
    ds = sysid.from_arrays([t], {"x": [3.0 * np.exp(-0.7 * t)]}, states=["x"])
    model = sysid.models.physics(_decay, {"k": Parameter(0.3, bounds=(0.01, 10.0))}, states=["x"])
    cfg = sysid.FitConfig(epochs=30, loss="sse", progress=False, warm_start={"enabled": False},
                          refine={"enabled": False}, dtype="float64", optimizer={"lr": 0.1},
                          shooting="single")  # (auto would test the start's gradient first)
    _FailingBackward.fails = 2
    res = sysid.fit(model, ds, cfg)  # before: the SolverError escaped from fit
    events = res.history["event"].astype(str)
    rollbacks = events[events.str.startswith("rollback")]
    assert len(rollbacks) == 2 and rollbacks.str.contains("backward pass").all()
    assert res.stopped_reason == "completed"
    # the fit went on after the rollbacks (at a quarter of the learning rate) and moved the rate
    # from its start 0.3 towards the truth 0.7
    assert res.parameters.set_index("name").loc["k", "value"] > 0.4


def test_gradient_checkpointing_lowers_the_fit_memory_estimate():
    import sysid
    from sysid.errors import ConfigError
    from sysid.training import engine

    t = np.linspace(0.0, 20.0, 2000)
    ds = sysid.from_arrays([t], {"x": [np.cos(t)], "v": [-np.sin(t)]}, states=["x", "v"])
    model = sysid.models.neural(["x", "v"], width=8, depth=1, seed=0)

    def cfg(steps):
        return sysid.FitConfig(epochs=1, progress=False, shooting="single",
                               solver={"method": "rk4", "checkpoint_steps": steps})

    # one window of 1999 rk4 steps keeps ~8000 field evaluations for the backward pass
    # (~2 MB estimated here); with segments of 50 steps only 200 of them are held at once
    with sysid.budget.limits(memory_gb=0.5 / 1024):
        with pytest.raises(ConfigError, match="would need about"):
            engine._setup(model, ds, cfg(None), None)
        ctx = engine._setup(model, ds, cfg(50), None)
    assert ctx.cfg.solver.checkpoint_steps == 50
