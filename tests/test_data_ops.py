"""Splits by run and by time, scaling statistics, and the padded-tensor crossing into torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr

from sysid.data import (
    DataWarning,
    Scaling,
    TrajectoryBatch,
    compute_scaling,
    from_arrays,
    from_tensors,
    run_ids,
    split_runs,
    split_time,
    to_tensors,
)
from sysid.errors import ConfigError, DataError


def make(n_runs=4):
    rng = np.random.default_rng(0)
    times = [np.sort(rng.uniform(0, 10, size=5 + r)) for r in range(n_runs)]
    x = [rng.normal(size=t.size) for t in times]
    x[0][1] = np.nan
    u = [rng.normal(size=t.size) for t in times]
    return from_arrays(times, {"x": x, "y": [v * 2 for v in x], "u": u}, states=["x", "y"], inputs=["u"],
                       runs=[f"r{i}" for i in range(n_runs)], units={"x": "m", "y": "K", "u": "V", "time": "s"},
                       long_names={"x": "position"})


# ---------------------------------------------------------------- splits


def test_split_runs_by_ids_trims_padding():
    ds = make()
    train, test = split_runs(ds, ["r3", "r0"])
    assert run_ids(train) == ["r1", "r2"] and run_ids(test) == ["r0", "r3"]
    assert train.sizes["obs"] == 7 and test.sizes["obs"] == 8  # the longest run of each part
    xr.testing.assert_identical(test.isel(trajectory=1), ds.sel(trajectory="r3"))
    assert train.attrs == ds.attrs


def test_split_runs_by_fraction_last_or_seeded():
    ds = make()
    assert run_ids(split_runs(ds, 0.5)[1]) == ["r2", "r3"]
    a = run_ids(split_runs(ds, 0.5, seed=3)[1])
    assert a == run_ids(split_runs(ds, 0.5, seed=3)[1]) and len(a) == 2


def test_split_runs_errors():
    ds = make()
    with pytest.raises(DataError, match=r"split_runs: no run 'r9'; runs are \['r0', 'r1', 'r2', 'r3'\]"):
        split_runs(ds, ["r9"])
    with pytest.raises(DataError, match=r"leaves no training run \(the dataset has 4 runs\)"):
        split_runs(ds, ["r0", "r1", "r2", "r3"])
    with pytest.raises(DataError, match=r"leaves no training run \(the dataset has 1 run\)"):
        split_runs(make(1), 0.3)
    with pytest.raises(ConfigError, match=r"a holdout fraction must lie in \(0, 1\); got 1.5"):
        split_runs(ds, 1.5)
    with pytest.raises(ConfigError, match=r"got the string 'r1' \(write holdout=\['r1'\]\)"):
        split_runs(ds, "r1")


def test_split_time_tail_covers_last_fraction():
    ds = from_arrays([np.arange(11.0), np.arange(0.0, 21.0, 2.0)[:6]],
                     {"x": [np.arange(11.0), np.arange(6.0)]}, states=["x"])
    head, tail = split_time(ds, 0.3)
    # run0 spans [0, 10] -> cut at 7; run1 spans [0, 10] in steps of 2 -> cut at 7
    np.testing.assert_array_equal(head["time"].values[0], np.arange(8.0))
    np.testing.assert_array_equal(tail["time"].values[0], [8.0, 9.0, 10.0])
    np.testing.assert_array_equal(tail["time"].values[1], [8.0, 10.0, np.nan])
    np.testing.assert_array_equal(tail["x"].values[1], [4.0, 5.0, np.nan])
    assert head["x"].attrs == ds["x"].attrs


def test_split_time_errors():
    ds = from_arrays([np.arange(4.0)], {"x": [np.arange(4.0)]}, states=["x"])
    with pytest.raises(DataError, match=r"split_time: run 'run0' would have 1 sample in the tail \(cut at t=2.4\)"):
        split_time(ds, 0.2)
    with pytest.raises(ConfigError, match=r"fraction must lie in \(0, 1\); got 0"):
        split_time(ds, 0)


# ---------------------------------------------------------------- scaling


def test_compute_scaling_ignores_nan_and_matches_numpy():
    ds = make()
    s = compute_scaling(ds, time_scale="duration")
    assert s.names == ("x", "y", "u")
    x = ds["x"].values
    np.testing.assert_allclose(s.mean[0], np.nanmean(x), rtol=1e-14)  # same sums, different order
    np.testing.assert_allclose(s.scale[0], np.nanstd(x), rtol=1e-14)
    np.testing.assert_allclose(s.scale[1], 2 * s.scale[0], rtol=1e-14)
    T = ds["time"].values
    assert s.time_scale == np.median(np.nanmax(T, 1) - np.nanmin(T, 1))
    assert compute_scaling(ds, time_scale=2.5).time_scale == 2.5
    assert compute_scaling(ds, ["u", "x"], time_scale=2.5).names == ("u", "x")


def test_compute_scaling_default_time_is_the_characteristic_time():
    # x = sin(w t) over whole periods: std / rms(dx/dt) = 1 / w exactly; the run lasts 10 periods
    w = 3.0
    t = np.linspace(0.0, 10 * 2 * np.pi / w, 2001)
    ds = from_arrays([t], {"x": [np.sin(w * t)]}, states=["x"])
    # derivatives from 7-point local quadratics (~200 samples per period) are off by < 0.1 %
    assert compute_scaling(ds).time_scale == pytest.approx(1.0 / w, rel=2e-3)


def test_fit_scales_measured_states_and_inputs_with_the_same_rule():
    import sysid

    ds = sysid.systems.make_dataset("mass_spring_damper", n_runs=2, n_obs=40, noise=0.01, seed=0)
    model = sysid.models.neural(sysid.data.state_names(ds), sysid.data.input_names(ds), width=4)
    result = sysid.fit(model, ds, sysid.FitConfig(epochs=1, warm_start=False, progress=False))
    by_hand = compute_scaling(ds)
    assert result.model.scaling == by_hand


def test_scaling_constant_variable_and_round_trip():
    ds = from_arrays([np.arange(3.0)], {"x": [np.arange(3.0)], "k": [np.full(3, 7.0)],
                                        "z": [np.zeros(3)]}, states=["x", "k", "z"])
    with pytest.warns(DataWarning, match=r"'z' is constant \(0\); its scale is set to 1"), \
            pytest.warns(DataWarning, match=r"'k' is constant \(7\); its scale is set to 7"):
        s = compute_scaling(ds)
    assert s.scale[1] == 7.0 and s.mean[1] == 7.0
    assert s.scale[2] == 1.0 and s.mean[2] == 0.0  # a constant 0 keeps scale 1
    d = json.loads(json.dumps(s.to_dict()))
    assert Scaling.from_dict(d) == s
    z = s.normalise(np.array([[2.0, 7.0, 0.0]]))
    np.testing.assert_allclose(s.denormalise(z), [[2.0, 7.0, 0.0]], rtol=0, atol=1e-15)
    zt = s.normalise(torch.tensor([[2.0, 7.0, 0.0]], dtype=torch.float64))
    np.testing.assert_allclose(zt.numpy(), z, rtol=0, atol=0)
    assert s.select(["k"]).mean.tolist() == [7.0]


def test_compute_scaling_errors():
    ds = make()
    with pytest.raises(ConfigError, match=r"compute_scaling: \['w'\] are not variables of the data; "
                                          r"its variables are \['x', 'y', 'u'\]"):
        compute_scaling(ds, ["x", "w"])
    with pytest.raises(ConfigError, match=r"time_scale must be one of \['characteristic', "
                                          r"'duration'\] or a positive number; got 'years'"):
        compute_scaling(ds, time_scale="years")
    with pytest.raises(ConfigError, match=r"time_scale must be .*got -1.0"):
        compute_scaling(ds, time_scale=-1.0)


def test_scaling_validation():
    with pytest.raises(ConfigError, match=r"scales must be finite and > 0; got \[0.0\]"):
        Scaling(names=("x",), mean=[0.0], scale=[0.0], time_scale=1.0)
    with pytest.raises(ConfigError, match=r"1 names need 1 means and scales; got 2 and 1"):
        Scaling(names=("x",), mean=[0.0, 1.0], scale=[1.0], time_scale=1.0)
    with pytest.raises(ConfigError, match=r"unknown keys \['offset'\], missing keys \['time_scale'\]"):
        Scaling.from_dict({"names": ["x"], "mean": [0], "scale": [1], "offset": 0})
    with pytest.raises(TypeError):
        Scaling(["x"], [0.0], [1.0], 1.0)  # keyword-only


# ---------------------------------------------------------------- tensors


def test_to_tensors_shapes_masks_padding():
    ds = make()
    b = to_tensors(ds)
    R, N = 4, 8
    assert b.t.shape == (R, N) and b.y.shape == (R, N, 2) and b.u.shape == (R, N, 1)
    assert b.t.dtype == torch.float32 and b.y_mask.dtype == torch.bool
    assert b.lengths.tolist() == [5, 6, 7, 8]
    # padding repeats the run's last time, values are 0 and masked out
    assert torch.all(b.t[0, 5:] == b.t[0, 4])
    assert not b.y_mask[0, 5:].any() and torch.all(b.y[0, 5:] == 0)
    assert not b.y_mask[0, 1, 0] and b.y[0, 1, 0] == 0  # the missing measurement
    assert b.units == {"x": "m", "y": "K", "u": "V"} and b.time_units == "s"
    assert b.to(dtype=torch.float64).t.dtype == torch.float64


def test_tensor_round_trip_is_exact_in_float64():
    ds = make()
    back = from_tensors(to_tensors(ds, dtype=torch.float64), like=ds)
    xr.testing.assert_identical(back, ds)
    plain = from_tensors(to_tensors(ds, dtype=torch.float64))
    xr.testing.assert_equal(plain, ds)
    assert plain["x"].attrs["units"] == "m"


def test_tensors_without_inputs():
    ds = from_arrays([np.arange(3.0)], {"x": [np.arange(3.0)]}, states=["x"])
    b = to_tensors(ds)
    assert b.u.shape == (1, 3, 0) and b.u_mask.shape == (1, 3, 0)
    xr.testing.assert_identical(from_tensors(b.to(dtype=torch.float64), like=ds), ds)


def test_tensor_errors():
    ds = make()
    with pytest.raises(DataError, match=r"dtype must be a floating-point torch dtype; got torch.int64"):
        to_tensors(ds, dtype=torch.int64)
    b = to_tensors(ds)
    with pytest.raises(DataError, match=r"like= has variables \['x'\]"):
        from_tensors(b, like=from_arrays([np.arange(2.0)], {"x": [np.arange(2.0)]}, states=["x"]))
    with pytest.raises(DataError, match=r"TrajectoryBatch: y must have shape \(4, 8, 2\); got \(4, 8, 3\)"):
        TrajectoryBatch(run_ids=b.run_ids, state_names=b.state_names, input_names=b.input_names, t=b.t,
                        y=torch.zeros(4, 8, 3), y_mask=b.y_mask, u=b.u, u_mask=b.u_mask, lengths=b.lengths,
                        units=b.units)
