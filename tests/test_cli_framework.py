"""The command line's machinery: exit codes, one-line errors, option parsing, TOML, atomic outputs."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from sysid.cli import cli, main
from sysid.cli._config import CliFitOptions, dumps_toml, read_config
from sysid.cli._support import (
    UserError,
    atomic_dir,
    atomic_file,
    parse_assignments,
    parse_float,
    parse_holdout,
    parse_names,
    parse_renames,
    parse_settings,
)
from sysid.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real command line in a subprocess (``python -m sysid``).

    ``timeout`` only catches a hang: a small hybrid fit from the command line takes ~25 s on an
    idle 2-core machine but went past 120 s at load 9, so the guard is not a speed test."""
    env = dict(os.environ, TQDM_DISABLE="1", MPLBACKEND="Agg", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "sysid", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def _default_sigint() -> None:  # pragma: no cover - runs in the child before exec
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def cli_process(args: list[str], *, cwd: Path | None = None, env: dict | None = None):
    """The real command line started in the background (to be sent a signal), killed on the way
    out if it is still running, so that a failing test never leaves a 100 000-epoch fit behind.

    The child starts with SIGINT at its default: a process inherits an ignored SIGINT (POSIX),
    and a test runner's worker may ignore it, which would make Ctrl-C tests test nothing."""
    env = dict(os.environ, TQDM_DISABLE="1", MPLBACKEND="Agg", PYTHONPATH=str(REPO)) \
        if env is None else env
    proc = subprocess.Popen([sys.executable, "-m", "sysid", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def stderr_so_far(proc: subprocess.Popen) -> str:
    """What a background command wrote to stderr, stopping it first if it is still running."""
    if proc.poll() is None:
        proc.kill()
    return proc.communicate()[1]


# ---------------------------------------------------------------------------------------------
# parsing option values


def test_parse_names_strips_and_keeps_order():
    assert parse_names(" x, v ,theta", option="--states") == ("x", "v", "theta")
    assert parse_names(None, option="--states") == ()
    assert parse_names("", option="--inputs") == ()


@pytest.mark.parametrize("text, match", [
    ("x,,v", r"--states: .*'x,,v' with an empty name"),
    ("x,v,x", r"--states: name 'x' is given twice"),
])
def test_parse_names_rejects(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_names(text, option="--states")


def test_parse_assignments_reads_numbers_without_eval():
    assert parse_assignments("k=1.5, c = -2e-3,n=4", option="--params") == {
        "k": 1.5, "c": -0.002, "n": 4.0}
    assert parse_assignments({"k": 2, "c": "0.5"}, option="[model] params") == {"k": 2.0, "c": 0.5}


@pytest.mark.parametrize("text, match", [
    ("k", r"--params: expected name=value pairs .* the item 'k' has no '='"),
    ("=3", r"--params: the item '=3' has no name before '='"),
    ("k=abc", r"--params 'k': expected a number such as 0.5 or 1e-3, got 'abc'"),
    ("k=1+1", r"--params 'k': expected a number .* got '1\+1'"),
    ("k=__import__('os').getcwd()", r"--params 'k': expected a number"),
    ("k=nan", r"--params 'k': expected a finite number, got 'nan'"),
    ("k=inf", r"--params 'k': expected a finite number, got 'inf'"),
    ("k=1,k=2", r"--params: 'k' is given twice"),
    ("2k=1", r"--params: '2k' in '2k=1' is not a valid name"),
])
def test_parse_assignments_rejects(text, match):
    with pytest.raises(ConfigError, match=match):
        parse_assignments(text, option="--params")


def test_parse_assignments_rejects_bool_in_config():
    with pytest.raises(ConfigError, match=r"value of 'k' must be a number, got True"):
        parse_assignments({"k": True}, option="[model] params")


def test_parse_settings_reads_toml_values_or_bare_strings():
    assert parse_settings(["optimizer.lr=0.005", "solver=dopri5", "shooting.horizons=[4, 8]",
                           "warm_start=false", "loss = log"]) == {
        "optimizer.lr": 0.005, "solver": "dopri5", "shooting.horizons": [4, 8],
        "warm_start": False, "loss": "log"}


@pytest.mark.parametrize("items, match", [
    (["lr"], r"--set: expected KEY=VALUE such as 'optimizer\.lr=0\.005', got 'lr'"),
    (["=3"], r"--set: expected KEY=VALUE"),
    (["lr=1", "lr=2"], r"--set: 'lr' is given twice"),
])
def test_parse_settings_rejects(items, match):
    with pytest.raises(ConfigError, match=match):
        parse_settings(items)


def test_parse_renames():
    assert parse_renames("population=N, year = t") == {"population": "N", "year": "t"}
    assert parse_renames({"a": "b"}) == {"a": "b"}
    with pytest.raises(ConfigError, match=r"--rename: expected old=new pairs .* 'population' has no '='"):
        parse_renames("population")
    with pytest.raises(ConfigError, match=r"--rename: two variables would be called 'N'"):
        parse_renames("a=N,b=N")
    with pytest.raises(ConfigError, match=r"--rename: 'a=' needs a name on both sides"):
        parse_renames("a=")


def test_parse_float():
    assert parse_float(" 1e-3 ", what="--dt") == 0.001
    with pytest.raises(ConfigError, match=r"--dt: expected a number such as 0.5 or 1e-3, got '1/2'"):
        parse_float("1/2", what="--dt")


@pytest.mark.parametrize("text, expected", [
    ("0.25", 0.25), ("B,C", ("B", "C")), ("2", ("2",)), ("1,3", ("1", "3")), ("run0", ("run0",)),
    (None, None), (0.5, 0.5), (["a", "b"], ("a", "b")),
])
def test_parse_holdout(text, expected):
    assert parse_holdout(text) == expected


@pytest.mark.parametrize("text", ["1.5", "0.0", "-0.2", 1.0])
def test_parse_holdout_rejects_fraction_outside_unit_interval(text):
    with pytest.raises(ConfigError, match=r"--holdout: a fraction of runs must lie strictly between 0 and 1"):
        parse_holdout(text)


# ---------------------------------------------------------------------------------------------
# TOML config


def test_dumps_toml_round_trips_through_tomllib():
    tables = {
        "data": {"path": 'C:\\data\\a "b".csv', "states": ["x", "v"], "inputs": [], "run": None,
                 "holdout": 0.25},
        "model": {"kind": "hybrid:pendulum", "params": {"g_over_l": 9.81, "damping": 0.1}},
        "fit": {"epochs": 3, "optimizer": {"lr": 1e-3}, "shooting": {"horizons": (5, 10)},
                "warm_start": {"enabled": False}, "validation": {"target": float("inf")},
                "loss": {"weights": {"x": 2.0, "v": 0.5}, "sigma": {"x": 0.1}},
                "checkpoint": {"path": None, "every": 50}},
    }
    back = tomllib.loads(dumps_toml(tables, header="resolved\nconfig"))
    assert back["data"] == {"path": 'C:\\data\\a "b".csv', "states": ["x", "v"], "inputs": [],
                            "holdout": 0.25}  # None is left out: TOML has no null
    assert back["model"] == tables["model"]
    assert back["fit"]["shooting"]["horizons"] == [5, 10]
    assert back["fit"]["loss"] == {"weights": {"x": 2.0, "v": 0.5}, "sigma": {"x": 0.1}}
    assert math.isinf(back["fit"]["validation"]["target"])
    assert back["fit"]["warm_start"]["enabled"] is False
    assert back["fit"]["checkpoint"] == {"every": 50}  # None is left out
    # the parts are [fit.PART] tables; weights and sigma inline tables
    text = dumps_toml(tables)
    assert "[fit.optimizer]" in text and "weights = { x = 2.0, v = 0.5 }" in text


def test_read_config_merges_and_flags_override(tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[data]\npath = "d.csv"\ntime = "t"\nstates = ["x", "v"]\nholdout = ["B"]\n'
                   '[model]\nkind = "physics:pendulum"\nparams = { damping = 0.2 }\n'
                   '[fit]\nepochs = 7\nseed = 3\n[fit.optimizer]\nlr = 0.05\n')
    opts = read_config(cfg)
    assert opts.path == str(tmp_path / "d.csv")  # relative to the config file
    assert opts.states == ("x", "v") and opts.holdout == ("B",)
    assert opts.params == {"damping": 0.2}
    merged = opts.merged(epochs=2, seed=None, time="time", states=None,
                         settings={"optimizer.name": "adamw", "loss": "sse"})
    assert merged.fit == {"epochs": 2, "seed": 3, "optimizer": {"lr": 0.05},
                          "optimizer.name": "adamw", "loss": "sse"}
    # --set PART.KEY changes one field of the file's [fit.PART] table
    from sysid.training import FitConfig, Optimizer

    cfg = FitConfig.from_dict(merged.fit)
    assert cfg.optimizer == Optimizer(name="adamw", lr=0.05) and cfg.loss.kind == "sse"
    assert merged.time == "time" and merged.states == ("x", "v")
    again = tomllib.loads(dumps_toml(merged.to_toml_dict()))
    assert again["data"]["holdout"] == ["B"] and again["model"]["params"] == {"damping": 0.2}


@pytest.mark.parametrize("text, match", [
    ('[dat]\ntime = "t"\n', r"unknown key 'dat'; the file may hold the tables \['data', 'model', 'fit'\]"),
    ('[data]\ntme = "t"\n', r"unknown key 'data.tme'; \[data\] accepts"),
    ('[model]\nkind = "neural"\nwidht = 3\n', r"unknown key 'model.widht'"),
    ('[data]\nstates = 3\n', r"'states' must be a list of names"),
    ('[model]\nwidth = -1\n', r"'width' must be a positive integer, got -1"),
    ('[data\n', r"is not valid TOML"),
    ('data = 1\n', r"'data' must be a table"),
])
def test_read_config_rejects(tmp_path, text, match):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_config(cfg)


def test_read_config_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"config file '.*nope.toml' does not exist"):
        read_config(tmp_path / "nope.toml")


def test_cli_fit_options_are_frozen():
    opts = CliFitOptions()
    with pytest.raises(AttributeError):
        opts.kind = "x"  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# atomic outputs


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_dir_creates_target_and_parents(tmp_path):
    target = tmp_path / "a" / "b" / "out"
    with atomic_dir(target, force=False) as tmp:
        (tmp / "x.txt").write_text("1")
        assert not target.exists()  # built next to the target, moved at the end
    assert (target / "x.txt").read_text() == "1"
    assert _leftovers(target.parent) == ["out"]


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_dir_leaves_nothing_on_failure(tmp_path, exc):
    target = tmp_path / "new" / "out"
    with pytest.raises(type(exc)):
        with atomic_dir(target, force=False) as tmp:
            (tmp / "half.txt").write_text("half")
            raise exc
    assert _leftovers(tmp_path) == []  # neither the temp dir nor the created parent remain


def test_atomic_dir_refuses_existing_without_force(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match=r"output directory '.*out' \(--out\) already exists.*--force"):
        with atomic_dir(tmp_path / "out", force=False):
            pass


def test_atomic_dir_force_replaces_only_when_complete(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target, force=True) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("crash")
    assert _leftovers(target) == ["old.txt"]  # a failed replacement keeps the previous result
    with atomic_dir(target, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert _leftovers(target) == ["new.txt"]
    assert _leftovers(tmp_path) == ["out"]


def test_atomic_file(tmp_path):
    target = tmp_path / "sim.csv"
    with atomic_file(target, force=False) as tmp:
        assert tmp.suffix == ".csv" and tmp.parent == tmp_path
        tmp.write_text("t,x\n0,1\n")
    assert target.read_text() == "t,x\n0,1\n"
    with pytest.raises(UserError, match=r"output file '.*sim.csv' \(--out\) already exists"):
        with atomic_file(target, force=False):
            pass
    with pytest.raises(KeyboardInterrupt):
        with atomic_file(target, force=True) as tmp:
            tmp.write_text("partial")
            raise KeyboardInterrupt
    assert target.read_text() == "t,x\n0,1\n" and _leftovers(tmp_path) == ["sim.csv"]


def test_atomic_file_rejects_directory(tmp_path):
    with pytest.raises(UserError, match=r"is a directory; give a file name"):
        with atomic_file(tmp_path, force=True):
            pass


# ---------------------------------------------------------------------------------------------
# exit codes and messages (in process, through main())


@pytest.fixture
def extra_command():
    """Temporarily add commands that fail in known ways."""

    @click.command("boom-internal")
    def boom_internal() -> None:
        raise ZeroDivisionError("division by zero in a test")

    @click.command("boom-user")
    def boom_user() -> None:
        raise DataError("load_csv: column 'theta' (in states=) not found in\n run3.csv")

    @click.command("boom-missing")
    def boom_missing() -> None:
        open("/nonexistent/dir/file.csv")  # noqa: SIM115

    for c in (boom_internal, boom_user, boom_missing):
        cli.add_command(c)
    yield
    for name in ("boom-internal", "boom-user", "boom-missing"):
        cli.commands.pop(name)


def test_internal_error_exits_1_with_hint(capsys, extra_command):
    assert main(["boom-internal"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error: ZeroDivisionError: division by zero in a test" in err
    assert "run with --verbose" in err


def test_verbose_shows_traceback(capsys, extra_command):
    assert main(["--verbose", "boom-internal"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_user_error_exits_2_with_one_line(capsys, extra_command):
    assert main(["boom-user"]) == 2
    err = capsys.readouterr().err
    assert err == ("sysid boom-user: error: load_csv: column 'theta' (in states=) not found in "
                   "run3.csv\n")


def test_missing_file_exits_2(capsys, extra_command):
    assert main(["boom-missing"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("sysid boom-missing: error: cannot use '/nonexistent/dir/file.csv': "
                           "No such file or directory.")


def test_usage_errors_exit_2(capsys):
    assert main(["no-such-command"]) == 2
    assert capsys.readouterr().err.strip() == (
        "sysid: error: No such command 'no-such-command'. (see 'sysid --help')")
    assert main(["fit", "x.csv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Missing option '--out'" in err


def test_help_and_version_exit_0(capsys):
    assert main([]) == 0
    assert "Worked example" in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "Worked example" in out and "sysid fit dataset:us_population" in out
    assert main(["--version"]) == 0
    assert "sysid, version" in capsys.readouterr().out


def test_every_command_help_shows_an_example(capsys):
    def walk(group: click.Group, prefix: list[str]):
        for name, command in group.commands.items():
            yield [*prefix, name]
            if isinstance(command, click.Group):
                yield from walk(command, [*prefix, name])

    paths = list(walk(cli, []))
    assert {"fit", "datasets", "systems"} <= {p[0] for p in paths}
    for path in paths:
        assert main([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert "Example" in out and "sysid " in out.split("Example", 1)[1], path


def test_python_dash_m_runs_the_cli():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "Worked example" in proc.stdout
    proc = run_cli("fit", "--params", "k")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
