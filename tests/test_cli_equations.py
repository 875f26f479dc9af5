"""Own equations from the command line: equations files, measurement equations, hidden states,
constant inputs, row filters, and the user's names and units kept end to end.

Synthetic data are generated with SciPy (solve_ivp at tight tolerances) inside the tests; every
fit runs the real command line in a subprocess.
"""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp

import sysid
from sysid.cli import main
from sysid.cli._config import read_config
from sysid.models import HybridField, from_toml
from test_cli_framework import REPO, run_cli

EXAMPLES = REPO / "examples"
W2, C = 9.0, 0.3  # the pendulum's truth: w2 = g/L in 1/s^2, damping in 1/s
K1, K2, HMAX = 0.5, 0.4, 1.0  # the tanks' truth


def ok(proc):
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def pendulum_csv(path, *, condition=False, forcing=True, seed=1):
    """Two runs of a damped pendulum driven by u = a sin(1.7 t), 5 mrad / 10 mrad/s noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for r, (theta0, a) in enumerate([(0.6, 0.8), (-0.4, 1.2)]):
        a = a if forcing else 0.0
        t = np.linspace(0, 6, 61)
        sol = solve_ivp(lambda tt, y: [y[1], -W2 * np.sin(y[0]) - C * y[1] + a * np.sin(1.7 * tt)],
                        (0, 6), [theta0, 0.0], t_eval=t, rtol=1e-10, atol=1e-12)
        for k in range(t.size):
            row = {"run": f"r{r}", "t [s]": t[k],
                   "theta [rad]": sol.y[0, k] + 0.005 * rng.standard_normal(),
                   "v [rad/s]": sol.y[1, k] + 0.01 * rng.standard_normal()}
            if forcing:
                row["u [rad/s^2]"] = a * np.sin(1.7 * t[k])
            if condition:
                row["condition"] = "mixture" if r == 0 else "pure"
            rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def tanks_csv(path, seed=0):
    """Sensor readings level = clip(h2, 0, 1 m) + 5 mm noise of two tanks; inflow measured."""
    rng = np.random.default_rng(seed)
    rows = []
    for run in range(2):
        def inflow(t):
            return 0.35 + 0.15 * np.sin(0.3 * t + run) + 0.1 * np.sin(0.11 * t + 2 * run)

        def rhs(t, h):
            q1 = K1 * np.sqrt(max(h[0], 0.0))
            return [-q1 + inflow(t), q1 - K2 * np.sqrt(max(h[1], 0.0))]

        t = np.linspace(0, 60, 31)
        sol = solve_ivp(rhs, (0, 60), [0.3, 0.2], t_eval=t, rtol=1e-10, atol=1e-12)
        assert sol.y[1].max() > 1.2  # the sensor saturates part of the time
        level = np.clip(sol.y[1], 0, HMAX) + 0.005 * rng.standard_normal(t.size)
        rows += [{"run": f"r{run}", "t [s]": t[k], "level [m]": level[k], "inflow [m/s]": inflow(t[k])}
                 for k in range(t.size)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def help_equations(tmp_path):
    """The equations file shown in 'sysid fit --help' (its commented TOML lines)."""
    proc = ok(run_cli("fit", "--help"))
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "where pendulum.toml holds" in line)
    toml = []
    for line in lines[start + 1:]:
        text = line.strip()
        if not text.startswith("#   "):
            break
        toml.append(text[4:])
    path = tmp_path / "pendulum.toml"
    path.write_text("\n".join(toml) + "\n")
    return path, proc.stdout


@pytest.fixture(scope="module")
def pendulum_fit(tmp_path_factory):
    root = tmp_path_factory.mktemp("pendulum")
    pendulum_csv(root / "pend.csv")
    equations, help_text = help_equations(root)
    proc = ok(run_cli("fit", "pend.csv", "--time", "t", "--run", "run", "--model",
                      "equations:pendulum.toml", "--epochs", "30", "--out", "pend_fit", cwd=root))
    return root, equations, help_text, proc


def test_help_worked_example_is_an_own_equation_fit_with_an_input(pendulum_fit):
    root, equations, help_text, _ = pendulum_fit
    assert "--model equations:pendulum.toml" in help_text
    model = from_toml(equations)
    assert model.input_names == ("u",) and "u" in model.field.fn.texts["v"]


def test_driven_pendulum_from_an_equations_file_recovers_its_parameters(pendulum_fit):
    root, *_ = pendulum_fit
    out = root / "pend_fit"
    table = pd.read_csv(out / "parameters.csv").set_index("name")
    # 5 mrad noise on 122 samples: Gauss-Newton stderr 0.007 (w2) and 0.003 (c); the fit lands
    # within 0.1 % and 1 %; the tolerances leave room for the float32 RK4 training
    assert table.loc["w2", "value"] == pytest.approx(W2, rel=0.01)
    assert table.loc["c", "value"] == pytest.approx(C, rel=0.05)
    assert table.loc["w2", "units"] == "1/s^2"
    model = sysid.load_model(out / "model")  # text equations: no allow_import needed
    assert model.state_names == ("theta", "v") and model.state_units == ("rad", "rad/s")
    report = (out / "report.md").read_text()
    assert "| theta | state | rad |" in report and "| u | input | rad/s^2 |" in report
    assert "dv/dt = -w2*sin(theta) - c*v + u" in report
    assert "Comparison with" not in report  # no reference unless asked for
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "equations:pendulum.toml"


def test_resolved_config_holds_the_equations_and_rebuilds_the_model(pendulum_fit):
    root, equations, *_ = pendulum_fit
    cfg = tomllib.loads((root / "pend_fit" / "config.toml").read_text())
    assert cfg["model"]["kind"] == "equations"
    assert cfg["model"]["equations"]["dv"] == "-w2*sin(theta) - c*v + u"
    opts = read_config(root / "pend_fit" / "config.toml")
    rebuilt = from_toml(opts.equations)
    assert rebuilt.parameter_table().equals(from_toml(equations).parameter_table())


def test_hybrid_pendulum_network_reads_the_named_arguments(tmp_path):
    pendulum_csv(tmp_path / "pend.csv")
    text = (EXAMPLES / "driven_pendulum.toml").read_text()
    text = text.replace('dv = "-w2*sin(theta) - c*v + u"\n',
                        'dv = "-w2*sin(theta) - c*v + u + nn(theta, v)"\n[model.neural]\nwidth = 8\n')
    (tmp_path / "hybrid.toml").write_text(text)
    ok(run_cli("fit", "pend.csv", "--time", "t", "--run", "run", "--model", "equations:hybrid.toml",
               "--epochs", "5", "--set", "warm_start.epochs=50", "--out", "fit", cwd=tmp_path))
    model = sysid.load_model(tmp_path / "fit" / "model")
    assert isinstance(model.field, HybridField)
    assert model.field.neural.arguments == ("theta", "v") and model.field.neural.width == 8
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "| theta | state | rad |" in report and "Comparison with" not in report


def test_two_tanks_hidden_state_and_saturating_sensor_from_the_command_line(tmp_path):
    tanks_csv(tmp_path / "tanks.csv")
    proc = ok(run_cli("fit", "tanks.csv", "--time", "t", "--run", "run", "--model",
                      f"equations:{EXAMPLES / 'two_tanks.toml'}", "--known-initial", "h1,h2",
                      "--set", "shooting=single", "--set", "optimizer.lr=0.05", "--set", "refine=true",
                      "--set", "dtype=float64", "--epochs", "10", "--out", "fit", cwd=tmp_path))
    assert "states ['level'], inputs ['inflow']" in proc.stderr  # columns from the equations file
    out = tmp_path / "fit"
    table = pd.read_csv(out / "parameters.csv").set_index("name")
    # 5 mm noise on 62 readings: stderr 0.0015 (k1), 0.0003 (k2); estimates within 0.2 %
    assert table.loc["k1", "value"] == pytest.approx(K1, rel=0.02)
    assert table.loc["k2", "value"] == pytest.approx(K2, rel=0.02)
    assert not table.loc["hmax", "vary"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {row["variable"] for row in metrics["trajectory"]} == {"level"}
    pooled = next(r for r in metrics["trajectory"] if r["run"] == "all" and r["variable"] == "level")
    assert pooled["rmse"] < 0.01 and pooled["units"] == "m"  # sensor noise is 5 mm
    report = (out / "report.md").read_text()
    assert "level = clip(h2, 0, hmax)   [m]" in report
    assert "| level | state | m |" in report


def test_two_tanks_hybrid_network_inside_a_hidden_state_model(tmp_path):
    """A network of the hidden levels added to dh2, trained through the sensor output."""
    tanks_csv(tmp_path / "tanks.csv")
    text = (EXAMPLES / "two_tanks.toml").read_text().replace(
        'dh2 = "k1*sqrt(max(h1, 0)) - k2*sqrt(max(h2, 0))"',
        'dh2 = "k1*sqrt(max(h1, 0)) - k2*sqrt(max(h2, 0)) + nn(h1, h2)"\n[model.neural]\nwidth = 8')
    (tmp_path / "hybrid.toml").write_text(text)
    ok(run_cli("fit", "tanks.csv", "--time", "t", "--run", "run", "--model", "equations:hybrid.toml",
               "--known-initial", "h1,h2", "--set", "shooting=single", "--epochs", "3", "--out",
               "fit", cwd=tmp_path))
    model = sysid.load_model(tmp_path / "fit" / "model")
    assert isinstance(model.field, HybridField) and model.field.neural.arguments == ("h1", "h2")
    assert model.output_names == ("level",) and model.observed == ()
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "| level | state | m |" in report and "level = clip(h2, 0, hmax)" in report


def test_catalogue_system_keeps_the_users_names_and_units(tmp_path):
    """hybrid:duffing on pendulum data: theta stays theta, in rad; no comparison with the
    catalogue's alpha = -1 unless asked for."""
    pendulum_csv(tmp_path / "pend.csv")
    ok(run_cli("fit", "pend.csv", "--time", "t", "--run", "run", "--states", "theta,v", "--inputs",
               "u", "--model", "hybrid:duffing", "--rename", "theta=x", "--epochs", "1", "--set",
               "warm_start=false", "--width", "4", "--depth", "1", "--out", "fit", cwd=tmp_path))
    model = sysid.load_model(tmp_path / "fit" / "model")
    assert model.state_names == ("theta", "v") and model.state_units == ("rad", "rad/s")
    assert model.input_units == ("rad/s^2",)
    data = sysid.data.load_netcdf(tmp_path / "fit" / "data.nc")
    assert "theta" in data and data["theta"].attrs["units"] == "rad"  # the data was not renamed
    report = (tmp_path / "fit" / "report.md").read_text()
    assert "x [m]" not in report and "| theta | state | rad |" in report
    assert "Comparison with" not in report and "percent_error" not in report


