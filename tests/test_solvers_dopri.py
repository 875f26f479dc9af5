"""The lean no-gradient dopri5 stepper (sysid.solvers.dopri): the same steps as SciPy's RK45, dense
output at many times, jumps, failures as SolverErrors naming the time reached."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import torch

from sysid.errors import SolverError
from sysid.solvers import SolverConfig, solve
from sysid.solvers.dopri import _A, _E, _P, dopri5
from sysid.solvers.runs import SolveCounter

D = torch.float64


def _lv(t, y):  # Lotka-Volterra, batched over runs: y (R, 2)
    prey, pred = y[..., 0], y[..., 1]
    return torch.stack([(0.55 - 0.028 * pred) * prey, (-0.84 + 0.026 * prey) * pred], dim=-1)


def _y0() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.column_stack([30.0 * np.exp(0.2 * rng.standard_normal(4)), 4.0 * np.exp(0.2 * rng.standard_normal(4))])


def _lv_numpy(t, y):
    return _lv(t, torch.from_numpy(y.reshape(4, 2))).numpy().reshape(-1)


def test_tableau_consistency():
    # each row of A sums to its stage time; the continuous extension at theta = 1 gives the
    # 5th-order weights (the step's end); the error weights sum to zero (exact for y' = const)
    c = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
    for ci, row in zip(c[1:], _A[1:]):
        assert sum(row) == pytest.approx(ci, abs=1e-15)
    np.testing.assert_allclose(np.sum(_P, axis=1), [*_A[6], 0.0], atol=1e-15)
    assert sum(_E) == pytest.approx(0.0, abs=1e-16)


def test_same_steps_and_values_as_scipy_rk45_at_the_same_tolerances():
    t = np.linspace(0.0, 20.0, 301)
    y0 = _y0()[:1]  # one run: SciPy's error norm is that run's own
    ref = scipy.integrate.solve_ivp(lambda s, y: _lv(s, torch.from_numpy(y)).numpy(), (0.0, 20.0), y0[0],
                                    t_eval=t, method="RK45", rtol=1e-6, atol=1e-8)
    cnt = SolveCounter()
    with torch.no_grad():
        got = solve(_lv, torch.tensor(y0), torch.tensor(t), SolverConfig(rtol=1e-6, atol=1e-8), counter=cnt)
    # the same algorithm (error norm, controller, first step, dense output): the same evaluations,
    # values equal up to rounding (measured 1.5e-13 on states of size 30)
    assert cnt.nfe == ref.nfev
    np.testing.assert_allclose(got[:, 0].numpy(), ref.y.T, rtol=1e-10, atol=1e-10)
    assert cnt.t_reached == 20.0
    # four copies of that run: each run's own norm is the one run's, so the same steps again (SciPy
    # would take them too: the RMS of equal rows is one row's)
    with torch.no_grad():
        four = solve(_lv, torch.tensor(y0).repeat(4, 1), torch.tensor(t), SolverConfig(rtol=1e-6, atol=1e-8),
                     counter=cnt)
    assert cnt.nfe == ref.nfev
    np.testing.assert_allclose(four.numpy(), np.repeat(ref.y.T[:, None], 4, axis=1), rtol=1e-10, atol=1e-10)


def _oscillators(w: np.ndarray):
    """Harmonic oscillators ``x'' = -w_r^2 x``, one per run (row of ``y (R, 2)``)."""
    w2 = np.asarray(w, dtype=float) ** 2
    return lambda s, y: np.stack([y[:, 1], -w2 * y[:, 0]], axis=1)


def test_each_run_is_controlled_as_if_solved_alone():
    """One demanding run (a fast oscillator) stacked with 63 quiet ones (slow oscillators): its
    error against the closed form stays what it is alone, on each adaptive path of ``solve``
    (sysid's dopri5 on NumPy and on torch, torchdiffeq's dopri5 with a gradient). The error norm
    is each run's own, the largest taken (run_norm); with one root mean square over all runs
    (SciPy's and torchdiffeq's default, and this stepper's before) the fast run's error was
    diluted by the others': measured 12x (lean) and 15x (torchdiffeq) its error alone."""
    from sysid.solvers import solve_numpy

    rtol, atol = 1e-6, 1e-8
    t = np.linspace(0.0, 4.0, 41)
    w = np.array([5.0] + [0.2] * 63)
    y0 = np.column_stack([np.ones(64), np.zeros(64)])
    exact = np.cos(np.outer(t, w))
    units = atol + rtol * np.abs(exact)

    def errors(runs: int) -> list[np.ndarray]:  # per path, each run's largest error in tolerance units
        f = _oscillators(w[:runs])
        f_t = lambda s, y: torch.from_numpy(f(s, y.numpy()))  # noqa: E731
        with torch.no_grad():
            lean_t = solve(f_t, torch.tensor(y0[:runs]), torch.tensor(t), SolverConfig()).numpy()
        with torch.enable_grad():  # torchdiffeq, given the same norm (its `norm` option)
            tdq = solve(f_t, torch.tensor(y0[:runs]), torch.tensor(t), SolverConfig()).detach().numpy()
        return [np.max(np.abs(y[:, :, 0] - exact[:, :runs]) / units[:, :runs], axis=0)
                for y in (solve_numpy(f, y0[:runs], t), lean_t, tdq)]

    for alone, batch in zip(errors(1), errors(64)):
        # global error over 3 periods from local errors of at most one unit per step: measured 41
        # (lean) and 60 (torchdiffeq: its own first step and dense output)
        assert alone[0] < 100
        # the fast run takes the steps it takes alone: measured the same error to 1e-9 relative
        assert batch[0] < 1.05 * alone[0]
        assert batch[1:].max() < 1.0  # the quiet runs ride on the fast run's steps: measured 4e-8


def test_runs_at_rest_change_nothing():
    """Runs at rest (a zero derivative: nothing to measure) beside a moving run: the same first
    step, steps and values as the moving run alone (the norm is the largest run's; a run at rest
    imposes no tiny first step)."""
    from sysid.solvers import solve_numpy

    t = np.linspace(0.0, 4.0, 41)
    y0 = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    alone, beside = SolveCounter(), SolveCounter()
    one = solve_numpy(_oscillators([5.0]), y0[:1], t, counter=alone)
    three = solve_numpy(_oscillators([5.0, 5.0, 0.2]), y0, t, counter=beside)
    assert beside.nfe == alone.nfe
    # the same steps; the products over three runs round differently (measured 2e-14 on values of size 5)
    np.testing.assert_allclose(three[:, 0], one[:, 0], rtol=1e-13, atol=1e-13)
    assert not three[:, 1:].any()


def test_accuracy_against_dop853_in_tolerance_units_and_against_torchdiffeq():
    t = np.linspace(0.0, 20.0, 2001)  # many outputs: ~20 per step, interpolated at once
    y0 = _y0()
    tight = scipy.integrate.solve_ivp(_lv_numpy, (0.0, 20.0), y0.reshape(-1), t_eval=t, method="DOP853",
                                      rtol=1e-13, atol=1e-13).y.T.reshape(len(t), 4, 2)
    rtol, atol = 1e-6, 1e-8
    with torch.no_grad():
        lean = solve(_lv, torch.tensor(y0), torch.tensor(t), SolverConfig(rtol=rtol, atol=atol)).numpy()
    with torch.enable_grad():  # with a gradient the torchdiffeq path runs
        tdq = solve(_lv, torch.tensor(y0), torch.tensor(t), SolverConfig(rtol=rtol, atol=atol)).detach().numpy()
    units = atol + rtol * np.abs(tight)
    # the global error over ~2 cycles builds up from local errors of one tolerance unit per step:
    # measured 24 tolerance units (lean) and 33 (torchdiffeq); bounds at about twice that
    assert np.max(np.abs(lean - tight) / units) < 60
    assert np.max(np.abs(tdq - tight) / units) < 60
    # the two differ by their dense output and first step, not by more than their errors (19)
    assert np.max(np.abs(lean - tdq) / units) < 60


def test_dense_output_against_closed_form():
    # harmonic oscillator x'' = -w^2 x, runs with different amplitudes; 5001 output times
    w = 2.0
    amp = torch.tensor([[1.0], [2.0], [0.5]], dtype=D)
    y0 = torch.cat([amp, torch.zeros(3, 1, dtype=D)], dim=1)
    t = torch.linspace(0.0, 10.0, 5001, dtype=D)
    out, nfe, t_reached = dopri5(lambda s, y: torch.stack([y[:, 1], -w * w * y[:, 0]], dim=1), y0, t.tolist(),
                                 rtol=1e-8, atol=1e-10, max_steps=10_000, budget=100_000)
    exact = amp.numpy()[None, :, 0] * np.cos(w * t.numpy())[:, None]
    # 3 periods at rtol 1e-8: largest error measured 5e-8 (amplitude 2); bound 6x that
    np.testing.assert_allclose(out[:, :, 0].numpy(), exact, atol=3e-7)
    assert out.shape == (5001, 3, 2) and t_reached == 10.0 and nfe < 5001  # outputs do not cost steps


def test_steps_land_on_jumps_and_see_both_limits():
    # dy/dt = +1 before t = 0.5, -1 after: exact with the jump, y = t then 1 - t
    seen = []

    def f(s, y):
        seen.append(float(s))
        return torch.where(s < 0.5, torch.ones_like(y), -torch.ones_like(y))

    t = np.linspace(0.0, 1.0, 11)
    with torch.no_grad():
        y = solve(f, torch.zeros(1, 1, dtype=D), torch.tensor(t), SolverConfig(), jump_times=[0.5])
    np.testing.assert_allclose(y[:, 0, 0].numpy(), np.minimum(t, 1.0 - t), atol=1e-12)
    assert np.nextafter(0.5, 0.0) in seen and np.nextafter(0.5, 1.0) in seen and 0.5 not in seen


def test_failures_are_solver_errors_with_the_time_reached():
    def nan_after(s, y):  # NaN once t > 2
        return -y + (float("nan") if float(s) > 2.0 else 0.0)

    t = torch.linspace(0.0, 5.0, 6, dtype=D)
    with torch.no_grad():
        with pytest.raises(SolverError, match=r"ctx: Integration failed at t=2\.\d*: the vector field returned "
                                              r"NaN or inf") as info:
            solve(nan_after, torch.ones(2, dtype=D), t, SolverConfig(), context="ctx")
        assert 2.0 < info.value.t_reached < 3.0
        # a stiff decay (k = 1e5) under a budget of 50 steps: stops, names the remedy
        with pytest.raises(SolverError, match=r"more steps than max_steps=50; .*stiff.*"
                                              r"SolverConfig\(method=\"Radau\"\)") as info:
            solve(lambda s, y: -1e5 * (y - torch.cos(s)), torch.zeros(1, dtype=D), t, SolverConfig(max_steps=50))
        assert 0.0 < info.value.t_reached < 5.0
        with pytest.raises(SolverError, match=r"at t=0: the vector field returned NaN or inf"):
            solve(lambda s, y: y * float("inf"), torch.ones(1, dtype=D), t, SolverConfig())
        # x' = x^2 from 1 blows up at t = 1: the steps collapse onto it
        with pytest.raises(SolverError, match=r"failed at t=(0\.9\d*|1(\.0\d*)?): the step size fell below "
                                              r"the float resolution") as info:
            solve(lambda s, y: y * y, torch.ones(1, dtype=D), t, SolverConfig())
        assert 0.99 < info.value.t_reached <= 1.01


def test_float32_and_a_single_output_interval():
    t = torch.tensor([0.0, 1.5], dtype=torch.float32)
    with torch.no_grad():
        y = solve(lambda s, y: -y, torch.ones(3, dtype=torch.float32), t, SolverConfig(rtol=1e-5, atol=1e-7))
    assert y.dtype == torch.float32 and y.shape == (2, 3)
    # rtol 1e-5 on one interval plus float32 rounding: measured 7e-6
    np.testing.assert_allclose(y[1].numpy(), np.exp(-1.5), rtol=2e-5)


def test_solve_numpy_takes_the_steps_of_solve_and_words_errors_alike():
    from sysid.errors import ConfigError
    from sysid.solvers import solve_numpy

    t = np.linspace(0.0, 20.0, 101)
    y0 = _y0()
    cnt_np, cnt_t = SolveCounter(), SolveCounter()
    got = solve_numpy(lambda s, y: _lv_numpy(s, y).reshape(4, 2), y0, t, SolverConfig(), counter=cnt_np)
    with torch.no_grad():
        ref = solve(_lv, torch.tensor(y0), torch.tensor(t), SolverConfig(), counter=cnt_t).numpy()
    # the same stepper on the same float64 arithmetic: equal up to rounding (measured 1.5e-13 on
    # states of size 30)
    assert cnt_np.nfe == cnt_t.nfe
    np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-11)
    with pytest.raises(SolverError, match=r"ctx: Integration failed at t=2\.\d*: the vector field returned NaN"):
        solve_numpy(lambda s, y: -y + (np.nan if s > 2.0 else 0.0), np.ones(2), t, context="ctx")
    with pytest.raises(SolverError, match=r"initial state is not finite \(NaN or inf at index \[1\]\)"):
        solve_numpy(lambda s, y: -y, np.array([1.0, np.nan]), t)
    with pytest.raises(ConfigError, match=r"solve_numpy integrates with dopri5 without the adjoint; got method='rk4'"):
        solve_numpy(lambda s, y: -y, np.ones(2), t, SolverConfig(method="rk4"))


