"""A fit's held-out checks: the NumPy rollout of the held-out runs gives the torch rollout's
NRMSE (within the rounding of the fit's dtype), falls back to torch where it does not apply,
and a failed rollout is inf as before."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sysid.data import from_arrays
from sysid.errors import SolverError
from sysid.models import Model, VectorField, neural, physics
from sysid.solvers import steps
from sysid.solvers.steps import TABLEAUS, march, march_numpy
from sysid.systems import make_dataset
from sysid.training import FitConfig, engine, fit, stats

D = torch.float64


def _rhs_torch(t, z, u):
    return -0.7 * z + torch.sin(t)[..., None] * z.flip(-1)


def _rhs_numpy(t, z):
    return -0.7 * z + np.sin(t)[..., None] * z[..., ::-1]


@pytest.mark.parametrize("method", sorted(TABLEAUS))
def test_march_numpy_equals_the_torch_march(method):
    tw = torch.tensor([[0.0, 0.3, 0.35, 1.0, 2.2], [0.0, 0.45, 0.5, 1.5, 3.3],
                       [0.2, 0.5, 0.55, 1.2, 1.2]], dtype=D)  # a grid per row; a zero gap last
    z0 = torch.tensor([[1.0, -0.5], [0.2, 0.3], [2.0, 1.0]], dtype=D)
    tab = TABLEAUS[method]
    want = torch.stack(march(_rhs_torch, z0, tw, [3] * 4, tab), dim=1).numpy()
    got = march_numpy(_rhs_numpy, z0.numpy(), tw.numpy(), 3, tab)
    # the same float64 steps; only the order of the additions differs
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert got.shape == (3, 5, 2)
    np.testing.assert_array_equal(got[2, 4], got[2, 3])  # a zero gap keeps the state


@pytest.mark.parametrize("method", sorted(TABLEAUS))
@pytest.mark.parametrize("substeps", [1, 3])
@pytest.mark.parametrize("shared", [False, True])
def test_march_numpy_with_the_field_in_place_takes_the_same_steps(monkeypatch, method, substeps,
                                                                 shared):
    calls, paths = [], []
    tw = np.array([[0.0, 0.3, 0.35, 1.0, 2.2], [0.0, 0.45, 0.5, 1.5, 3.3],
                   [0.2, 0.5, 0.55, 1.2, 1.2]])  # a grid per row; a zero gap last
    if shared:  # the same steps in every row (another path: one block [z; k_1; ...])
        tw = np.array([[0.0, 0.25, 0.375, 1.0, 1.0], [1.0, 1.25, 1.375, 2.0, 2.0],
                       [0.5, 0.75, 0.875, 1.5, 1.5]])  # (differences exact in binary)
        real = steps._march_shared
        monkeypatch.setattr(steps, "_march_shared",
                            lambda *a, **k: paths.append("shared") or real(*a, **k))
    z0 = np.array([[1.0, -0.5], [0.2, 0.3], [2.0, 1.0]])

    def into(t, z, out):
        calls.append(t.copy())
        out[...] = _rhs_numpy(t, z)

    tab = TABLEAUS[method]
    want = march_numpy(_rhs_numpy, z0, tw, substeps, tab)
    got = march_numpy(_rhs_numpy, z0, tw, substeps, tab, into=into)
    assert paths == (["shared"] if shared else [])
    # the same float64 steps; the update is one product with b (another order of additions)
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
    assert len(calls) == len(tab.c) * substeps * 4  # every stage went through ``into``
    np.testing.assert_array_equal(got[2, 4], got[2, 3])  # a zero gap keeps the state


def test_march_numpy_autonomous_passes_no_time():
    seen = []

    def f(t, z):
        seen.append(t)
        return -z

    t = np.array([[0.0, 0.5, 1.0]])
    z = march_numpy(f, np.ones((1, 1)), t, 4, TABLEAUS["rk4"], autonomous=True)
    assert set(seen) == {None}
    assert abs(z[0, -1, 0] - math.exp(-1.0)) < 1e-5  # 8 rk4 steps of 1/8: error ~1e-7


def _lv(n_runs=3, n_obs=40, seed=0):
    return make_dataset("lotka_volterra", n_runs=n_runs, n_obs=n_obs, noise=0.0, y0="random",
                        seed=seed)


def _held_out(model, cfg, data=None, val=None):
    data = _lv() if data is None else data
    ctx = engine._setup(model, data, cfg, _lv(seed=1) if val is None else val)
    return ctx, stats.HeldOut(ctx.rhs, ctx.val, ctx.spec, ctx.cfg, ctx.counter)


def _both(held, monkeypatch, substeps=1):
    """(NumPy NRMSE, torch NRMSE, evaluations counted by each)."""
    counter = held.problem.counter
    before = counter.nfe
    fast = held.nrmse(substeps)
    n_fast = counter.nfe - before
    monkeypatch.setattr(stats, "NUMPY_ROWS", 0)
    slow = held.nrmse(substeps)
    monkeypatch.undo()
    return fast, slow, n_fast, counter.nfe - before - n_fast


@pytest.mark.parametrize("dtype, rtol, activation, timed", [
    ("float64", 1e-10, "tanh", False), ("float32", 1e-4, "tanh", False),
    ("float64", 1e-10, "softplus", True)])
def test_numpy_rollout_gives_the_torch_nrmse(dtype, rtol, activation, timed, monkeypatch):
    # a trained-looking network: weights large enough that the field is far from zero
    model = neural(["prey", "predator"], width=16, depth=2, seed=3, activation=activation,
                   time_dependent=timed)
    with torch.no_grad():
        model.field.layers[-1].weight.mul_(30.0)
    _, held = _held_out(model, FitConfig(dtype=dtype, progress=False))
    held.problem.substeps = 2
    assert stats.numpy_rollout(held.problem, held.windows) is not None  # the NumPy path applies
    fast, slow, n_fast, n_slow = _both(held, monkeypatch, substeps=2)
    assert math.isfinite(fast) and fast > 0.05  # a real misfit, not a trivial zero
    # float64: the same steps in another order of additions; float32: the torch rollout rounds
    # every step to 7 digits over 78 steps, NumPy's to 16
    assert fast == pytest.approx(slow, rel=rtol)
    assert n_fast == n_slow == 4 * 2 * 39  # rk4 stages x substeps x sample gaps (3 runs at once)


def test_physics_field_goes_through_its_numpy_copy(monkeypatch):
    model = physics("lotka_volterra", values={"a": 1.3, "b": 0.5, "c": 0.9, "d": 0.1})
    cfg = FitConfig(dtype="float64", progress=False)
    _, held = _held_out(model, cfg)
    calls = []
    real = type(model.field).numpy_function

    def spy(self):
        calls.append(1)
        return real(self)

    monkeypatch.setattr(type(model.field), "numpy_function", spy)
    fast = held.nrmse(1)
    monkeypatch.undo()
    assert calls == [1]
    monkeypatch.setattr(stats, "NUMPY_ROWS", 0)
    assert fast == pytest.approx(held.nrmse(1), rel=1e-10)


class _Field(VectorField):
    """A two-state test field of one parameter ``k``: ``torch_fn(k, x)`` and its NumPy copy
    ``numpy_fn(k, x)`` (which a test may make wrong on purpose)."""

    def __init__(self, k, torch_fn, numpy_fn):
        super().__init__()
        self._init_names("test", ["x", "y"], [], None, None, None, "s")
        self.k = nn.Parameter(torch.tensor(k, dtype=D))
        self._torch_fn, self._numpy_fn = torch_fn, numpy_fn

    def forward(self, t, x, u=None):
        return self._torch_fn(self.k, x)

    def numpy_function(self):
        k = float(self.k.detach())
        return lambda t, x, u: self._numpy_fn(k, x)

    def spec(self):
        return {"type": "test"}


def _wrong_copy():
    """Rotation at k = 0.3 whose NumPy copy is twice the torch field."""
    return _Field(0.3, lambda k, x: torch.stack([-k * x[:, 1], k * x[:, 0]], dim=-1),
                  lambda k, x: 2.0 * np.stack([-k * x[:, 1], k * x[:, 0]], axis=-1))


def _quadratic():
    """``dx/dt = k x^2`` (both states, k = 50): blows up in finite time; a correct NumPy copy."""
    return _Field(50.0, lambda k, x: k * x * x, lambda k, x: k * x * x)


def _circle(n_runs, seed):
    """Runs on circles around (0, 1) (the true field rotates at 0.3 rad per time unit)."""
    t = np.linspace(0.0, 5.0, 30)
    r0 = np.random.default_rng(seed).uniform(0.5, 2.0, n_runs)
    return from_arrays([t] * n_runs, {"x": [r * np.cos(0.3 * t) for r in r0],
                                      "y": [1.0 + r * np.sin(0.3 * t) for r in r0]},
                       states=["x", "y"])


def test_a_field_whose_numpy_copy_disagrees_keeps_the_torch_rollout(monkeypatch):
    cfg = FitConfig(dtype="float64", progress=False)
    _, held = _held_out(Model(_wrong_copy()), cfg, _circle(3, 0), _circle(2, 1))
    assert stats.numpy_rollout(held.problem, held.windows) is None
    fast, slow, _, _ = _both(held, monkeypatch)
    assert fast == slow  # both through torch


def test_the_copy_is_compared_with_the_torch_field_at_the_first_check_only(monkeypatch):
    # the NumPy copy's structure does not change during a fit: once it agreed, later checks
    # skip the comparison (one torch evaluation at the initial states per check)
    _, held = _held_out(neural(["prey", "predator"], width=8, depth=1, seed=0),
                        FitConfig(dtype="float64", progress=False))
    calls = []
    real = type(held.rhs).forward

    def spy(self, t, z, u):
        calls.append(1)
        return real(self, t, z, u)

    monkeypatch.setattr(type(held.rhs), "forward", spy)
    first = held.nrmse(1)
    assert calls == [1]  # the comparison of the copy at the initial states
    assert held.nrmse(1) == first and calls == [1]  # same weights, same value, no comparison
    # a wrong copy is refused with the comparison and taken without it (so it is made only
    # when an earlier check of the same field agreed)
    _, wrong = _held_out(Model(_wrong_copy()), FitConfig(dtype="float64", progress=False),
                         _circle(3, 0), _circle(2, 1))
    assert stats.numpy_rollout(wrong.problem, wrong.windows) is None
    assert stats.numpy_rollout(wrong.problem, wrong.windows, verify=False) is not None


@pytest.mark.parametrize("setting", ["adaptive", "rows"])
def test_adaptive_solvers_and_many_runs_keep_the_torch_rollout(setting, monkeypatch):
    model = neural(["prey", "predator"], width=8, depth=1, seed=0)
    cfg = FitConfig(dtype="float64", progress=False,
                    solver="dopri5" if setting == "adaptive" else "rk4")
    _, held = _held_out(model, cfg)
    if setting == "rows":
        monkeypatch.setattr(stats, "NUMPY_ROWS", 1)  # 2 held-out runs: above the limit
    assert stats.numpy_rollout(held.problem, held.windows) is None


def test_a_rollout_that_blows_up_is_inf_on_both_paths(monkeypatch):
    cfg = FitConfig(dtype="float64", progress=False)
    _, held = _held_out(Model(_quadratic()), cfg, _circle(3, 0), _circle(2, 1))
    with pytest.raises(SolverError, match="non-finite states near t="):  # the NumPy path
        stats.numpy_rollout(held.problem, held.windows)
    fast, slow, _, _ = _both(held, monkeypatch)
    assert fast == slow == math.inf


def test_a_fit_checks_and_stops_at_its_target_as_with_the_torch_rollout(monkeypatch):
    # float64: the NumPy checks give the torch checks' history to rounding, so the same best
    # model and the same stop at the target (set between the first and the best value seen)
    data, val = _lv(n_runs=3, n_obs=30), _lv(n_runs=2, n_obs=30, seed=1)
    cfg = dict(epochs=12, dtype="float64", progress=False, refine={"enabled": False, "stderr": False},
               warm_start={"epochs": 20})

    def run(target=None, rows=stats.NUMPY_ROWS):
        monkeypatch.setattr(stats, "NUMPY_ROWS", rows)
        model = neural(["prey", "predator"], width=8, depth=1, seed=0)
        v = {"every": 2, "target": target}
        return fit(model, data, FitConfig(**cfg, validation=v), validation=val)

    fast, slow = run(), run(rows=0)
    a, b = fast.history["val_nrmse"].to_numpy(), slow.history["val_nrmse"].to_numpy()
    assert np.isfinite(a[1::2]).all() and np.isnan(a[0::2]).all()  # checks at epochs 2, 4, ...
    np.testing.assert_allclose(a, b, rtol=1e-9)
    assert fast.best_epoch == slow.best_epoch
    first, best = a[1], np.nanmin(a)
    assert best < first  # training improved the held-out fit, so a target between them is met
    target = 0.5 * (first + best)
    hit = int(fast.history["epoch"][fast.history["val_nrmse"] <= target].iloc[0])
    stopped = run(target)
    assert stopped.stopped_reason == "target_reached"
    assert int(stopped.history["epoch"].max()) == hit  # at the first check at or below it
