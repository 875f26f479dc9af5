"""Fixed points, linearisation, stability classes and limit cycles against closed forms and SciPy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import sysid.systems as systems
from sysid.analysis import (
    classify,
    compare_fixed_points,
    compare_limit_cycles,
    find_fixed_points,
    find_limit_cycle,
    linearise,
    match_fixed_points,
    oscillation_from_samples,
)
from sysid.errors import ConfigError, DataError

A = np.array([[-1.0, 2.0], [-3.0, -1.0]])
X_STAR = np.array([1.0, 2.0])


def linear(t, y):
    return A @ (np.asarray(y) - X_STAR)


def test_linear_system_fixed_point_and_eigenvalues():
    fp = find_fixed_points(linear, bounds={"a": (-5, 5), "b": (-5, 5)}, states=["a", "b"], n_seeds=16)
    assert len(fp) == 1  # all 16 seeds converge to the one root and are deduplicated
    np.testing.assert_allclose(fp[["a", "b"]].to_numpy()[0], X_STAR, atol=1e-9)
    # central differences on a linear field: only rounding error (~1e-9) remains
    lam = np.sort_complex(fp["eigenvalues"].iloc[0])
    np.testing.assert_allclose(lam, np.sort_complex(np.linalg.eigvals(A)), atol=1e-6)
    assert fp["stability"].iloc[0] == "stable focus" and bool(fp["oscillatory"].iloc[0])
    lin = linearise(linear, {"a": 0.0, "b": 0.0}, states=["a", "b"])
    np.testing.assert_allclose(lin.jacobian.to_numpy(), A, atol=1e-7)
    np.testing.assert_allclose(lin.field.to_numpy(), -A @ X_STAR, atol=1e-12)
    assert list(lin.jacobian.columns) == ["a", "b"]


@pytest.mark.parametrize(
    ("eigs", "expected"),
    [
        ([-1.0, -2.0], ("stable node", False)),
        ([1.0, 2.0], ("unstable node", False)),
        ([1.0 + 1j, 1.0 - 1j], ("unstable focus", True)),
        ([1.0, -2.0], ("saddle", False)),
        ([2j, -2j], ("centre", True)),
        ([0.0, -1.0], ("non-hyperbolic", False)),
        ([-1.0, -0.5 + 3j, -0.5 - 3j], ("stable", True)),
        ([1.0, -0.5 + 3j, -0.5 - 3j], ("saddle", True)),
        ([0.3], ("unstable", False)),
    ],
)
def test_classify(eigs, expected):
    assert classify(eigs) == expected


def test_classify_rejects_empty():
    with pytest.raises(ConfigError, match="no eigenvalues given"):
        classify([])


def test_lotka_volterra_fixed_points_match_analytic():
    lv = systems.get("lotka_volterra")
    a, b, c, d = (lv.defaults()[k] for k in "abcd")
    fp = find_fixed_points(lv, bounds={"prey": (-5.0, 80.0), "predator": (-5.0, 50.0)}, n_seeds=48)
    assert len(fp) == 2
    origin, coexist = fp.iloc[0], fp.iloc[1]
    np.testing.assert_allclose([origin["prey"], origin["predator"]], [0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose([coexist["prey"], coexist["predator"]], [c / d, a / b], rtol=1e-9)
    # origin: eigenvalues a and -c (saddle); coexistence: ±i sqrt(a c) (centre)
    np.testing.assert_allclose(np.sort(origin["eigenvalues"].real), [-c, a], atol=1e-6)
    assert origin["stability"] == "saddle"
    lam = coexist["eigenvalues"]
    np.testing.assert_allclose(np.abs(lam.real), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.sort(lam.imag), [-np.sqrt(a * c), np.sqrt(a * c)], rtol=1e-6)
    assert coexist["stability"] == "centre"


def test_match_fixed_points_reports_location_and_eigenvalue_errors():
    lv = systems.get("lotka_volterra")
    p = lv.defaults()
    learned_p = {**p, "c": 0.88}  # coexistence moves to (c'/d, a/b); eigenvalues ±i sqrt(a c')
    learned = lv.numpy_rhs(learned_p)
    bounds = {"prey": (-5.0, 80.0), "predator": (-5.0, 50.0)}
    table = compare_fixed_points(learned, lv, bounds=bounds, n_seeds=48)
    assert list(table["status"]) == ["matched", "matched"]
    row = table[table["prey_reference"] > 1].iloc[0]
    assert row["prey_learned"] == pytest.approx(0.88 / p["d"], rel=1e-8)
    # distance in units of the box width (85 for prey)
    assert row["distance"] == pytest.approx((0.88 - 0.80) / p["d"] / 85.0, rel=1e-6)
    expected = np.sqrt(p["a"] * 0.88) - np.sqrt(p["a"] * 0.80)
    assert row["eigenvalue_error"] == pytest.approx(expected, rel=1e-5)
    assert row["same_stability"]
    # a learned field with only one fixed point leaves the other unmatched
    one = find_fixed_points(linear, bounds={"prey": (-5, 80), "predator": (-5, 50)}, states=["prey", "predator"])
    ref = find_fixed_points(lv, bounds=bounds)
    out = match_fixed_points(one, ref)
    assert sorted(out["status"]) == ["matched", "missing in learned"]


def test_fixed_point_errors():
    with pytest.raises(ConfigError, match="no range for state 'b'"):
        find_fixed_points(linear, bounds={"a": (0, 1)}, states=["a", "b"])
    with pytest.raises(ConfigError, match="must have high > low"):
        find_fixed_points(linear, bounds={"a": (1, 0), "b": (0, 1)}, states=["a", "b"])
    with pytest.raises(DataError, match=r"point has 3 values but .* has 2 states"):
        linearise(linear, [0.0, 1.0, 2.0], states=["a", "b"])
    with pytest.raises(ConfigError, match="has no inputs; u must be None"):
        linearise(linear, [0.0, 1.0], states=["a", "b"], u=[1.0])


def _scipy_vdp_period(mu: float) -> float:
    """Period from solve_ivp's own event location (x crossing 0 upwards), after the transient."""
    def f(t, y):
        return [y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]]

    def up(t, y):
        return y[0]

    up.direction = 1
    sol = solve_ivp(f, (0, 120), [2.0, 0.0], method="DOP853", rtol=1e-10, atol=1e-12, events=up)
    tc = sol.t_events[0]
    return float(np.mean(np.diff(tc[-5:])))


