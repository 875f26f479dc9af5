"""Property tests (hypothesis) of the CSV loader: exact round trips and rejection of bad cells."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sysid.data import DataWarning, from_arrays, load_csv, load_netcdf, save, to_csv
from sysid.errors import DataError

@contextlib.contextmanager
def _quiet():
    """Silence the constant-column warning a drawn table may legitimately trigger."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        yield


SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
maybe_missing = st.one_of(finite, st.just(float("nan")))


@st.composite
def datasets(draw):
    n_runs = draw(st.integers(1, 3))
    times, xs, us = [], [], []
    for _ in range(n_runs):
        t = draw(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=2, max_size=8, unique=True))
        n = len(t)
        times.append(np.sort(np.array(t)))
        x = draw(st.lists(maybe_missing, min_size=n, max_size=n))
        x[0] = draw(finite)  # every state has at least one value
        xs.append(np.array(x))
        us.append(np.array(draw(st.lists(maybe_missing, min_size=n, max_size=n))))
    if all(np.isnan(u).all() for u in us):
        us[0][0] = 1.0
    runs = draw(st.lists(st.text("abcXYZ019_-", min_size=1, max_size=5), min_size=n_runs, max_size=n_runs,
                         unique=True))
    return from_arrays(times, {"x": xs, "u": us}, states=["x"], inputs=["u"], runs=runs,
                       units={"x": "m/s^2", "u": "V", "time": "s"})


@SETTINGS
@given(ds=datasets())
def test_any_finite_table_round_trips_through_csv_and_netcdf(tmp_path_factory, ds):
    path = to_csv(ds, tmp_path_factory.mktemp("rt") / "t.csv")
    with _quiet():
        back = load_csv(path, time="time", states=["x"], inputs=["u"], trajectory="trajectory")
    xr.testing.assert_equal(back, ds)  # bit-exact values, NaN where missing, same run ids
    assert back["x"].attrs["units"] == "m/s^2" and back["time"].attrs["units"] == "s"
    # and CSV -> Dataset -> netCDF -> Dataset is identical, attributes included
    nc = save(back, path.with_suffix(".nc"))
    xr.testing.assert_identical(load_netcdf(nc), back)


@SETTINGS
@given(
    n_rows=st.integers(2, 12),
    column=st.sampled_from(["x", "y"]),
    data=st.data(),
    token=st.text("qwrtyuopsdfghjklzxcvbm#@!", min_size=1, max_size=4),
)
def test_a_bad_cell_is_named_by_row_and_column(tmp_path_factory, n_rows, column, data, token):
    row = data.draw(st.integers(0, n_rows - 1))
    lines = ["t,x,y"] + [f"{i},{0.5 * i},{-1.25 * i}" for i in range(n_rows)]
    cells = lines[row + 1].split(",")
    cells[1 if column == "x" else 2] = token
    lines[row + 1] = ",".join(cells)
    path = tmp_path_factory.mktemp("bad") / "b.csv"
    path.write_text("\n".join(lines) + "\n")
    # row + 2: the header is spreadsheet row 1, so data row 0 is row 2
    with pytest.raises(DataError, match=rf"column '{column}' must hold numbers; it has row {row + 2} '{token}'"):
        load_csv(path, time="t", states=["x", "y"])


@SETTINGS
@given(ds=datasets(), sep=st.sampled_from([";", "\t", "|"]))
def test_delimiter_detection_reads_the_same_table(tmp_path_factory, ds, sep):
    folder = tmp_path_factory.mktemp("sep")
    text = to_csv(ds, folder / "c.csv").read_text()
    other = folder / "o.csv"
    other.write_text(text.replace(",", sep))
    with _quiet():
        a = load_csv(folder / "c.csv", time="time", states=["x"], inputs=["u"], trajectory="trajectory")
        b = load_csv(other, time="time", states=["x"], inputs=["u"], trajectory="trajectory")
    xr.testing.assert_equal(a, b)
