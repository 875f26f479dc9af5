"""fit -> simulate -> compare -> report through the real command line (subprocesses).

Two cases: a shipped dataset (US census, logistic growth: closed-form checks) and a synthetic CSV
with an input, irregular sampling and missing values. Fits are tiny (a few epochs, small nets):
these tests check the command line's plumbing and files, not the quality of a fit.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import time
import tomllib

import numpy as np
import pandas as pd
import pytest

import sysid
import sysid.analysis
import sysid.data
import sysid.systems
from test_cli_framework import cli_process, run_cli, stderr_so_far

TINY = """\
[model]
width = 8
depth = 1

[fit]
epochs = 4
shooting = { horizons = [4, 8] }
warm_start = { epochs = 10 }
"""


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def logistic(t: np.ndarray, n0: float, r: float, k: float) -> np.ndarray:
    """Closed form of N' = r N (1 - N/K) from N(t[0]) = n0."""
    return k / (1.0 + (k / n0 - 1.0) * np.exp(-r * (t - t[0])))


# ---------------------------------------------------------------------------------------------
# synthetic CSV: input F, irregular sampling, missing values, three runs


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    ds = sysid.systems.make_dataset("mass_spring_damper", n_runs=3, n_obs=30, irregular=True,
                                    missing=0.1, seed=3)
    sysid.data.to_csv(ds, root / "rig.csv")
    (root / "tiny.toml").write_text(TINY)
    command = ["fit", "rig.csv", "--time", "time", "--states", "x,v", "--inputs", "F", "--run",
               "trajectory", "--holdout", "run2", "--config", "tiny.toml", "--seed", "7",
               "--set", "optimizer.lr=0.02"]
    proc = ok(run_cli(*command, "--out", "fit", cwd=root))
    return root, ds, command, proc


def test_synthetic_csv_is_irregular_with_gaps(synthetic):
    root, _, _, _ = synthetic
    df = pd.read_csv(root / "rig.csv")
    assert df[["x [m]", "v [m/s]"]].isna().to_numpy().any()  # missing measurements
    steps = df[df["trajectory"] == "run0"]["time [s]"].diff().dropna()
    assert steps.max() > 1.5 * steps.min()  # irregular sampling


def test_fit_writes_a_complete_run_directory(synthetic):
    root, ds, _, proc = synthetic
    out = root / "fit"
    names = sorted(p.name for p in out.iterdir())
    for required in ("config.toml", "data.nc", "figures", "history.csv", "manifest.json",
                     "metrics.json", "model", "report.html", "report.json", "report.md"):
        assert required in names
    assert (out / "model" / "model.json").is_file()
    assert list((out / "figures").glob("*.png"))
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    assert "wrote fit/" in proc.stderr

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["sha256"] == hashlib.sha256((root / "rig.csv").read_bytes()).hexdigest()
    assert manifest["seed"] == 7 and manifest["data"]["held_out"] == ["run2"]
    assert manifest["command"][1:] == [*synthetic[2], "--out", "fit"]
    assert manifest["versions"]["torch"] and manifest["stopped_reason"] == "completed"

    config = tomllib.loads((out / "config.toml").read_text())
    assert config["data"]["states"] == ["x", "v"] and config["data"]["inputs"] == ["F"]
    assert config["data"]["holdout"] == ["run2"] and config["model"]["width"] == 8
    assert config["fit"]["seed"] == 7 and config["fit"]["epochs"] == 4
    assert config["fit"]["shooting"]["horizons"] == [4, 8]
    assert config["fit"]["warm_start"]["epochs"] == 10 and config["fit"]["optimizer"]["lr"] == 0.02


