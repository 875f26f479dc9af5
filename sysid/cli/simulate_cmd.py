"""``sysid simulate``: run a fitted model forward from new initial states, with new inputs.

With dopri5 (the default) the model file is read by :func:`sysid.io.load_dynamics` into NumPy
dynamics and simulated without importing torch (over a second of start-up): the same solve as
the torch model's, which integrates its float64 NumPy copy. A model only torch represents (see
there), the torch fixed-step methods and the SciPy methods load it with
:func:`sysid.io.load_model` (SciPy integrates a float32 model's copy with its parameter values
as computed in float32, which a float64 view would not reproduce bit for bit).
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any

import click

from sysid.cli._config import CliFitOptions
from sysid.cli._pipeline import data_source_files, find_model_dir, read_data
from sysid.cli._support import (
    atomic_file,
    check_new_output,
    check_output_apart,
    console,
    existing_file,
    parse_assignments,
    parse_float,
)
from sysid.errors import ConfigError, DataError, ModelFileError
from sysid.solvers import default_solver, solver_from

__all__ = ["simulate_cmd", "read_times", "time_grid", "fit_data_options"]

_OUT_SUFFIXES = (".csv", ".nc")
_SIM = default_solver("simulate")  # the same defaults as sysid.simulate (sysid.solvers.config)
DEFAULT_POINTS = 201
#: The file written in a folder given as --out (a path without a suffix).
FOLDER_FILE = "simulation.csv"

_EPILOG = """\b
Examples:
  # from a chosen initial state, years 1900 to 1940 every 0.1 (hl_fit: see 'sysid compare --help')
  sysid simulate hl_fit --y0 prey=30,predator=4 --t-start 1900 --t-end 1940 --dt 0.1 --out sim.csv
\b
  # from the first sample of every run of a data file (its inputs drive the model)
  sysid simulate rig_fit --initial-from rig_test.csv --out sim.nc
\b
  # into a new folder (it gets simulation.csv), as fit and compare write folders
  sysid simulate rig_fit --initial-from rig_test.csv --out rig_sim
\b
  # a model with an input: new input signal in a CSV with the time column and one column per input
  sysid simulate rig_fit --y0 x=0,v=0 --t-end 10 --inputs step.csv --out step_response.csv

The output has the same layout as the measurements: the fit's run column (left out when the fit
read a single run without one), its time column, one column per state and input (.csv), or the
trajectory schema as netCDF (.nc). Runs keep the ids of the --initial-from data; a --y0 run is
called 'simulated'.
"""

#: The run id of a simulation started from --y0.
Y0_RUN = "simulated"


def fit_data_options(run_dir: Path) -> CliFitOptions:
    """How the fit in ``run_dir`` read its data (from its config.toml), for reading similar files."""
    import sysid.io

    cfg = run_dir / "config.toml"
    if not cfg.exists():
        return CliFitOptions()
    where = f"MODEL_DIR '{run_dir}'"
    content = sysid.io.read_toml(cfg, where=where)
    data = content.get("data", {})
    try:
        keep = {k: _text(v, k) for k, v in data.items()
                if k in ("time", "run", "sep", "decimal", "encoding")}
        keep.update(_dataset_columns(str(data.get("path", "")), keep))
        # the model's kind decides what --rename means (catalogue: which column is which state)
        kind = _text(dict(content.get("model", {})).get("kind", "neural"), "kind")
        constant = {_text(k, "constant_inputs"): float(v)
                    for k, v in dict(data.get("constant_inputs", {})).items()}
        return CliFitOptions(states=_texts(data.get("states", ()), "states"),
                             inputs=_texts(data.get("inputs", ()), "inputs"),
                             missing_values=_texts(data.get("missing_values", ()), "missing_values"),
                             rename={_text(k, "rename"): _text(v, "rename")
                                     for k, v in dict(data.get("rename", {})).items()},
                             kind=kind, constant_inputs=constant, **keep)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{where}: config.toml [data] is malformed ({exc}); the file was "
                             "edited or damaged.") from None


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"'{key}' must be text, got {value!r}")
    return value


def _texts(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"'{key}' must be a list of names, got {value!r}")
    return tuple(_text(v, key) for v in value)


def _dataset_columns(path: str, given: dict[str, str]) -> dict[str, str]:
    """For a fit of a shipped dataset (``dataset:NAME``), the time and run column names of its
    file, where the fit's options do not name them (so a simulated CSV says "year", not "time")."""
    if not path.startswith("dataset:"):
        return {}
    import sysid.datasets

    try:
        info = sysid.datasets.info(path.split(":", 1)[1])
    except KeyError:
        return {}
    out = {} if "time" in given else {"time": info.time.column}
    if info.trajectory is not None and "run" not in given:
        out["run"] = str(info.trajectory)
    return out


