"""Windows, batched solvers, input interpolation inside solves, smoothing and derivatives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.signal import savgol_filter
from torch import nn

from sysid.errors import SolverError
from sysid.models.interpolation import InputInterpolator
from sysid.training.solvers import StepCounter, solve_windows
from sysid.training.warmstart import local_polynomial, regress_derivatives
from sysid.training.windows import WindowInputs, gather, make_windows

D = torch.float64


class Oscillator(nn.Module):
    """x' = v, v' = -w^2 x + u (u optional): closed forms for checks."""

    def __init__(self, w: float = 2.0) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=D))

    def forward(self, t, z, u):
        acc = -self.w**2 * z[:, 0:1]
        if u is not None:
            acc = acc + u
        return torch.cat([z[:, 1:2], acc], dim=-1)


def irregular_grids(n_windows: int, horizon: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    gaps = rng.uniform(0.02, 0.1, size=(n_windows, horizon - 1))
    start = rng.uniform(0, 5, size=(n_windows, 1))
    return torch.as_tensor(np.concatenate([start, start + np.cumsum(gaps, axis=1)], axis=1), dtype=D)


def exact_oscillator(z0: torch.Tensor, t: torch.Tensor, w: float) -> torch.Tensor:
    tau = (t - t[:, :1])
    x0, v0 = z0[:, 0:1], z0[:, 1:2]
    x = x0 * torch.cos(w * tau) + v0 / w * torch.sin(w * tau)
    v = -x0 * w * torch.sin(w * tau) + v0 * torch.cos(w * tau)
    return torch.stack([x, v], dim=-1)


def test_make_windows_covers_every_start_and_marks_the_run_end():
    w = make_windows(torch.tensor([5, 3]), horizon=4, stride=1)
    assert w.count == 4 + 2
    assert w.run.tolist() == [0, 0, 0, 0, 1, 1]
    assert w.start.tolist() == [0, 1, 2, 3, 0, 1]
    assert w.idx[3].tolist() == [3, 4, 4, 4] and w.valid[3].tolist() == [True, True, False, False]
    strided = make_windows(torch.tensor([10]), horizon=4, stride=3)
    assert strided.start.tolist() == [0, 3, 6]
    values = torch.arange(20.0).reshape(2, 10)
    assert gather(values, strided)[1].tolist() == [3.0, 4.0, 5.0, 6.0]


@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_batched_windows_on_their_own_grids_match_closed_form(method):
    t = irregular_grids(64, 12)
    z0 = torch.randn(64, 2, dtype=D, generator=torch.Generator().manual_seed(1))
    counter = StepCounter()
    z = solve_windows(Oscillator(2.0), z0, t, method=method, substeps=4, rtol=1e-9, atol=1e-11,
                      counter=counter)
    exact = exact_oscillator(z0, t, 2.0)
    # rk4: local error ~ (w h)^5 / 120 with w h <= 0.05 -> ~3e-9 per step over 44 steps;
    # dopri5 at rtol 1e-9 is far below that
    assert torch.allclose(z.detach(), exact, atol=1e-6 if method == "rk4" else 1e-8)
    assert counter.nfe > 0


def test_rk4_is_fourth_order_and_euler_first_order():
    t = irregular_grids(8, 6)
    z0 = torch.ones(8, 2, dtype=D)
    exact = exact_oscillator(z0, t, 2.0)
    for method, order in (("rk4", 4), ("euler", 1)):
        errs = [float((solve_windows(Oscillator(2.0), z0, t, method=method, substeps=m).detach()
                       - exact).abs().max()) for m in (4, 8)]
        observed = math.log2(errs[0] / errs[1])
        assert observed == pytest.approx(order, abs=0.3), (method, errs)


def test_padding_after_the_run_end_keeps_the_state():
    t = torch.tensor([[0.0, 0.5, 1.0, 1.0, 1.0]], dtype=D)  # run ended after 3 samples
    z = solve_windows(Oscillator(1.0), torch.tensor([[1.0, 0.0]], dtype=D), t, substeps=8).detach()
    assert torch.equal(z[0, 2], z[0, 3]) and torch.equal(z[0, 3], z[0, 4])
    # 16 rk4 steps of h = 1/16: global error ~ h^4 / 10 ~ 2e-6
    assert float(z[0, 2, 0]) == pytest.approx(math.cos(1.0), abs=1e-5)


@pytest.mark.parametrize("kind", ["zoh", "linear", "cubic"])
def test_inputs_are_interpolated_per_window_like_the_model(kind):
    # forced oscillator x'' = -x + u(t), u sampled on the windows' own grids and interpolated with
    # the model's InputInterpolator; reference: SciPy on the same interpolant
    t_run = torch.linspace(0, 4, 41, dtype=D)[None, :]
    u_run = torch.sin(1.7 * t_run)[..., None]
    interp = InputInterpolator(t_run, u_run, torch.tensor([41]), kind)
    windows = make_windows(torch.tensor([41]), horizon=10, stride=10)
    tw = gather(t_run, windows)
    inputs = WindowInputs(t_run, u_run, torch.tensor([41]), windows, kind)
    z0 = torch.tensor([[1.0, 0.0]] * windows.count, dtype=D)
    z = solve_windows(Oscillator(1.0), z0, tw, inputs=inputs, substeps=8)
    for w in range(windows.count):
        ts = tw[w].numpy()

        def rhs(tt, y):
            u = float(interp(torch.tensor(tt, dtype=D))[0, 0])
            return [y[1], -y[0] + u]

        sol = solve_ivp(rhs, (ts[0], ts[-1]), [1.0, 0.0], t_eval=ts, rtol=1e-10, atol=1e-12,
                        max_step=0.01)
        # rk4 with 8 substeps integrates a piecewise-smooth input to ~1e-6 (the kinks at the
        # samples cost accuracy for zoh/linear)
        assert np.allclose(z[w].detach().numpy(), sol.y.T, atol=2e-5), (kind, w)


def test_blow_up_raises_solver_error_with_time():
    class Explode(nn.Module):
        def forward(self, t, z, u):
            return z**2

    t = torch.linspace(0, 2, 21, dtype=D)[None, :]
    with pytest.raises(SolverError, match=r"rk4 gave non-finite states near t=") as info:
        solve_windows(Explode(), torch.tensor([[1.0]], dtype=D), t, substeps=2)
    # x = 1/(1 - t) blows up at t = 1; fixed steps may step over the pole before overflowing
    assert 0.9 <= info.value.t_reached <= 2.0
    with pytest.raises(SolverError, match="dopri5"):
        solve_windows(Explode(), torch.tensor([[1.0]], dtype=D), t, method="dopri5",
                      max_steps=50)


def test_gradients_through_the_batched_solver_pass_gradcheck():
    t = irregular_grids(3, 5)

    class Field(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.w = w  # a plain tensor, so gradcheck differentiates through it

        def forward(self, tt, z, u):
            return torch.cat([z[:, 1:2], -self.w**2 * z[:, 0:1]], dim=-1)

    def run(w, z0):
        return solve_windows(Field(w), z0, t, substeps=2)

    w = torch.tensor(1.3, dtype=D, requires_grad=True)
    z0 = torch.randn(3, 2, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: run(a, b), (w, z0))


def test_local_polynomial_matches_savitzky_golay_and_handles_gaps():
    rng = np.random.default_rng(0)
    t = np.arange(50) * 0.1
    y = np.sin(t) + 0.01 * rng.standard_normal(50)
    mask = np.ones(50, bool)
    val, d1, _ = local_polynomial(t, y, mask, points=7, degree=2)
    # on a regular grid and away from the ends this is exactly SciPy's Savitzky-Golay filter
    sg = savgol_filter(y, 7, 2)
    sg1 = savgol_filter(y, 7, 2, deriv=1, delta=0.1)
    assert np.allclose(val[3:-3], sg[3:-3], atol=1e-10)
    assert np.allclose(d1[3:-3], sg1[3:-3], atol=1e-8)
    # irregular times with missing samples: a quadratic is reproduced exactly
    ti = np.sort(rng.uniform(0, 5, 40))
    yi = 1.0 + 2.0 * ti - 0.5 * ti**2
    mi = rng.uniform(size=40) > 0.2
    v, a, b = local_polynomial(ti, np.where(mi, yi, np.nan), mi, points=7, degree=2)
    ok = np.isfinite(v)
    assert ok.mean() > 0.9
    assert np.allclose(v[ok], yi[ok]) and np.allclose(a[ok], 2.0 - ti[ok]) and np.allclose(b[ok], -1.0)


def test_derivative_regression_recovers_a_linear_field():
    class Linear(nn.Module):
        def __init__(self):
            super().__init__()
            self.k = nn.Parameter(torch.tensor([0.1], dtype=D))

        def forward(self, t, z, u):
            return -self.k * z

    z = torch.linspace(-2, 2, 50, dtype=D)[:, None]
    dz = -0.7 * z
    f = Linear()
    info = regress_derivatives(f, torch.zeros(50, dtype=D), z, None, dz, epochs=50, lr=0.05,
                               parameters=[f.k], use_lbfgs=True)
    assert float(f.k.detach()) == pytest.approx(0.7, rel=1e-6)  # exact data: least squares is exact
    assert info["loss_after"] < 1e-10 < info["loss_before"]


def test_loss_kinds_and_weights_against_hand_computation():
    # the training loss is the error model's objective in user units; for the kinds the trainer
    # had before error models had names it is the same number as then
    from sysid.estimation import make_error_model

    pred = torch.tensor([[[1.0, 2.0], [3.0, 5.0]]], dtype=D)  # (W=1, H=2, S=2), scaled units
    obs = torch.tensor([[[1.5, 2.0], [2.0, 4.0]]], dtype=D)
    mask = torch.tensor([[[True, True], [True, False]]])
    mean = torch.tensor([10.0, 20.0], dtype=D)
    scale = torch.tensor([2.0, 4.0], dtype=D)
    xp, xo = mean + scale * pred, mean + scale * obs

    def loss(kind):
        em = make_error_model(kind, ["a", "b"], weights={"a": 1.0, "b": 3.0})
        return float(em.objective(xp, xo, mask, scale))

    w = torch.tensor([1.0, 3.0, 1.0], dtype=D)  # the weights of the 3 measured entries
    # nmse: weighted squared errors of the scaled states over the 3 measured entries (the masked
    # 5 vs 4 is ignored)
    assert loss("nmse") == pytest.approx((1 * 0.5**2 + 3 * 0.0**2 + 1 * 1.0**2) / 3)
    # lognormal: differences of log user values, x = mean + scale * z
    lg = (torch.log(xp) - torch.log(xo))[mask]
    assert loss("lognormal") == pytest.approx(float((w * lg**2).sum() / 3), rel=1e-6)
    rel = ((xp - xo) / (xo.abs() + 1e-3 * scale))[mask]
    assert loss("relative") == pytest.approx(float((w * rel**2).sum() / 3))
