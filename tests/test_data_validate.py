"""validate(ds): every schema violation is an error naming the run, variable and sample."""

from __future__ import annotations

import numpy as np
import pytest

from sysid.data import from_arrays, get_run, validate
from sysid.errors import DataError


def make():
    return from_arrays(
        [np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.5])],
        {"x": [np.array([1.0, np.nan, 3.0]), np.array([4.0, 5.0])],
         "u": [np.array([0.0, 1.0, 0.0]), np.array([1.0, 1.0])]},
        states=["x"], inputs=["u"], runs=["a", "b"], units={"x": "m", "time": "s"},
    )


def test_valid_dataset_passes_and_is_returned():
    ds = make()
    assert validate(ds) is ds


def test_get_run_drops_padding():
    one = get_run(make(), "b")
    assert one["x"].dims == ("time",)
    np.testing.assert_array_equal(one["time"].values, [0.0, 0.5])
    assert one["time"].attrs["units"] == "s"
    with pytest.raises(DataError, match=r"get_run: no run 'c'; runs are \['a', 'b'\]"):
        get_run(make(), "c")


def test_time_gap_inside_a_run():
    ds = make()
    ds["time"].values[0, 1] = np.nan
    with pytest.raises(DataError, match=r"validate: arrays: run 'a' has no time at sample 2 but later samples"):
        validate(ds)


def test_time_not_increasing_and_duplicated():
    ds = make()
    ds["time"].values[0, 2] = 0.5
    with pytest.raises(DataError, match=r"run 'a' has time 0.5 at sample 3 after 1 at sample 2"):
        validate(ds)
    ds["time"].values[0, 2] = 1.0
    with pytest.raises(DataError, match=r"time must not repeat within a run; run 'a' has time 1 twice, at sample 2 "
                                        r"and sample 3"):
        validate(ds)


def test_infinite_time_and_values():
    ds = make()
    ds["time"].values[1, 1] = np.inf
    with pytest.raises(DataError, match=r"run 'b' has time inf at sample 2; time must be finite"):
        validate(ds, where="mydata.nc")
    ds = make()
    ds["u"].values[1, 0] = -np.inf
    with pytest.raises(DataError, match=r"validate: mydata\.nc: 'u' is -inf in run 'b' at sample 1"):
        validate(ds, where="mydata.nc")


def test_too_few_samples():
    ds = make()
    ds["time"].values[1, 1] = np.nan
    ds["x"].values[1, 1] = np.nan
    ds["u"].values[1, 1] = np.nan
    with pytest.raises(DataError, match=r"run 'b' has 1 sample; at least 2 are needed \(min_samples=2\)"):
        validate(ds)
    assert validate(ds, min_samples=1) is ds


def test_values_in_padding():
    ds = make()
    ds["x"].values[1, 2] = 7.0
    with pytest.raises(DataError, match=r"'x' has a value in run 'b' at sample 3, after the run's last time"):
        validate(ds)


def test_variable_without_values_or_role():
    ds = make()
    ds["x"].values[:] = np.nan
    with pytest.raises(DataError, match=r"state 'x' has no values \(every sample is missing\)"):
        validate(ds)
    ds = make()
    ds["u"].attrs["role"] = "forcing"
    with pytest.raises(DataError, match=r"variable 'u' has role 'forcing'; it must be one of \['state', 'input'\]"):
        validate(ds)
    ds = make()
    ds["x"].attrs["role"] = "input"
    with pytest.raises(DataError, match=r"the dataset has no state variable"):
        validate(ds)


def test_structure_errors():
    with pytest.raises(DataError, match=r"validate: expected an xarray.Dataset; got dict"):
        validate({})
    ds = make().rename({"obs": "sample"})
    with pytest.raises(DataError, match=r"the dataset has no 'obs' dimension"):
        validate(ds)
    ds = make()
    ds = ds.assign_coords(trajectory=["a", "a"])
    with pytest.raises(DataError, match=r"run ids must be unique; \['a'\] appear more than once"):
        validate(ds)


def test_from_arrays_rejects_reserved_names():
    with pytest.raises(DataError, match=r"variables may not be named \['time'\]"):
        from_arrays([np.arange(2.0)], {"time": [np.arange(2.0)]}, states=["time"])
