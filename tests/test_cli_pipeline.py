"""How the command line reads data and model options (in process: no fits, no subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import sysid.data
import sysid.datasets
from sysid.cli import main
from sysid.cli._config import CliFitOptions
from sysid.cli._pipeline import cli_hints, parse_model_spec, read_data, sha256_file, write_json
from sysid.cli.simulate_cmd import read_times, time_grid
from sysid.errors import ConfigError, DataError


def _write_runs(folder: Path) -> None:
    folder.mkdir()
    (folder / "A.csv").write_text("t,x\n0,1.0\n1,0.5\n2,0.25\n")
    (folder / "B.csv").write_text("t,x\n0,2.0\n1,1.0\n")


def test_read_data_glob_gives_one_run_per_file(tmp_path):
    _write_runs(tmp_path / "runs")
    ds = read_data(str(tmp_path / "runs" / "*.csv"), CliFitOptions(time="t", states=("x",)))
    assert sysid.data.run_ids(ds) == ["A", "B"]
    np.testing.assert_array_equal(sysid.data.get_run(ds, "B")["x"].values, [2.0, 1.0])


def test_read_data_netcdf_round_trip_and_rename(tmp_path):
    ds = sysid.datasets.load("hare_lynx")
    sysid.data.save(ds, tmp_path / "hl.nc")
    back = read_data(str(tmp_path / "hl.nc"), CliFitOptions(rename={"hare": "prey"}))
    assert sysid.data.state_names(back) == ["prey", "lynx"]
    np.testing.assert_array_equal(back["prey"].values, ds["hare"].values)
    assert back["prey"].attrs["units"] == ds["hare"].attrs["units"]


def test_read_data_selects_states_of_a_shipped_dataset():
    ds = read_data("dataset:influenza_1978", CliFitOptions(states=("in_bed",)))
    assert sysid.data.state_names(ds) == ["in_bed"]


@pytest.mark.parametrize("source, opts, error, match", [
    ("dataset:influenza_1978", CliFitOptions(states=("S",)), ConfigError,
     r"--states: \['S'\] not found in 'dataset:influenza_1978', whose states are \['in_bed', 'convalescent'\]"),
    ("dataset:hare_lynx", CliFitOptions(rename={"wolf": "x"}), ConfigError,
     r"--rename: \['wolf'\] not found in 'dataset:hare_lynx'; its variables are \['hare', 'lynx'\]"),
    ("dataset:hare_lynx", CliFitOptions(rename={"hare": "lynx"}), ConfigError,
     r"--rename: 'dataset:hare_lynx' already has variables \['lynx'\]"),
    ("dataset:no_such", CliFitOptions(), sysid.datasets.UnknownDatasetError,
     r"no dataset 'no_such'"),
])
def test_read_data_rejects(source, opts, error, match):
    with pytest.raises(error, match=match):
        read_data(source, opts)


def test_read_data_csv_needs_time_and_states_and_lists_columns(tmp_path):
    f = tmp_path / "lab.csv"
    f.write_text("t;x;v\n0;1;2\n1;2;3\n")
    with pytest.raises(ConfigError, match=r"--time and --states must name its columns \(its "
                                          r"columns are \['t', 'x', 'v'\]\)"):
        read_data(str(f), CliFitOptions())


def test_cli_hints_rewrite_python_options_as_flags():
    assert cli_hints("pass sort=True") == "pass --sort"
    assert cli_hints("pass decimal=',' (and sep=';')") == "pass --decimal ',' (and --sep ';')"
    assert cli_hints("missing_values=['-', 'n/a']") == "--missing-values -,n/a"
    assert cli_hints("column 'u' (in inputs=) and (in trajectory=)") == \
        "column 'u' (in --inputs) and (in --run)"


@pytest.mark.parametrize("text, kind, system", [
    ("neural", "neural", None), ("physics:pendulum", "physics", "pendulum"),
    (" Hybrid:lotka_volterra ", "hybrid", "lotka_volterra"),
])
def test_parse_model_spec(text, kind, system):
    spec = parse_model_spec(text)
    assert (spec.kind, spec.system) == (kind, system)


@pytest.mark.parametrize("text, match", [
    ("physics", r"--model: 'physics' needs a reference system, as in 'physics:lotka_volterra'"),
    ("neural:pendulum", r"--model: 'neural' takes no system name.*'hybrid:pendulum'"),
    ("gp", r"--model: expected 'neural', 'physics:SYSTEM', 'hybrid:SYSTEM' or 'equations:FILE.toml', got 'gp'"),
])
def test_parse_model_spec_rejects(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_model_spec(text)


def test_time_grid():
    np.testing.assert_allclose(time_grid(0.0, 1.0, 0.25), [0, 0.25, 0.5, 0.75, 1.0], atol=1e-15)
    np.testing.assert_allclose(time_grid(1.0, 2.0, 0.3), [1.0, 1.3, 1.6, 1.9], atol=1e-12)
    assert time_grid(0.0, 10.0, None).size == 201
    with pytest.raises(ConfigError, match=r"--t-end 0 must be later than the start time 1"):
        time_grid(1.0, 0.0, 0.1)
    with pytest.raises(ConfigError, match=r"--dt 5 is longer than the span 0 to 1"):
        time_grid(0.0, 1.0, 5.0)


def test_read_times(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("time [s],other\n0,9\n0.5,9\n2,9\n")
    np.testing.assert_array_equal(read_times(f), [0.0, 0.5, 2.0])
    f.write_text("0\n1\n1\n")
    with pytest.raises(DataError, match=r"times must strictly increase; 1 follows 1 \(time number 3\)"):
        read_times(f)
    f.write_text("0\nabc\n")
    with pytest.raises(DataError, match=r"row 2 holds 'abc', which is not a number"):
        read_times(f)


def test_write_json_is_strict_and_hash_is_sha256(tmp_path):
    write_json(tmp_path / "m.json", {"a": float("nan"), "b": np.float64(1.5), "c": [np.int64(2)]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": 1.5, "c": [2]}
    (tmp_path / "x.txt").write_bytes(b"abc")
    assert sha256_file(tmp_path / "x.txt") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")  # FIPS 180-2 "abc"


def test_export_to_zarr_replaces_only_with_force(tmp_path, capsys):
    out = tmp_path / "hl.zarr"
    assert main(["datasets", "export", "hare_lynx", str(out)]) == 0
    back = sysid.data.load_zarr(out)
    np.testing.assert_array_equal(back["hare"].values, sysid.datasets.load("hare_lynx")["hare"].values)
    assert main(["datasets", "export", "hare_lynx", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["datasets", "export", "lynx_trappings", str(out), "--force"]) == 0
    assert sysid.data.state_names(sysid.data.load_zarr(out)) == ["lynx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hl.zarr"]


def test_verbose_user_error_shows_traceback(tmp_path, capsys):
    assert main(["--verbose", "fit", str(tmp_path / "none.csv"), "--time", "t", "--states", "x",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().endswith("sysid fit: error: DATA file '" + str(tmp_path / "none.csv")
                                 + "' does not exist (for a shipped dataset write 'dataset:NAME'; "
                                 "see 'sysid datasets list').")
