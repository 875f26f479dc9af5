"""``sysid datasets`` and ``sysid systems``.

Most tests call the entry point ``sysid.cli.main`` in process (a subprocess costs a torch import
each time); one runs the real command in a subprocess.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import sysid.systems
from sysid.cli import main
from test_cli_framework import run_cli


@pytest.fixture
def cli_run(capsys):
    """``cli_run(*args)`` -> (returncode, stdout, stderr) of ``sysid.cli.main`` in this process."""

    def call(*args: str) -> SimpleNamespace:
        code = main(list(args))
        cap = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=cap.out, stderr=cap.err)

    return call


def parse_table(text: str, first: str) -> list[dict[str, str]]:
    """Rows of the fixed-width table whose header starts with ``first`` (columns from the dashes)."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(first + " "))
    spans, pos = [], 0
    for dashes in lines[i + 1].split("  "):
        spans.append((pos, pos + len(dashes)))
        pos += len(dashes) + 2
    names = [lines[i][a:b].strip() for a, b in spans]
    rows = []
    for line in lines[i + 2:]:
        if not line.strip():
            break
        rows.append({n: line[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)})
    return rows


def test_systems_list_names_every_catalogue_system():
    proc = run_cli("systems", "list")  # the real command, in a subprocess
    assert proc.returncode == 0, proc.stderr
    rows = parse_table(proc.stdout, "name")
    assert [r["name"] for r in rows] == sysid.systems.list()
    row = next(r for r in rows if r["name"] == "mass_spring_damper")
    assert (row["field"], row["states"], row["inputs"]) == ("physics", "x,v", "F")


def test_systems_without_subcommand_lists(cli_run):
    proc = cli_run("systems")
    assert proc.returncode == 0 and "lotka_volterra" in proc.stdout


def test_systems_show_prints_parameters_with_defaults_and_units(cli_run):
    system = sysid.systems.get("lotka_volterra")
    proc = cli_run("systems", "show", "lotka_volterra")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith(f"lotka_volterra: {system.title} ({system.field})")
    rows = parse_table(out, "parameter")
    assert [r["parameter"] for r in rows] == [p.name for p in system.parameters]
    for p, row in zip(system.parameters, rows, strict=True):
        assert float(row["default"]) == pytest.approx(p.default, rel=1e-5)  # printed with %g: 6 digits
        assert row["units"] == (p.units or "-")
    assert "--model physics:lotka_volterra" in out


def test_systems_show_unknown_name_exits_2_with_suggestion(cli_run):
    proc = cli_run("systems", "show", "lotka_voltera")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "lotka_voltera" in proc.stderr and "did you mean 'lotka_volterra'" in proc.stderr


def test_systems_show_quiet_still_prints_result(cli_run):
    proc = cli_run("--quiet", "systems", "show", "sir")
    assert proc.returncode == 0 and proc.stdout.startswith("sir: ") and proc.stderr == ""


# ---------------------------------------------------------------------------------------------
# datasets


@pytest.fixture(scope="module")
def catalogue():
    import sysid.datasets

    return sysid.datasets


def test_datasets_list(catalogue, cli_run):
    proc = cli_run("datasets")
    assert proc.returncode == 0, proc.stderr
    listed = [r["name"] for r in parse_table(proc.stdout, "name")]
    assert listed == list(catalogue.list()) and len(listed) >= 5


def test_datasets_show(catalogue, cli_run):
    import sysid.data

    name = catalogue.list()[0]
    ds = catalogue.load(name)
    proc = cli_run("datasets", "show", name)
    assert proc.returncode == 0, proc.stderr
    rows = {r["variable"]: r for r in parse_table(proc.stdout, "variable")}
    for var in sysid.data.state_names(ds):
        assert rows[var]["role"] == "state"
        # printed with %g (6 significant digits)
        assert float(rows[var]["min"]) == pytest.approx(float(np.nanmin(ds[var].values)), rel=1e-5)


def test_datasets_show_unknown_exits_2(catalogue, cli_run):
    proc = cli_run("datasets", "show", "no_such_dataset")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no_such_dataset" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("suffix", [".csv", ".nc"])
def test_datasets_export_round_trips(catalogue, tmp_path, suffix, cli_run):
    import sysid.data

    name = catalogue.list()[0]
    ds = catalogue.load(name)
    out = tmp_path / f"export{suffix}"
    proc = cli_run("datasets", "export", name, str(out))
    assert proc.returncode == 0, proc.stderr
    states, inputs = sysid.data.state_names(ds), sysid.data.input_names(ds)
    if suffix == ".csv":
        back = sysid.data.load_csv(out, time="time", states=states, inputs=inputs,
                                   trajectory="trajectory")
    else:
        back = sysid.data.load_netcdf(out)
    assert sysid.data.run_ids(back) == sysid.data.run_ids(ds)
    for var in [*states, *inputs]:
        # CSV text keeps 17 significant digits: the values come back exactly
        np.testing.assert_array_equal(back[var].values, ds[var].values)
        assert back[var].attrs["units"] == ds[var].attrs["units"]

    again = cli_run("datasets", "export", name, str(out))
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    forced = cli_run("datasets", "export", name, str(out), "--force")
    assert forced.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary files left


def test_datasets_export_bad_suffix_writes_nothing(catalogue, tmp_path, cli_run):
    name = catalogue.list()[0]
    proc = cli_run("datasets", "export", name, str(tmp_path / "out.xlsx"))
    assert proc.returncode == 2
    assert "must end in one of ['.csv', '.nc', '.zarr']; got '.xlsx'" in proc.stderr
    assert list(tmp_path.iterdir()) == []