def test_fit_metrics_match_the_python_api(synthetic):
    root, ds, _, _ = synthetic
    metrics = json.loads((root / "fit" / "metrics.json").read_text())
    model = sysid.load_model(root / "fit" / "model")
    data = sysid.data.load_csv(root / "rig.csv", time="time", states=["x", "v"], inputs=["F"],
                               trajectory="trajectory")
    # the CLI scores free runs as the report does (sysid.analysis.predict; this fit started its
    # windows from the measurements, so every run starts from its first sample)
    table = sysid.analysis.metrics_table(sysid.analysis.trajectory_metrics(
        data, sysid.analysis.predict(model, data), held_out=["run2"])).reset_index()
    rows = {(r["run"], r["variable"]): r for r in metrics["trajectory"]}
    assert len(rows) == len(table)
    for _, row in table.iterrows():
        got = rows[(row["run"], row["variable"])]
        assert got["set"] == row["set"]
        # same model, data and solver: equal up to float64 round-off of the JSON text
        assert got["rmse"] == pytest.approx(row["rmse"], rel=1e-9)
    assert metrics["training"]["stopped_reason"] == "completed"
    assert metrics["training"]["epochs_run"] == 4


def test_same_command_same_seed_same_metrics(synthetic):
    root, _, command, _ = synthetic
    ok(run_cli(*command, "--out", "fit_again", cwd=root))
    assert (root / "fit_again" / "metrics.json").read_bytes() == \
        (root / "fit" / "metrics.json").read_bytes()


def test_simulate_from_the_data_matches_the_api(synthetic):
    root, _, _, _ = synthetic
    ok(run_cli("simulate", "fit", "--initial-from", "rig.csv", "--out", "sim.csv", cwd=root))
    sim = sysid.data.load_csv(root / "sim.csv", time="time", states=["x", "v"], inputs=["F"],
                              trajectory="trajectory")
    data = sysid.data.load_csv(root / "rig.csv", time="time", states=["x", "v"], inputs=["F"],
                               trajectory="trajectory")
    expected = sysid.simulate(sysid.load_model(root / "fit" / "model"), data,
                              solver=sysid.SolverConfig(rtol=1e-6, atol=1e-8))  # the CLI default
    assert sysid.data.run_ids(sim) == ["run0", "run1", "run2"]
    np.testing.assert_array_equal(sim["time"].values, data["time"].values)
    # CSV keeps 17 significant digits; the simulation is the same computation
    np.testing.assert_allclose(sim["x"].values, expected["x"].values, rtol=1e-12, atol=0)


def test_simulate_into_a_new_folder_writes_the_same_csv(synthetic, capsys, monkeypatch):
    from sysid.cli import main

    root, _, _, _ = synthetic
    monkeypatch.chdir(root)
    ok(run_cli("simulate", "fit", "--initial-from", "rig.csv", "--out", "sim_folder", cwd=root))
    # a folder --out (no suffix) gets simulation.csv: the same bytes as a file --out
    ok(run_cli("simulate", "fit", "--initial-from", "rig.csv", "--out", "same.csv", cwd=root))
    assert sorted(p.name for p in (root / "sim_folder").iterdir()) == ["simulation.csv"]
    assert (root / "sim_folder" / "simulation.csv").read_bytes() == (root / "same.csv").read_bytes()
    capsys.readouterr()
    # an existing folder is refused without --force, and a mistake creates no folder
    assert main(["simulate", "fit", "--initial-from", "rig.csv", "--out", "sim_folder"]) == 2
    assert "output directory 'sim_folder' (--out) already exists" in capsys.readouterr().err
    assert main(["simulate", "fit", "--y0", "x=1,w=2", "--t-end", "2", "--out", "new_folder"]) == 2
    assert "is not a state of the model" in capsys.readouterr().err
    assert not (root / "new_folder").exists()
    (root / "plain").write_text("not a folder")
    assert main(["simulate", "fit", "--initial-from", "rig.csv", "--out", "plain", "--force"]) == 2
    assert "--out 'plain' is a file; give FILE.csv, FILE.nc or a folder" in capsys.readouterr().err
    assert (root / "plain").read_text() == "not a folder"


