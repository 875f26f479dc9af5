"""Row filters: load_csv(where=...) and the CLI's --where on self-describing files."""

from __future__ import annotations

import numpy as np
import pytest

import sysid
from sysid.cli._pipeline import filter_samples
from sysid.errors import ConfigError, DataError
from sysid.expressions import ExpressionError

CSV = """\
t [s],x [m],condition,dose,run
0,1,mixture,1.0,A
1,2,pure,1.0,A
2,3,mixture,1.0,A
3,4,mixture,1.0,A
0,5,mixture,2.5,B
1,6,pure,2.5,B
2,7,mixture,2.5,B
"""


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "conditions.csv"
    path.write_text(CSV)
    return path


def test_where_keeps_matching_rows_of_every_run(table):
    ds = sysid.load_csv(table, time="t", states=["x"], trajectory="run",
                        where="condition == 'mixture' and dose < 2")
    assert sysid.data.run_ids(ds) == ["A"]
    np.testing.assert_array_equal(ds["x"].values[0], [1.0, 3.0, 4.0])
    assert "rows where condition == 'mixture' and dose < 2" in ds.attrs["processing"]
    both = sysid.load_csv(table, time="t", states=["x"], trajectory="run", where="condition != 'pure'")
    assert sysid.data.run_ids(both) == ["A", "B"]


def test_rows_keep_their_file_numbers_in_later_errors(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_text("t,x,keep\n0,1,1\n1,2,0\n2,oops,1\n")
    with pytest.raises(DataError, match="row 4"):  # the file's row 4, not the 2nd row kept
        sysid.load_csv(path, time="t", states=["x"], where="keep == 1")


@pytest.mark.parametrize("where, error, match", [
    ("conditon == 'pure'", DataError, r"column 'conditon' \(in where=\) not found.*Did you mean 'condition'"),
    ("x + 1", ConfigError, "must be a condition"),
    ("condition == 'none'", DataError, "no row of .* satisfies"),
    ("__import__('os')", ExpressionError, "unknown function '__import__'"),
    ("condition.lower() == 'pure'", ExpressionError, r"attribute access \('\.lower'\)"),
])
def test_where_errors(table, where, error, match):
    with pytest.raises(error, match=match):
        sysid.load_csv(table, time="t", states=["x"], trajectory="run", where=where)


def test_filter_samples_of_a_dataset_packs_each_run():
    data = sysid.systems.make_dataset("logistic", n_runs=2, n_obs=6, noise=0.0, seed=0)
    t0 = data["time"].values[:, 0]
    kept = filter_samples(data, "time >= 2", "logistic")
    for r in range(2):
        times = kept["time"].values[r]
        times = times[np.isfinite(times)]
        assert np.all(times >= 2) and times.size == int(np.sum(data["time"].values[r] >= 2))
    assert "samples where time >= 2" in kept.attrs["processing"]
    assert np.all(t0 < 2)
    with pytest.raises(ConfigError, match="not a variable or coordinate"):
        filter_samples(data, "dose > 1", "logistic")


def test_filter_samples_knows_the_files_run_and_time_columns():
    data = sysid.systems.make_dataset("logistic", n_runs=2, n_obs=6, noise=0.0, seed=0)
    kept = filter_samples(data, "run == 'run1' and t < 3", "logistic",
                          aliases={"run": "trajectory", "t": "time"})
    assert sysid.data.run_ids(kept) == ["run1"]
    assert np.nanmax(kept["time"].values) < 3
