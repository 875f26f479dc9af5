"""load_csv and from_dataframe: layouts, units, times, and every bad input of the data checklist."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from sysid.data import DataWarning, from_dataframe, load_csv, run_ids
from sysid.errors import ConfigError, DataError


def write(folder, name, text, encoding="utf-8"):
    p = folder / name
    p.write_bytes(text.encode(encoding))
    return p


# ---------------------------------------------------------------- layouts and parsing


def test_single_run_units_from_headers(tmp_path):
    f = write(tmp_path, "cell.csv", "t [s], x (m) ,v [m/s]\n0,1.0,0.5\n0.5,1.5,\n1.0,2.0,0.25\n")
    ds = load_csv(f, time="t", states=["x", "v [m/s]"])
    assert run_ids(ds) == ["cell"]
    assert list(ds.data_vars) == ["x", "v"]
    assert ds["x"].attrs == {"role": "state", "units": "m", "long_name": "x"}
    assert ds["v"].attrs["units"] == "m/s"
    assert ds["time"].attrs["units"] == "s"
    np.testing.assert_array_equal(ds["time"].values, [[0.0, 0.5, 1.0]])
    # the empty cell stays a missing value, nothing is dropped or interpolated
    np.testing.assert_array_equal(ds["v"].values, [[0.5, np.nan, 0.25]])
    assert ds.attrs["dt_median"] == 0.5 and ds.attrs["sampling"] == "regular"
    assert len(ds.attrs["source_sha256"]) == 64


def test_long_format_runs_in_order_of_appearance_and_inputs(tmp_path):
    text = "run,t,x,u\nB,0,1,0\nB,1,2,1\nA,0,3,0\nA,2,4,1\nA,3,5,1\n"
    ds = load_csv(write(tmp_path, "long.csv", text), time="t", states=["x"], inputs=["u"], trajectory="run")
    assert run_ids(ds) == ["B", "A"]
    assert ds["u"].attrs["role"] == "input"
    np.testing.assert_array_equal(ds["time"].values, [[0, 1, np.nan], [0, 2, 3]])
    np.testing.assert_array_equal(ds["x"].values, [[1, 2, np.nan], [3, 4, 5]])
    assert ds.attrs["sampling"] == "irregular"
    assert (ds.attrs["dt_min"], ds.attrs["dt_max"]) == (1.0, 2.0)


def test_several_run_columns_together(tmp_path):
    text = "split,traj,t,x\ntrain,0,0,1\ntrain,0,1,2\nval,0,0,3\nval,0,1,4\n"
    ds = load_csv(write(tmp_path, "p.csv", text), time="t", states=["x"], trajectory=["split", "traj"])
    assert run_ids(ds) == ["train/0", "val/0"]


def test_one_file_per_run_list_and_glob(tmp_path):
    write(tmp_path, "r1.csv", "t,x\n0,1\n1,2\n")
    write(tmp_path, "r2.csv", "t,x\n0,5\n2,6\n3,7\n")
    by_glob = load_csv(str(tmp_path / "r*.csv"), time="t", states=["x"])
    by_list = load_csv([tmp_path / "r1.csv", tmp_path / "r2.csv"], time="t", states=["x"])
    assert run_ids(by_glob) == ["r1", "r2"]
    np.testing.assert_array_equal(by_glob["x"].values, by_list["x"].values)
    np.testing.assert_array_equal(by_glob["x"].values, [[1, 2, np.nan], [5, 6, 7]])


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_delimiter_sniffed(tmp_path, sep):
    f = write(tmp_path, "d.csv", f"t{sep}x\n0{sep}1.5\n1{sep}2.5\n")
    np.testing.assert_array_equal(load_csv(f, time="t", states=["x"])["x"].values, [[1.5, 2.5]])


def test_whitespace_delimited(tmp_path):
    f = write(tmp_path, "w.txt", "t   x\n0  1.5\n1  2.5\n")
    np.testing.assert_array_equal(load_csv(f, time="t", states=["x"])["x"].values, [[1.5, 2.5]])


def test_decimal_comma_with_option(tmp_path):
    f = write(tmp_path, "eu.csv", "t;x\n0,5;1,25\n1,5;-2,5e-1\n")
    ds = load_csv(f, time="t", states=["x"], decimal=",")
    np.testing.assert_array_equal(ds["x"].values, [[1.25, -0.25]])
    np.testing.assert_array_equal(ds["time"].values, [[0.5, 1.5]])


def test_bom_and_latin1_with_encoding(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufefft,x\n0,1\n1,2\n".encode())
    assert load_csv(bom, time="t", states=["x"])["x"].values.tolist() == [[1.0, 2.0]]
    latin = write(tmp_path, "latin.csv", "t,T [°C]\n0,20.5\n1,21.0\n", encoding="latin-1")
    with pytest.raises(DataError, match=r"latin\.csv is not valid utf-8-sig text \(byte 0xb0 on line 1\).*encoding='latin-1'"):
        load_csv(latin, time="t", states=["T"])
    ds = load_csv(latin, time="t", states=["T"], encoding="latin-1")
    assert ds["T"].attrs["units"] == "°C"


def test_missing_value_markers_kept_as_nan(tmp_path):
    f = write(tmp_path, "m.csv", "t,x,y\n0,1,-\n1,NA,2\n2,3,?\n")
    ds = load_csv(f, time="t", states=["x", "y"], missing_values=["-", "?"])
    np.testing.assert_array_equal(ds["x"].values, [[1, np.nan, 3]])
    np.testing.assert_array_equal(ds["y"].values, [[np.nan, 2, np.nan]])


def test_numeric_time_kept_as_given(tmp_path):
    ds = load_csv(write(tmp_path, "y.csv", "year,n\n1900,30\n1901,47\n"), time="year", states=["n"])
    np.testing.assert_array_equal(ds["time"].values, [[1900.0, 1901.0]])
    assert ds["time"].attrs["long_name"] == "year" and "origin" not in ds["time"].attrs


def test_dates_become_days_from_the_earliest_timestamp(tmp_path):
    text = "run,date,x\na,1978-01-23,1\na,1978-01-25,2\nb,1978-01-22,3\nb,1978-01-24,4\n"
    ds = load_csv(write(tmp_path, "d.csv", text), time="date", states=["x"], trajectory="run")
    assert ds["time"].attrs["origin"] == "1978-01-22T00:00:00"
    assert ds["time"].attrs["units"] == "days"
    np.testing.assert_array_equal(ds["time"].values, [[1.0, 3.0], [0.0, 2.0]])


def test_datetimes_in_seconds_or_chosen_units(tmp_path):
    text = "when,x\n2020-01-01T00:00:00,1\n2020-01-01T00:00:30,2\n2020-01-01T01:30:00,3\n"
    f = write(tmp_path, "dt.csv", text)
    ds = load_csv(f, time="when", states=["x"])
    assert ds["time"].attrs["units"] == "seconds"
    np.testing.assert_array_equal(ds["time"].values, [[0.0, 30.0, 5400.0]])
    hours = load_csv(f, time="when", states=["x"], units={"when": "h"})
    assert hours["time"].attrs["units"] == "hours"
    np.testing.assert_allclose(hours["time"].values, [[0.0, 30 / 3600, 1.5]], rtol=1e-15)
    with pytest.raises(ConfigError, match=r"time units 'fortnights' for a date column must be one of"):
        load_csv(f, time="when", states=["x"], units={"when": "fortnights"})


def test_sort_and_drop_duplicates_options_recorded(tmp_path):
    f = write(tmp_path, "s.csv", "t,x\n0,1\n2,3\n1,2\n2,9\n")
    ds = load_csv(f, time="t", states=["x"], sort=True, drop_duplicates=True)
    np.testing.assert_array_equal(ds["time"].values, [[0, 1, 2]])
    np.testing.assert_array_equal(ds["x"].values, [[1, 2, 3]])
    assert ds.attrs["processing"] == ("sort=True: 1 run(s) reordered by time; drop_duplicates=True: 1 row(s) "
                                      "with a repeated time dropped (first kept)")


def test_constant_column_warns(tmp_path):
    f = write(tmp_path, "c.csv", "t,x,k\n0,1,5\n1,2,5\n2,3,5\n")
    with pytest.warns(DataWarning, match=r"column 'k' is constant \(5\)"):
        load_csv(f, time="t", states=["x", "k"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_csv(f, time="t", states=["x"])


def test_from_dataframe_numeric_and_index(tmp_path):
    df = pd.DataFrame({"x [m]": [1.0, 2.0, np.nan], "u": [0, 1, 0]}, index=pd.Index([0.0, 0.1, 0.2], name="t"))
    ds = from_dataframe(df, time="t", states=["x"], inputs=["u"], units={"t": "s"})
    assert ds["x"].attrs["units"] == "m" and ds["time"].attrs["units"] == "s"
    np.testing.assert_array_equal(ds["x"].values, [[1.0, 2.0, np.nan]])
    assert ds.attrs["source"] == "DataFrame"


def test_from_dataframe_datetime_column():
    df = pd.DataFrame({"when": pd.to_datetime(["2001-01-01", "2001-01-03"]), "x": [1.0, 2.0]})
    ds = from_dataframe(df, time="when", states=["x"])
    np.testing.assert_array_equal(ds["time"].values, [[0.0, 2.0]])
    assert ds["time"].attrs["origin"] == "2001-01-01T00:00:00"


# ---------------------------------------------------------------- the data checklist: errors


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"load_csv: file not found: .*nope\.csv"):
        load_csv(tmp_path / "nope.csv", time="t", states=["x"])
    with pytest.raises(DataError, match=r"no files match '.*zz\*\.csv'"):
        load_csv(str(tmp_path / "zz*.csv"), time="t", states=["x"])


def test_empty_file_and_header_only(tmp_path):
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        load_csv(write(tmp_path, "empty.csv", "\n  \n"), time="t", states=["x"])
    with pytest.raises(DataError, match=r"head\.csv: the file has a header row \(\['t', 'x'\]\) but no data rows"):
        load_csv(write(tmp_path, "head.csv", "t,x\n\n"), time="t", states=["x"])


def test_no_header_row(tmp_path):
    with pytest.raises(DataError, match=r"the first row \['0', '1.5'\] looks like data; the file needs a header"):
        load_csv(write(tmp_path, "nohead.csv", "0,1.5\n1,2.5\n"), time="t", states=["x"])


def test_wrong_delimiter_named(tmp_path):
    f = write(tmp_path, "semi.csv", "t;x\n0;1\n1;2\n")
    with pytest.raises(DataError, match=r"column 't' \(in time=\) not found; columns are \['t;x'\].*"
                                        r"looks ';'-delimited; pass sep=';'"):
        load_csv(f, time="t", states=["x"], sep=",")


def test_decimal_comma_detected(tmp_path):
    f = write(tmp_path, "eu.csv", "t;x\n0;1,5\n1;2,5\n")
    with pytest.raises(DataError, match=r"eu\.csv: column 'x' has '1,5' at row 2, which looks like a decimal "
                                        r"comma; pass decimal=','"):
        load_csv(f, time="t", states=["x"])
    with pytest.raises(DataError, match=r"rows do not all have the header's number of fields: row 2 has 3 fields but the header "
                                        r"has 2\. If the numbers use decimal commas"):
        load_csv(write(tmp_path, "eu2.csv", "t,x\n0,1,5\n"), time="t", states=["x"], sep=",")
    with pytest.raises(ConfigError, match=r"sep and decimal are both ','"):
        load_csv(f, time="t", states=["x"], sep=",", decimal=",")


def test_duplicate_headers(tmp_path):
    with pytest.raises(DataError, match=r"dup\.csv: column 'x' appears twice \(columns 2 and 3\)"):
        load_csv(write(tmp_path, "dup.csv", "t,x,x\n0,1,2\n1,2,3\n"), time="t", states=["x"])


def test_missing_column_lists_available_and_suggests(tmp_path):
    f = write(tmp_path, "run3.csv", "t,x,v\n0,1,2\n1,2,3\n")
    with pytest.raises(DataError, match=r"column 'theta' \(in states=\) not found; columns are \['t', 'x', 'v'\]"):
        load_csv(f, time="t", states=["theta"])
    with pytest.raises(DataError, match=r"run3\.csv: column 'vv' \(in inputs=\) not found.*Did you mean 'v'\?"):
        load_csv(f, time="t", states=["x"], inputs=["vv"])
    g = write(tmp_path, "pelts.csv", "year,hare_kpelts,lynx_kpelts\n1900,30,4\n1901,47,6\n")
    # too far apart for difflib, but the header starts with the name the user wrote
    with pytest.raises(DataError, match=r"column 'hare' \(in states=\) not found.*Did you mean 'hare_kpelts'\?"):
        load_csv(g, time="year", states=["hare"])


def test_ambiguous_bare_name(tmp_path):
    f = write(tmp_path, "amb.csv", "t,x [m],x [cm]\n0,1,2\n1,2,3\n")
    with pytest.raises(DataError, match=r"'x' \(in states=\) matches several columns \['x \[m\]', 'x \[cm\]'\]"):
        load_csv(f, time="t", states=["x"])


def test_non_numeric_cells_named_by_row_and_column(tmp_path):
    f = write(tmp_path, "bad.csv", "t,x\n0,1\n1,abc\n2,3\n3,-\n4,x1\n5,?\n")
    with pytest.raises(DataError, match=r"bad\.csv: column 'x' must hold numbers; it has row 3 'abc', row 5 '-', "
                                        r"row 6 'x1' \(and 1 more\).*missing_values=\['\-', '\?', 'abc', 'x1'\]"):
        load_csv(f, time="t", states=["x"])


def test_infinite_values_rejected(tmp_path):
    f = write(tmp_path, "inf.csv", "run,t,x\na,0,1\na,1,2\nb,0,1\nb,1,-inf\n")
    with pytest.raises(DataError, match=r"inf\.csv: column 'x' is -inf at row 5 \(run 'b'\); ±inf is not a "
                                        r"measurement"):
        load_csv(f, time="t", states=["x"], trajectory="run")


@pytest.mark.parametrize(("cell", "shown"), [("", r"missing \(empty or NaN\)"), ("inf", r"inf \(infinite\)")])
def test_missing_or_infinite_time(tmp_path, cell, shown):
    f = write(tmp_path, "t.csv", f"t,x\n0,1\n{cell},2\n2,3\n")
    with pytest.raises(DataError, match=rf"t\.csv: time must be a finite number; run 't' has time {shown} at row 3"):
        load_csv(f, time="t", states=["x"])


def test_time_not_increasing_names_run_and_rows(tmp_path):
    rows = "".join(f"B,{t},1\n" for t in (4.0, 4.5, 4.2))
    f = write(tmp_path, "o.csv", "run,t,x\nA,0,1\nA,1,1\n" + rows)
    with pytest.raises(DataError, match=r"time must increase within each run; run 'B' has time 4.2 at row 6 "
                                        r"after 4.5 at row 5\. Sort the rows by time, or pass sort=True"):
        load_csv(f, time="t", states=["x"], trajectory="run")


def test_duplicate_time_names_rows(tmp_path):
    f = write(tmp_path, "dupt.csv", "t,x\n0,1\n1,2\n1,3\n")
    with pytest.raises(DataError, match=r"run 'dupt' has time 1 twice, at row 3 and row 4\. .*drop_duplicates=True"):
        load_csv(f, time="t", states=["x"])


def test_too_few_samples(tmp_path):
    f = write(tmp_path, "few.csv", "run,t,x\na,0,1\na,1,2\nb,0,1\n")
    with pytest.raises(DataError, match=r"few\.csv: run 'b' has 1 sample; at least 2 are needed \(min_samples=2\)"):
        load_csv(f, time="t", states=["x"], trajectory="run")
    with pytest.raises(DataError, match=r"run 'a' has 2 samples; at least 3"):
        load_csv(f, time="t", states=["x"], trajectory="run", min_samples=3)


def test_state_entirely_missing(tmp_path):
    f = write(tmp_path, "gone.csv", "t,x,y\n0,1,\n1,2,NA\n")
    with pytest.raises(DataError, match=r"gone\.csv: state 'y' has no values \(every cell is empty or missing\)"):
        load_csv(f, time="t", states=["x", "y"])


def test_inconsistent_units_across_files_and_with_option(tmp_path):
    a = write(tmp_path, "a.csv", "t,x [m]\n0,1\n1,2\n")
    b = write(tmp_path, "b.csv", "t,x [cm]\n0,100\n1,200\n")
    with pytest.raises(DataError, match=r"inconsistent units for 'x': 'm' in .*a\.csv but 'cm' in .*b\.csv"):
        load_csv([a, b], time="t", states=["x"])
    with pytest.raises(DataError, match=r"a\.csv: units=\{'x': 'km'\} contradicts the header 'x \[m\]', which says 'm'"):
        load_csv(a, time="t", states=["x"], units={"x": "km"})
    assert load_csv(a, time="t", states=["x"], units={"x": "m"})["x"].attrs["units"] == "m"


def test_run_ids_unique_across_files(tmp_path):
    a = write(tmp_path, "a.csv", "run,t,x\nr,0,1\nr,1,2\n")
    b = write(tmp_path, "b.csv", "run,t,x\nr,0,1\nr,1,2\n")
    with pytest.raises(DataError, match=r"run id 'r' appears in both .*a\.csv and .*b\.csv"):
        load_csv([a, b], time="t", states=["x"], trajectory="run")


def test_reserved_and_repeated_names(tmp_path):
    f = write(tmp_path, "r.csv", "t,time,x\n0,1,2\n1,2,3\n")
    with pytest.raises(DataError, match=r"a variable may not be named 'time'"):
        load_csv(f, time="t", states=["time"])
    with pytest.raises(DataError, match=r"column 'x' is named twice"):
        load_csv(f, time="t", states=["x"], inputs=["x"])


def test_option_errors(tmp_path):
    f = write(tmp_path, "o.csv", "t,x\n0,1\n1,2\n")
    with pytest.raises(ConfigError, match=r"states and inputs are lists of column names; got a single string"):
        load_csv(f, time="t", states="x")
    with pytest.raises(ConfigError, match=r"states is empty"):
        load_csv(f, time="t", states=[])
    with pytest.raises(ConfigError, match=r"decimal must be '\.' or ','; got ';'"):
        load_csv(f, time="t", states=["x"], decimal=";")


def test_empty_run_id_cell(tmp_path):
    f = write(tmp_path, "ids.csv", "run,t,x\na,0,1\n,1,2\n")
    with pytest.raises(DataError, match=r"the run column 'run' is empty at row 3"):
        load_csv(f, time="t", states=["x"], trajectory="run")


def test_from_dataframe_errors_name_index_labels():
    df = pd.DataFrame({"t": [0.0, 1.0, 0.5], "x": ["1", "oops", "2"]}, index=[10, 11, 12])
    with pytest.raises(DataError, match=r"from_dataframe: DataFrame: column 'x' must hold numbers; it has index 11 'oops'"):
        from_dataframe(df, time="t", states=["x"])
    df2 = pd.DataFrame({"t": [0.0, 1.0, 0.5], "x": [1.0, 2.0, 3.0]}, index=[10, 11, 12])
    with pytest.raises(DataError, match=r"run 'run0' has time 0.5 at index 12 after 1 at index 11"):
        from_dataframe(df2, time="t", states=["x"])
    with pytest.raises(ConfigError, match=r"expected a pandas DataFrame; got dict"):
        from_dataframe({"t": [0]}, time="t", states=["x"])


def test_zone_aware_datetimes_and_zone_label_in_header(tmp_path):
    text = "when [UTC],x\n2020-01-01T01:00:00+01:00,1\n2020-01-01T00:00:10Z,2\n"
    ds = load_csv(write(tmp_path, "tz.csv", text), time="when", states=["x"])
    assert ds["time"].attrs["origin"] == "2020-01-01T00:00:00+00:00"
    assert ds["time"].attrs["units"] == "seconds"
    np.testing.assert_array_equal(ds["time"].values, [[0.0, 10.0]])
    minutes = load_csv(tmp_path / "tz.csv", time="when", states=["x"], units={"when": "min"})
    np.testing.assert_allclose(minutes["time"].values, [[0.0, 10 / 60]], rtol=1e-15)


def test_dates_and_numbers_mixed_across_files(tmp_path):
    a = write(tmp_path, "a.csv", "t,x\n2020-01-01,1\n2020-01-02,2\n")
    b = write(tmp_path, "b.csv", "t,x\n0,1\n1,2\n")
    with pytest.raises(DataError, match=r"time is given as dates in \['.*a\.csv'\] but as numbers in \['.*b\.csv'\]"):
        load_csv([a, b], time="t", states=["x"])


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(DataError, match=r"load_csv: .* is a folder; pass a file, a list of files or a glob"):
        load_csv(tmp_path, time="t", states=["x"])
    with pytest.raises(DataError, match=r"load_csv: the list of files is empty"):
        load_csv([], time="t", states=["x"])


def test_blank_lines_keep_spreadsheet_row_numbers(tmp_path):
    f = write(tmp_path, "blank.csv", "t,x\n0,1\n\n1,oops\n")
    with pytest.raises(DataError, match=r"column 'x' must hold numbers; it has row 4 'oops'"):
        load_csv(f, time="t", states=["x"])


def test_numeric_fast_path_keeps_text_semantics(tmp_path):
    # plain-number columns are parsed by pandas; the cells must still mean what the careful
    # path made of them: a numeric run id keeps its spelling ("01" is not run "1.0"), a missing
    # marker that is a number ("-999") is missing, values are exactly float(text)
    text = "run,t,x\n01,0,0.1\n01,1,-999\n02,0,1e-3\n02,1,2.5000000000000004\n"
    ds = load_csv(write(tmp_path, "n.csv", text), time="t", states=["x"], trajectory="run",
                  missing_values=["-999"])
    assert run_ids(ds) == ["01", "02"]
    np.testing.assert_array_equal(ds["x"].values, [[0.1, np.nan], [1e-3, 2.5000000000000004]])
    ds = load_csv(write(tmp_path, "m.csv", "t,x\n0,1\n1,-999\n"), time="t", states=["x"])
    np.testing.assert_array_equal(ds["x"].values, [[1.0, -999.0]])


def test_numeric_fast_path_falls_back_per_column(tmp_path):
    # one bad cell sends only its column through the careful path, with its usual message; a
    # blank line and a missing marker are handled as before
    with pytest.raises(DataError, match=r"column 'x' must hold numbers; it has row 3 'abc'"):
        load_csv(write(tmp_path, "b.csv", "t,x\n0,1\n1,abc\n"), time="t", states=["x"])
    ds = load_csv(write(tmp_path, "c.csv", "t,x,y\n0,1,NA\n\n1,2,3\n"), time="t", states=["x", "y"])
    np.testing.assert_array_equal(ds["y"].values, [[np.nan, 3.0]])
    np.testing.assert_array_equal(ds["x"].values, [[1.0, 2.0]])
