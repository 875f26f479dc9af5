"""The command line's parallel parts: fit --ensemble / --nproc, sweep, and their flag errors."""

from __future__ import annotations

import json
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import sysid.data
from parallel_helpers import decay_data
from sysid.cli import main
from sysid.cli._config import read_config
from test_cli_framework import run_cli

TINY = ["--width", "4", "--depth", "1", "--epochs", "3", "--set", "shooting.horizons=[4]",
        "--set", "warm_start.epochs=5", "--set", "dtype=float64"]


@pytest.fixture(scope="module")
def runs_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "runs.csv"
    sysid.data.to_csv(decay_data(runs=4, n=12), path)
    return path


def _fit_args(csv, out):
    return ["fit", str(csv), "--time", "time", "--states", "x", "--run", "trajectory", *TINY,
            "--out", str(out)]


@pytest.mark.parametrize("extra, match", [
    (["--bootstrap"], "--bootstrap makes an ensemble; add --ensemble N"),
    (["--workers", "2"], "--workers/--scheduler run several fits at once: add --ensemble N"),
    (["--ensemble", "2", "--nproc", "2"], "--nproc splits one fit over processes"),
    (["--ensemble", "2", "--bootstrap", "--starts"], "--bootstrap and --starts choose"),
    (["--ensemble", "2", "--workers", "2", "--scheduler", "tcp://h:1"], "exclude each other"),
])
def test_parallel_flag_mistakes_are_one_line_errors(runs_csv, tmp_path, capsys, extra, match):
    assert main([*_fit_args(runs_csv, tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and not (tmp_path / "o").exists()


def test_a_scheduler_without_dask_names_the_extra(runs_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    code = main([*_fit_args(runs_csv, tmp_path / "o"), "--ensemble", "2", "--scheduler",
                 "tcp://127.0.0.1:1"])
    assert code == 2
    assert "pip install 'sysid[parallel]'" in capsys.readouterr().err


def test_fit_ensemble_writes_members_bands_and_report(runs_csv, tmp_path):
    out = tmp_path / "ens"
    proc = run_cli(*_fit_args(runs_csv, out), "--ensemble", "2", "--workers", "2",
                   "--holdout", "r3", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "[1/2] member" in proc.stderr and "[2/2] member" in proc.stderr
    members = pd.read_csv(out / "ensemble" / "members.csv")
    assert members["stopped_reason"].tolist() == ["completed", "completed"]
    assert (out / "ensemble" / "member_000" / "model.json").is_file()
    band = xr.open_dataset(out / "ensemble" / "band_observation.nc", engine="netcdf4")
    assert band["x"].dims == ("quantile", "trajectory", "obs")
    summary = json.loads((out / "ensemble" / "summary.json").read_text())
    cov = summary["coverage_observation_held_out"]
    assert cov[-1]["variable"] == "all" and cov[-1]["n"] == 12
    assert "## Prediction band" in (out / "report.md").read_text()
    assert (out / "model" / "model.json").is_file()


def test_fit_nproc_runs_one_fit_in_two_processes(runs_csv, tmp_path):
    out = tmp_path / "ddp"
    proc = run_cli(*_fit_args(runs_csv, out), "--nproc", "2", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "starting 2 processes" in proc.stderr
    assert main(_fit_args(runs_csv, tmp_path / "one")) == 0
    two = pd.read_csv(out / "history.csv")["loss"].to_numpy()
    one = pd.read_csv(tmp_path / "one" / "history.csv")["loss"].to_numpy()
    # float64; the processes sum gradients in another order than one process (rounding only)
    np.testing.assert_allclose(two, one, rtol=1e-9)
    assert not any(p.name.startswith(".ddp") for p in tmp_path.iterdir())  # no stray partial dirs


def test_sweep_command_ranks_trials_and_writes_the_best_config(runs_csv, tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(f"""
[data]
path = "{runs_csv}"
time = "time"
states = ["x"]
run = "trajectory"

[model]
kind = "neural"
width = 4
depth = 1

[fit]
epochs = 3
dtype = "float64"
shooting = {{ horizons = [4] }}
warm_start = {{ epochs = 5 }}

[sweep]
holdout = ["r3"]

[sweep.grid]
fit.optimizer.lr = [0.001, 0.02]
model.width = [3]
""")
    out = tmp_path / "sw"
    proc = run_cli("sweep", str(config), "--workers", "2", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 2 and table["score"].is_monotonic_increasing
    assert set(table["fit.optimizer.lr"]) == {0.001, 0.02} and set(table["model.width"]) == {3}
    best = read_config(out / "best.toml")
    assert best.width == 3 and best.fit["optimizer"]["lr"] == table["fit.optimizer.lr"].iloc[0]
    assert tomllib.loads((out / "best.toml").read_text())["fit"]["epochs"] == 3
    assert (out / "best_model" / "model.json").is_file()
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["held_out"] == "runs ['r3']" and doc["best"]["trial"] in (0, 1)


def test_sweep_config_mistakes(runs_csv, tmp_path, capsys):
    config = tmp_path / "bad.toml"
    config.write_text(f'[data]\npath = "{runs_csv}"\ntime = "time"\nstates = ["x"]\n'
                      f'[sweep]\nholdout = 0.25\n[sweep.grid]\nlr = [0.1]\n')
    assert main(["sweep", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "key 'lr' must start with 'fit.' or 'model.'" in capsys.readouterr().err
    config.write_text(f'[data]\npath = "{runs_csv}"\n[sweep]\ngrids = 1\n')
    assert main(["sweep", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key 'sweep.grids'" in capsys.readouterr().err


def test_ctrl_c_stops_the_workers_and_writes_the_members(runs_csv, tmp_path):
    import signal
    import time

    from test_cli_framework import cli_process, stderr_so_far

    ckpt = tmp_path / "ckpt.pt"
    args = [a for a in _fit_args(runs_csv, tmp_path / "ens") if a != "3"]  # not --epochs 3
    args[args.index("--epochs") + 1:args.index("--epochs") + 1] = ["100000"]
    with cli_process([*args, "--ensemble", "2", "--workers", "2", "--set", "warm_start=false",
                      "--set", f'checkpoint={{ path = "{ckpt}", every = 1 }}']) as proc:
        # each member writes its own checkpoint (ckpt.member_000.pt, ...): when both exist, both
        # members' training epochs are running
        ckpts = [tmp_path / f"ckpt.member_{i:03d}.pt" for i in (0, 1)]
        deadline = time.monotonic() + 180
        while not all(c.exists() for c in ckpts) and time.monotonic() < deadline \
                and proc.poll() is None:
            time.sleep(0.1)
        assert all(c.exists() for c in ckpts), stderr_so_far(proc)
        assert not ckpt.exists()
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert time.monotonic() - sent < 90  # the running fits stopped; nobody waited for 1e5 epochs
    assert "Traceback" not in err
    members = pd.read_csv(tmp_path / "ens" / "ensemble" / "members.csv")
    # both members were running: each stopped at its next step and kept its best model
    assert members["stopped_reason"].tolist() == ["interrupted", "interrupted"]
    assert (tmp_path / "ens" / "model" / "model.json").is_file()
