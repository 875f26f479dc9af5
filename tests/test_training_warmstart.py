"""The derivative warm start: its budget holds inside one evaluation over many rows (issue 17,
item 4), pieces give the full-batch objective, and a network's L-BFGS warm start lowers it.

Budget cases stop the work with a patched budget check or a limit of a fraction of a second and
assert the work done (calls of the field), never a wall-clock bound.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

import sysid
from sysid import budget
from sysid.training import FitConfig, StopReason, warmstart
from sysid.training.warmstart import regress_derivatives

D = torch.float64


class _Counted(nn.Module):
    """``dz/dt = a * z + b`` (float64) counting its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor([0.1], dtype=D))
        self.b = nn.Parameter(torch.tensor([0.0], dtype=D))
        self.calls = 0

    def forward(self, t, z, u):
        self.calls += 1
        return self.a * z + self.b


def _rows(n: int = 100):
    z = torch.linspace(-2.0, 2.0, n, dtype=D)[:, None]
    return torch.zeros(n, dtype=D), z, -0.7 * z + 0.3


def _stop_at(monkeypatch, n: int, exc: BaseException) -> list[int]:
    """Make the warm start's n-th budget check raise ``exc``; returns the call counter."""
    seen = [0]

    def check(where: str) -> None:
        seen[0] += 1
        if seen[0] >= n:
            raise exc

    monkeypatch.setattr(warmstart.time_budget, "check", check)
    return seen


def test_pieces_give_the_full_batch_objective():
    # the gradient accumulated over pieces of 7 rows is the one-piece gradient (to rounding)
    t, z, dz = _rows(100)
    results = []
    for rows in (1000, 7):
        f = _Counted()
        info = regress_derivatives(f, t, z, None, dz, epochs=20, lr=0.05, parameters=[f.a, f.b],
                                   use_lbfgs=False, method="adam", chunk_rows=rows)
        results.append((info["loss_after"], float(f.a.detach()), f.calls))
    (l1, a1, c1), (l2, a2, c2) = results
    assert l2 == pytest.approx(l1, rel=1e-12) and a2 == pytest.approx(a1, rel=1e-12)
    assert c2 == 15 * c1  # 100 rows in 15 pieces (14 of 7 rows, one of 2)


def test_max_time_stops_inside_one_evaluation_and_keeps_the_best_state(monkeypatch):
    t, z, dz = _rows(100)
    f = _Counted()
    # 10 pieces per evaluation: the start value (10 checks), 5 Adam steps (50 checks), then the
    # budget runs out 3 pieces into the 6th step's evaluation
    _stop_at(monkeypatch, 63, budget.BudgetExceeded("spent"))
    info = regress_derivatives(f, t, z, None, dz, epochs=10**6, lr=0.05, parameters=[f.a, f.b],
                               use_lbfgs=True, chunk_rows=10)
    assert f.calls == 62  # stopped between two pieces, not at the end of an evaluation
    assert "max_time" in info["note"] and info["evaluations"] == 5
    assert info["loss_after"] < info["loss_before"]
    # the parameters are the best state seen, whose objective is the one reported
    with torch.no_grad():
        err = f(t, z, None) - dz
        value = float((err.pow(2) / dz.pow(2).mean(dim=0)).mean())
    assert value == pytest.approx(info["loss_after"], rel=1e-12)