def test_simulate_runs_numpy_copy_only_when_it_agrees_with_the_model(monkeypatch):
    import sysid
    import sysid.simulation as simulation

    net = sysid.models.neural(["prey", "predator"], width=8, depth=1, seed=0).to(torch.float64)
    t = np.linspace(0.0, 5.0, 51)
    y0 = np.array([[1.0, 0.5], [0.2, -0.3]])
    used = []
    real = simulation.solve_numpy
    monkeypatch.setattr(simulation, "solve_numpy",
                        lambda *a, **k: used.append(k.get("into") is not None) or real(*a, **k))
    fast = simulate_values(sysid.simulate(net, y0, t))
    assert used == [True]  # the network's stages evaluated in place (numpy_fields.in_place)
    monkeypatch.setattr(simulation, "_numpy_rhs", lambda *a, **k: None)  # the torch path
    slow = simulate_values(sysid.simulate(net, y0, t))
    # the same steps on the same weights in float64 (measured 5e-15)
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-12)
    # a field with no working NumPy copy (a torch-only method) keeps the torch path, same result
    used.clear()
    monkeypatch.undo()
    monkeypatch.setattr(simulation, "solve_numpy", lambda *a, **k: used.append(1) or real(*a, **k))
    decay = sysid.models.physics(lambda t, x, u, p, xp: -p["k"] * x.clamp(min=0.0), {"k": 0.5}, ["c"],
                                 dtype=torch.float64)
    sim = sysid.simulate(decay, {"c": 1.0}, t)
    assert used == []
    # dopri5 at rtol 1e-6 over 2.5 time constants: measured 2.3e-7
    np.testing.assert_allclose(sim["c"].values[0], np.exp(-0.5 * t), atol=1e-6)