def test_simulate_from_y0_with_new_inputs(synthetic):
    root, _, _, _ = synthetic
    t_in = np.linspace(0.0, 5.0, 51)
    pd.DataFrame({"time": t_in, "F": np.sin(t_in)}).to_csv(root / "u.csv", index=False)
    ok(run_cli("simulate", "fit", "--y0", "x=0.1,v=0", "--t-end", "4", "--dt", "0.5",
               "--inputs", "u.csv", "--out", "step.nc", cwd=root))
    sim = sysid.data.load_netcdf(root / "step.nc")
    t = sim["time"].values[0]
    np.testing.assert_allclose(t, np.arange(0.0, 4.01, 0.5), rtol=0, atol=1e-12)
    assert sim["x"].values[0, 0] == 0.1 and sim["v"].values[0, 0] == 0.0
    # every output time is an input sample, so the interpolated input is the sample itself
    np.testing.assert_allclose(sim["F"].values[0], np.sin(t), atol=1e-12)
    expected = sysid.simulate(sysid.load_model(root / "fit" / "model"), {"x": 0.1, "v": 0.0}, t,
                              inputs=pd.DataFrame({"time": t_in, "F": np.sin(t_in)}),
                              solver=sysid.SolverConfig(rtol=1e-6, atol=1e-8))
    np.testing.assert_allclose(sim["x"].values[0], expected["x"].values[0], rtol=1e-12)


def test_simulate_user_errors_write_nothing(synthetic, capsys, monkeypatch):
    # through the entry point in this process (a subprocess per case would cost a torch import)
    from sysid.cli import main

    root, _, _, _ = synthetic
    monkeypatch.chdir(root)
    before = sorted(p.name for p in root.iterdir())
    cases = [
        (["--y0", "x=0.1", "--t-end", "2", "--inputs", "u.csv"], r"--y0: no value for states \['v'\]"),
        (["--y0", "x=1,v=0,w=2", "--t-end", "2"], r"--y0: \['w'\] is not a state of the model"),
        (["--y0", "x=1,v=0", "--t-end", "2"], r"the model has inputs \['F'\]; give their signal"),
        (["--y0", "x=1,v=0", "--initial-from", "rig.csv"], r"give exactly one of --y0"),
        (["--y0", "x=1,v=0", "--t-end", "-1", "--inputs", "u.csv"], r"--t-end -1 must be later"),
    ]
    for extra, message in cases:
        assert main(["simulate", "fit", *extra, "--out", "bad.csv"]) == 2, extra
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1
        assert re.search(message, err), err
    assert main(["simulate", "fit", "--y0", "x=1,v=0", "--t-end", "2", "--out", "bad.xlsx"]) == 2
    assert "must end in .csv or .nc; got '.xlsx'" in capsys.readouterr().err
    assert sorted(p.name for p in root.iterdir()) == before