def test_ctrl_c_inside_an_evaluation_propagates(monkeypatch):
    t, z, dz = _rows(100)
    f = _Counted()
    _stop_at(monkeypatch, 15, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        regress_derivatives(f, t, z, None, dz, epochs=100, lr=0.05, parameters=[f.a, f.b],
                            use_lbfgs=False, method="lbfgs", chunk_rows=10)
    assert f.calls == 14


def _data():
    t = np.linspace(0.0, 10.0, 30)
    return sysid.from_arrays([t, t], {"x": [np.sin(t), 0.5 * np.sin(t + 1)],
                                      "v": [np.cos(t), 0.5 * np.cos(t + 1)]}, states=["x", "v"])


def test_fit_max_time_inside_a_slow_warm_start_evaluation(monkeypatch):
    # one warm-start evaluation takes longer than max_time (15 pieces of 4 rows, 50 ms each):
    # the fit stops inside it with the model as it was and a usable result
    from sysid.training import loss

    plain = loss.ScaledRhs.forward
    calls = [0]

    def slow(self, t, z, u):
        if z.shape[0] <= 4:  # the warm start's pieces (the rollouts have other batch sizes)
            calls[0] += 1
            time.sleep(0.05)
        return plain(self, t, z, u)

    monkeypatch.setattr(loss.ScaledRhs, "forward", slow)
    monkeypatch.setattr(warmstart, "CHUNK_ROWS", 4)
    model = sysid.models.neural(["x", "v"], width=4, depth=1, seed=0)
    cfg = FitConfig(epochs=5, max_time=0.3, progress=False, dtype="float64",
                    warm_start={"epochs": 10**6, "method": "adam"},
                    refine={"enabled": False, "stderr": False})
    result = sysid.fit(model, _data(), cfg)
    assert result.stopped_reason == StopReason.MAX_TIME
    assert "max_time" in result.solver_stats["warm_start"]["note"]
    assert calls[0] < 15  # not even the first evaluation over the 60 rows was completed
    sim = sysid.simulate(result.model, _data().isel(trajectory=[0]))
    assert np.isfinite(sim["x"].values).all()


def test_lbfgs_warm_start_lowers_the_objective():
    # method="lbfgs": L-BFGS to its plateau, within the evaluation cap
    model = sysid.models.neural(["x", "v"], width=8, depth=1, seed=0)
    cfg = FitConfig(epochs=1, progress=False, dtype="float64", refine={"enabled": False},
                    warm_start={"method": "lbfgs"})
    ws = sysid.fit(model, _data(), cfg).solver_stats["warm_start"]
    assert ws["method"] == "lbfgs" and 0 < ws["evaluations"] <= 300
    # the smoothed derivatives of sin/cos are matched far better than by the untrained network
    assert ws["loss_after"] < 0.05 * ws["loss_before"]


def test_plateau_stops_adam_when_the_objective_levels_off():
    # a line through wiggly data: the objective levels off at the wiggles' share, then 25 steps
    # gain less than half of it; plateau=0 runs every step
    t, z, dz = _rows(50)
    dz = dz + 0.3 * torch.sin(37.0 * z)
    evals = {}
    for plateau in (0.0, 0.5):
        f = _Counted()
        info = regress_derivatives(f, t, z, None, dz, epochs=400, lr=0.05, parameters=[f.a, f.b],
                                   use_lbfgs=False, plateau=plateau)
        evals[plateau] = info["evaluations"]
    assert evals[0.0] == 400
    assert evals[0.5] < 400 and evals[0.5] % 25 == 1  # stopped at a check (step 25 k, evaluated)


@pytest.mark.parametrize("settings, message", [
    ({"plateau": 1.0}, r"WarmStart: plateau must lie in \[0, 1\); got 1.0"),
    ({"plateau": "x"}, r"WarmStart: plateau must lie in \[0, 1\)"),
    ({"method": "sgd"}, r"WarmStart: method must be one of"),
])
def test_warm_start_settings_are_checked(settings, message):
    from sysid.errors import ConfigError
    from sysid.training.config import WarmStart

    with pytest.raises(ConfigError, match=message):
        WarmStart(**settings)


def test_fields_with_physics_parameters_run_every_warm_start_step():
    # the plateau stop is for networks; a physics field's warm start is its direct estimate
    model = sysid.models.physics("logistic", free=["r"], values={"K": 10.0, "r": 0.3})
    t = np.linspace(0.0, 10.0, 12)
    data = sysid.from_arrays([t], {"N": [10.0 / (1.0 + 9.0 * np.exp(-0.8 * t))]}, states=["N"])
    cfg = FitConfig(epochs=1, progress=False, dtype="float64", warm_start={"epochs": 60},
                    refine={"enabled": False, "stderr": False})
    ws = sysid.fit(model, data, cfg).solver_stats["warm_start"]
    assert ws["method"] == "adam" and ws["evaluations"] >= 60  # 60 Adam steps, then L-BFGS


def test_fused_adam_takes_the_multi_tensor_steps(monkeypatch):
    # the warm start's fused Adam update is the same arithmetic as the multi-tensor one (float64:
    # only the order of a few operations differs, ~1e-16 per step over 60 steps)
    t, z, dz = _rows(80)
    dz = dz + 0.3 * torch.sin(3.0 * z)
    results = {}
    calls = []
    for name in ("fused", "foreach"):
        real = warmstart.adam_update

        def update(*args, real=real, name=name, **kw):
            calls.append((name, kw["fused"]))
            if name == "foreach":
                kw.update(fused=False, foreach=True)
            return real(*args, **kw)

        monkeypatch.setattr(warmstart, "adam_update", update)
        net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
        torch.manual_seed(0)
        for p in net.parameters():
            nn.init.normal_(p, std=0.5)
        f = lambda tt, zz, u: net(zz)  # noqa: E731
        info = regress_derivatives(f, t, z, None, dz, epochs=60, lr=0.05,
                                   parameters=list(net.parameters()), use_lbfgs=False)
        assert info["loss_after"] < 0.5 * info["loss_before"]  # it did learn something
        results[name] = (info["loss_after"], torch.cat([p.detach().ravel() for p in net.parameters()]))
    assert calls.count(("fused", True)) == 60 and calls.count(("foreach", True)) == 60
    assert results["fused"][0] == pytest.approx(results["foreach"][0], rel=1e-10)
    assert torch.allclose(results["fused"][1], results["foreach"][1], rtol=1e-9, atol=1e-12)


def test_warm_start_takes_torch_adams_steps():
    # the update through torch's functional adam with the state kept by the warm start is
    # torch.optim.Adam's (its defaults), step for step with the same cosine-decayed rate
    t, z, dz = _rows(50)
    dz = dz + 0.3 * torch.sin(3.0 * z)
    nets = []
    for _ in range(2):
        torch.manual_seed(1)
        nets.append(nn.Sequential(nn.Linear(1, 6), nn.Tanh(), nn.Linear(6, 1)).double())
    mine, ref = nets
    regress_derivatives(lambda tt, zz, u: mine(zz), t, z, None, dz, epochs=30, lr=0.05,
                        parameters=list(mine.parameters()), use_lbfgs=False)
    opt = torch.optim.Adam(ref.parameters(), lr=0.05)
    weight = 1.0 / dz.pow(2).mean(dim=0)
    best, best_state = float("inf"), None
    for step in range(30):
        opt.zero_grad()
        loss = ((ref(z) - dz).pow(2) * weight).mean()
        loss.backward()
        if float(loss.detach()) < best:
            best, best_state = float(loss.detach()), [p.detach().clone() for p in ref.parameters()]
        opt.step()
        for g in opt.param_groups:
            g["lr"] = 0.05 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * (step + 1) / 30)))
    last = float(((ref(z) - dz).pow(2) * weight).mean().detach())
    if last < best:
        best_state = [p.detach().clone() for p in ref.parameters()]
    for a, b in zip(mine.parameters(), best_state):
        # float64; the fused kernel rounds a few operations differently
        torch.testing.assert_close(a.detach(), b, rtol=1e-10, atol=1e-12)