def test_numpy_copy_is_checked_on_eight_runs_spread_over_the_batch():
    import sysid
    from sysid.simulation import _agree_at_start

    net = sysid.models.neural(["x", "y"], ["u"], width=8, depth=1, time_dependent=True,
                              seed=0).to(torch.float64)
    f = net.field.numpy_function()
    rng = np.random.default_rng(1)
    y0, offsets, u = rng.normal(size=(40, 2)), rng.uniform(0, 5, 40), rng.normal(size=(40, 1))
    assert _agree_at_start(net, f, y0, offsets, u)  # each run's own time and input
    seen = []

    def wrong_on_the_last_run(t, x, uu):  # checked: the last run is one of the eight rows
        seen.append(len(x))
        out = f(t, x, uu)
        return out + (np.abs(x - y0[-1]).sum(axis=-1, keepdims=True) == 0)

    assert not _agree_at_start(net, wrong_on_the_last_run, y0, offsets, u)
    assert seen == [8]  # 8 of the 40 runs are evaluated, not all


def simulate_values(ds) -> np.ndarray:
    return np.stack([ds[n].values for n in ("prey", "predator")], axis=-1)


def test_a_simulate_process_hides_dask_only_when_not_loaded(monkeypatch):
    import importlib.util
    import sys
    import types

    from sysid.cli import _without_dask

    monkeypatch.delitem(sys.modules, "dask", raising=False)
    _without_dask()  # as `sysid simulate` does in its own process: "not installed" to xarray
    assert sys.modules["dask"] is None and importlib.util.find_spec("dask") is None
    with pytest.raises(ImportError):
        import dask  # noqa: F401
    loaded = types.ModuleType("dask")
    monkeypatch.setitem(sys.modules, "dask", loaded)
    _without_dask()  # a process that already uses Dask keeps it
    assert sys.modules["dask"] is loaded


