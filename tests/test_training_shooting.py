"""Single or multiple shooting: the stages of each method, the "auto" rule, and a fit that lands
on the least-squares optimum with single shooting chosen automatically."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from sysid.data import from_arrays
from sysid.models import physics
from sysid.training import FitConfig, Shooting, fit
from sysid.training.shooting import (
    LONG_RUN,
    choose_method,
    count_turns,
    plan_shooting,
)
from sysid.training.windows import make_windows


def _series(*runs: np.ndarray) -> tuple[np.ndarray, ...]:
    """(t, lengths, y, mask) of one-state runs sampled once per time unit, padded."""
    n = max(len(r) for r in runs)
    t = np.zeros((len(runs), n))
    y = np.zeros((len(runs), n, 1))
    m = np.zeros((len(runs), n, 1), bool)
    for i, r in enumerate(runs):
        t[i] = np.minimum(np.arange(n), len(r) - 1)  # padding repeats the last time
        y[i, : len(r), 0] = r
        m[i, : len(r), 0] = True
    return t, np.array([len(r) for r in runs]), y, m


def test_multiple_shooting_final_stride_depends_on_how_windows_start():
    t, lengths, y, m = _series(np.linspace(0, 1, 30))
    multiple = Shooting(method="multiple", horizons=(5, 10, 20))
    free = plan_shooting(FitConfig(epochs=9, initial_states="free", shooting=multiple),
                         t, lengths, y, m)
    measured = plan_shooting(FitConfig(epochs=9, shooting=multiple), t, lengths, y, m)
    # free starts: the last stage shares only end points (every sample counts once)
    assert free.stages == ((5, 3, 1), (10, 3, 1), (20, 3, 19))
    assert measured.stages == ((5, 3, 1), (10, 3, 1), (20, 3, 1))
    assert free.continuity == 1.0 and free.method == "multiple"
    given = Shooting(horizons=(5, 20), final_stride=3)
    assert plan_shooting(FitConfig(epochs=4, initial_states="free", shooting=given),
                         t, lengths, y, m).stages == ((5, 2, 1), (20, 2, 3))
    # stage epochs as given; fewer epochs than stages keeps the longest horizons
    staged = Shooting(horizons=(4, 8), stage_epochs=(2, 8))
    assert plan_shooting(FitConfig(epochs=10, shooting=staged), t, lengths, y, m).stages == (
        (4, 2, 1), (8, 8, 1))
    assert plan_shooting(FitConfig(epochs=1, shooting=Shooting(horizons=(4, 8, 16))),
                         t, lengths, y, m).stages == ((16, 1, 1),)


def test_free_start_windows_count_every_sample_once_but_shared_end_points():
    t, lengths, y, m = _series(np.linspace(0, 1, 21), np.linspace(0, 1, 7))
    plan = plan_shooting(FitConfig(epochs=1, initial_states="free",
                                   shooting=Shooting(horizons=(20,))), t, lengths, y, m)
    horizon, stride = plan.final
    w = make_windows(torch.as_tensor(lengths), horizon, stride)
    counts = torch.zeros(2, 21, dtype=torch.long)
    for run, idx, valid in zip(w.run, w.idx, w.valid):
        counts[run].index_add_(0, idx[valid], torch.ones(int(valid.sum()), dtype=torch.long))
    # run 0: windows [0..19] and [19, 20]; sample 19 is the shared end point
    assert counts[0].tolist() == [1] * 19 + [2, 1]
    # run 1, shorter than the horizon: one window = single shooting
    assert counts[1, :7].tolist() == [1] * 7


def test_single_shooting_is_one_window_per_run_from_its_first_sample():
    t, lengths, y, m = _series(np.linspace(0, 1, 9), np.linspace(0, 1, 5))
    plan = plan_shooting(FitConfig(epochs=7, shooting="single"), t, lengths, y, m)
    assert plan.method == "single" and plan.reason == "as configured"
    assert plan.stages == ((9, 7, 9),) and plan.continuity == 0.0
    w = make_windows(torch.as_tensor(lengths), *plan.final)
    assert w.run.tolist() == [0, 1] and w.start.tolist() == [0, 0]
    assert w.valid.sum(1).tolist() == [9, 5]
    assert "single shooting (one window per run; as configured)" == plan.describe()


def test_turns_count_swings_larger_than_the_threshold_only():
    t = np.linspace(0, 3 * 2 * np.pi, 60)
    assert count_turns(np.sin(t), 0.5) == 6  # three periods: 3 maxima, 3 minima (first excluded)
    assert count_turns(np.exp(-t), 0.25) == 0
    assert count_turns(np.sin(t / 6), 0.25) == 1  # one rise and fall (an epidemic wave)
    # hysteresis: the BOD series from y(0) = 0 dips by 17 % of its range (noise)
    bod = np.array([0.0, 8.3, 10.3, 19.0, 16.0, 15.6, 19.8])
    assert count_turns(bod, 0.25 * np.ptp(bod)) == 0
    assert count_turns(bod, 0.1 * np.ptp(bod)) == 2
    assert count_turns(np.array([1.0, 2.0]), 0.1) == 0


def test_auto_rule_picks_single_for_short_smooth_series_and_multiple_otherwise():
    auto = Shooting()
    short = np.linspace(0.0, 1.0, 12) ** 2
    assert choose_method(auto, *_series(short))[0] == "single"
    assert choose_method(auto, *_series(np.sin(np.linspace(0, np.pi, 15))))[0] == "single"
    method, reason = choose_method(auto, *_series(np.linspace(0.0, 1.0, LONG_RUN + 1)))
    assert method == "multiple" and f"runs up to {LONG_RUN + 1} samples long" in reason
    wave = np.sin(np.linspace(0, 4 * np.pi, 30))  # two periods in 30 samples: oscillating
    method, reason = choose_method(auto, *_series(short, wave))
    assert method == "multiple" and "turns 4 times in one run (oscillation)" in reason
    method, reason = choose_method(Shooting(horizons=(4, 8)), *_series(short))
    assert method == "multiple" and "multiple-shooting settings were given" in reason
    assert choose_method(Shooting(method="multiple"), *_series(short)) == ("multiple", "as configured")
    # noise does not count: the raw BOD series dips by 30 % of its range at day 4, but the
    # smoothed series rises throughout; 10 % noise on a decay does not make it oscillate
    bod = np.array([8.3, 10.3, 19.0, 16.0, 15.6, 19.8])
    assert count_turns(bod, 0.25 * np.ptp(bod)) == 2
    assert choose_method(auto, *_series(bod))[0] == "single"
    noisy = np.exp(-np.linspace(0, 3, 20)) * (1 + 0.1 * np.random.default_rng(0).standard_normal(20))
    assert choose_method(auto, *_series(noisy))[0] == "single"
    # a missing value in the middle does not break the count
    t, lengths, y, m = _series(wave)
    m[0, 5, 0] = False
    assert choose_method(auto, t, lengths, y, m)[0] == "multiple"


def test_bod_default_fit_picks_single_shooting_and_lands_on_least_squares():
    # Bates & Watts BOD (6 samples) with y(0) = 0 added: the textbook least-squares problem
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.0])
    y = np.array([0.0, 8.3, 10.3, 19.0, 16.0, 15.6, 19.8])
    data = from_arrays([t], {"y": [y]}, states=["y"])
    model = physics("first_order_kinetics", values={"A": 10.0, "k": 0.2}, dtype=torch.float64)
    cfg = FitConfig(epochs=40, loss="sse", dtype="float64", progress=False,
                    optimizer={"lr": 0.05}, solver={"substeps": 4}, refine=True)
    result = fit(model, data, cfg)
    shooting = result.solver_stats["shooting"]
    assert shooting["method"] == "single" and shooting["stages"] == [[7, 40, 7]]
    assert "single shooting (one window per run; auto: short" in result.message
    # SciPy on the closed form y = A (1 - exp(-k t)) from y(0) = 0 (the fit's rk4 with 4 substeps
    # per day is accurate to ~1e-5 relative here, so 1e-3 is the optimiser's tolerance)
    ref = least_squares(lambda p: p[0] * (1 - np.exp(-p[1] * t)) - y, [10.0, 0.2]).x
    value = result.parameters.set_index("name")["value"]
    assert value["A"] == pytest.approx(ref[0], rel=1e-3)
    assert value["k"] == pytest.approx(ref[1], rel=1e-3)
    assert ref == pytest.approx([19.143, 0.5311], rel=1e-3)  # Bates & Watts' values