def read_times(path: Path) -> Any:
    """Output times from a file: one number per line, or a CSV whose time column is read.

    Raises
    ------
    DataError
        On a missing file, a cell that is not a number (named by row), fewer than 2 times, or
        times that do not strictly increase.
    """
    import numpy as np

    existing_file(path, what="--times file")
    lines = path.read_text(encoding="utf-8-sig").splitlines()
    rows = [(i + 1, line.strip()) for i, line in enumerate(lines) if line.strip()]
    if not rows:
        raise DataError(f"--times file '{path}' is empty; write one time per line.")
    header = rows[0][1]
    column = 0
    first_cells = [c.strip() for c in header.replace(";", ",").split(",")]
    try:
        float(first_cells[0])
    except ValueError:
        names = [c.split("[")[0].split("(")[0].strip().lower() for c in first_cells]
        column = next((names.index(n) for n in ("time", "t") if n in names), 0)
        rows = rows[1:]
    times = []
    for row, text in rows:
        cells = [c.strip() for c in text.replace(";", ",").split(",")]
        cell = cells[column] if column < len(cells) else ""
        try:
            times.append(float(cell))
        except ValueError:
            raise DataError(f"--times file '{path}': row {row} holds '{cell}', which is not a "
                            f"number; write one time per line.") from None
    t = np.asarray(times, dtype=float)
    if t.size < 2:
        raise DataError(f"--times file '{path}' holds {t.size} time; at least 2 are needed.")
    if not np.all(np.isfinite(t)):
        raise DataError(f"--times file '{path}': times must be finite numbers.")
    d = np.diff(t)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0)) + 1
        raise DataError(f"--times file '{path}': times must strictly increase; {t[i]:g} follows "
                        f"{t[i - 1]:g} (time number {i + 1}).")
    return t


def time_grid(t0: float, t_end: float, dt: float | None) -> Any:
    """Times from ``t0`` to ``t_end``: every ``dt`` (``t_end`` included when it falls on the grid),
    or 201 evenly spaced points."""
    import numpy as np

    if not t_end > t0:
        raise ConfigError(f"--t-end {t_end:g} must be later than the start time {t0:g}.")
    if dt is None:
        return np.linspace(t0, t_end, DEFAULT_POINTS)
    if not dt > 0:
        raise ConfigError(f"--dt must be positive, got {dt:g}.")
    n = int(np.floor((t_end - t0) / dt * (1 + 1e-12))) + 1
    if n < 2:
        raise ConfigError(f"--dt {dt:g} is longer than the span {t0:g} to {t_end:g}; choose a "
                          f"smaller --dt.")
    from sysid.budget import check_points

    check_points(float(n), what=f"--dt {dt:g} over {t0:g} to {t_end:g}", drivers=f"{n} times")
    return t0 + dt * np.arange(n)


def _check_y0(y0: dict[str, float], states: tuple[str, ...]) -> None:
    missing = [s for s in states if s not in y0]
    extra = [s for s in y0 if s not in states]
    if extra:
        raise ConfigError(f"--y0: {extra} {'is' if len(extra) == 1 else 'are'} not a state of the "
                          f"model; its states are {list(states)}.")
    if missing:
        raise ConfigError(f"--y0: no value for states {missing}; the model's states are "
                          f"{list(states)}, e.g. --y0 " + ",".join(f"{s}=0" for s in states) + ".")


def _load(model_path: Path, solver: Any) -> Any:
    """The model as NumPy dynamics for dopri5 where they can stand for it (no torch), else the
    torch model (module docstring)."""
    import sysid.io

    if solver.method == "dopri5" and not solver.adjoint:
        dynamics = sysid.io.load_dynamics(model_path)
        if dynamics is not None:
            return dynamics
    return sysid.io.load_model(model_path)


def _names(model: Any) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """States, inputs and measured quantities of a model or of its NumPy dynamics."""
    from sysid.models import Dynamics

    if isinstance(model, Dynamics):
        return model.states, model.inputs, model.observed
    return tuple(model.field.state_names), tuple(model.field.input_names), tuple(model.measured)