def test_solve_numpy_writes_into_a_given_array_of_any_strides():
    """``out=`` receives the solution in the caller's layout (simulate passes the states' planes
    of its result, ``(S, R, N)`` seen as ``(N, R, S)``): the same values as a solve that
    allocates its own, and a wrong shape or dtype is refused."""
    from sysid.errors import ConfigError
    from sysid.solvers import solve_numpy

    t = np.linspace(0.0, 20.0, 101)
    y0 = _y0()  # (4 runs, 2 states)
    f = lambda s, y: _lv_numpy(s, y).reshape(4, 2)  # noqa: E731
    want = solve_numpy(f, y0, t, SolverConfig())
    planes = np.full((2, 4, t.size), np.nan)  # (S, R, N)
    got = solve_numpy(f, y0, t, SolverConfig(), out=planes.transpose(2, 1, 0))
    assert np.shares_memory(got, planes)
    np.testing.assert_array_equal(planes.transpose(2, 1, 0), want)  # the same arithmetic: equal
    with pytest.raises(ConfigError, match=r"out must be a float64 array of shape \(101, 4, 2\); got float64 \(101, 8\)"):
        solve_numpy(f, y0, t, SolverConfig(), out=np.empty((101, 8)))


def test_solve_numpy_evaluates_the_stages_through_the_field_in_place():
    """``into=`` (the field writing into the stepper's stage buffer): the same steps and values
    as the plain field; a network's in-place form through ``simulate`` matches the torch path."""
    from sysid.solvers import solve_numpy

    t = np.linspace(0.0, 20.0, 101)
    y0 = _y0()
    f = lambda s, y: _lv_numpy(s, y).reshape(4, 2)  # noqa: E731
    calls = []

    def into(s, y, out):
        calls.append(out.shape)
        assert out.flags.c_contiguous
        out[...] = f(s, y)

    cnt, cnt_into = SolveCounter(), SolveCounter()
    want = solve_numpy(f, y0, t, SolverConfig(), counter=cnt)
    got = solve_numpy(f, y0, t, SolverConfig(), counter=cnt_into, into=into)
    np.testing.assert_array_equal(got, want)  # the same arithmetic: equal
    assert cnt_into.nfe == cnt.nfe and set(calls) == {(4, 2)}
    assert len(calls) == cnt.nfe  # every evaluation, the first one and the first-step probe too
    # steps that land on jumps (the right limit after each evaluated in place too): the same
    want = solve_numpy(f, y0, t, SolverConfig(), counter=cnt, jump_times=[5.0, 7.5])
    got = solve_numpy(f, y0, t, SolverConfig(), counter=cnt_into, into=into, jump_times=[5.0, 7.5])
    np.testing.assert_array_equal(got, want)
    assert cnt_into.nfe == cnt.nfe
    with pytest.raises(SolverError, match=r"Integration failed at t=2\.\d*: the vector field returned NaN"):
        solve_numpy(lambda s, y: -y, np.ones((1, 2)), t,
                    into=lambda s, y, out: np.multiply(y, np.nan if s > 2.0 else -1.0, out=out))