@pytest.mark.parametrize("mu", [1.0, 2.5])
def test_van_der_pol_period_matches_scipy_events(mu):
    vdp = systems.get("van_der_pol")
    lc = find_limit_cycle(vdp, vdp.y0, t_end=150.0, params={"mu": mu})
    assert lc.found and lc.reason == "periodic orbit"
    assert lc.period == pytest.approx(_scipy_vdp_period(mu), rel=5e-3)  # the 0.5 %
    if mu == 1.0:
        assert lc.period == pytest.approx(6.6633, rel=1e-4)  # tabulated value for mu = 1
    # the x amplitude of the Van der Pol cycle is close to 2 for every mu
    assert lc.amplitude["x"] == pytest.approx(2.0, abs=0.03)
    assert lc.units["time"] == vdp.time_units


def test_limit_cycle_absent_for_damped_and_short_runs():
    damped = find_limit_cycle(lambda t, y: [y[1], -y[0] - 0.5 * y[1]], [1.0, 0.0], t_end=200, states=["x", "v"])
    assert not damped.found and damped.reason == "settles to an equilibrium"
    short = find_limit_cycle(systems.get("van_der_pol"), [2.0, 0.0], t_end=10.0)
    assert not short.found and "increase t_end" in short.reason
    with pytest.raises(ConfigError, match=r"transient must be a fraction in \[0, 1\)"):
        find_limit_cycle(systems.get("van_der_pol"), [2.0, 0.0], t_end=10.0, transient=1.0)
    with pytest.raises(ConfigError, match="section 'q' is not a state"):
        find_limit_cycle(systems.get("van_der_pol"), [2.0, 0.0], t_end=10.0, section="q")