def _read_inputs(path: Path, model: Any, opts: CliFitOptions) -> Any:
    """An input signal from a CSV with a time column and one column per model input.

    Returns a pandas DataFrame with a ``time`` column, as :func:`sysid.simulate` takes it.
    """
    import pandas as pd

    import sysid.data

    existing_file(path, what="--inputs file")
    names = _names(model)[1]
    if not names:
        raise ConfigError(f"--inputs '{path}': the model has no inputs; leave --inputs out.")
    time_col = opts.time or "time"
    read = CliFitOptions(time=time_col, states=names, sep=opts.sep, decimal=opts.decimal,
                         encoding=opts.encoding, missing_values=opts.missing_values)
    ds = read_data(str(path), read, what="--inputs")
    one = sysid.data.get_run(ds, sysid.data.run_ids(ds)[0])
    return pd.DataFrame({"time": one["time"].values, **{n: one[n].values for n in names}})


def _csv_names(opts: CliFitOptions, result: Any) -> tuple[str, str | None]:
    """The time and run column names of a simulated CSV: those the fit read (``--time``,
    ``--run``), so the file reads back with the same flags; the time column is otherwise the
    data's own name for time (a dataset's "year") or "time"; a single run without a run column in
    the fit gets none, several runs get "run"."""
    import sysid.data

    states = set(sysid.data.state_names(result)) | set(sysid.data.input_names(result))
    time_name = opts.time or str(result["time"].attrs.get("long_name") or "time")
    if time_name in states:
        time_name = "time"
    run_name = opts.run
    if run_name is None and len(sysid.data.run_ids(result)) > 1:
        run_name = "run"
    return time_name, run_name


@click.command("simulate", epilog=_EPILOG)
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--y0", metavar="A=1,B=2", help="Initial state, one value per state.")
@click.option("--initial-from", metavar="DATA", help="Start from the first sample of each run of "
              "DATA (CSV read as in the fit, .nc, or dataset:NAME).")
@click.option("--t-start", metavar="T0", help="Start time with --y0 (default 0).")
@click.option("--t-end", metavar="T", help="End time (with --initial-from: default the data's "
              "own sample times).")
@click.option("--dt", metavar="DT", help="Output step (default: 201 evenly spaced times).")
@click.option("--times", "times_file", type=click.Path(path_type=Path), help="File with the "
              "output times, one per line (or a CSV with a time column).")
@click.option("--inputs", "inputs_file", type=click.Path(path_type=Path), help="CSV with the "
              "input signal (time column and one column per model input).")
@click.option("--u", "constant", metavar="NAME=VALUE,..", help="Inputs held constant (default: "
              "those the fit held constant with --u).")
@click.option("--where", metavar="CONDITION", help="Keep only the rows of --initial-from where "
              "CONDITION holds, e.g. \"condition == 'mixture'\".")
@click.option("--time", "time_col", metavar="COL", help="Time column of CSV files given to "
              "--initial-from/--inputs (default: as in the fit).")
@click.option("--run", "run_col", metavar="COL", help="Run-id column of the --initial-from CSV "
              "(default: as in the fit).")
@click.option("--method", default=_SIM.method, show_default=True,
              help="ODE solver: torch (dopri5, rk4, ...) or SciPy (RK45, DOP853, and LSODA, Radau "
                   "or BDF for stiff dynamics, where the default's steps collapse).")
@click.option("--rtol", default=f"{_SIM.rtol:g}", show_default=True, help="Relative tolerance of "
              "each run's own error (every run is controlled as if simulated alone).")
@click.option("--atol", default=f"{_SIM.atol:g}", show_default=True, help="Absolute tolerance of "
              "each run's own error.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output FILE.csv or "
              f"FILE.nc, or a new FOLDER (no suffix) that gets {FOLDER_FILE}.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--max-points", type=click.FloatRange(min=1), metavar="N", help="Most output "
              "points (times x runs) to compute (default 2e6); larger simulations are refused "
              "before they start.")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop (exit 2, nothing written) when the simulation takes longer.")
