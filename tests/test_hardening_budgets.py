"""Budgets that hold (issue 17, item 4): ``max_time``, Ctrl-C and stop requests are checked inside
the warm start, long solves and the refinement; memory, work and output size are estimated before
anything starts and refused above a limit that an option raises.

Budget cases use limits of a fraction of a second; they assert the stop reason and that the work
done is far below what was asked (never a wall-clock bound).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import sysid
from sysid import budget
from sysid.errors import ConfigError
from sysid.training import FitConfig, StopReason


def _data(n_obs: int = 12):
    t = np.linspace(0.0, 10.0, n_obs)
    n = 10.0 / (1.0 + 9.0 * np.exp(-0.8 * t))
    return sysid.from_arrays([t], {"N": [n]}, states=["N"])


def _model():
    return sysid.models.physics("logistic", free=["r"], values={"K": 10.0})


def _cfg(**kw):
    base = dict(epochs=3, progress=False, dtype="float64", refine={"stderr": False})
    base.update(kw)
    return FitConfig(**base)


# ---------------------------------------------------------------------------------------------
# during the work: max_time and stop requests


def test_deadline_and_stop_flag():
    with budget.active(budget.Deadline(3600)) as d:
        budget.check("loop")  # time left: nothing happens
        assert not budget.expired() and 0 < budget.remaining() <= 3600
        threading.Thread(target=d.stop).start()  # a stop from another thread ...
        d._stop.wait(5)
        with pytest.raises(KeyboardInterrupt, match="loop: stopped on request"):
            budget.check("loop")  # ... is seen at the next check, as Ctrl-C would be
    with budget.active(budget.Deadline(0.0)):
        with pytest.raises(budget.BudgetExceeded, match=r"solve: stopped because the time budget "
                                                        r"\(max_time=0 s\) was spent"):
            budget.check("solve")
    budget.check("outside")  # no deadline active: a no-op
    with pytest.raises(ConfigError, match="max_time must be a non-negative number"):
        budget.Deadline(-1.0)


def test_max_time_stops_a_long_solve_inside_the_epoch():
    # 200 000 RK4 steps per sample gap: one epoch is ~10^7 field evaluations; max_time stops it
    # inside the first solve (the check sits in the stepping loop), keeping the start model.
    # max_time=1 s, not less: on a loaded machine the set-up before the first solve took 0.3 s
    # (then nfe was 0); one second runs ~10^4-10^5 evaluations, still far below full / 10
    import torch

    # torch.optim's first import takes seconds on a loaded machine; done here so that the budget
    # is spent inside the solve this test is about
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    import sysid.estimation.refinement  # noqa: F401 - so is SciPy's stats (1.3 s at load 9)

    cfg = _cfg(epochs=2, max_time=1.0, warm_start=False, solver={"substeps": 200_000},
               refine={"enabled": False, "stderr": False})
    result = sysid.fit(_model(), _data(), cfg)
    assert result.stopped_reason == StopReason.MAX_TIME
    full = 11 * 200_000 * 4  # evaluations of one complete solve over the run
    assert 0 < result.solver_stats["nfe"] < full / 10  # it ran, and was stopped inside the solve
    assert np.isfinite(result.parameters["value"]).all()


def test_max_time_stops_the_warm_start():
    cfg = _cfg(epochs=2, max_time=0.3, warm_start={"epochs": 10**8},
               refine={"enabled": False, "stderr": False})
    result = sysid.fit(_model(), _data(), cfg)
    assert result.stopped_reason == StopReason.MAX_TIME
    assert result.solver_stats["epochs_run"] == 0  # the budget was spent before training


def test_max_time_and_stop_requests_hold_in_the_setup_smoothing(monkeypatch):
    # the derivative smoothing of the setup (~30 s at 5 million samples) is cut into pieces of
    # _PIECE samples with a check between them; pieces of 12 samples here make 4 pieces
    import sysid.data.smoothing as smoothing

    monkeypatch.setattr(smoothing, "_PIECE", 12)
    t = np.linspace(0.0, 10.0, 12)
    y = np.stack([np.sin(t + k) for k in range(4)])[..., None]
    args = (np.tile(t, (4, 1)), y, np.ones(y.shape, bool), np.full(4, 12), 7)
    reference = smoothing.smooth_runs(*args)  # no deadline: the pieces give every value
    with budget.active(budget.Deadline(None)) as d:
        d.stop()  # Ctrl-C, SIGTERM or a stop request from another thread
        with pytest.raises(KeyboardInterrupt, match="smoothing the data: stopped on request"):
            smoothing.smooth_runs(*args)
    monkeypatch.setattr(smoothing, "_PIECE", 10**6)  # one piece: the same values
    for a, b in zip(reference, smoothing.smooth_runs(*args)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)  # the same fits, to rounding

    monkeypatch.setattr(smoothing, "_PIECE", 12)
    data = sysid.from_arrays([t] * 4, {"N": [10.0 / (1.0 + 9.0 * np.exp(-0.8 * t))] * 4},
                             states=["N"])
    # spent before training could start: nothing to return, an error saying so (not a result)
    with pytest.raises(budget.BudgetExceeded, match=r"max_time=1e-06 s was spent in the setup, "
                                                    r"before training started \(smoothing the data"):
        sysid.fit(_model(), data, _cfg(max_time=1e-6))


def test_ctrl_c_in_the_first_model_selection_keeps_the_model(monkeypatch):
    import sysid.training.engine as engine

    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_select", interrupted)
    result = sysid.fit(_model(), _data(), _cfg(warm_start=False))
    assert result.stopped_reason == StopReason.INTERRUPTED
    assert float(result.model.physical_parameters()["r"].detach()) > 0


@pytest.mark.parametrize("stop, reason", [("ctrl-c", StopReason.INTERRUPTED),
                                          ("max_time", StopReason.MAX_TIME)])
def test_ctrl_c_or_max_time_in_the_single_shooting_check_keeps_the_model(monkeypatch, stop, reason):
    import time

    import sysid.training.engine as engine

    def cut_short(ctx):  # a long first solve of the whole runs, stopped inside
        if stop == "ctrl-c":
            raise KeyboardInterrupt
        while not budget.expired():
            time.sleep(0.01)
        budget.check("integration")

    monkeypatch.setattr(engine, "_check_single_start", cut_short)
    result = sysid.fit(_model(), _data(), _cfg(warm_start=False, max_time=0.5,
                                               refine={"enabled": False}))
    assert result.stopped_reason == reason
    assert np.isfinite(float(result.model.physical_parameters()["r"].detach()))


@pytest.mark.parametrize("exc, reason", [(KeyboardInterrupt(), StopReason.INTERRUPTED),
                                         (budget.BudgetExceeded("spent"), StopReason.MAX_TIME)])
def test_a_refinement_cut_short_is_undone(monkeypatch, exc, reason):
    import sysid.training.engine as engine

    before = {}

    def broken(ctx):
        before["r"] = float(ctx.work.physical_parameters()["r"].detach())
        with __import__("torch").no_grad():
            for p in ctx.work.parameters():
                p.add_(1.0)  # half-way through: parameters changed ...
        raise exc  # ... when Ctrl-C or max_time arrives

    monkeypatch.setattr(engine, "_least_squares", broken)
    result = sysid.fit(_model(), _data(), _cfg(warm_start=False))
    assert result.stopped_reason == reason
    assert float(result.model.physical_parameters()["r"].detach()) == before["r"]


def test_a_model_with_nan_parameters_is_never_returned_as_best():
    import torch

    model = _model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    with pytest.raises(sysid.errors.FitError, match="the model given to fit has NaN or infinite"):
        sysid.fit(model, _data(), _cfg(warm_start=False))


# ---------------------------------------------------------------------------------------------
# before the work: estimates and limits


@pytest.mark.parametrize("settings, message", [
    ({"solver": {"substeps": 10**9}}, r"fit: would need about .* of memory \(1 window of 12 "
                                      r"samples, 1000000000 substeps per sample.*--max-memory"),
    ({"warm_start": {"epochs": 10**8}}, r"fit: would take about .* field evaluations .* 100000000 "
                                        r"warm-start epochs.*max_time"),
    ({"shooting": {"method": "multiple", "horizons": [100000]}},
     r"Shooting: horizons \[100000\] are longer than the longest training run \(12 samples\)"),
])
def test_oversized_fits_are_refused_before_they_start(settings, message):
    with pytest.raises(ConfigError, match=message):
        sysid.fit(_model(), _data(), _cfg(**settings))


def test_a_limit_can_be_raised_and_lowered():
    with budget.limits(memory_gb=1e-9):
        with pytest.raises(ConfigError, match=r"above the limit of 1 bytes"):
            sysid.fit(_model(), _data(), _cfg())
    with budget.limits(work=1e15):  # allowed now (max_time then bounds it in practice)
        cfg = _cfg(warm_start={"epochs": 10**8}, max_time=0.2)
        assert sysid.fit(_model(), _data(), cfg).stopped_reason == StopReason.MAX_TIME


def test_simulate_points_and_time(tmp_path):
    from sysid.cli import main

    model = _model()
    sysid.save_model(model, tmp_path / "m")
    args = ["--quiet", "simulate", str(tmp_path / "m"), "--y0", "N=1", "--t-end", "10"]
    assert main([*args, "--dt", "1e-6", "--out", str(tmp_path / "a.csv")]) == 2
    assert main([*args, "--dt", "1e-6", "--max-points", "1e8", "--max-time", "0.2",
                 "--method", "rk4", "--out", str(tmp_path / "b.csv")]) == 2  # stopped by time
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    with budget.active(budget.Deadline(0.0)):
        with pytest.raises(budget.BudgetExceeded, match="integration: stopped"):
            sysid.simulate(model, {"N": 1.0}, np.linspace(0, 1, 5))


def test_huge_inputs_are_refused_without_reading_them(tmp_path, capsys):
    from sysid.cli import main

    assert main(["fit", "--config", "/dev/zero", "--out", str(tmp_path / "f")]) == 2
    assert "is not a regular file" in capsys.readouterr().err
    with pytest.raises(sysid.errors.DataError, match="is not a regular file"):
        sysid.load_csv("/dev/zero", time="t", states=["x"])


# ---------------------------------------------------------------------------------------------
# stiffness: collapsing steps are seen from the solve's pace, named, and the remedy offered


def test_pace_projects_the_evaluations_from_the_more_hopeful_pace():
    pace = budget.Pace(0.0, 100.0, limit=10_000, every=100, warmup=200)
    assert not pace.hopeless(100, 0.01)  # within the warm-up: always allowed
    assert pace.hopeless(200, 0.02)  # 1e-4 per evaluation: 10^6 evaluations needed
    assert pace.projected == pytest.approx(200 + 99.98 / 1e-4)
    assert "steps collapsed" in pace.message(200, 0.02) and "LSODA" in pace.message(200, 0.02)
    # a fast transient first, then longer steps (not stiff): the pace quickens, never stopped
    quick = budget.Pace(0.0, 100.0, limit=10_000, every=100, warmup=200)
    assert not quick.hopeless(100, 0.001)
    assert not quick.hopeless(200, 0.003)  # twice the pace of the window before
    assert not quick.hopeless(300, 0.007)  # and again: time scales spread over decades
    assert quick.hopeless(400, 0.011)  # the pace stopped growing, far too slow: stopped
    # no progress at all is hopeless
    stuck = budget.Pace(0.0, 1.0, limit=10_000, every=100, warmup=100)
    assert stuck.hopeless(100, 0.0) and "no progress in time" in stuck.message(100, 0.0)


def _stiff(t, y):
    return -1e6 * (y - np.cos(t))  # follows cos(t) at a rate of 10^6: explicit steps ~3e-6


def test_collapsing_steps_stop_a_scipy_solve_early_with_the_remedy():
    from sysid.errors import SolverError
    from sysid.solvers import SolverConfig, solve_scipy

    calls = []

    def counted(t, y):
        calls.append(t)
        return _stiff(t, y)

    times = np.linspace(0.0, 100.0, 11)
    with pytest.raises(SolverError, match=r"integration stopped at t=.*: the steps collapsed: after "
                                          r"\d+ evaluations .* more than its budget of 1\.3e\+06 "
                                          r"\(max_steps\); the dynamics are stiff .*method='LSODA'"):
        solve_scipy(counted, [1.0], times, SolverConfig(method="RK45"))
    # stopped after the warm-up (5000 evaluations), not at the budget of 1.3 million
    assert 4_900 <= len(calls) <= 7_000
    sol = solve_scipy(_stiff, [1.0], times, SolverConfig(method="LSODA", rtol=1e-8, atol=1e-10))
    # the slow manifold y = cos t + 1e-6 sin t (+ O(1e-12)); tolerance: rtol 1e-8 on values ~1
    np.testing.assert_allclose(sol.y[0], np.cos(times) + 1e-6 * np.sin(times), atol=1e-7)


def test_collapsing_steps_stop_a_torch_solve_early():
    import torch

    from sysid.errors import SolverError
    from sysid.solvers import SolverConfig, SolveCounter, solve

    counter = SolveCounter()
    with pytest.raises(SolverError, match=r"the steps collapsed: .* of \[0, 100\].* stiff"):
        solve(lambda t, y: -1e6 * (y - torch.cos(t)), torch.ones(1, dtype=torch.float64),
              torch.linspace(0.0, 100.0, 11, dtype=torch.float64), SolverConfig(method="dopri5"),
              counter=counter)
    assert counter.nfe <= 7_000  # of a budget of 700 000 (max_steps=100000 x 7 stages)


def _van_der_pol():
    return sysid.models.physics("van_der_pol", values={"mu": 1000.0})


def test_sysid_simulate_names_stiffness_and_an_implicit_method_works(tmp_path, capsys):
    from sysid.cli import main

    sysid.save_model(_van_der_pol(), tmp_path / "vdp")
    args = ["--quiet", "simulate", str(tmp_path / "vdp"), "--y0", "x=2,v=0", "--t-end", "3000",
            "--dt", "30"]
    assert main([*args, "--method", "RK45", "--out", str(tmp_path / "a.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "the steps collapsed" in err
    assert "implicit SciPy method: --method LSODA, Radau or BDF" in err  # as the command takes it
    assert main([*args, "--method", "LSODA", "--out", str(tmp_path / "b.csv")]) == 0
    sim = sysid.load_csv(tmp_path / "b.csv", time="time", states=["x", "v"])
    # a relaxation oscillation: x stays within the limit cycle's amplitude (about 2)
    assert np.abs(sim["x"].values).max() == pytest.approx(2.0, abs=0.05)


def test_fit_metrics_of_a_stiff_model_use_an_implicit_method(capsys):
    from sysid.cli.evaluate import fit_metrics

    model = _van_der_pol()
    truth = sysid.simulate(model, {"x": 2.0, "v": 0.0}, np.linspace(0.0, 3000.0, 40), solver="LSODA")
    data = sysid.from_arrays([truth["time"].values], {"x": [truth["x"].values[0]],
                                                      "v": [truth["v"].values[0]]},
                             states=["x", "v"])
    metrics = fit_metrics(model, data, held_out=[])
    assert metrics["solver"].startswith("LSODA (the default RK45's steps collapsed")
    fit = {row["variable"]: row["fit_percent"] for row in metrics["trajectory"] if row["run"] == "all"}
    assert fit["x"] > 99.0  # the true model on its own (LSODA) simulation: the same solver


def test_cli_fit_max_time_flag_stops_training_and_still_writes_the_results(tmp_path, monkeypatch,
                                                                        capsys):
    import json
    import tomllib

    from sysid.cli import main

    sysid.data.to_csv(_data(), tmp_path / "n.csv")
    monkeypatch.chdir(tmp_path)
    # 10^8 warm-start epochs would run for hours: --max-time 0.5 ends training inside them
    code = main(["fit", "n.csv", "--time", "time", "--states", "N", "--model", "physics:logistic",
                 "--max-time", "0.5", "--set", "warm_start.epochs=100000000", "--set", "loss=nmse",
                 "--set", "dtype=float64", "--out", "out"])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["training"]["stopped_reason"] == "max_time"
    assert tomllib.loads((tmp_path / "out" / "config.toml").read_text())["fit"]["max_time"] == 0.5
    assert (tmp_path / "out" / "model").is_dir()


def test_the_refinement_grid_is_built_per_run_and_holds_the_deadline():
    # the single-shooting grid of the refinement: equal steps no longer than `step` in every
    # sample gap; built per run with tensor ops (a Python loop over 5 million gaps took 100 s,
    # past max_time), the same times as stepping gap by gap
    import torch

    from sysid.estimation.problem import _Grid

    t = torch.cumsum(torch.rand(3, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
                     + 0.05, 1)
    lengths = torch.tensor([30, 1, 12])
    grid = _Grid(t, lengths, 0.3, None, "zoh")
    for r in range(3):
        n = int(lengths[r])
        expect = [t[r, :1]] + [t[r, g] + (t[r, g + 1] - t[r, g]) * (torch.arange(1, k + 1, dtype=t.dtype) / k)
                               for g in range(n - 1)
                               for k in [max(int(torch.ceil((t[r, g + 1] - t[r, g]) / 0.3 - 1e-9)), 1)]]
        expect = torch.cat(expect)
        assert torch.equal(grid.t[r, :expect.numel()], expect)
        assert torch.equal(grid.t[r, grid.pos[r, :n]], t[r, :n])  # every sample is a grid point
    with budget.active(budget.Deadline(None)) as d:
        d.stop()
        with pytest.raises(KeyboardInterrupt, match="refinement grid: stopped on request"):
            _Grid(t, lengths, 0.3, None, "zoh")