def _network_rhs():
    from sysid.models.neural import NeuralField
    from sysid.training.loss import ScaledRhs

    field = NeuralField(["x", "y"], width=8, depth=2, seed=0).to(D)
    mean, scale = torch.tensor([1.0, -1.0], dtype=D), torch.tensor([2.0, 0.5], dtype=D)
    field.set_scaling({"names": ["x", "y"], "mean": mean.tolist(), "scale": [1.5, 0.7],
                       "time_scale": 2.0})
    return field, ScaledRhs(field, mean, scale)


@pytest.mark.parametrize("rows, frozen, method", [
    (1000, False, "adam"), (7, False, "adam"), (1000, True, "adam"), (1000, False, "lbfgs")])
def test_written_backward_takes_autograds_steps(monkeypatch, rows, frozen, method):
    # a network on the scaled states gets its gradient without autograd (_WrittenBackward):
    # the same steps as autograd's, over one piece or many, with a frozen layer left alone
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(60, 2, generator=gen, dtype=D)
    dz = torch.stack([z[:, 1], -torch.sin(z[:, 0])], dim=1)
    t = torch.zeros(60, dtype=D)
    results, used = {}, []
    real_gradient = warmstart._WrittenBackward.gradient

    def spy(self):
        used.append(1)
        return real_gradient(self)

    monkeypatch.setattr(warmstart._WrittenBackward, "gradient", spy)
    for name in ("written", "autograd"):
        if name == "autograd":
            monkeypatch.setattr(warmstart._WrittenBackward, "of",
                                classmethod(lambda cls, *args: None))
        field, rhs = _network_rhs()
        if frozen:
            field.layers[1].weight.requires_grad_(False)
        params = [p for p in field.parameters() if p.requires_grad]
        before = field.layers[1].weight.detach().clone()
        info = regress_derivatives(rhs, t, z, None, dz, epochs=40, lr=0.02, parameters=params,
                                   use_lbfgs=False, chunk_rows=rows, method=method)
        assert info["loss_after"] < 0.5 * info["loss_before"]  # it learned
        assert torch.equal(field.layers[1].weight, before) == frozen
        results[name] = (info, [p.detach().clone() for p in field.parameters()])
        if name == "written":  # the written path took every evaluation (40 Adam steps)
            assert len(used) == info["evaluations"] and (method != "adam" or len(used) == 40)
    (wi, wp), (ai, ap) = results["written"], results["autograd"]
    # float64: the same sums in another order
    assert wi["loss_after"] == pytest.approx(ai["loss_after"], rel=1e-10)
    for a, b in zip(wp, ap):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_written_backward_applies_only_to_a_network_of_its_own():
    field, rhs = _network_rhs()
    t, z = torch.zeros(5, dtype=D), torch.zeros(5, 2, dtype=D)
    pieces = [(t, z, None, z)]
    coef = torch.ones(2, dtype=D)
    own = list(field.parameters())
    assert warmstart._WrittenBackward.of(rhs, pieces, coef, own, None) is not None
    other = nn.Parameter(torch.zeros(1, dtype=D))  # a parameter outside the network
    assert warmstart._WrittenBackward.of(rhs, pieces, coef, own + [other], None) is None
    assert warmstart._WrittenBackward.of(rhs, pieces, coef, own, lambda: other.sum()) is None
    assert warmstart._WrittenBackward.of(_Counted(), pieces, coef, own, None) is None