def simulate_cmd(model_dir: Path, y0: str | None, initial_from: str | None, t_start: str | None,
                 t_end: str | None, dt: str | None, times_file: Path | None,
                 inputs_file: Path | None, time_col: str | None, run_col: str | None, method: str,
                 rtol: str, atol: str, out: Path, force: bool, max_points: float | None,
                 max_time: float | None, constant: str | None = None,
                 where: str | None = None) -> None:
    """Simulate the model fitted in MODEL_DIR and write the trajectories to --out."""
    from sysid import budget

    if out.suffix and out.suffix.lower() not in _OUT_SUFFIXES:
        raise ConfigError(f"--out '{out}' must end in .csv or .nc; got '{out.suffix}' (or name "
                          f"a new folder, which gets {FOLDER_FILE}).")
    check_new_output(out, force=force)
    if not out.suffix:  # a folder, as fit and compare write: the trajectories go in it as CSV
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out '{out}' is a file; give FILE.csv, FILE.nc or a folder.")
        out = out / FOLDER_FILE
    check_output_apart(out, [("MODEL_DIR", model_dir),
                             *(("--initial-from", f) for f in (data_source_files(initial_from)
                                                                if initial_from else ())),
                             *(("--inputs", f) for f in (inputs_file,) if f is not None),
                             *(("--times", f) for f in (times_file,) if f is not None)])
    with budget.limits(output_points=max_points) if max_points else contextlib.nullcontext(), \
            budget.active(budget.Deadline(max_time, what="--max-time") if max_time else None):
        _simulate(model_dir, y0, initial_from, t_start, t_end, dt, times_file, inputs_file,
                  time_col, run_col, method, rtol, atol, out, force, constant=constant, where=where)


def _check_start_options(y0: str | None, initial_from: str | None, t_start: str | None,
                         t_end: str | None, dt: str | None, times_file: Path | None) -> None:
    """Refuse combinations of the start and time-grid options that contradict each other."""
    if (y0 is None) == (initial_from is None):
        raise ConfigError("give exactly one of --y0 A=1,B=2 (a chosen initial state) or "
                          "--initial-from DATA (the first sample of each run of a data file).")
    if dt is not None and times_file is not None:
        raise ConfigError("give --dt or --times, not both.")
    if times_file is None and t_end is None and initial_from is None:
        raise ConfigError("--t-end is required with --y0 (or give --times FILE).")
    if t_start is not None and times_file is not None:
        raise ConfigError("--t-start and --times both set the start; the first time in the "
                          "--times file is the start.")
    if t_start is not None and initial_from is not None:
        raise ConfigError("--t-start goes with --y0; with --initial-from each run starts at its "
                          "first sample.")


def _initial_from_data(data: Any, times: Any, t_end: str | None, dt: str | None
                       ) -> tuple[Any, Any, list[str] | None]:
    """The initial states, time grid and run names of ``--initial-from DATA``.

    Without a grid (no ``--times``, no ``--t-end``) the data itself is returned: each run is
    simulated on its own sample times. With a grid, each run starts from its first sample.
    """
    import sysid.data

    if times is None and t_end is not None:
        runs = sysid.data.run_ids(data)
        firsts = [sysid.data.get_run(data, r) for r in runs]
        starts = sorted({float(f["time"].values[0]) for f in firsts})
        if len(starts) > 1:
            raise ConfigError(f"--t-end with --initial-from needs runs that start at the same "
                              f"time; these start at {starts}. Give --times FILE.")
        times = time_grid(starts[0], parse_float(t_end, what="--t-end"),
                          parse_float(dt, what="--dt") if dt is not None else None)
    if times is None:
        return data, None, None
    # each run starts from its first sample, on the requested grid, driven by its inputs
    initial = {n: [float(sysid.data.get_run(data, r)[n].values[0]) for r in
                   sysid.data.run_ids(data)] for n in sysid.data.state_names(data)}
    return initial, times, sysid.data.run_ids(data)


def _simulation_inputs(model: Any, opts: Any, inputs_file: Path | None, data_inputs: Any, *,
                       y0: str | None, initial_from: str | None) -> Any:
    """The input source of ``sysid simulate``: ``--inputs`` file, ``--u`` constants or the data."""
    import numpy as np

    input_names = _names(model)[1]
    held = {n: v for n, v in opts.constant_inputs.items() if n in input_names}
    if inputs_file is not None:
        if held and y0 is not None:
            raise ConfigError(f"--inputs gives the input signal and --u (or the fit) holds "
                              f"{list(held)} constant; give every input in the file, or all "
                              f"with --u.")
        inputs = _read_inputs(inputs_file, model, opts)
    elif y0 is not None and held and set(input_names) <= set(held):
        values = np.array([held[n] for n in input_names], dtype=float)
        inputs = lambda t: values  # noqa: E731 - held constant over the whole simulation
    else:
        inputs = data_inputs
    if input_names and inputs is None and initial_from is None:
        raise ConfigError(f"the model has inputs {list(input_names)}; give their "
                          f"signal with --inputs FILE.csv (a time column and one column each), "
                          f"or hold them constant with --u NAME=VALUE.")
    return inputs


