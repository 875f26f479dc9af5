"""Input interpolation: batched over runs with different grids, against NumPy/SciPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import PchipInterpolator

from sysid.errors import ConfigError, DataError
from sysid.models import InputInterpolator, numpy_interpolant


def _two_runs():
    rng = np.random.default_rng(4)
    t_a = np.cumsum(rng.uniform(0.1, 0.5, 12))
    t_b = 3.0 + np.cumsum(rng.uniform(0.2, 0.4, 7))
    u_a = np.stack([np.sin(t_a), np.cos(2 * t_a)], axis=-1)
    u_b = np.stack([np.exp(-t_b), t_b ** 2], axis=-1)
    t = np.full((2, 12), 99.0)  # padding values must be ignored
    u = np.full((2, 12, 2), 1e6)
    t[0], u[0] = t_a, u_a
    t[1, :7], u[1, :7] = t_b, u_b
    return (t_a, u_a), (t_b, u_b), InputInterpolator(
        torch.tensor(t), torch.tensor(u), torch.tensor([12, 7]), "linear")


def _reference(kind, t, u, tq):
    tq = np.clip(tq, t[0], t[-1])  # held constant outside the span
    if kind == "linear":
        return np.stack([np.interp(tq, t, u[:, j]) for j in range(u.shape[1])], axis=-1)
    if kind == "cubic":
        return PchipInterpolator(t, u, axis=0)(tq)
    k = np.clip(np.searchsorted(t, tq, side="right") - 1, 0, len(t) - 1)
    return u[k]


@pytest.mark.parametrize("kind", ["zoh", "linear", "cubic"])
def test_batched_matches_reference_per_run(kind):
    (t_a, u_a), (t_b, u_b), base = _two_runs()
    interp = InputInterpolator(base.t.clone(), base.u.clone(), base.lengths, kind)
    queries = np.concatenate([np.linspace(-1, 6, 57), t_a, t_b])  # includes knots and outside points
    for tq in queries:
        got = interp(torch.tensor(tq, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(got[0], _reference(kind, t_a, u_a, tq), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got[1], _reference(kind, t_b, u_b, tq), rtol=1e-12, atol=1e-12)
    # per-run times in one call
    tq = torch.tensor([1.3, 4.1], dtype=torch.float64)
    got = interp(tq).numpy()
    np.testing.assert_allclose(got[0], _reference(kind, t_a, u_a, 1.3), rtol=1e-12)
    np.testing.assert_allclose(got[1], _reference(kind, t_b, u_b, 4.1), rtol=1e-12)


@pytest.mark.parametrize("kind", ["zoh", "linear", "cubic"])
def test_numpy_interpolant_matches_torch(kind):
    (t_a, u_a), _, _ = _two_runs()
    f = numpy_interpolant(t_a, u_a, kind)
    interp = InputInterpolator(torch.tensor(t_a)[None], torch.tensor(u_a)[None], None, kind)
    for tq in np.linspace(-0.5, 5.0, 41):
        np.testing.assert_allclose(f(tq), interp(torch.tensor(tq, dtype=torch.float64))[0].numpy(),
                                   rtol=1e-13, atol=1e-13)


def test_cubic_is_monotone_on_a_step():
    t = torch.arange(8.0, dtype=torch.float64)[None]
    u = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1], dtype=torch.float64)[None, :, None]
    interp = InputInterpolator(t, u, None, "cubic")
    vals = torch.stack([interp(torch.tensor(s, dtype=torch.float64))[0, 0] for s in np.linspace(0, 7, 141)])
    # PCHIP never overshoots: values stay within [0, 1] and never decrease
    assert float(vals.min()) >= 0.0 and float(vals.max()) <= 1.0
    assert bool((vals[1:] >= vals[:-1] - 1e-15).all())


def test_zoh_holds_until_next_sample():
    interp = InputInterpolator(torch.tensor([[0.0, 1.0, 2.0]]), torch.tensor([[[5.0], [7.0], [9.0]]]),
                               None, "zoh")
    assert interp(torch.tensor(0.999))[0, 0] == 5.0
    assert interp(torch.tensor(1.0))[0, 0] == 7.0
    assert interp(torch.tensor(10.0))[0, 0] == 9.0


def test_short_runs():
    # a 2-sample run (cubic degenerates to linear) and a 1-sample run (constant)
    t = torch.tensor([[0.0, 2.0, 9.0], [1.0, 9.0, 9.0]], dtype=torch.float64)
    u = torch.tensor([[[0.0], [4.0], [0.0]], [[3.0], [0.0], [0.0]]], dtype=torch.float64)
    interp = InputInterpolator(t, u, torch.tensor([2, 1]), "cubic")
    out = interp(torch.tensor(0.5, dtype=torch.float64))
    assert float(out[0, 0]) == pytest.approx(1.0, rel=1e-12)
    assert float(out[1, 0]) == 3.0


def test_errors():
    t = torch.tensor([[0.0, 1.0, 2.0]])
    u = torch.zeros(1, 3, 1)
    with pytest.raises(ConfigError, match=r"unknown kind 'spline'; choose one of \['zoh', 'linear', 'cubic'\]"):
        InputInterpolator(t, u, None, "spline")
    with pytest.raises(DataError, match=r"expected t \(R, N\) and u \(R, N, I\)"):
        InputInterpolator(t, torch.zeros(1, 2, 1))
    with pytest.raises(DataError, match="times of run 0 must be strictly increasing"):
        InputInterpolator(torch.tensor([[0.0, 1.0, 1.0]]), u)
    with pytest.raises(DataError, match="input 0 of run 0 is not finite at sample 1"):
        InputInterpolator(t, torch.tensor([[[0.0], [float("nan")], [1.0]]]))
    with pytest.raises(DataError, match=r"lengths must be \(R,\)"):
        InputInterpolator(t, u, torch.tensor([0]))
    interp = InputInterpolator(t, u)
    with pytest.raises(ConfigError, match=r"t must be a scalar or one time per run \(1,\)"):
        interp(torch.zeros(3))


@pytest.mark.parametrize("kind", ["zoh", "linear", "cubic"])
def test_numpy_interpolant_takes_arrays_of_times_and_is_what_the_analysis_uses(kind):
    from scipy.interpolate import PchipInterpolator

    from sysid.analysis import input_function

    t = np.array([0.0, 0.4, 1.0, 1.7, 3.0])
    u = np.sin(t)[:, None] * np.array([1.0, -2.0])
    f = numpy_interpolant(t, u, kind)
    tq = np.linspace(-0.5, 3.5, 41)
    many = f(tq)
    assert many.shape == (41, 2)
    # vectorised == one time at a time (the form solve_ivp calls)
    np.testing.assert_allclose(many, np.stack([f(x) for x in tq]), rtol=0, atol=1e-15)
    if kind == "cubic":  # monotone PCHIP as SciPy's, held outside the samples
        ref = PchipInterpolator(t, u)(np.clip(tq, t[0], t[-1]))
        np.testing.assert_allclose(many, ref, rtol=0, atol=1e-12)
    # the analysis' input functions use the same rules (so a learned model sees the same input)
    np.testing.assert_allclose(input_function(t, u, kind=kind)(tq), many, rtol=0, atol=1e-15)
