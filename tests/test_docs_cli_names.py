"""One vocabulary at the CLI boundary: a simulated CSV keeps the user's run and time column names,
so it reads back with the flags the fit was given (issue 15, item 4)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import sysid
from sysid.cli import main
from sysid.errors import DataError
from test_cli_framework import REPO


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A fit folder as ``sysid fit duffing.csv --time t --run run ...`` leaves it (the model and
    the [data] table of config.toml, which is all ``sysid simulate`` reads), without the minute
    of training and report that a real fit costs on the shared test machine; the full command
    runs in tests/test_readme.py."""
    root = tmp_path_factory.mktemp("names")
    shutil.copy(REPO / "examples" / "data" / "duffing.csv", root / "duffing.csv")
    shutil.copy(REPO / "examples" / "data" / "forcing.csv", root / "forcing.csv")
    data = sysid.load_csv(root / "duffing.csv", time="t", states=["x", "v"], inputs=["u"], trajectory="run")
    model = sysid.models.physics("duffing", states=["x", "v"], inputs=["u"])
    model.field.set_scaling(sysid.data.compute_scaling(data))
    (root / "fit1").mkdir()
    sysid.save_model(model, root / "fit1" / "model")
    (root / "fit1" / "config.toml").write_text(
        '[data]\ntime = "t"\nrun = "run"\nstates = ["x", "v"]\ninputs = ["u"]\n', encoding="utf-8")
    return root


def test_simulated_csv_keeps_the_users_column_names_and_run_ids(fitted, monkeypatch):
    monkeypatch.chdir(fitted)
    assert main(["simulate", "fit1", "--initial-from", "duffing.csv", "--quiet", "--out", "sim.csv"]) == 0
    sim = pd.read_csv("sim.csv")
    assert list(sim.columns) == ["run", "t [s]", "x [m]", "v [m/s]", "u [m/s^2]"]
    data = pd.read_csv("duffing.csv")
    assert list(sim["run"].unique()) == list(data["run"].unique()) == ["run0", "run1", "run2"]
    np.testing.assert_array_equal(sim["t [s]"], data["t [s]"])
    # it reads back with the options of the fit
    back = sysid.load_csv("sim.csv", time="t", states=["x", "v"], inputs=["u"], trajectory="run")
    assert sysid.data.run_ids(back) == ["run0", "run1", "run2"]


def test_a_y0_simulation_is_one_run_called_simulated(fitted, monkeypatch):
    monkeypatch.chdir(fitted)
    assert main(["simulate", "fit1", "--y0", "x=1,v=0", "--t-end", "2", "--dt", "0.5",
                 "--inputs", "forcing.csv", "--quiet", "--out", "y0.csv"]) == 0
    sim = pd.read_csv("y0.csv")
    assert list(sim.columns) == ["run", "t [s]", "x [m]", "v [m/s]", "u [m/s^2]"]
    assert set(sim["run"]) == {"simulated"}
    np.testing.assert_allclose(sim["t [s]"], [0.0, 0.5, 1.0, 1.5, 2.0])


def test_to_csv_column_names_and_their_errors(tmp_path):
    ds = sysid.systems.make_dataset("lotka_volterra", n_runs=2, n_obs=5, seed=0)
    with pytest.raises(DataError, match="trajectory=None leaves out the run column, which needs one run"):
        sysid.data.to_csv(ds, tmp_path / "a.csv", trajectory=None)
    with pytest.raises(DataError, match=r"must differ from each other and from the variables"):
        sysid.data.to_csv(ds, tmp_path / "b.csv", time="prey")
    one = sysid.data.select_runs(ds, ["run0"])
    sysid.data.to_csv(one, tmp_path / "c.csv", time="t", trajectory=None)
    assert (tmp_path / "c.csv").read_text().splitlines()[0].startswith("t [")
