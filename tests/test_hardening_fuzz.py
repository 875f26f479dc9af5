"""Property-based fuzzing of ``load_csv`` and of the command line's option parsing (issue 17, item 8).

``load_csv`` on any bytes: either a dataset that round-trips through ``to_csv``, or a
:class:`~sysid.errors.DataError` / :class:`~sysid.errors.ConfigError` - never another exception,
never a hang. ``sysid fit`` with any option values: either the options are accepted (training is
replaced by a sentinel, so no example trains) or exit status 2 with one line on stderr - never a
traceback, never exit 1. Each example runs under a time limit (SIGALRM), so a hang fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import contextlib
import os
import signal
import string
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import sysid
from sysid.errors import ConfigError, DataError

EXAMPLE_SECONDS = 20  # generous for a loaded 2-core machine; a hang is minutes, not seconds
FUZZ = settings(max_examples=int(os.environ.get("SYSID_FUZZ_EXAMPLES", "200")), deadline=None,
                derandomize=not os.environ.get("SYSID_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class _Hang(BaseException):
    """Raised by the alarm: not an Exception, so no ``except Exception`` in sysid can hide it."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def alarm(signum, frame):
        raise _Hang(f"example took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------------------------
# load_csv on arbitrary tables and bytes

_CELL = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**20, 10**20).map(str),
    st.sampled_from(["", "NA", "nan", "inf", "-inf", "1,5", "1e999", "abc", "\"", "'", " ", "--",
                     "2024-01-01", "2024-01-01T00:00:00Z", "=1+1", "\t", "1_000", "0x10", "١٢"]),
    st.text(alphabet=string.printable + "éß°µ\u00a0\u2028\ufeff\x00", max_size=6),
)
_HEADER = st.one_of(st.sampled_from(["t", "x", "v", "t [s]", "x (m)", "x [m]", " x", "x/y", "time",
                                     "trajectory", "", "t", "x"]),
                    st.text(alphabet=string.ascii_letters + " []()/_,;\t\"", min_size=0, max_size=5))


@st.composite
def _near_valid(draw) -> tuple[list[str], list[list[str]]]:
    """A numeric table with columns t, x, v (runs in x for trajectory="x"), then 0-2 mutations."""
    n = draw(st.integers(2, 10))
    t = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=n,
                      max_size=n, unique=True))
    if draw(st.integers(0, 3)):
        t = sorted(t)
    labels = draw(st.lists(st.sampled_from(["a", "=1+1", "-2", "@x", "run 7"]), min_size=1,
                           max_size=2, unique=True))
    runs = sorted(draw(st.lists(st.sampled_from(labels), min_size=n, max_size=n)))
    finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
    values = draw(st.lists(st.one_of(finite, finite, finite, st.just(float("nan"))), min_size=n,
                           max_size=n))
    rows = [[repr(a), r, "" if v != v else repr(v)] for a, r, v in zip(t, runs, values)]
    for _ in range(draw(st.integers(0, 2))):
        if rows:
            i, j = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, 2))
            rows[i][j] = draw(_CELL)
    return ["t", "x", "v"], rows


@st.composite
def _random_table(draw) -> tuple[list[str], list[list[str]]]:
    n_cols = draw(st.integers(1, 4))
    headers = draw(st.lists(_HEADER, min_size=n_cols, max_size=n_cols))
    if draw(st.booleans()):
        headers[:2] = ["t", "x"][: len(headers[:2])]
    rows = draw(st.lists(st.lists(_CELL, min_size=0, max_size=n_cols + 1), max_size=8))
    return headers, rows


