"""Profile likelihood: the closed-form interval of a linear problem, a flat profile of a
non-identifiable product, the objective it is made of, the plot, and bad options."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

import sysid
from sysid.errors import ConfigError
from sysid.estimation import IdentifiabilityWarning, misfit
from sysid.estimation._inference import quantile, threshold
from sysid.models import Parameter

N = 15
T = np.linspace(0.0, 2.0, N)


def ramp(t, x, u, p, xp):
    """x' = a + b t, so x(t) = x0 + a t + b t^2 / 2: linear in (x0, a, b)."""
    return xp.stack([p["a"] + p["b"] * t + 0.0 * x[..., 0]])


def product_decay(t, x, u, p, xp):
    """x' = -k1 k2 x: only the product k1 k2 is determined by data."""
    return xp.stack([-p["k1"] * p["k2"] * x[..., 0]])


def _linear_data():
    rng = np.random.default_rng(3)
    y = 1.0 + 0.8 * T + 0.75 * T**2 + 0.1 * rng.standard_normal(N)
    return sysid.from_arrays([T], {"x": [y]}, states=["x"]), y


def _ols(y):
    """Least squares of y on [1, t, t^2/2]: estimates, standard errors, residual dof."""
    X = np.column_stack([np.ones(N), T, T**2 / 2])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    r = y - X @ beta
    s2 = r @ r / (N - 3)
    se = np.sqrt(np.diag(s2 * np.linalg.inv(X.T @ X)))
    return beta, se, float(r @ r)


def _config(**kw):
    return sysid.FitConfig(loss="sse", initial_states="free", dtype="float64", progress=False, **kw)


@pytest.fixture(scope="module")
def linear_fit():
    ds, y = _linear_data()
    model = sysid.models.physics(ramp, {"a": Parameter(0.3), "b": Parameter(2.0)}, states=["x"])
    return ds, y, sysid.fit(model, ds, _config())


def test_threshold_is_the_t_interval_of_a_linear_model():
    # n log(1 + F/(n-p)) is exactly the deviance rise at estimate +/- t(n-p) * stderr of a linear
    # model with estimated sigma; chi2(1) for known noise
    n, p = 15, 3
    q = quantile(0.95, "sse", n, p)
    assert q == pytest.approx(stats.t.ppf(0.975, n - p))
    assert threshold(0.95, "sse", n, p) == pytest.approx(n * math.log1p(q**2 / (n - p)))
    assert threshold(0.95, "wls", n, p) == pytest.approx(stats.chi2.ppf(0.95, 1))
    assert threshold(0.95, "sse", 10**7, 3) == pytest.approx(stats.chi2.ppf(0.95, 1), rel=1e-5)


def test_misfit_is_the_concentrated_sse_likelihood(linear_fit):
    ds, y, res = linear_fit
    m = misfit(res, ds)
    pred = m.predicted["x"].values[0]
    ssr = float(np.sum((y - pred) ** 2))
    assert m.n == N and m.n_estimated == 3
    assert res.starts.empty  # one start: no multi-start table
    # -2 log L at the maximum-likelihood sigma^2 = SSR / n
    assert m.deviance == pytest.approx(N * math.log(ssr / N) + N * (1 + math.log(2 * math.pi)),
                                       rel=1e-12)
    assert m.sigma["x"] == pytest.approx(math.sqrt(ssr / (N - 3)))