def test_compare_limit_cycles_period_error():
    vdp = systems.get("van_der_pol")
    learned = vdp.numpy_rhs({"mu": 1.5})
    table = compare_limit_cycles(learned, vdp, [2.0, 0.0], t_end=90.0)
    ref_t, lrn_t = _scipy_vdp_period(1.0), _scipy_vdp_period(1.5)
    assert table.loc["period", "reference"] == pytest.approx(ref_t, rel=1e-4)
    assert table.loc["period", "learned"] == pytest.approx(lrn_t, rel=1e-4)
    assert table.loc["period", "percent_error"] == pytest.approx(100 * (lrn_t - ref_t) / ref_t, rel=1e-3)
    assert list(table.index) == ["period", "amplitude x", "amplitude v"]


def test_oscillation_from_samples():
    t = np.linspace(0.3, 50.3, 2001)  # upward mean crossings at t = 5, 10, ..., 50: 9 intervals
    x = 3.0 * np.sin(2 * np.pi * t / 5.0) + 10.0
    out = oscillation_from_samples(t, x)
    assert out["period"] == pytest.approx(5.0, rel=1e-4)  # linear interpolation of crossings
    assert out["amplitude"] == pytest.approx(3.0, rel=1e-3)  # sampled peaks
    assert out["n_cycles"] == 9
    with pytest.raises(DataError, match="need at least 4 finite samples"):
        oscillation_from_samples([0, 1, np.nan], [1, 2, 3])


def test_continuum_of_equilibria_is_not_listed_as_points():
    # x' = x y, y' = -y: every (x, 0) is an equilibrium (eigenvalues 0 and -1) -- a line, not points
    fp = find_fixed_points(lambda t, v: [v[0] * v[1], -v[1]], bounds={"x": (-2, 2), "y": (-1, 1)},
                           states=["x", "y"], n_seeds=12)
    assert len(fp) == 0
    assert len(fp.attrs["non_isolated"]) >= 1
    assert all(abs(p[1]) < 1e-9 for p in fp.attrs["non_isolated"])
    # an isolated degenerate point (x' = x², y' = -y: saddle-node at 0) is kept
    sn = find_fixed_points(lambda t, v: [v[0] ** 2, -v[1]], bounds={"x": (-2, 2), "y": (-1, 1)},
                           states=["x", "y"], n_seeds=12, residual_tol=1e-6, dedup=1e-2)
    assert len(sn) == 1 and sn["stability"].iloc[0] == "non-hyperbolic"
    assert sn.attrs["non_isolated"] == []


def test_counterpart_outside_the_data_box_is_matched_not_missing():
    """A learned logistic with K = 257.8 against a reference K = 190.7 on census data whose search
    box ends at 253: the learned K lies outside the box, and is still paired with the reference's
    (the issue's report said "missing in learned")."""
    import sysid
    from sysid.analysis import as_dynamics, compare_fixed_points

    lg = systems.get("logistic")
    data = sysid.datasets.load("us_population")
    learned = sysid.models.physics(lg, values={"r": 0.03, "K": 257.8}, states=["population"])
    reference = as_dynamics(lg, params={"K": 190.7}, states=["population"])
    table = compare_fixed_points(learned, reference, data=data)
    assert list(table["status"]) == ["matched", "matched"]
    k = table.iloc[1]
    assert k["population_reference"] == pytest.approx(190.7, rel=1e-6)
    assert k["population_learned"] == pytest.approx(257.8, rel=1e-5)  # float32 model parameters
    assert k["stability_learned"] == "stable"