def _simulate(model_dir: Path, y0: str | None, initial_from: str | None, t_start: str | None,
              t_end: str | None, dt: str | None, times_file: Path | None,
              inputs_file: Path | None, time_col: str | None, run_col: str | None, method: str,
              rtol: str, atol: str, out: Path, force: bool, *, constant: str | None = None,
              where: str | None = None) -> None:
    import numpy as np

    import sysid
    import sysid.data
    from sysid import budget
    from sysid.cli.evaluate import check_run

    _check_start_options(y0, initial_from, t_start, t_end, dt, times_file)
    solver = solver_from({"method": method, "rtol": parse_float(rtol, what="--rtol"),
                          "atol": parse_float(atol, what="--atol")}, "simulate")
    run_dir, model_path = find_model_dir(model_dir)
    if run_dir != model_path:
        check_run(run_dir)  # the sizes and sha256 its manifest lists, before reading any file
    model = _load(model_path, solver)
    states, input_names, measured = _names(model)
    opts = fit_data_options(run_dir).merged(time=time_col, run=run_col, where=where)
    if constant is not None:
        given = parse_assignments(constant, option="--u")
        unknown = [n for n in given if n not in input_names]
        if unknown:
            raise ConfigError(f"--u: {unknown} {'is' if len(unknown) == 1 else 'are'} not an input "
                              f"of the model; its inputs are {list(input_names)}.")
        opts = dataclasses.replace(opts, constant_inputs={**opts.constant_inputs, **given})
    if where is not None and initial_from is None:
        raise ConfigError("--where selects rows of --initial-from; give --initial-from DATA.")

    times = None
    data_inputs: Any = None
    run_names: list[str] | None = None
    if times_file is not None:
        times = read_times(times_file)
        if t_end is not None and times[-1] > parse_float(t_end, what="--t-end"):
            raise ConfigError(f"--times file '{times_file}' goes to {times[-1]:g}, past --t-end "
                              f"{t_end}; leave --t-end out or shorten the file.")
    if y0 is not None:
        initial: Any = parse_assignments(y0, option="--y0")
        _check_y0(initial, states)
        if times is None:
            t0 = parse_float(t_start, what="--t-start") if t_start is not None else 0.0
            times = time_grid(t0, parse_float(t_end, what="--t-end"),
                              parse_float(dt, what="--dt") if dt is not None else None)
    else:
        read = dataclasses.replace(opts, states=opts.states or measured,
                                   inputs=tuple(n for n in (opts.inputs or input_names)
                                                if n not in opts.constant_inputs))
        data = read_data(initial_from, read, what="--initial-from")
        initial, times, run_names = _initial_from_data(data, times, t_end, dt)
        if run_names is not None and sysid.data.input_names(data) and inputs_file is None:
            data_inputs = data
    inputs = _simulation_inputs(model, opts, inputs_file, data_inputs, y0=y0,
                                initial_from=initial_from)
    n_runs = len(run_names) if run_names else (
        len(sysid.data.run_ids(initial)) if not isinstance(initial, dict) else 1)
    n_times = len(times) if times is not None else int(np.isfinite(initial["time"].values).sum())
    budget.check_points(float(n_times) * (n_runs if times is not None else 1), what="simulate",
                        drivers=f"{n_times} times x {n_runs} run{'s' if n_runs != 1 else ''}"
                        if times is not None else f"{n_times} samples of --initial-from")
    if isinstance(initial, dict):
        result = sysid.simulate(model, initial, times, inputs=inputs, solver=solver,
                                runs=run_names or [Y0_RUN])
    else:
        result = sysid.simulate(model, initial, inputs=inputs, solver=solver)
    with atomic_file(out, force=force) as tmp:
        if out.suffix.lower() == ".csv":
            time_name, run_name = _csv_names(opts, result)
            sysid.data.to_csv(result, tmp, time=time_name, trajectory=run_name)
        else:
            sysid.data.save(result, tmp)
    runs = sysid.data.run_ids(result)
    console.info(f"wrote {len(runs)} simulated run{'s' if len(runs) != 1 else ''} of "
                 f"{list(states)} to {out}")

