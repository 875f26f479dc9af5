"""The biology, epidemiology, chemistry and economics case studies in fast mode.

Each script's ``main(["--fast", "--out", tmp])`` fits the real data and returns its checks; the
tests assert the published-reference comparisons (fast-mode tolerances, whose reasons are stated
next to them in each script) and a few numbers directly, with their own tolerances here. They
also check what the scripts write. Together they take about 1.5 minutes of one core.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from case_study_support import assert_outputs as _assert_outputs
from case_study_support import check as _check
from case_study_support import load as _load





@pytest.mark.slow
def test_hare_lynx_fast(tmp_path):
    study = _load("hare_lynx").main(["--fast", "--out", str(tmp_path)])
    failed = [c.row() for c in study.checks if not c.passed]
    assert not failed, failed
    # Stan posterior means within the fast-mode 15 %; the single-shooting optimum of the log
    # error model (a = 0.540, b = 0.0272, c = 0.796, d = 0.0237 by SciPy least squares) within 5 %
    lsq = {"a": 0.540, "b": 0.0272, "c": 0.796, "d": 0.0237}
    for name, ref in lsq.items():
        value = _check(study, f"Lotka-Volterra {name}").value
        assert value == pytest.approx(ref, rel=0.05), name
    held = study.tables["held_out"]
    assert list(held.index) == ["Lotka-Volterra", "neural ODE", "hybrid LV + NN"]
    assert np.isfinite(held["mean RMSE 1916-20"]).all()
    # the four-parameter LV forecasts the held-out years within a third of the pelt spread (~20)
    assert held.loc["Lotka-Volterra", "mean RMSE 1916-20"] < 7.0
    dyn = study.tables["fixed_points_and_periods"]
    # the Stan LV's period from its initial state is ~10 years (2 pi / sqrt(ac) = 9.5 for small orbits)
    assert 9.5 < dyn.loc["reference (Stan means)", "period [years]"] < 11.0
    _assert_outputs(study, figures=6)


@pytest.mark.slow
def test_influenza_fast(tmp_path):
    study = _load("influenza").main(["--fast", "--out", str(tmp_path)])
    failed = [c.row() for c in study.checks if not c.passed]
    assert not failed, failed
    # the reference is a least-squares optimum; the polished fit reaches it to 1 %
    assert _check(study, "SIR beta [1/day]").value == pytest.approx(1.669, rel=0.01)
    assert _check(study, "SIR gamma [1/day]").value == pytest.approx(0.4435, rel=0.01)
    held = study.tables["held_out"]
    assert held.shape[0] == 2
    # both models must explain the fitted days far better than the epidemic's size (peak 298)
    assert (held["RMSE days 1-10"] < 30).all()
    _assert_outputs(study, figures=2)


@pytest.mark.slow
def test_chemistry_fast(tmp_path):
    study = _load("chemistry").main(["--fast", "--out", str(tmp_path)])
    failed = [c.row() for c in study.checks if not c.passed]
    assert not failed, failed
    # BOD is a two-parameter least-squares problem: the polished fit equals it to 0.1 %
    assert _check(study, "BOD A").value == pytest.approx(19.143, rel=1e-3)
    assert _check(study, "BOD k").value == pytest.approx(0.5311, rel=1e-3)
    per_subject = study.tables["theophylline_per_subject"]
    assert len(per_subject) == 12
    # the two-stage estimate: 12 separate fits, every log-rate finite and absorption faster than
    # elimination (ka > ke: the branch of the flip-flop pair the population estimate is on)
    fits = study.tables["theophylline_per_subject_fits"]
    assert len(fits) == 12 and np.isfinite(fits.to_numpy()).all()
    assert (fits["lKa"] > fits["lKe"]).all()
    # one pooled curve per dose: every subject within 3 mg/L RMSE (peaks 6.4-11.4 mg/L)
    assert (per_subject["RMSE [mg/L]"] < 3.0).all()
    _assert_outputs(study, figures=2)


@pytest.mark.slow
def test_economics_fast(tmp_path):
    study = _load("economics").main(["--fast", "--out", str(tmp_path)])
    failed = [c.row() for c in study.checks if not c.passed]
    assert not failed, failed
    # least squares with the 1790 census as initial state: K = 191.51, r = 0.031486 (SciPy);
    # the polished fit reaches that optimum to 0.5 %
    assert _check(study, "logistic K (least squares) vs least-squares reference").value == \
        pytest.approx(191.51, rel=5e-3)
    assert _check(study, "logistic r (least squares) vs least-squares reference").value == \
        pytest.approx(0.031486, rel=5e-3)
    ext = study.tables["population_extrapolation"]
    # the logistic saturates below the 1970 census (203 M): an undershoot of more than 10 %
    assert ext.loc[1970.0, "least squares error %"] < -10
    curve = study.tables["phillips_curve"]
    assert math.isclose(curve.loc["regression recomputed from the data", "slope"], -0.543, rel_tol=1e-2)
    _assert_outputs(study, figures=3)


def test_with_initial_sample_adds_the_known_state():
    common = _load("_common")
    from sysid import datasets

    data = common.with_initial_sample(datasets.load("bod"), 0.0, {"y": 0.0}, rename={"demand": "y"})
    t = data["time"].values[0]
    assert t[0] == 0.0 and t[1] == 1.0 and t.size == 7
    assert data["y"].values[0][0] == 0.0 and data["y"].values[0][1] == 8.3
    flu = common.with_initial_sample(datasets.load("influenza_1978")[["in_bed"]], 0.0,
                                     {"S": 762.0, "I": 1.0, "R": 0.0}, rename={"in_bed": "I"})
    assert list(flu.data_vars) == ["I", "S", "R"]
    assert flu["S"].values[0][0] == 762.0 and np.isnan(flu["S"].values[0][1:]).all()


def test_with_initial_sample_rejects_a_time_inside_the_data():
    common = _load("_common")
    from sysid import datasets
    from sysid.errors import DataError

    with pytest.raises(DataError, match=r"run 'bod' starts at t=1, not after the added sample's t=2"):
        common.with_initial_sample(datasets.load("bod"), 2.0, {"demand": 0.0})


def test_check_tolerances():
    common = _load("_common")
    ok = common.Check(name="k", value=0.54, reference=0.5, tolerance=0.1)
    assert ok.passed and ok.difference == pytest.approx(0.08)
    assert not common.Check(name="k", value=0.56, reference=0.5, tolerance=0.1).passed
    assert common.Check(name="x", value=-2.54, reference=-2.43, tolerance=0.15, absolute=True).passed
    assert not common.Check(name="x", value=float("nan"), reference=1.0, tolerance=10.0).passed


def test_run_all_lists_every_script():
    run_all = _load("run_all")
    names = [p.stem for p in run_all.scripts()]
    for name in ("hare_lynx", "influenza", "chemistry", "economics"):
        assert name in names
    assert "run_all" not in names and "_common" not in names
    with pytest.raises(SystemExit):
        run_all.main(["--only", "no_such_study", "--out", "/nonexistent"])
