"""Malformed inputs to ``sysid fit`` through the real command line (one subprocess per case).

Each must exit with status 2, print one line on stderr that names the problem (file, column, row,
option), show no traceback, and write nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from test_cli_framework import run_cli

ROWS = [(round(0.1 * i, 1), 1 + 0.01 * i, 0.5 - 0.02 * i) for i in range(10)]
GOOD = "t,x,v\n" + "".join(f"{t},{x:.3f},{v:.3f}\n" for t, x, v in ROWS)

FILES = {
    "good.csv": GOOD,
    "text.csv": GOOD.replace("1.030", "abc"),
    "decreasing.csv": GOOD.replace("\n0.2,", "\n0.35,"),
    "duplicate.csv": GOOD.replace("\n0.3,", "\n0.2,"),
    "empty.csv": "",
    "header.csv": "t,x,v\n",
    "onerow.csv": "t,x,v\n0,1,2\n",
    "semicolon.csv": GOOD.replace(",", ";"),
    "comma.csv": GOOD.replace(",", ";").replace(".", ","),
    "allnan.csv": "t,x,v\n" + "".join(f"{t},{x:.3f},\n" for t, x, _ in ROWS),
    "inf.csv": GOOD.replace("1.040", "inf"),
    "badkey.toml": "[fit]\nepochz = 3\n",
    "flatkey.toml": "[fit]\nepochs = 3\nlr = 0.01\n",
    "badpart.toml": "[fit.optimizer]\nrate = 0.01\n",
    "badsection.toml": "[data]\ntme = \"t\"\n",
}

CSV = ["--time", "t", "--states", "x,v"]

# (id, arguments, regular expression the one stderr line must match)
CASES = [
    ("missing column", ["good.csv", "--time", "t", "--states", "x,theta"],
     r"good\.csv: column 'theta' \(in --states\) not found; columns are \['t', 'x', 'v'\]"),
    ("text in a numeric column", ["text.csv", *CSV],
     r"text\.csv: column 'x' must hold numbers; it has row 5 'abc'.*--missing-values abc"),
    ("decreasing time", ["decreasing.csv", *CSV],
     r"decreasing\.csv: time must increase .* time 0\.3 at row 5 after 0\.35 at row 4.*--sort"),
    ("duplicate times", ["duplicate.csv", *CSV],
     r"duplicate\.csv: time must not repeat .* time 0\.2 twice, at row 4 and row 5.*--drop-duplicates"),
    ("empty file", ["empty.csv", *CSV], r"empty\.csv: the file is empty"),
    ("header only", ["header.csv", *CSV], r"header\.csv: the file has a header row .* but no data rows"),
    ("one row", ["onerow.csv", *CSV], r"onerow\.csv: run 'onerow' has 1 sample; at least 2 are needed"),
    ("wrong delimiter", ["semicolon.csv", *CSV, "--sep", ","],
     r"semicolon\.csv: column 't' \(in --time\) not found.*looks ';'-delimited; pass --sep ';'"),
    ("decimal comma", ["comma.csv", *CSV],
     r"comma\.csv: column 'x' has '1,000' at row 2, which looks like a decimal comma; pass --decimal ','"),
    ("all-NaN state", ["allnan.csv", *CSV], r"allnan\.csv: state 'v' has no values"),
    ("inf values", ["inf.csv", *CSV], r"inf\.csv: column 'x' is inf at row 6"),
    ("unknown system name", ["good.csv", *CSV, "--model", "hybrid:pendulm"],
     r"No reference system 'pendulm' \(did you mean 'pendulum'\?\)"),
    ("bad --params", ["good.csv", *CSV, "--model", "physics:damped_oscillator", "--params",
                      "zeta=abc"],
     r"--params 'zeta': expected a number such as 0\.5 or 1e-3, got 'abc'"),
    ("--params without =", ["good.csv", *CSV, "--model", "physics:damped_oscillator", "--params",
                            "zeta"], r"--params: expected name=value pairs .* the item 'zeta' has no '='"),
    ("unknown config key", ["good.csv", *CSV, "--config", "badkey.toml"],
     r"config file 'badkey\.toml', \[fit\]: .*unknown option 'epochz'\. Did you mean 'epochs'\?"),
    ("flat [fit] key of the old layout", ["good.csv", *CSV, "--config", "flatkey.toml"],
     r"config file 'flatkey\.toml', \[fit\]: FitConfig: 'lr' moved to the optimizer part: "
     r"\[fit\.optimizer\] lr in TOML"),
    ("unknown key of a part", ["good.csv", *CSV, "--config", "badpart.toml"],
     r"\[fit\.optimizer\]: unknown option 'rate'.*Valid options: name, lr, "),
    ("old flat --set key", ["good.csv", *CSV, "--set", "lr=0.01"],
     r"--set: 'lr' moved to the optimizer part; write --set optimizer\.lr=0\.01 \(in a config "
     r"file: \[fit\.optimizer\] lr\)"),
    ("unknown --set key", ["good.csv", *CSV, "--set", "epoch=3"],
     r"--set: unknown option 'epoch'\. Did you mean 'epochs'\?.*PART\.KEY=VALUE"),
    ("unknown --set part key", ["good.csv", *CSV, "--set", "shooting.horizon=[4]"],
     r"fit options: \[fit\.shooting\]: unknown option 'horizon'\. Did you mean 'horizons'"),
    ("bad --set part value", ["good.csv", *CSV, "--set", "loss=mse"],
     r"fit options: Loss: kind 'mse' was renamed: use 'nmse'"),
    ("unknown config key in [data]", ["good.csv", *CSV, "--config", "badsection.toml"],
     r"config file 'badsection\.toml': unknown key 'data\.tme'"),
    ("missing data file", ["nope.csv", *CSV], r"DATA file 'nope\.csv' does not exist"),
    ("unknown --free parameter", ["good.csv", *CSV, "--model", "physics:damped_oscillator",
                                  "--free", "omega,q"],
     r"--free: \['q'\] is not a parameter of 'damped_oscillator'; its parameters are \['omega', 'zeta'\]"),
    ("states not of the system", ["good.csv", "--time", "t", "--states", "x", "--model",
                                  "physics:logistic"],
     r"the data's states \['x'\] are not states of 'logistic'.*--rename x=N"),
    ("unknown holdout run", ["good.csv", *CSV, "--holdout", "B"],
     r"--holdout: runs \['B'\] are not in the data; its runs are \['good'\]"),
    ("holdout fraction out of range", ["good.csv", *CSV, "--holdout", "1.5"],
     r"--holdout: a fraction of runs must lie strictly between 0 and 1, got 1\.5"),
    ("bad --model kind", ["good.csv", *CSV, "--model", "blackbox"],
     r"--model: expected 'neural', 'physics:SYSTEM', 'hybrid:SYSTEM' or 'equations:FILE.toml', got 'blackbox'"),
    ("bad --epochs", ["good.csv", *CSV, "--epochs", "zero"], r"Invalid value for '--epochs'"),
]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize("args, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_malformed_input_exits_2_with_one_line_and_writes_nothing(workdir, args, message):
    before = sorted(p.name for p in workdir.iterdir())
    proc = run_cli("fit", *args, "--out", "result", cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr  # one line
    assert proc.stderr.startswith("sysid fit: error: ")
    assert re.search(message, proc.stderr), proc.stderr
    assert sorted(p.name for p in workdir.iterdir()) == before  # no result, no temporary files


def test_existing_output_directory_is_left_alone(workdir):
    out = workdir / "result"
    out.mkdir()
    (out / "keep.txt").write_text("previous results")
    proc = run_cli("fit", "good.csv", *CSV, "--out", "result", cwd=workdir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "sysid fit: error: output directory 'result' (--out) already exists; sysid never "
        "overwrites results. Pass --force to replace it, or choose another --out.")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "previous results"



def test_a_stiff_solve_names_the_command_line_remedy(tmp_path, capsys):
    # van der Pol with mu = 1000 is stiff: the default dopri5 (a torch solve) stops after ~5000
    # evaluations (sysid.budget.Pace); the message names the command's options, not Python's
    import sysid
    from sysid.budget import STIFF_HINT
    from sysid.cli import main
    from sysid.cli._support import solver_remedy
    from sysid.solvers.config import STIFF_REMEDY
    from sysid.solvers.runs import _HINT as TORCH_HINT

    sysid.save_model(sysid.models.physics("van_der_pol", values={"mu": 1000.0}), tmp_path / "vdp")
    code = main(["simulate", str(tmp_path / "vdp"), "--y0", "x=2,v=0", "--t-end", "3000",
                 "--out", str(tmp_path / "sim.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(r"the steps collapsed: .* implicit SciPy method: --method LSODA, Radau or "
                     r"BDF\. Try a fixed-step method \(--method rk4; .*\) or looser --rtol/--atol",
                     err), err
    assert "SolverConfig" not in err and "method=" not in err, err
    # the same remedies (torch, SciPy's ivp, solvers.config) as the other commands spell them
    text = (f"the steps collapsed; {STIFF_HINT}. {TORCH_HINT} Try method='Radau' or 'BDF', looser "
            f"rtol/atol; {STIFF_REMEDY}")
    fit = solver_remedy(text, "sysid fit")
    assert re.search(r"--set solver\.method=rk4 --set solver\.substeps=4, or method and "
                     r"substeps in the \[fit\.solver\] table of --config", fit), fit
    assert "looser --set solver.rtol=... and solver.atol=..." in fit
    report = solver_remedy(text, "sysid report")
    assert re.search(r"this command has no solver option, but sysid simulate MODEL_DIR "
                     r"--method Radau or BDF has", report), report
    for spelled in (fit, report):
        assert "SolverConfig" not in spelled and "method='" not in spelled, spelled
    assert solver_remedy(STIFF_REMEDY, "sysid simulate").endswith(
        "use an implicit method: --method Radau or BDF")