@st.composite
def tables(draw) -> bytes:
    headers, rows = draw(st.one_of(_near_valid(), _random_table()))
    sep = draw(st.sampled_from([",", ",", ";", "\t", "|", " "]))
    text = "\n".join(sep.join(r) for r in [headers, *rows]) + draw(st.sampled_from(["", "\n", "\r\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "utf-32"]))
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    change = draw(st.sampled_from(["none", "none", "none", "truncate", "gzip", "gzip magic", "zip magic"]))
    if change == "truncate":
        data = data[: len(data) // 2]
    elif change == "gzip":
        import gzip

        data = gzip.compress(data)
    elif change == "gzip magic":
        data = b"\x1f\x8b" + data
    elif change == "zip magic":
        data = b"PK\x03\x04" + data
    return data


@pytest.mark.filterwarnings("ignore::sysid.data.DataWarning")  # constant columns are allowed
@FUZZ
@given(data=tables(), trajectory=st.sampled_from([None, "x"]))
def test_load_csv_returns_a_dataset_or_a_data_error(data, trajectory):
    with tempfile.TemporaryDirectory() as tmp, time_limit(EXAMPLE_SECONDS):
        path = Path(tmp) / "fuzz.csv"
        path.write_bytes(data)
        states = ["v"]
        try:
            ds = sysid.load_csv(path, time="t", states=states, trajectory=trajectory)
        except (DataError, ConfigError) as exc:
            assert str(exc).strip(), "an error without a message"
            event(f"refused: {type(exc).__name__}")
            return
        event("loaded")
        # round trip: what was read is what to_csv writes and load_csv reads back
        back_path = sysid.data.to_csv(ds, Path(tmp) / "back.csv")
        back = sysid.load_csv(back_path, time="time", states=sysid.data.state_names(ds),
                              trajectory="trajectory")
        np.testing.assert_array_equal(back["time"].values, ds["time"].values)
        for name in sysid.data.state_names(ds):
            np.testing.assert_array_equal(back[name].values, ds[name].values)
        assert sysid.data.run_ids(back) == sysid.data.run_ids(ds)


def _load_outcome(path: Path, trajectory: str | None, missing: list[str] | None):
    """The dataset ``load_csv`` reads, or the class and message of its refusal."""
    try:
        return sysid.load_csv(path, time="t", states=["v"], trajectory=trajectory,
                              **({} if missing is None else {"missing_values": missing}))
    except (DataError, ConfigError) as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.filterwarnings("ignore::sysid.data.DataWarning")  # constant columns are allowed
@FUZZ
@given(data=tables(), trajectory=st.sampled_from([None, "x"]),
       missing=st.sampled_from([None, ["NA", ""], ["-999"], ["abc"]]))
def test_numeric_fast_path_reads_what_the_careful_path_reads(data, trajectory, missing, monkeypatch):
    # issue 13 goal 5: columns of plain numbers are parsed by pandas; on any file the result (the
    # dataset, or the refusal's class and message) must be the careful path's
    from sysid.data import tabular

    with tempfile.TemporaryDirectory() as tmp, time_limit(EXAMPLE_SECONDS):
        path = Path(tmp) / "fuzz.csv"
        path.write_bytes(data)
        fast = _load_outcome(path, trajectory, missing)
        with monkeypatch.context() as m:
            m.setattr(tabular, "_fast_part", lambda *args, **kwargs: None)
            careful = _load_outcome(path, trajectory, missing)
    if isinstance(careful, tuple) or isinstance(fast, tuple):
        assert fast == careful
        event("both refused")
    else:
        xr.testing.assert_identical(fast, careful)
        event("both loaded")


# ---------------------------------------------------------------------------------------------
# the command line's options


class _Accepted(BaseException):
    """Training was reached: every option was accepted (no example trains)."""


_VALUE = st.one_of(
    st.text(alphabet=string.printable, max_size=12),
    st.sampled_from(["x", "v", "x,v", "x,,v", "t", "time", "x=1", "x=y", "x=time", "k=nan", "1e999",
                     "99999999999999999999999", "-1", "0", "0.5", "[1,2]", "[100000]", "1e-300",
                     "physics:logistic", "hybrid:nope", "neural", "dataset:nope", "a/b", "=cmd|",
                     "substeps=1000000000", "horizons=[100000]", "time_scale=1e-300", "lr=abc",
                     "solver=dopri5", "warm_start.epochs=100000000", "seed=-3", "x=1,x=2"]),
)
_OPTIONS = ["--time", "--states", "--inputs", "--run", "--sep", "--decimal", "--encoding",
            "--missing-values", "--rename", "--model", "--free", "--params", "--width", "--depth",
            "--holdout", "--epochs", "--seed", "--set", "--max-memory"]
_FLAGS = ["--sort", "--drop-duplicates", "--force"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli_fuzz")
    t = np.linspace(0, 1, 8)
    (root / "good.csv").write_text("t,x,v\n" + "".join(f"{a},{np.sin(a)},{np.cos(a)}\n" for a in t))
    return root


@FUZZ
@given(options=st.lists(st.tuples(st.sampled_from(_OPTIONS), _VALUE), max_size=5),
       flags=st.lists(st.sampled_from(_FLAGS), max_size=2, unique=True),
       data=st.sampled_from(["good.csv", "missing.csv", "dataset:us_population", "good.csv"]))
def test_fit_options_are_accepted_or_refused_with_one_line(workdir, monkeypatch, options, flags, data):
    import sysid.training
    from sysid.cli import main

    def reached(*args, **kwargs):
        raise _Accepted

    monkeypatch.setattr(sysid.training, "fit", reached)
    args = ["fit", data, "--time", "t", "--states", "x,v"] if data.endswith(".csv") else ["fit", data]
    for name, value in options:
        args += [name, value]
    out = Path(tempfile.mkdtemp(dir=workdir)) / "out"
    args += [*flags, "--out", str(out)]
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with runner.isolation() as (stdout, stderr, _), time_limit(EXAMPLE_SECONDS):
            try:
                code = main(args)
            except _Accepted:
                event("accepted")
                return
            err = stderr.getvalue().decode("utf-8", "replace")
    finally:
        os.chdir(cwd)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    event(f"exit {code}")
    assert code == 2, (args, code, err)
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, (args, err)
    assert not out.exists()


_SIM_OPTIONS = ["--y0", "--initial-from", "--t-start", "--t-end", "--dt", "--times", "--inputs",
                "--time", "--run", "--method", "--rtol", "--atol", "--max-points", "--max-time"]
_SIM_VALUE = st.one_of(
    _VALUE,
    st.sampled_from(["N=1", "N=1,M=2", "N=nan", "N=1e400", "dopri5", "rk4", "Radau", "LSODA", "1e-12",
                     "good.csv", "times.txt", "missing.csv", "10", "1e9", "-5", "0", "1e-300"]),
)


@pytest.fixture(scope="module")
def model_dir(workdir) -> Path:
    model = sysid.models.physics("logistic", free=["r"], values={"K": 10.0})
    (workdir / "times.txt").write_text("0\n0.5\n1\n")
    return sysid.save_model(model, workdir / "model")


@FUZZ
@given(options=st.lists(st.tuples(st.sampled_from(_SIM_OPTIONS), _SIM_VALUE), max_size=4),
       base=st.booleans(),
       out=st.sampled_from(["sim.csv", "sim.nc", "sim.txt", "model/x.csv", "good.csv", "sim.csv"]))
def test_simulate_options_are_accepted_or_refused_with_one_line(workdir, model_dir, monkeypatch,
                                                                 options, base, out):
    from sysid.cli import main

    def reached(*args, **kwargs):
        raise _Accepted

    monkeypatch.setattr(sysid, "simulate", reached)
    args = ["simulate", "model", *(["--y0", "N=1", "--t-end", "1"] if base else [])]
    for name, value in options:
        args += [name, value]
    args += ["--out", out]
    before = {p.name: p.stat().st_mtime_ns for p in workdir.iterdir() if p.is_file()}
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with CliRunner().isolation() as (_, stderr, _), time_limit(EXAMPLE_SECONDS):
            try:
                code = main(args)
            except _Accepted:
                event("accepted")
                return
            err = stderr.getvalue().decode("utf-8", "replace")
    finally:
        os.chdir(cwd)
    event(f"exit {code}")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, (args, code, err)
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, (args, err)
    after = {p.name: p.stat().st_mtime_ns for p in workdir.iterdir() if p.is_file()}
    assert after == before  # nothing written or touched (good.csv, an input, above all)
