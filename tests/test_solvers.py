"""The one solver layer (sysid.solvers): settings, the shared fixed-step stepper, the SciPy guard."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sysid.errors import ConfigError, DataError, SolverError
from sysid.solvers import (
    SolverConfig,
    check_times,
    default_solver,
    solve,
    solve_scipy,
    solve_windows,
    solver_from,
)

D = torch.float64


def test_one_settings_object_for_every_verb():
    assert default_solver("fit") == SolverConfig(method="rk4", rtol=1e-4, atol=1e-6, max_steps=10_000)
    assert default_solver("simulate") == SolverConfig()
    assert default_solver("analysis").method == "RK45" and default_solver("analysis").rtol == 1e-8
    # a method name keeps the verb's other defaults; a mapping (a TOML table) replaces keys
    assert solver_from("dopri5", "fit") == SolverConfig(method="dopri5", rtol=1e-4, atol=1e-6, max_steps=10_000)
    assert solver_from({"rtol": 1e-3}, "analysis") == SolverConfig(method="RK45", rtol=1e-3, atol=1e-10)
    assert solver_from(None, "simulate") is default_solver("simulate")
    cfg = SolverConfig(method="Radau", max_step=0.5)
    assert (cfg.backend, cfg.adaptive, cfg.implicit) == ("scipy", True, True)
    assert SolverConfig.from_dict(cfg.to_dict()) == cfg
    assert (SolverConfig(method="rk4").backend, SolverConfig(method="rk4").adaptive) == ("torch", False)


def test_settings_are_checked_against_the_method_family():
    with pytest.raises(ConfigError, match=r"unknown method 'rk45'; .* SciPy methods \['RK45', 'RK23'"):
        SolverConfig(method="rk45")
    with pytest.raises(ConfigError, match=r"Adams methods assume equal steps"):
        SolverConfig(method="explicit_adams")
    with pytest.raises(ConfigError, match=r"step=0.1 applies to torch fixed-step methods; SciPy's 'RK45'"):
        SolverConfig(method="RK45", step=0.1)
    with pytest.raises(ConfigError, match=r"adjoint=True needs a torch method; SciPy's 'BDF'"):
        SolverConfig(method="BDF", adjoint=True)
    with pytest.raises(ConfigError, match=r"max_step applies to SciPy methods"):
        SolverConfig(method="dopri5", max_step=1.0)
    with pytest.raises(ConfigError, match=r"max_step must be a positive number; got 0"):
        SolverConfig(method="LSODA", max_step=0)
    with pytest.raises(ConfigError, match=r"substeps must be an integer >= 1; got 0"):
        SolverConfig(substeps=0)
    with pytest.raises(ConfigError, match=r"default_solver: verb must be one of \['fit', 'simulate'"):
        default_solver("train")
    with pytest.raises(ConfigError, match=r"fit: solver must be a SolverConfig, a method name or a table"):
        solver_from(3, "fit")


def test_times_raise_one_error_type_everywhere():
    with pytest.raises(DataError, match=r"f: times must be strictly increasing; times\[2\] = 0.5 follows"):
        check_times([0.0, 1.0, 0.5], "f")
    with pytest.raises(DataError, match=r"f: t must be finite; t\[1\] is nan"):
        check_times([0.0, np.nan], "f", name="t")
    with pytest.raises(DataError, match=r"at least 2 output times"):
        check_times([0.0], "f", minimum=2)
    # the torch and SciPy integrators run the same check
    with pytest.raises(DataError, match="strictly increasing"):
        solve(lambda t, y: -y, torch.ones(1, dtype=D), torch.tensor([0.0, 0.0], dtype=D))
    with pytest.raises(DataError, match="strictly increasing"):
        solve_scipy(lambda t, y: -y, [1.0], [1.0, 0.0])


def _decay_error(method: str, n: int) -> float:
    t = torch.linspace(0.0, 1.0, n + 1, dtype=D)
    y = solve(lambda s, y: -y, torch.ones(1, dtype=D), t, SolverConfig(method=method))
    return abs(float(y[-1, 0]) - math.exp(-1.0))


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2), ("heun2", 2), ("heun3", 3),
                                           ("rk4", 4)])
def test_each_explicit_tableau_has_its_order(method, order):
    # halving the step divides the global error by ~2^order (y' = -y on [0, 1], 16 -> 32 steps)
    ratio = _decay_error(method, 16) / _decay_error(method, 32)
    assert 2 ** order * 0.85 < ratio < 2 ** order * 1.15


class _Oscillator(nn.Module):
    def forward(self, t, z, u):
        return torch.stack([z[:, 1], -z[:, 0]], dim=-1)


@pytest.mark.parametrize("method, atol", [("midpoint", 3e-3), ("heun3", 1e-4), ("rk4", 1e-6)])
def test_windows_and_single_runs_share_the_stepper(method, atol):
    # the same three windows as three runs on a shared grid give the same numbers: one stepper
    t = torch.tensor([[0.0, 0.25, 0.5, 1.0]] * 3, dtype=D)
    z0 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=D)
    win = solve_windows(_Oscillator(), z0, t, method=method, substeps=4)
    run = solve(lambda s, y: _Oscillator()(s, y, None), z0, t[0],
                SolverConfig(method=method, substeps=4)).transpose(0, 1)
    torch.testing.assert_close(win, run, rtol=0, atol=1e-15)
    exact = torch.stack([z0[:, 0:1] * torch.cos(t) + z0[:, 1:2] * torch.sin(t),
                         -z0[:, 0:1] * torch.sin(t) + z0[:, 1:2] * torch.cos(t)], dim=-1)
    # steps of 1/16 and 1/8 over one time unit: global error ~ C h^p (measured 1.3e-3 midpoint,
    # 4e-5 heun3, 3e-7 rk4)
    torch.testing.assert_close(win, exact, rtol=0, atol=atol)
    # the adjoint runs on torchdiffeq (the windows' sample clock): the same solution, to its rk4
    adj = solve_windows(_Oscillator(), z0, t, method="rk4", substeps=4, adjoint=True)
    torch.testing.assert_close(adj, exact, rtol=0, atol=1e-6)


def test_windows_reject_scipy_methods_and_a_step():
    t = torch.tensor([[0.0, 1.0]], dtype=D)
    z0 = torch.ones(1, 2, dtype=D)
    with pytest.raises(ConfigError, match=r"windows are integrated in torch with substeps per sample gap; got "
                                          r"method='Radau'"):
        solve_windows(_Oscillator(), z0, t, solver=SolverConfig(method="Radau"))
    with pytest.raises(ConfigError, match=r"step=0.1"):
        solve_windows(_Oscillator(), z0, t, solver=SolverConfig(method="rk4", step=0.1))


def test_scipy_guard_non_finite_budget_and_failure():
    t = np.linspace(0.0, 2.0, 5)
    with pytest.raises(SolverError, match=r"ctx: the right-hand side returned non-finite values \[nan\] at "
                                          r"t=0 of \[0, 2\] h \(state \{'x': 1.0\}\)") as info:
        solve_scipy(lambda s, y: y * np.nan, [1.0], t, context="ctx", states=["x"], time_units="h")
    assert info.value.t_reached == 0.0
    # a stiff linear system: RK45 is stability-limited to ~3e-4 steps; 50 steps' budget runs out
    stiff = np.array([[-1e4, 0.0], [0.0, -1.0]])
    with pytest.raises(SolverError, match=r"more than 700 evaluations of the right-hand side "
                                          r"\(max_steps=50\); the steps collapsed: the dynamics are stiff.*"
                                          r"Try method='Radau' or 'BDF'") as info:
        solve_scipy(lambda s, y: stiff @ y, [1.0, 1.0], t, SolverConfig(method="RK45", max_steps=50))
    assert 0.0 < info.value.t_reached < 2.0
    ok = solve_scipy(lambda s, y: stiff @ y, [1.0, 1.0], t, SolverConfig(method="Radau", rtol=1e-10, atol=1e-12))
    np.testing.assert_allclose(ok.y[1], np.exp(-t), rtol=1e-8)
    assert ok.y[0, 0] == 1.0  # the first output is y0 exactly
    with pytest.raises(ConfigError, match=r"'dopri5' is a torch method; SciPy integrates with one of"):
        solve_scipy(lambda s, y: -y, [1.0], t, SolverConfig())
    with pytest.raises(DataError, match=r"the initial state \[nan\] contains NaN or inf"):
        solve_scipy(lambda s, y: -y, [np.nan], t)


def test_torch_adaptive_collapse_names_stiffness_and_the_implicit_remedy():
    stiff = torch.tensor([[-1e4, 0.0], [0.0, -1.0]], dtype=D)
    t = torch.linspace(0.0, 2.0, 5, dtype=D)
    with pytest.raises(SolverError, match=r"stiff.*SolverConfig\(method=\"Radau\"\) or method=\"BDF\""):
        solve(lambda s, y: y @ stiff.T, torch.ones(2, dtype=D), t, SolverConfig(max_steps=50))


def test_fixed_step_adjoint_follows_the_same_grid():
    # with adjoint=True a fixed-step solve runs on torchdiffeq over sysid's grid (forward, and each
    # output interval backward): the same states, and the gradient of the direct backpropagation
    k = torch.tensor([0.7], dtype=D, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 0.5, 1.0, 1.2], dtype=D)

    def run(adjoint):
        k.grad = None
        y = solve(lambda s, y: -k * y, torch.ones(1, dtype=D), t,
                  SolverConfig(method="rk4", substeps=3, adjoint=adjoint), adjoint_params=(k,))
        y[-1].sum().backward()
        return y.detach(), k.grad.clone()

    (y_direct, g_direct), (y_adjoint, g_adjoint) = run(False), run(True)
    # both are RK4 on the same steps (torchdiffeq's 3/8 rule and the classical rule agree on a
    # linear field); the adjoint's gradient is a second RK4 solve backward: ~1e-6 relative
    torch.testing.assert_close(y_adjoint, y_direct, rtol=0, atol=1e-14)
    torch.testing.assert_close(g_adjoint, g_direct, rtol=1e-5, atol=0)
    assert float(g_direct) == pytest.approx(-1.2 * math.exp(-0.84), rel=1e-5)  # d/dk e^{-1.2 k}