def test_profile_interval_of_a_linear_problem_matches_the_closed_form(linear_fit):
    ds, y, res = linear_fit
    beta, se, ssr = _ols(y)
    tq = stats.t.ppf(0.975, N - 3)
    # the fit reaches the least-squares optimum (1e-6 relative: LM on the RK4 solution, exact
    # for this quadratic trajectory)
    table = res.parameters.set_index("name")
    assert table.loc["a", "value"] == pytest.approx(beta[1], rel=1e-6)
    prof = sysid.analysis.profile(res, ds, ["a", "b"])
    for k, name in ((1, "a"), (2, "b")):
        lo, hi = prof.interval(name)
        # tau is (value - estimate) / stderr for a linear model, so one secant step lands on the
        # end (1e-4 relative: the least-squares optimum of each re-fit)
        assert lo == pytest.approx(beta[k] - tq * se[k], abs=1e-4 * tq * se[k])
        assert hi == pytest.approx(beta[k] + tq * se[k], abs=1e-4 * tq * se[k])
        row = prof.intervals.loc[name]
        assert row["lower_status"] == "found" and row["upper_status"] == "found"
        assert bool(row["identifiable"])
    # the profile of a linear model is the quadratic the Jacobian implies: every point on it
    pts = prof.table[prof.table["name"] == "a"]
    quad = prof.threshold * ((pts["value"] - beta[1]) / (tq * se[1])) ** 2
    # deviance n log(SSR(a)/SSR) vs the quadratic n log(1 + ...) form: compare in SSR units
    ssr_pts = ssr * np.exp(pts["delta"] / N)
    ssr_quad = ssr * (1 + ((pts["value"] - beta[1]) / se[1]) ** 2 / (N - 3))
    np.testing.assert_allclose(ssr_pts, ssr_quad, rtol=1e-5)
    assert len(quad) == len(pts)
    # without a grid the walk steps just past the Wald end and one secant step finds the end
    fast = sysid.analysis.profile(res, ds, "a", points=0)
    assert fast.interval("a") == pytest.approx(prof.interval("a"), abs=1e-4 * tq * se[1])
    assert (fast.table["role"] != "estimate").sum() == 4  # two re-fits per side


def test_product_parameters_get_a_flat_profile_and_a_warning():
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 3.0, 12)
    y = 2.0 * np.exp(-0.6 * t) * (1 + 0.02 * rng.standard_normal(t.size))
    ds = sysid.from_arrays([t], {"x": [y]}, states=["x"])
    model = sysid.models.physics(
        product_decay, {"k1": Parameter(1.0, bounds=(0.0, math.inf)),
                        "k2": Parameter(0.5, bounds=(0.0, math.inf))}, states=["x"])
    res = sysid.fit(model, ds, _config())
    with pytest.warns(IdentifiabilityWarning, match=r"profile of 'k1' is flat.*practically "
                                                    r"non-identifiable"):
        prof = sysid.analysis.profile(res, ds, "k1", points=2, extend=3)
    row = prof.intervals.loc["k1"]
    assert not bool(row["identifiable"])
    assert row["lower_status"] != "found" and row["upper_status"] != "found"
    # along the profile k2 follows k1 so that the product stays at the fitted rate (2 % noise)
    pts = prof.table[prof.table["name"] == "k1"]
    np.testing.assert_allclose(pts["value"] * pts["k2"], 0.6, rtol=0.05)


def test_profile_plot(linear_fit):
    ds, _, res = linear_fit
    prof = sysid.analysis.profile(res, ds, "b", points=2)
    fig = sysid.plot.profile(prof)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "b"
    assert "threshold" in " ".join(t.get_text() for t in ax.get_legend().get_texts())


def test_bad_profile_options_are_clear_errors(linear_fit):
    ds, _, res = linear_fit
    with pytest.raises(ConfigError, match=r"'aa' is not a parameter of the model; its free "
                                          r"parameters are \['a', 'b'\]\. Did you mean 'a'\?"):
        sysid.analysis.profile(res, ds, "aa")
    with pytest.raises(ConfigError, match=r"level must be a number in \(0, 1\)"):
        sysid.analysis.profile(res, ds, level=95)
    with pytest.raises(ConfigError, match=r"points must be an integer >= 0; got -1"):
        sysid.analysis.profile(res, ds, points=-1)
    with pytest.raises(ConfigError, match=r"expected the FitResult of sysid.fit; got Model"):
        sysid.analysis.profile(res.model, ds)


def test_profile_of_a_fixed_parameter_is_an_error():
    ds, _ = _linear_data()
    model = sysid.models.physics(ramp, {"a": Parameter(0.3), "b": Parameter(1.5, vary=False)},
                                 states=["x"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sysid.fit(model, ds, _config())
    with pytest.raises(ConfigError, match=r"parameter 'b' is fixed \(vary=False\)"):
        sysid.analysis.profile(res, ds, "b")