def test_compare_and_report_on_synthetic(synthetic):
    root, _, _, _ = synthetic
    ok(run_cli("compare", "fit", "--reference", "mass_spring_damper", "--params", "c=0.5",
               "--out", "cmp", cwd=root))
    result = json.loads((root / "cmp" / "metrics.json").read_text())
    assert result["reference"] == "mass_spring_damper"
    assert result["params"] == {"m": 1.0, "c": 0.5, "k": 4.0}
    runs = {row["run"] for row in result["trajectories"]["metrics"]}
    assert {"run0", "run1", "run2"} <= runs
    assert "vector_field" in result and "fixed_points" in result
    assert (root / "cmp" / "comparison.md").read_text().startswith("# fit compared with")
    assert sorted(p.name for p in (root / "cmp" / "figures").iterdir()) == [
        "field_error.png", "phase_portrait.png", "trajectories.png"]  # a 2-state system

    report = root / "fit" / "report.html"
    before = report.stat().st_mtime_ns
    os.utime(report, ns=(before - 10**9, before - 10**9))
    ok(run_cli("report", "fit", cwd=root))
    assert report.stat().st_mtime_ns > before - 10**9
    assert "data:image/png;base64," in report.read_text()
    assert not [p for p in (root / "fit").iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------------------------------------
# shipped dataset: US census with the logistic model (Pearl & Reed 1920)


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    root = tmp_path_factory.mktemp("population")
    proc = ok(run_cli("fit", "dataset:us_population", "--rename", "population=N", "--model",
                      "physics:logistic", "--free", "r,K", "--params", "r=0.03,K=200",
                      "--epochs", "15", "--out", "pop", cwd=root))
    return root, proc


def test_physics_fit_on_shipped_data_reports_parameters(population):
    root, proc = population
    params = pd.read_csv(root / "pop" / "parameters.csv").set_index("name")
    assert list(params.index) == ["r", "K"] and params["vary"].all()
    assert "r = " in proc.stderr and "K = " in proc.stderr
    md = (root / "pop" / "report.md").read_text()
    assert "logistic" in md and "| r " in md.replace("|r", "| r")


def test_simulate_physics_model_matches_closed_form(population):
    root, _ = population
    # --rename population=N told the fit which column is the system's N; the names stay the data's
    ok(run_cli("simulate", "pop", "--y0", "population=3.929", "--t-start", "1790", "--t-end", "1970",
               "--dt", "10", "--out", "pop.csv", cwd=root))
    sim = pd.read_csv(root / "pop.csv")
    # the data's own name for time and no run column (the fit read one run without one)
    assert list(sim.columns) == ["year [year]", "population [million people]"]  # the data's names
    t = sim["year [year]"].to_numpy()
    np.testing.assert_allclose(t, np.arange(1790.0, 1971.0, 10.0))
    p = pd.read_csv(root / "pop" / "parameters.csv").set_index("name")["value"]
    # dopri5 at rtol 1e-6 (the CLI default): relative error well below 1e-4
    np.testing.assert_allclose(sim["population [million people]"].to_numpy(),  # the data's units
                               logistic(t, 3.929, p["r"], p["K"]), rtol=1e-4)


def test_compare_reference_matches_closed_form(population):
    root, _ = population
    proc = ok(run_cli("compare", "pop", "--reference", "logistic", "--params",
                      "r=0.0313395,K=197.27", "--out", "cmp", cwd=root))
    assert "Trajectory metrics" in proc.stdout
    ref = sysid.data.load_netcdf(root / "cmp" / "reference.nc")
    data = sysid.datasets.load("us_population")
    t = data["time"].values[0]
    n0 = float(data["population"].values[0, 0])
    # SciPy RK45 at rtol 1e-8 (sysid.analysis default): closed form within 1e-6
    np.testing.assert_allclose(ref["population"].values[0], logistic(t, n0, 0.0313395, 197.27),
                               rtol=1e-6)
    result = json.loads((root / "cmp" / "metrics.json").read_text())
    assert result["params"] == {"r": 0.0313395, "K": 197.27}
    # one state: no phase plane, only the trajectories
    assert [p.name for p in (root / "cmp" / "figures").iterdir()] == ["trajectories.png"]


def test_report_regenerates_with_reference(population):
    root, _ = population
    ok(run_cli("report", "pop", "--reference", "logistic", "--params", "K=190", cwd=root))
    assert "K" in (root / "pop" / "report.md").read_text()
    assert json.loads((root / "pop" / "report.json").read_text())


def test_resolved_config_reproduces_the_fit(population):
    root, _ = population
    proc = ok(run_cli("--quiet", "fit", "--config", "pop/config.toml", "--out", "pop_again", cwd=root))
    assert proc.stdout == "" and proc.stderr == ""  # --quiet: nothing but errors
    assert (root / "pop_again" / "metrics.json").read_bytes() == \
        (root / "pop" / "metrics.json").read_bytes()


# ---------------------------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_keeps_the_best_model(tmp_path):
    ds = sysid.systems.make_dataset("damped_oscillator", n_runs=2, n_obs=30, seed=0)
    sysid.data.to_csv(ds, tmp_path / "osc.csv")
    ckpt = tmp_path / "ckpt.pt"
    (tmp_path / "long.toml").write_text(
        TINY.replace("epochs = 4\n", "epochs = 100000\n").replace("warm_start = { epochs = 10 }",
                                                                 "warm_start = false")
        + f'checkpoint = {{ path = "{ckpt}", every = 1 }}\n')
    args = ["fit", "osc.csv", "--time", "time", "--states", "x,v", "--run", "trajectory",
            "--config", "long.toml", "--out", "fit"]
    with cli_process(args, cwd=tmp_path) as proc:
        deadline = time.monotonic() + 120
        while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)  # the first checkpoint means training epochs are running
        assert ckpt.exists(), stderr_so_far(proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err and "best model so far was saved" in err
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert metrics["training"]["stopped_reason"] == "interrupted"
    model = sysid.load_model(tmp_path / "fit" / "model")
    assert tuple(model.field.state_names) == ("x", "v")


def test_root_help_worked_example_runs(tmp_path, monkeypatch, capsys):
    """Every command of ``sysid --help``'s worked example, as printed (fit shortened to 15 epochs)."""
    from sysid.cli import main

    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    block = text.split("Worked example", 1)[1].split("\n\n", 1)[0]
    commands = [line.split()[1:] for line in block.splitlines() if line.strip().startswith("sysid ")]
    assert [c[0] for c in commands] == ["datasets", "fit", "simulate", "compare", "report"]
    monkeypatch.chdir(tmp_path)
    for args in commands:
        if args[0] == "fit":
            args = [*args, "--epochs", "15"]
        assert main(args) == 0, (args, capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pop_cmp", "pop_fit", "pop_sim.csv"]


@pytest.mark.parametrize("failure, code, message", [
    (KeyboardInterrupt(), 130, r"interrupted after training; the model was saved to .* without a report"),
    (RuntimeError("plot backend broke"), 1,
     r"the report could not be written \(RuntimeError: plot backend broke\); the model and metrics "
     r"were saved\. Run 'sysid report .*' once the cause is fixed"),
])
def test_report_failure_keeps_the_trained_model(tmp_path, monkeypatch, capsys, failure, code, message):
    """Ctrl-C or a bug while writing the report must not throw away a finished fit."""
    import sysid.cli.evaluate
    from sysid.cli import main

    def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(sysid.cli.evaluate, "write_report", broken)
    out = tmp_path / "fit"
    assert main(["fit", "dataset:us_population", "--rename", "population=N", "--model",
                 "physics:logistic", "--epochs", "3", "--out", str(out)]) == code
    assert re.search(message, capsys.readouterr().err)
    assert sysid.load_model(out / "model").observed == ("population",)
    assert json.loads((out / "metrics.json").read_text())["trajectory"]
    assert not (out / "report.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit"]


def test_free_initial_states_are_written_and_used_for_the_metrics(tmp_path):
    # hare-lynx, Lotka-Volterra with free initial states: the metrics start each run where the fit
    # put it (initial_states.csv), as the report does
    out = tmp_path / "hl"
    ok(run_cli("fit", "dataset:hare_lynx", "--states", "hare,lynx", "--model", "physics:lotka_volterra",
               "--rename", "hare=prey,lynx=predator", "--set", "loss=log", "--set", "initial_states=free",
               "--epochs", "60", "--out", str(out), cwd=tmp_path))
    import pandas as pd

    init = pd.read_csv(out / "initial_states.csv", index_col=0)
    assert list(init.columns) == ["hare", "lynx"] and list(init.index) == ["hare_lynx"]
    metrics = json.loads((out / "metrics.json").read_text())
    model = sysid.load_model(out / "model")
    data = sysid.data.load_netcdf(out / "data.nc")
    start = {n: float(init.loc["hare_lynx", n]) for n in init.columns}
    pred = sysid.analysis.predict(model, data, initial=start)
    table = sysid.analysis.metrics_table(sysid.analysis.trajectory_metrics(data, pred)).reset_index()
    rows = {(r["run"], r["variable"]): r for r in metrics["trajectory"]}
    for _, row in table.iterrows():
        # the CSV keeps ~17 significant digits of the start: same free run to 1e-6
        assert rows[(row["run"], row["variable"])]["rmse"] == pytest.approx(row["rmse"], rel=1e-6)
