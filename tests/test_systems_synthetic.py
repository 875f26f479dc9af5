"""make_dataset(): seeded synthetic data with noise, irregular times, missing values and inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr

import sysid.systems as systems
from sysid.data import input_names, run_ids, state_names
from sysid.errors import ConfigError, DataError, ParameterError
from sysid.systems import SumOfSines, integrate, make_dataset
from sysid.systems.synthetic import Y0_SPREAD


def test_same_seed_same_data_other_seed_other_data():
    a = make_dataset("lotka_volterra", n_runs=3, n_obs=30, irregular=True, missing=0.1, seed=7)
    b = make_dataset("lotka_volterra", n_runs=3, n_obs=30, irregular=True, missing=0.1, seed=7)
    xr.testing.assert_identical(a, b)
    c = make_dataset("lotka_volterra", n_runs=3, n_obs=30, irregular=True, missing=0.1, seed=8)
    assert not np.allclose(np.nan_to_num(a["prey"].values), np.nan_to_num(c["prey"].values))


def test_global_random_state_is_neither_used_nor_changed():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = make_dataset("logistic", n_runs=2, n_obs=10, seed=1)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.random.seed(999)  # a different global state gives the same data
    xr.testing.assert_identical(a, make_dataset("logistic", n_runs=2, n_obs=10, seed=1))


def test_shape_schema_and_recorded_truth():
    ds = make_dataset("sir", n_runs=4, n_obs=25, noise=0.02, params={"beta": 2.0}, seed=3)
    assert dict(ds.sizes) == {"trajectory": 4, "obs": 25}
    assert run_ids(ds) == ["run0", "run1", "run2", "run3"]
    assert state_names(ds) == ["S", "I", "R"] and input_names(ds) == []
    assert ds["S"].attrs["units"] == "persons" and ds["time"].attrs["units"] == "day"
    np.testing.assert_allclose(ds["time"].values[0], np.linspace(0.0, 14.0, 25))
    assert json.loads(ds.attrs["parameters"]) == {"beta": 2.0, "gamma": 0.4545, "N": 763.0}
    assert ds.attrs["noise"] == 0.02 and ds.attrs["seed"] == 3 and ds.attrs["missing"] == 0.0
    assert ds.attrs["irregular"] == 0 and ds.attrs["system"] == "sir"
    init = json.loads(ds.attrs["initial_states"])
    assert set(init) == {"run0", "run1", "run2", "run3"} and set(init["run0"]) == {"S", "I", "R"}


def test_noise_is_the_requested_fraction_of_each_states_spread():
    kw = dict(n_runs=4, n_obs=100, seed=11)
    clean = make_dataset("van_der_pol", noise=0.0, **kw)
    noisy = make_dataset("van_der_pol", noise=0.05, **kw)
    sd = json.loads(noisy.attrs["noise_sd"])
    for name in ("x", "v"):
        resid = noisy[name].values - clean[name].values
        spread = clean[name].std(dim="obs").values
        recorded = np.array([sd[r][name] for r in run_ids(noisy)])
        np.testing.assert_allclose(recorded, 0.05 * spread, rtol=1e-12)
        z = resid / recorded[:, None]
        # 400 standard-normal draws: their sample sd is 1 +- 0.035 (1 sigma); allow 4 sigma
        assert abs(z.std() - 1.0) < 0.15, z.std()
        assert abs(z.mean()) < 4 / math.sqrt(400)


def test_noise_free_data_equals_integrate_from_the_recorded_initial_states():
    ds = make_dataset("goodwin", n_runs=2, n_obs=40, noise=0.0, seed=5)
    init = json.loads(ds.attrs["initial_states"])
    for i, r in enumerate(run_ids(ds)):
        y0 = [init[r][s] for s in ("employment", "wage_share")]
        one = integrate("goodwin", y0, ds["time"].values[i])
        np.testing.assert_array_equal(ds["employment"].values[i], one["employment"].values[0])


def test_initial_states_are_seeded_log_normal_perturbations_of_the_typical_one():
    seir = systems.get("seir")
    ds = make_dataset(seir, n_runs=6, n_obs=5, noise=0.0, seed=2)
    init = np.array([[v for v in run.values()] for run in json.loads(ds.attrs["initial_states"]).values()])
    base = np.array(seir.y0)
    # zero compartments (E, R) stay zero; positive ones stay positive within exp(+-5 * spread)
    np.testing.assert_array_equal(init[:, base == 0], 0.0)
    ratio = init[:, base > 0] / base[base > 0]
    assert np.all((ratio > math.exp(-5 * Y0_SPREAD)) & (ratio < math.exp(5 * Y0_SPREAD)))
    assert len(np.unique(ratio[:, 0])) == 6  # every run differs
    same = make_dataset(seir, n_runs=6, n_obs=5, noise=0.0, seed=2, y0="random")
    xr.testing.assert_identical(ds, same)


def test_given_initial_states():
    ds = make_dataset("lorenz", n_runs=3, n_obs=5, noise=0.0, y0=[1.0, 2.0, 3.0])
    np.testing.assert_array_equal(ds["y"].values[:, 0], [2.0, 2.0, 2.0])
    per_run = [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]]
    ds = make_dataset("lorenz", n_runs=3, n_obs=5, noise=0.0, y0=per_run)
    np.testing.assert_array_equal(ds["z"].values[:, 0], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match=r"y0 has 2 initial states but n_runs=3"):
        make_dataset("lorenz", n_runs=3, y0=per_run[:2])
    with pytest.raises(DataError, match=r"has 3 states \['x', 'y', 'z'\]"):
        make_dataset("lorenz", n_runs=3, y0=[1.0, 2.0])
    with pytest.raises(ConfigError, match=r"y0 must be None, 'random', an array or a mapping "
                                          r"state -> value; got 'typical'"):
        make_dataset("lorenz", y0="typical")


def test_initial_states_by_name():
    # a mapping by state name is the same as the array in the system's order (any key order)
    by_name = make_dataset("lorenz", n_runs=2, n_obs=5, noise=0.0, y0={"z": 3.0, "x": 1.0, "y": 2.0})
    xr.testing.assert_identical(by_name, make_dataset("lorenz", n_runs=2, n_obs=5, noise=0.0,
                                                      y0=[1.0, 2.0, 3.0]))
    per_run = make_dataset("lorenz", n_runs=2, n_obs=5, noise=0.0,
                           y0={"x": [1.0, 4.0], "y": 2.0, "z": 3.0})  # one per run, or shared
    np.testing.assert_array_equal(per_run["x"].values[:, 0], [1.0, 4.0])
    np.testing.assert_array_equal(per_run["y"].values[:, 0], [2.0, 2.0])
    one = integrate("lorenz", {"x": 1.0, "y": 2.0, "z": 3.0}, np.linspace(0.0, 0.1, 3))
    np.testing.assert_array_equal(one["z"].values[:, 0], [3.0])
    with pytest.raises(ParameterError, match=r"y0 names \['X'\] that are not states of system "
                                             r"'lorenz' \(did you mean 'x'\?\); its states are"):
        make_dataset("lorenz", y0={"X": 1.0, "y": 2.0, "z": 3.0})
    with pytest.raises(ParameterError, match=r"no initial value for state\(s\) \['z'\] of system "
                                             r"'lorenz'"):
        make_dataset("lorenz", y0={"x": 1.0, "y": 2.0})
    with pytest.raises(DataError, match=r"y0\['x'\] must be a number or one number per run; "
                                        r"got 'one'"):
        make_dataset("lorenz", y0={"x": "one", "y": 2.0, "z": 3.0})
    with pytest.raises(DataError, match=r"one number per run for every state; got \{'x': \(2,\), "
                                        r"'y': \(3,\)"):
        make_dataset("lorenz", n_runs=2, y0={"x": [1.0, 2.0], "y": [1.0, 2.0, 3.0], "z": 0.0})
    with pytest.raises(DataError, match=r"y0 must be numbers: an array of shape \(3,\) or \(runs, "
                                        r"3\) or a mapping"):
        make_dataset("lorenz", y0=[1.0, None, {}])


def test_missing_cells_are_the_requested_fraction_and_spare_the_first_sample():
    ds = make_dataset("reaction_chain", n_runs=3, n_obs=51, missing=0.2, seed=4)
    states = np.stack([ds[s].values for s in ("A", "B", "C")], axis=-1)  # (R, N, S)
    for r in range(3):
        n_nan = int(np.isnan(states[r]).sum())
        assert n_nan == round(0.2 * 50 * 3)  # exactly the fraction of the cells after the first row
        assert not np.isnan(states[r, 0]).any()
    assert not np.isnan(ds["time"].values).any()


def test_irregular_times_differ_per_run_and_stay_in_the_span():
    s = systems.get("pendulum")
    ds = make_dataset(s, n_runs=3, n_obs=40, irregular=True, seed=9)
    t = ds["time"].values
    assert np.all(t[:, 0] == s.t_span[0]) and np.all(t <= s.t_span[1])
    assert np.all(np.diff(t, axis=1) > 0)
    assert not np.allclose(t[0], t[1]) and not np.allclose(t[1], t[2])
    assert ds.attrs["irregular"] == 1
    regular = make_dataset(s, n_runs=3, n_obs=40, seed=9)
    np.testing.assert_array_equal(regular["time"].values[0], regular["time"].values[2])


def test_shared_times_given_explicitly():
    t = np.array([0.0, 0.5, 2.0, 7.0])
    ds = make_dataset("first_order_kinetics", n_runs=2, t=t, noise=0.0, y0=[0.0])
    np.testing.assert_array_equal(ds["time"].values, [t, t])
    a, k = systems.get("first_order_kinetics").defaults().values()
    np.testing.assert_allclose(ds["y"].values[0], a * (1 - np.exp(-k * t)), rtol=1e-7)
    with pytest.raises(ConfigError, match=r"pass either t .* or irregular=True .*, not both"):
        make_dataset("first_order_kinetics", t=t, irregular=True)


def test_default_inputs_are_seeded_sums_of_sines_per_run():
    duffing = systems.get("duffing")
    ds = make_dataset(duffing, n_runs=3, n_obs=200, seed=6)
    u = ds["u"].values
    assert ds["u"].attrs["role"] == "input" and not np.isnan(u).any()
    # weights sum to 1, so |u| <= input_scale; the signal uses a good part of that range
    assert np.abs(u).max() <= duffing.input_scale[0] + 1e-12
    assert np.all(u.std(axis=1) > 0.05 * duffing.input_scale[0])
    assert not np.allclose(u[0], u[1])
    spec = json.loads(ds.attrs["input_signals"])["run1"]
    sig = SumOfSines(t0=spec["t0"], duration=spec["duration"], scale=tuple(spec["scale"]),
                     cycles=tuple(map(tuple, spec["cycles"])),
                     weights=tuple(map(tuple, spec["weights"])),
                     phases=tuple(map(tuple, spec["phases"])))
    # the recorded signal regenerates the stored input exactly
    np.testing.assert_allclose([sig(tk)[0] for tk in ds["time"].values[1]], u[1], rtol=0, atol=1e-14)


def test_user_inputs_one_for_all_or_one_per_run():
    t = np.linspace(0, 5, 11)
    ds = make_dataset("mass_spring_damper", n_runs=2, t=t, inputs=lambda tt: [math.sin(tt)])
    np.testing.assert_allclose(ds["F"].values, [np.sin(t), np.sin(t)], atol=1e-15)
    ds = make_dataset("mass_spring_damper", n_runs=2, t=t,
                      inputs=[lambda tt: [1.0], lambda tt: [2.0]])
    np.testing.assert_array_equal(ds["F"].values, [[1.0] * 11, [2.0] * 11])
    assert json.loads(ds.attrs["input_signals"]) == {"run0": "user", "run1": "user"}
    with pytest.raises(ConfigError, match=r"'logistic' has no inputs; inputs= must be None"):
        make_dataset("logistic", inputs=lambda tt: [1.0])


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"n_runs": 0}, ConfigError, r"n_runs must be an integer >= 1; got 0"),
    ({"n_obs": 1}, ConfigError, r"n_obs must be an integer >= 2; got 1"),
    ({"noise": -0.1}, ConfigError, r"noise must be >= 0 .*; got -0.1"),
    ({"missing": 1.0}, ConfigError, r"missing must be a fraction in \[0, 1\) .*; got 1.0"),
    ({"seed": 1.5}, ConfigError, r"seed must be a non-negative integer; got 1.5"),
    ({"method": "Euler"}, ConfigError, r"method must be one of"),
    ({"params": {"k": 1.0}}, ParameterError, r"no parameter 'k'; its parameters are \['r', 'K'\]"),
])
def test_bad_options_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        make_dataset("logistic", **kwargs)


@pytest.mark.parametrize("name", systems.list())
def test_every_system_makes_a_dataset_over_its_typical_span(name):
    s = systems.get(name)
    ds = make_dataset(s, n_runs=2, n_obs=30, noise=0.0, seed=0)
    for v in s.states:
        values = ds[v].values
        assert np.isfinite(values).all()
        # every state moves over the typical span (dynamics, not a constant): > 1 % of its size
        assert np.all(np.ptp(values, axis=1) > 0.01 * np.abs(values).max()), v


def test_sum_of_sines_checks_its_shape():
    with pytest.raises(ConfigError, match=r"cycles has 0 rows for 1 inputs"):
        SumOfSines(t0=0.0, duration=1.0, scale=(1.0,), cycles=(), weights=((1.0,),), phases=((0.0,),))
    with pytest.raises(ConfigError, match=r"duration must be positive; got 0.0"):
        SumOfSines(t0=0.0, duration=0.0, scale=(), cycles=(), weights=(), phases=())
