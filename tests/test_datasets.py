"""Shipped datasets: they load into the schema with units and citations, match their files and the
published reference fits, and round-trip through netCDF."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import xarray as xr
from scipy.integrate import solve_ivp
from scipy.optimize import curve_fit, least_squares

import sysid.datasets as sd
from sysid.data import get_run, load_netcdf, save, state_names, validate
from sysid.errors import SysidError

EXPECTED = ["bod", "hare_lynx", "hare_lynx_1845_1935", "influenza_1978", "lynx_trappings", "mauna_loa_co2",
            "sunspots", "theophylline", "us_macrodata", "us_phillips", "us_population"]


def test_catalogue_names_and_info():
    assert sd.list() == EXPECTED
    meta = sd.info("influenza_1978")
    assert "BMJ" in meta.citation or "British Medical Journal" in meta.citation
    assert "beta = 1.669" in meta.reference_fit
    assert sd.path("bod").name == "bod_biochemical_oxygen_demand.csv" and sd.path("bod").is_file()


@pytest.mark.parametrize("name", EXPECTED)
def test_every_dataset_loads_with_units_and_citation(name):
    ds = validate(sd.load(name))
    meta = sd.info(name)
    assert ds.attrs["citation"] == meta.citation and ds.attrs["dataset"] == name
    assert ds.attrs["source"] == f"datasets/{meta.file}"
    assert ds.attrs["source_sha256"] == hashlib.sha256(sd.path(name).read_bytes()).hexdigest()
    assert state_names(ds) == [v.name for v in meta.states]
    for v in meta.states:
        assert ds[v.name].attrs["units"] == v.units and ds[v.name].attrs["long_name"] == v.long_name
    assert ds["time"].attrs["units"] == meta.time.units


def test_shipped_files_equal_the_shared_originals(shared_datasets):
    for name in EXPECTED:
        rel = sd.info(name).file
        assert sd.path(name).read_bytes() == (shared_datasets / rel).read_bytes(), rel


def test_values_match_the_files():
    hl = get_run(sd.load("hare_lynx"), "hare_lynx")
    np.testing.assert_array_equal(hl["time"].values, np.arange(1900.0, 1921.0))
    assert (hl["hare"].values[0], hl["lynx"].values[-1]) == (30.0, 8.6)
    flu = get_run(sd.load("influenza_1978"), "influenza_1978")
    np.testing.assert_array_equal(flu["time"].values, np.arange(1.0, 15.0))
    assert flu["in_bed"].values[:3].tolist() == [3.0, 8.0, 26.0]
    co2 = sd.load("mauna_loa_co2")
    # missing weeks stay NaN: 59 empty cells in the file
    assert int(co2["co2"].isnull().sum()) == 59 and co2.sizes["obs"] == 2284
    assert co2.attrs["dt_min"] == co2.attrs["dt_max"] == 7.0
    assert co2["time"].attrs["origin"] == "1958-03-29T00:00:00"
    theo = sd.load("theophylline")
    assert theo["trajectory"].values.tolist() == [str(i) for i in range(1, 13)]
    assert (theo["dose"].values[0], theo["weight"].values[-1]) == (4.02, 60.5)
    mac = sd.load("us_macrodata")
    assert mac["time"].values[0, :2].tolist() == [1959.0, 1959.25]
    phil = get_run(sd.load("us_phillips"), "us_phillips")
    assert phil["unem"].values[0] == pytest.approx(3.8, abs=1e-6)  # stored as 3.799999952316284


def test_bod_reproduces_the_published_fit():
    bod = get_run(sd.load("bod"), "bod")
    t, y = bod["time"].values, bod["demand"].values
    (A, k), _ = curve_fit(lambda t, A, k: A * (1 - np.exp(-k * t)), t, y, p0=(20.0, 0.5))
    # Bates & Watts report A = 19.143, k = 0.5311 to the digits shown
    assert A == pytest.approx(19.143, abs=6e-4) and k == pytest.approx(0.5311, abs=6e-5)


def test_influenza_reproduces_the_sir_fit():
    flu = get_run(sd.load("influenza_1978"), "influenza_1978")
    t, obs = flu["time"].values, flu["in_bed"].values

    def residual(p):
        beta, gamma = p
        sol = solve_ivp(lambda _t, y: [-beta * y[0] * y[1] / 763, beta * y[0] * y[1] / 763 - gamma * y[1]],
                        (0.0, t[-1]), [762.0, 1.0], t_eval=t, rtol=1e-10, atol=1e-10)
        return sol.y[1] - obs

    fit = least_squares(residual, x0=[1.5, 0.5])
    # the reference (README) gives beta = 1.669, gamma = 0.4435 to the digits shown
    assert fit.x[0] == pytest.approx(1.669, abs=1e-3) and fit.x[1] == pytest.approx(0.4435, abs=1e-4)


def test_shipped_dataset_round_trips_through_netcdf(tmp_path):
    ds = sd.load("theophylline")
    xr.testing.assert_identical(load_netcdf(save(ds, tmp_path / "theo.nc")), ds)


def test_unknown_name_suggests():
    with pytest.raises(SysidError, match=r"no dataset 'hare_lnyx'; datasets are \[.*\]\. Did you mean 'hare_lynx'\?"):
        sd.load("hare_lnyx")
    with pytest.raises(KeyError):
        sd.info("nothing")


def test_per_run_coordinates_survive_the_tensor_round_trip():
    import torch

    from sysid.data import from_tensors, to_tensors

    theo = sd.load("theophylline")
    back = from_tensors(to_tensors(theo, dtype=torch.float64), like=theo)
    xr.testing.assert_identical(back, theo)