def test_run_norm_is_the_largest_run_rms_on_numpy_and_torch():
    from sysid.solvers.dopri import run_norm, runs_of

    x = np.array([[3.0, 4.0], [0.0, 1.0], [1.0, 1.0]])  # RMS per run: 5/sqrt2, 1/sqrt2, 1
    assert run_norm(x, 3) == pytest.approx(5 / np.sqrt(2), rel=1e-15)
    assert run_norm(x.reshape(1, -1), 3) == run_norm(x, 3)  # the stepper's flat copy, run-major
    assert run_norm(x[::-1].copy(), 3) == run_norm(x, 3)  # the largest wherever it is
    tn = run_norm(torch.tensor(x), 3)  # a 0-d tensor, as torchdiffeq's `norm` option returns
    assert isinstance(tn, torch.Tensor) and tn.ndim == 0 and float(tn) == pytest.approx(5 / np.sqrt(2), rel=1e-15)
    assert run_norm(x, 1) == pytest.approx(np.sqrt(np.mean(x * x)), rel=1e-15)  # one run: SciPy's RMS
    assert (runs_of((3, 2)), runs_of((3, 2, 4)), runs_of((5,)), runs_of(())) == (3, 3, 1, 1)


def test_simulate_a_run_does_not_depend_on_the_runs_beside_it(monkeypatch):
    """``sysid.simulate`` (dopri5, the default tolerances): a Lotka-Volterra run on a wide orbit
    gives the same result alone and beside 63 runs near the equilibrium, on the NumPy path and on
    the torch path, and its error against a tight reference stays its own. With one norm over all
    runs the batch diluted its error: measured 225 tolerance units in the batch instead of 11 alone,
    the two results 221 units apart."""
    import sysid
    import sysid.simulation as simulation

    lv = sysid.models.physics("lotka_volterra", dtype=torch.float64)
    fn = lv.field.numpy_function()
    t = np.linspace(0.0, 20.0, 201)
    wide = np.array([[80.0, 2.0]])
    rng = np.random.default_rng(0)
    near = np.column_stack([32.3 * np.exp(0.01 * rng.standard_normal(63)),
                            19.6 * np.exp(0.01 * rng.standard_normal(63))])
    ref = scipy.integrate.solve_ivp(lambda s, y: fn(np.array([s]), y[None], None)[0], (0.0, 20.0), wide[0],
                                    t_eval=t, method="DOP853", rtol=1e-13, atol=1e-13).y.T
    units = 1e-8 + 1e-6 * np.abs(ref)
    for path in ("numpy", "torch"):
        if path == "torch":
            monkeypatch.setattr(simulation, "_numpy_rhs", lambda *a, **k: None)
        alone = simulate_values(sysid.simulate(lv, wide, t))[0]
        beside = simulate_values(sysid.simulate(lv, np.vstack([wide, near]), t))[0]
        # the wide run sets the steps of the batch: measured 1.4e-5 tolerance units apart
        assert np.max(np.abs(alone - beside) / units) < 1.0
        # its global error alone over 1.5 cycles: measured 10.8 units (bound about twice that)
        assert np.max(np.abs(alone - ref) / units) < 25
