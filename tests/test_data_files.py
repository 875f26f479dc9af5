"""netCDF / zarr / CSV files: identical round trips, atomic writes, and errors naming the file."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr

from sysid.data import from_arrays, load_csv, load_netcdf, load_zarr, save, to_csv
from sysid.errors import DataError


@pytest.fixture
def csv_dataset(tmp_path):
    text = ("run,date,x [m],v (m/s),u [V]\n"
            "a,2020-03-01,1.5,0.25,0\n"
            "a,2020-03-02,1.25,,1\n"
            "a,2020-03-04,0.125,-0.5,1\n"
            "b,2020-03-02,2.0,0.1,0\n"
            "b,2020-03-05,3.0,0.2,\n")
    f = tmp_path / "lab.csv"
    f.write_text(text)
    return load_csv(f, time="date", states=["x", "v"], inputs=["u"], trajectory="run")


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_csv_to_file_to_dataset_identical(tmp_path, csv_dataset, suffix):
    path = save(csv_dataset, tmp_path / f"out{suffix}")
    back = load_netcdf(path) if suffix == ".nc" else load_zarr(path)
    xr.testing.assert_identical(back, csv_dataset)
    # the checks above compare values, dims, coords and every attribute, including these
    assert back["time"].attrs["origin"] == "2020-03-01T00:00:00"
    assert back["v"].attrs["units"] == "m/s"
    assert np.isnan(back["v"].values[0, 1])


def test_dataset_to_csv_to_dataset(tmp_path, csv_dataset):
    path = to_csv(csv_dataset, tmp_path / "long.csv")
    header = path.read_text().splitlines()[0]
    assert header == "trajectory,time [days],x [m],v [m/s],u [V]"
    back = load_csv(path, time="time", states=["x", "v"], inputs=["u"], trajectory="trajectory")
    xr.testing.assert_equal(back, csv_dataset)  # values and coords; provenance attrs differ
    for name in ("x", "v", "u"):
        assert back[name].attrs == csv_dataset[name].attrs


def test_save_refuses_to_overwrite_and_replaces_with_option(tmp_path, csv_dataset):
    path = save(csv_dataset, tmp_path / "d.nc")
    with pytest.raises(DataError, match=r"save: .*d\.nc exists; pass overwrite=True"):
        save(csv_dataset, path)
    changed = csv_dataset.assign(x=csv_dataset["x"] * 2)
    save(changed, path, overwrite=True)
    xr.testing.assert_identical(load_netcdf(path), changed)
    zpath = save(csv_dataset, tmp_path / "d.zarr")
    save(changed, zpath, overwrite=True)
    xr.testing.assert_identical(load_zarr(zpath), changed)
    # no temporary files are left next to the targets
    assert sorted(os.listdir(tmp_path)) == ["d.nc", "d.zarr", "lab.csv"]
    with pytest.raises(DataError, match=r"to_csv: .*d\.nc exists"):
        to_csv(csv_dataset, path)


def test_failed_write_leaves_target_untouched(tmp_path, csv_dataset):
    path = save(csv_dataset, tmp_path / "keep.nc")
    before = path.read_bytes()
    broken = csv_dataset.copy()
    broken.attrs["bad"] = {"nested": "dicts cannot be netCDF attributes"}
    with pytest.raises(DataError, match=r"save: .*keep\.nc: the dataset cannot be written as netCDF \(TypeError"):
        save(broken, path, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["keep.nc", "lab.csv"]


def test_save_and_load_errors(tmp_path, csv_dataset):
    with pytest.raises(DataError, match=r"save: .*d\.h5 has suffix '\.h5'; use \.nc for netCDF or \.zarr"):
        save(csv_dataset, tmp_path / "d.h5")
    with pytest.raises(DataError, match=r"save: folder .*nowhere does not exist"):
        save(csv_dataset, tmp_path / "nowhere" / "d.nc")
    with pytest.raises(DataError, match=r"load_netcdf: file not found: .*absent\.nc"):
        load_netcdf(tmp_path / "absent.nc")
    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(DataError, match=r"load_netcdf: .*junk\.nc could not be read as netCDF"):
        load_netcdf(junk)


def test_load_netcdf_validates_and_names_the_file(tmp_path):
    ds = from_arrays([np.array([0.0, 1.0, 2.0])], {"x": [np.array([1.0, 2.0, 3.0])]}, states=["x"])
    bad = ds.copy(deep=True)
    bad["time"].values[0, 2] = 0.5
    path = save(bad, tmp_path / "bad.nc")
    with pytest.raises(DataError, match=r"validate: load_netcdf: .*bad\.nc: time must increase within each run; "
                                        r"run 'run0' has time 0.5 at sample 3 after 1 at sample 2"):
        load_netcdf(path)


def test_to_csv_units_with_brackets(tmp_path):
    ds = from_arrays([np.array([0.0, 1.0])], {"w": [np.array([1.0, 2.0])]}, states=["w"],
                     units={"w": "kg [dry]"})
    path = to_csv(ds, tmp_path / "w.csv")
    assert path.read_text().splitlines()[0] == "trajectory,time,w (kg [dry])"
    back = load_csv(path, time="time", states=["w"], trajectory="trajectory")
    assert back["w"].attrs["units"] == "kg [dry]"
