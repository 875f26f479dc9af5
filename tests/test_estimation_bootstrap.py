"""Parametric bootstrap: replicates drawn from the fitted error model, intervals against the
closed-form ones of a linear problem, determinism across executors, bad options."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import sysid
from sysid.errors import ConfigError
from sysid.estimation import bootstrap, misfit
from sysid.estimation.bootstrap import simulate_replicate
from sysid.models import Parameter

N = 15
T = np.linspace(0.0, 2.0, N)


def ramp(t, x, u, p, xp):
    """x' = a + b t, so x(t) = x0 + a t + b t^2 / 2: linear in (x0, a, b)."""
    return xp.stack([p["a"] + p["b"] * t + 0.0 * x[..., 0]])


@pytest.fixture(scope="module")
def linear_fit():
    rng = np.random.default_rng(3)
    y = 1.0 + 0.8 * T + 0.75 * T**2 + 0.1 * rng.standard_normal(N)
    y[4] = np.nan  # a missing sample stays missing in every replicate
    ds = sysid.from_arrays([T], {"x": [y]}, states=["x"])
    model = sysid.models.physics(ramp, {"a": Parameter(0.3), "b": Parameter(2.0)}, states=["x"])
    cfg = sysid.FitConfig(loss="sse", initial_states="free", dtype="float64", progress=False)
    return ds, y, sysid.fit(model, ds, cfg)


def test_replicates_are_the_prediction_plus_the_fitted_noise(linear_fit):
    ds, y, res = linear_fit
    m = misfit(res, ds)
    draws = np.stack([simulate_replicate(m, ds, np.random.default_rng(k))["x"].values[0]
                      for k in range(400)])
    assert np.all(np.isnan(draws[:, 4]))
    ok = np.isfinite(y)
    pred = m.predicted["x"].values[0][ok]
    # mean and sd of 400 Gaussian draws: within 4 standard errors of the mean / of the sd
    assert np.abs(draws[:, ok].mean(0) - pred).max() < 4 * m.sigma["x"] / 20
    assert np.std(draws[:, ok] - pred) == pytest.approx(m.sigma["x"], rel=0.03)


def test_bootstrap_intervals_of_a_linear_problem(linear_fit):
    ds, y, res = linear_fit
    boot = bootstrap(res, ds, n=20, seed=1)
    assert boot.n_failed == 0 and len(boot.samples) == 20
    ok = np.isfinite(y)
    X = np.column_stack([np.ones(N), T, T**2 / 2])[ok]
    beta, *_ = np.linalg.lstsq(X, y[ok], rcond=None)
    r = y[ok] - X @ beta
    se = np.sqrt(np.diag(r @ r / (ok.sum() - 3) * np.linalg.inv(X.T @ X)))
    for k, name in ((1, "a"), (2, "b")):
        row = boot.intervals.loc[name]
        # bootstrap sd of 20 replicates: its own relative sd is about 1/sqrt(2*19) = 16 %
        assert row["stderr"] == pytest.approx(se[k], rel=0.5)
        assert row["lower"] < beta[k] < row["upper"]
        # unbiased for a linear model: the mean of 20 replicates is within 3 / sqrt(20) se
        assert abs(row["bias"]) < 0.7 * se[k]


def test_same_seed_same_result_on_any_executor(linear_fit):
    ds, _, res = linear_fit
    serial = bootstrap(res, ds, n=2, seed=7)
    with ProcessPoolExecutor(max_workers=2) as pool:
        pooled = bootstrap(res, ds, n=2, seed=7, executor=pool)
    assert serial.samples.equals(pooled.samples)
    assert not serial.samples.equals(bootstrap(res, ds, n=2, seed=8).samples)


def test_bad_bootstrap_options(linear_fit):
    ds, _, res = linear_fit
    with pytest.raises(ConfigError, match=r"n must be an integer >= 2 \(replicates\); got 1"):
        bootstrap(res, ds, n=1)
    with pytest.raises(ConfigError, match=r"level must be a number in \(0, 1\)"):
        bootstrap(res, ds, level=1.5)
    with pytest.raises(ConfigError, match=r"seed must be an integer >= 0; got -1"):
        bootstrap(res, ds, seed=-1)
    with pytest.raises(ConfigError, match=r"bootstrap: executor must be None"):
        bootstrap(res, ds, n=2, executor=object())