def test_where_selects_rows_and_u_holds_a_missing_input_constant(tmp_path):
    pendulum_csv(tmp_path / "free.csv", condition=True, forcing=False)
    ok(run_cli("fit", "free.csv", "--time", "t", "--run", "run", "--model",
               f"equations:{EXAMPLES / 'driven_pendulum.toml'}", "--where", "condition == 'mixture'",
               "--u", "u=0", "--epochs", "1", "--set", "warm_start=false", "--out", "fit",
               cwd=tmp_path))
    data = sysid.data.load_netcdf(tmp_path / "fit" / "data.nc")
    assert sysid.data.run_ids(data) == ["r0"]  # the 'pure' run was filtered out
    assert "rows where condition == 'mixture'" in data.attrs["processing"]
    assert np.all(data["u"].values[np.isfinite(data["time"].values)] == 0.0)
    assert data["u"].attrs["role"] == "input"
    cfg = tomllib.loads((tmp_path / "fit" / "config.toml").read_text())
    assert cfg["data"]["where"] == "condition == 'mixture'"
    assert cfg["data"]["constant_inputs"] == {"u": 0.0}


@pytest.fixture
def small_data(tmp_path):
    pendulum_csv(tmp_path / "pend.csv", condition=True)
    return tmp_path


@pytest.mark.parametrize("args, match", [
    (["--model", "equations:evil.toml"], r"attribute access \('\.__class__'\).*\n.*\(\)\.__class__\n\s+\^"),
    (["--model", "equations:eq.toml", "--output", "y=theta"], "--output does not apply"),
    (["--model", "equations:deg.toml"], "'theta' has units 'deg' in the equations but 'rad' in the data"),
    (["--model", "equations:eq.toml", "--inputs", "u", "--u", "u=0"], r"--u: \['u'\] is already in"),
    (["--model", "equations:eq.toml", "--where", "condition.upper() == 'A'"],
     r"attribute access \('\.upper'\)"),
    (["--model", "equations:eq.toml", "--where", "conditon == 'a'"], "Did you mean 'condition'"),
    (["--model", "equations:eq.toml", "--latent", "theta=1"], "not an unmeasured state"),
    (["--states", "theta,v", "--inputs", "u", "--latent", "x=1"], "--latent gives starting values"),
    (["--model", "equations:missing.toml"], "the equations file 'missing.toml' does not exist"),
])
def test_user_errors_exit_2_and_write_nothing(small_data, monkeypatch, capsys, args, match):
    root = small_data
    text = (EXAMPLES / "driven_pendulum.toml").read_text()
    (root / "eq.toml").write_text(text)
    (root / "evil.toml").write_text(text.replace('+ u"', '+ u + ().__class__"'))
    (root / "deg.toml").write_text(text.replace('theta = "rad"', 'theta = "deg"'))
    monkeypatch.chdir(root)
    code = main(["fit", "pend.csv", "--time", "t", "--run", "run", *args, "--epochs", "1",
                 "--out", "never"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    import re

    assert re.search(match, err), err
    assert not (root / "never").exists()


# ---------------------------------------------------------------------------------------------
# building the model from the options (no fit): fast checks of the rules


def _opts(**kw):
    from sysid.cli._config import CliFitOptions

    return CliFitOptions(**kw)


def test_catalogue_model_with_a_hidden_state_an_output_and_latent_guesses():
    from sysid.cli._pipeline import parse_model_spec
    from sysid.cli.fit_cmd import build_model

    data = sysid.systems.make_dataset("sir", n_runs=1, n_obs=20, noise=0.0, seed=0)
    data = data[["I"]].assign(cases=data["I"] * 0.1)  # I measured, and a reported-cases column
    data["cases"].attrs.update(role="state", units="people/day", long_name="cases")
    model = build_model(parse_model_spec("physics:sir"),
                        _opts(kind="physics:sir", outputs={"cases": "gamma * I"}, latent={"S": 990.0}),
                        data)
    assert model.observed == ("I",) and model.output_names == ("cases",)
    assert model.output_units == ("people/day",)  # from the data column
    assert model.latent_initial["S"] == 990.0  # --latent
    assert model.latent_initial["R"] == dict(zip(sysid.systems.get("sir").states,
                                                 sysid.systems.get("sir").y0))["R"]  # the system's
    with pytest.raises(sysid.errors.ConfigError, match=r"--latent: \['I'\] is not a state the data lacks"):
        build_model(parse_model_spec("physics:sir"), _opts(kind="physics:sir", latent={"I": 1.0}),
                    data[["I"]])


def test_catalogue_model_takes_the_data_names_and_units_and_says_which_rename_is_missing():
    from sysid.cli._pipeline import parse_model_spec
    from sysid.cli.fit_cmd import build_model

    data = sysid.systems.make_dataset("lotka_volterra", n_runs=1, n_obs=10, seed=0)
    data = data.rename(prey="hare", predator="lynx")
    data["hare"].attrs["units"] = "thousand pelts"
    spec = parse_model_spec("physics:lotka_volterra")
    model = build_model(spec, _opts(kind=str(spec), rename={"hare": "prey", "lynx": "predator"}), data)
    assert model.state_names == ("hare", "lynx") and model.state_units[0] == "thousand pelts"
    with pytest.raises(sysid.errors.ConfigError, match=r"\['hare', 'lynx'\] are not states .* "
                                                       r"--rename hare=prey"):
        build_model(spec, _opts(kind=str(spec)), data)


def test_equations_model_fills_empty_units_from_the_data_and_refuses_stray_columns(tmp_path):
    from sysid.cli._pipeline import parse_model_spec
    from sysid.cli.fit_cmd import build_model

    (tmp_path / "eq.toml").write_text('[model]\nstates = ["x", "v"]\ninputs = ["F"]\n'
                                      '[model.parameters]\nk = 1.0\nc = 0.1\n'
                                      '[model.equations]\ndx = "v"\ndv = "-k*x - c*v + F"\n')
    data = sysid.systems.make_dataset("mass_spring_damper", n_runs=1, n_obs=10, seed=0)
    spec = parse_model_spec(f"equations:{tmp_path / 'eq.toml'}")
    model = build_model(spec, _opts(kind=str(spec)), data[["x", "F"]])
    assert model.observed == ("x",) and model.latent_names == ("v",)  # v is not in the data
    assert model.state_units == ("m", "") and model.input_units == ("N",)  # x and F from the data
    assert model.time_units == "s"
    with pytest.raises(sysid.errors.ConfigError, match=r"measured variables \['w'\] are neither states"):
        build_model(spec, _opts(kind=str(spec)), data.assign(w=data["x"]))


def test_simulate_holds_an_input_constant_and_filters_initial_rows(pendulum_fit):
    """The fitted equations, unforced (--u u=0), against SciPy with the fitted parameters."""
    root, *_ = pendulum_fit
    ok(run_cli("simulate", "pend_fit", "--y0", "theta=0.5,v=0", "--t-end", "4", "--dt", "0.5",
               "--u", "u=0", "--rtol", "1e-9", "--atol", "1e-11", "--out", "free.csv", cwd=root))
    sim = pd.read_csv(root / "free.csv")
    assert np.all(sim["u [rad/s^2]"] == 0.0)
    p = pd.read_csv(root / "pend_fit" / "parameters.csv").set_index("name")["value"]
    t = sim["t [s]"].to_numpy()
    ref = solve_ivp(lambda tt, y: [y[1], -p["w2"] * np.sin(y[0]) - p["c"] * y[1]], (0, 4), [0.5, 0.0],
                    t_eval=t, rtol=1e-11, atol=1e-12).y
    # dopri5 at rtol 1e-9 against RK45 at 1e-11: the same trajectory to ~1e-8
    np.testing.assert_allclose(sim["theta [rad]"], ref[0], atol=1e-6)
    ok(run_cli("simulate", "pend_fit", "--initial-from", "pend.csv", "--where", "run == 'r1'",
               "--out", "r1.csv", cwd=root))
    assert set(pd.read_csv(root / "r1.csv")["run"]) == {"r1"}
