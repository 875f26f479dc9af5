"""Scale (issue 17, item 7): metrics and reports over many runs read the data once and integrate
the runs together; the results are those of one solve per run, within the solver's tolerance.
The times are in ``benchmarks/bench_scale.py`` (never here)."""

from __future__ import annotations

import numpy as np
import pytest

import sysid
import sysid.solvers.ivp as ivp
from sysid.data import from_arrays, get_run, run_values
from sysid.errors import SolverError


def _oscillator_runs(n_runs: int = 12, seed: int = 0):
    # runs of different lengths and irregular grids: the stacked solve's union of grids
    return sysid.systems.make_dataset("damped_oscillator", n_runs=n_runs, n_obs=30, irregular=True,
                                      noise=0.0, seed=seed)


def test_run_values_equal_get_run():
    ds = from_arrays([np.array([0.0, 1.0, 2.5]), np.array([1.0, 2.0])],
                     {"x": [np.array([1.0, np.nan, 3.0]), np.array([4.0, 5.0])]}, states=["x"])
    times, values = run_values(ds, ["x"], runs=["run1", "run0"])
    for i, r in enumerate(["run1", "run0"]):
        one = get_run(ds, r)
        np.testing.assert_array_equal(times[i], one["time"].values)
        np.testing.assert_array_equal(values["x"][i], one["x"].values)


@pytest.mark.parametrize("method", ["RK45", "DOP853"])
def test_stacked_scipy_runs_match_one_solve_per_run(monkeypatch, method):
    ds = _oscillator_runs()
    model = sysid.models.physics("damped_oscillator")
    solver = sysid.solvers.SolverConfig(method=method, rtol=1e-8, atol=1e-10)
    stacked = sysid.simulate(model, ds, solver=solver)
    monkeypatch.setattr(ivp, "STACK_RUNS", 1)  # one solve per run, as before
    single = sysid.simulate(model, ds, solver=solver)
    for name in ("x", "v"):
        # both solves keep every run's local error within rtol/atol (the stacked one divides them
        # by sqrt(12)); over this oscillation they agree to ~1e-8 of its unit amplitude
        np.testing.assert_allclose(stacked[name].values, single[name].values, rtol=0, atol=2e-7)
        np.testing.assert_allclose(stacked[name].values, ds[name].values, rtol=0, atol=2e-7)
        # the first sample is the initial state exactly
        np.testing.assert_array_equal(stacked[name].values[:, 0], ds[name].values[:, 0])


def test_a_failing_stacked_solve_is_repeated_run_by_run_and_names_the_run():
    # dy/dt = y^2 blows up at t = 1/y0: only run 'fast' (y0 = 2) reaches it within [0, 1]
    dyn = sysid.analysis.as_dynamics(lambda t, y: y**2, states=["y"])
    with pytest.raises(SolverError, match=r"simulate \(run 'fast'\): "):
        sysid.simulate(dyn, np.array([[0.1], [2.0], [0.2]]), np.linspace(0.0, 1.0, 5),
                       runs=["slow", "fast", "slower"], solver="RK45")
    ok = sysid.simulate(dyn, np.array([[0.1], [0.2]]), np.linspace(0.0, 1.0, 5), solver="RK45")
    np.testing.assert_allclose(ok["y"].values[:, -1], [0.1 / 0.9, 0.2 / 0.8], rtol=1e-6)  # 1/(1/y0 - t)


def test_report_of_many_runs_draws_a_sample_and_says_so(tmp_path):
    ds = _oscillator_runs(n_runs=10, seed=1)
    model = sysid.models.physics("damped_oscillator")
    sysid.report(model, ds, out=tmp_path / "r", k=1)
    text = (tmp_path / "r" / "report.md").read_text()
    assert "(the first 8 of 10 runs are drawn; the tables score all of them)" in text
    assert "(orbits of the first 8 of 10 runs are drawn)" in text
    assert text.count("| run9 |") >= 1  # every run is scored in the tables


def test_report_tables_show_the_first_rows_and_the_pooled_ones():
    import pandas as pd

    from sysid.reporting import TABLE_ROWS, _Doc

    runs = [f"run{i}" for i in range(100)] + ["all"]
    df = pd.DataFrame({"rmse": np.arange(101.0)}, index=pd.Index(runs, name="run"))
    doc = _Doc(title="t")
    doc.table(df)
    md = "\n".join(doc.md)
    assert f"The first {TABLE_ROWS} of 101 rows are shown with the pooled rows; report.json has all" in md
    assert f"| run{TABLE_ROWS - 1} |" in md and f"| run{TABLE_ROWS} |" not in md
    assert "| all |" in md  # the pooled row is kept
