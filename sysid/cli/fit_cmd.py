"""``sysid fit``: data file in, a directory with the model, metrics, figures and report out."""

from __future__ import annotations

import contextlib
import time as _time
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from sysid.cli._config import CliFitOptions, dumps_toml, read_config
from sysid.cli._pipeline import (
    ModelSpec,
    command_line,
    data_source_files,
    parse_model_spec,
    read_data,
    sha256_file,
    versions,
    write_json,
)
from sysid.cli._support import (
    check_new_output,
    check_output_apart,
    console,
    one_line,
    parse_assignments,
    parse_holdout,
    parse_names,
    parse_outputs,
    parse_renames,
    parse_settings,
    print_error,
    start_output_dir,
)
from sysid.cli.parallel_cmd import (
    ParallelRequest,
    fit_one,
    is_output_process,
    launch_torchrun,
    parallel_options,
    run_ensemble,
)
from sysid.errors import ConfigError, SysidError

__all__ = ["fit_cmd", "build_model", "split_holdout"]

_FIT_EPILOG = """\b
Examples:
  # a neural ODE on a lab CSV with two measured states and one input, 25 % of runs held out
  sysid fit rig.csv --time t --states x,v --inputs u --run run --holdout 0.25 --out rig_fit
\b
  # known physics with two unknown parameters (the rest fixed at the given values)
  sysid fit pend.csv --time t --states theta,omega --model physics:pendulum \\
        --free w2,c --params w2=50 --out pend_fit
\b
  # your own equations, driven by the input column u (states and inputs come from the file)
  sysid fit pend.csv --time t --run run --model equations:pendulum.toml --out pend_fit
  # where pendulum.toml holds (adding + nn(theta, v) to dv would make it a hybrid model):
  #   [model]
  #   states = { theta = "rad", v = "rad/s" }
  #   inputs = { u = "rad/s^2" }
  #   equations = { dtheta = "v", dv = "-w2*sin(theta) - c*v + u" }
  #   [model.parameters]
  #   w2 = { value = 5.0, bounds = [0, 100], units = "1/s^2" }
  #   c = { value = 0.5, bounds = [0, 10], units = "1/s" }
\b
  # a hidden state and a sensor that saturates: only 'level' is measured; the equations file
  # declares h1, h2 and  [model.outputs] level = "clip(h2, 0, hmax)"
  sysid fit tank.csv --time t --model equations:tank.toml --known-initial h1,h2 --out tank_fit
\b
  # a catalogue system under your names and units (--rename DATA=SYSTEM), rows of one condition
  sysid fit lab.csv --time t --states theta,v --inputs u --model hybrid:duffing \\
        --rename theta=x --where "condition == 'driven'" --out duffing_fit
\b
  # every option in a file; flags override it; the resolved file is written to DIR/config.toml
  sysid fit --config rig_fit/config.toml --seed 1 --out rig_fit_seed1
\b
Writes DIR/model (safetensors + JSON, no pickle), DIR/report.html and report.md, DIR/metrics.json,
DIR/figures/, DIR/history.csv, DIR/config.toml (resolved options) and DIR/manifest.json (data
sha256, versions, seed, command line). The same command with the same seed gives the same model.
Ctrl-C stops training, keeps the best model so far and still writes DIR (exit status 130).
"""


def split_holdout(ds: Any, holdout: float | tuple[str, ...] | None) -> tuple[Any, Any | None]:
    """Training and held-out runs (``None`` when nothing is held out)."""
    import sysid.data

    if holdout is None:
        return ds, None
    runs = sysid.data.run_ids(ds)
    if isinstance(holdout, tuple):
        unknown = [r for r in holdout if r not in runs]
        if unknown:
            raise ConfigError(f"--holdout: runs {unknown} are not in the data; its runs are {runs}.")
        if len(holdout) >= len(runs):
            raise ConfigError(f"--holdout: holding out all runs {runs} leaves none to train on.")
        return sysid.data.split_runs(ds, list(holdout))
    if len(runs) < 2:
        raise ConfigError(f"--holdout {holdout}: the data has a single run ({runs}); holding out a "
                          f"fraction of runs needs at least 2. Leave --holdout out, or use "
                          f"[fit.validation] fraction in a config file to hold out each run's end.")
    return sysid.data.split_runs(ds, holdout)


def build_model(spec: ModelSpec, opts: CliFitOptions, ds: Any) -> Any:
    """The untrained :class:`sysid.models.Model` that ``--model`` names, for this data.

    The data's names and units are kept: a catalogue system's states are called as the data
    calls them (``--rename DATA=SYSTEM`` says which column is which state) and take the data's
    units; states the data lacks are latent (estimated by the fit, started from ``--latent``
    or the system's typical initial state). Data variables named like an output of the
    measurement equations (``--output``, ``[model.outputs]``) are compared with those outputs.
    A neural model gets hidden states from ``--hidden``; ``--encoder PAST`` adds an encoder of
    the hidden states (:class:`sysid.models.Encoder`) to any model that has some.
    """
    if spec.kind == "equations":
        return _with_encoder(_equations_model(spec, opts, ds), opts)
    return _with_encoder(_catalogue_or_neural(spec, opts, ds), opts)


def _with_encoder(model: Any, opts: CliFitOptions) -> Any:
    """The model with ``--encoder PAST`` (an encoder of its hidden states), else as built."""
    if opts.encoder is None:
        return model
    from sysid.models import Encoder, Model

    if not model.latent_names:
        raise ConfigError(f"--encoder estimates hidden states from the last {opts.encoder} samples, "
                          f"but every state of the model ({list(model.state_names)}) is in the "
                          f"data. Add hidden states (--hidden NAME for a neural model; a system's "
                          f"states the data lacks are hidden) or leave --encoder out.")
    return Model(model.field, observed=model.observed, outputs=model.outputs,
                 input_interpolation=model.input_interpolation, scaling=model.scaling,
                 latent_initial=model.latent_initial, metadata=model.metadata,
                 encoder=Encoder(past=opts.encoder, seed=int(opts.fit.get("seed", 0))))


def _catalogue_or_neural(spec: ModelSpec, opts: CliFitOptions, ds: Any) -> Any:
    """:func:`build_model` for ``neural``, ``physics:SYSTEM`` and ``hybrid:SYSTEM``."""
    import sysid.data
    import sysid.models
    import sysid.systems

    measured = sysid.data.state_names(ds)
    outputs = _outputs_table(opts.outputs)
    states = [n for n in measured if n not in outputs]
    inputs = sysid.data.input_names(ds)
    units = {n: str(ds[n].attrs.get("units", "")) for n in (*measured, *inputs)}
    time_units = str(ds["time"].attrs.get("units", ""))
    out_kw = _output_kwargs(outputs, units)
    neural_kw: dict[str, Any] = {}
    if opts.width is not None:
        neural_kw["width"] = opts.width
    if opts.depth is not None:
        neural_kw["depth"] = opts.depth
    seed = int(opts.fit.get("seed", 0))
    if spec.kind == "neural":
        if opts.free is not None or opts.params:
            raise ConfigError("--free and --params set physical parameters; they need "
                              "--model physics:SYSTEM or hybrid:SYSTEM, not 'neural'.")
        if opts.latent:
            raise ConfigError("--latent gives starting values of states the data lacks; a neural "
                              "model has only the data's states. Use physics:SYSTEM, hybrid:SYSTEM "
                              "or an equations file for hidden states.")
        hidden = list(opts.hidden)
        clash = [n for n in hidden if n in measured or n in inputs]
        if clash or len(set(hidden)) != len(hidden):
            raise ConfigError(f"--hidden names states the data does not have; {clash or hidden} "
                              f"{'are columns of the data' if clash else 'repeat a name'}.")
        if hidden:
            out_kw["observed"] = states
        return sysid.models.neural([*states, *hidden], inputs, seed=seed,
                                   state_units=[units[n] for n in states] + [""] * len(hidden),
                                   input_units=[units[n] for n in inputs], time_units=time_units,
                                   **neural_kw, **out_kw)
    if opts.hidden:
        raise ConfigError(f"--hidden adds hidden states to a neural model; --model {spec} has its "
                          f"own states (those the data lacks are hidden).")
    system = sysid.systems.get(spec.system)
    # the data keeps its names: --rename DATA=SYSTEM says which column plays which state
    data_name = {new: old for old, new in opts.rename.items()}
    names = [data_name.get(s, s) for s in system.states]
    input_names = [data_name.get(s, s) for s in system.inputs]
    foreign = [n for n in states if n not in names]
    if foreign:
        free = [s for s, n in zip(system.states, names) if n not in states]
        raise ConfigError(
            f"--model {spec}: the data's states {foreign} are not states of '{system.name}', whose "
            f"states are {list(system.states)}; say which is which with --rename, e.g. --rename "
            f"{foreign[0]}={(free or list(system.states))[0]} (the data keeps its names; see "
            f"'sysid systems show {system.name}').")
    if sorted(inputs) != sorted(input_names):
        hint = (" (an input the data lacks can be held constant with --u NAME=VALUE)"
                if set(inputs) < set(input_names) else "")
        raise ConfigError(f"--model {spec}: '{system.name}' takes inputs {input_names} but the data "
                          f"has inputs {list(inputs)}; they must match{hint}.")
    pnames = [p.name for p in system.parameters]
    for option, given in (("--free", opts.free or ()), ("--params", tuple(opts.params))):
        unknown = [n for n in given if n not in pnames]
        if unknown:
            raise ConfigError(f"{option}: {unknown} {'is' if len(unknown) == 1 else 'are'} not a "
                              f"parameter of '{system.name}'; its parameters are {pnames}.")
    if spec.kind == "physics" and (opts.width is not None or opts.depth is not None):
        raise ConfigError(f"--width/--depth size a neural network; --model {spec} has none "
                          f"(use hybrid:{system.name} for physics plus a network).")
    observed = [n for n in names if n in states]
    common: dict[str, Any] = {
        "free": list(opts.free) if opts.free is not None else None,
        "values": dict(opts.params) or None, "observed": observed,
        "states": names, "inputs": input_names,
        # the data's units where it has them, else the system's
        "state_units": {n: units[n] for n in names if units.get(n)},
        "input_units": {n: units[n] for n in input_names if units.get(n)},
        "time_units": time_units,
        "latent_initial": _latent_guesses(system, names, observed, opts.latent),
        **out_kw}
    if spec.kind == "physics":
        return sysid.models.physics(system, **common)
    return sysid.models.hybrid(system, seed=seed, **common, **neural_kw)


def _outputs_table(outputs: dict[str, Any]) -> dict[str, dict[str, str]]:
    """``--output``/``[model] outputs`` as ``{name: {"equation": ..., "units": ...}}``."""
    return {n: ({"equation": v} if isinstance(v, str) else dict(v)) for n, v in outputs.items()}


def _output_kwargs(outputs: dict[str, dict[str, str]], units: dict[str, str]) -> dict[str, Any]:
    """The factories' ``outputs=``/``output_units=`` (units: given, else the data column's)."""
    if not outputs:
        return {}
    return {"outputs": {n: o["equation"] for n, o in outputs.items()},
            "output_units": {n: str(o.get("units") or units.get(n, "")) for n, o in outputs.items()}}


def _latent_guesses(system: Any, names: list[str], observed: list[str],
                    given: dict[str, float]) -> dict[str, float] | None:
    """Starting values of the states the data lacks: ``--latent``, else the system's typical
    initial state."""
    latent = [n for n in names if n not in observed]
    unknown = [n for n in given if n not in latent]
    if unknown:
        raise ConfigError(f"--latent: {unknown} {'is' if len(unknown) == 1 else 'are'} not a state "
                          f"the data lacks; the unmeasured states are {latent}.")
    if not latent:
        return None
    typical = dict(zip(names, system.y0)) if system.y0 is not None else {}
    return {n: float(given.get(n, typical.get(n, 0.0))) for n in latent}


def equations_table(spec: ModelSpec, opts: CliFitOptions) -> tuple[dict[str, Any], str]:
    """The ``[model]`` table of an equations model and where it comes from (for messages)."""
    if spec.file is None:
        if opts.equations is None:
            raise ConfigError("--model equations: the equations come from the [model] table of "
                              "--config; give --model equations:FILE.toml or a config with "
                              "[model] kind = \"equations\".")
        return dict(opts.equations), "config file [model]"
    import tomllib

    path = Path(spec.file)
    try:
        with open(path, "rb") as fh:
            content = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"equations file '{path}' is not valid TOML: {exc}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"equations file '{path}' is not UTF-8 text; save it as UTF-8.") from None
    table = content.get("model")
    if not isinstance(table, dict):
        raise ConfigError(f"equations file '{path}' has no [model] table; see 'sysid fit --help' "
                          "and sysid.models.from_toml.")
    return dict(table), f"equations file '{path}'"


def _declared(table: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """``states``/``inputs``/``outputs`` of an equations table as ``{name: {...}}``."""
    raw = table.get(key) or {}
    if isinstance(raw, list):
        return {str(n): {} for n in raw}
    if not isinstance(raw, dict):
        return {}
    field = "equation" if key == "outputs" else "units"
    return {str(n): (dict(v) if isinstance(v, dict) else {field: v}) for n, v in raw.items()}


def equations_columns(spec: ModelSpec, opts: CliFitOptions) -> tuple[list[str], list[str]]:
    """The columns an equations model reads when ``--states``/``--inputs`` are not given: its
    measured states (all of them, or none when outputs are declared, unless ``measured`` says
    otherwise) and its outputs; its inputs except the ``--u`` constants."""
    table, _ = equations_table(spec, opts)
    states, inputs = _declared(table, "states"), _declared(table, "inputs")
    outputs = _declared(table, "outputs")
    measured = [s for s, e in states.items() if e.get("measured", not outputs) is True]
    return measured + list(outputs), [n for n in inputs if n not in opts.constant_inputs]


def _equations_model(spec: ModelSpec, opts: CliFitOptions, ds: Any) -> Any:
    """An equations model for this data: its states present in the data are measured (unless
    ``measured = false``), the others latent; empty units are filled from the data's."""
    import sysid.data
    from sysid.models.equations import from_dict

    for option, given in (("--free", opts.free), ("--params", opts.params or None),
                          ("--width", opts.width), ("--depth", opts.depth),
                          ("--output", opts.outputs or None)):
        if given is not None:
            raise ConfigError(f"{option} does not apply to --model {spec}: parameters (fixed or "
                              "free, with their values), networks ([model.neural]) and outputs "
                              "are declared in the equations file.")
    table, source = equations_table(spec, opts)
    table = {k: (dict(v) if isinstance(v, dict) else v) for k, v in table.items()}
    states, inputs = _declared(table, "states"), _declared(table, "inputs")
    outputs = _declared(table, "outputs")
    have_s, have_i = sysid.data.state_names(ds), sysid.data.input_names(ds)
    stray = [n for n in have_s if n not in states and n not in outputs]
    if stray:
        raise ConfigError(f"{source}: the data's measured variables {stray} are neither states "
                          f"{list(states)} nor outputs {list(outputs)} of the equations; name the "
                          f"columns in --states as the equations do.")
    extra = [n for n in have_i if n not in inputs]
    missing_in = [n for n in inputs if n not in have_i]
    if extra or missing_in:
        hint = (f"; hold one constant with --u {missing_in[0]}=VALUE" if missing_in else "")
        raise ConfigError(f"{source}: the equations take inputs {list(inputs)}; the data has "
                          f"{list(have_i)}{hint}.")
    missing_out = [n for n in outputs if n not in have_s]
    if missing_out:
        raise ConfigError(f"{source}: the outputs {missing_out} are not in the data; add them to "
                          f"--states (the measured columns).")
    observed = []
    for s, entry in states.items():
        flag = entry.get("measured")
        if flag is True and s not in have_s:
            raise ConfigError(f"{source}: state {s!r} is marked measured but the data has no "
                              f"{s!r} (its measured variables are {have_s}).")
        if s in have_s and flag is not False:
            observed.append(s)
    given = dict(opts.latent)
    unknown = [n for n in given if n not in states or n in observed]
    if unknown:
        raise ConfigError(f"--latent: {unknown} {'is' if len(unknown) == 1 else 'are'} not an "
                          f"unmeasured state; the unmeasured states are "
                          f"{[s for s in states if s not in observed]}.")
    # fill units the equations leave empty from the data; refuse contradictions
    for key, entries in (("states", states), ("inputs", inputs), ("outputs", outputs)):
        for name, entry in entries.items():
            have = str(ds[name].attrs.get("units", "")) if name in ds.data_vars else ""
            own = str(entry.get("units", "") or "")
            if have and own and have != own:
                raise ConfigError(f"{source}: {name!r} has units '{own}' in the equations but "
                                  f"'{have}' in the data; convert the data or fix the units.")
            if have and not own:
                entry["units"] = have
            if name in given:
                entry["initial"] = given[name]
        if entries:
            table[key] = entries
    if not table.get("time_units"):
        table["time_units"] = str(ds["time"].attrs.get("units", ""))
    return from_dict(table, source=source, observed=observed)


def _resolve(config: Path | None, data: str | None, **flags: Any) -> CliFitOptions:
    opts = read_config(config) if config is not None else CliFitOptions()
    if data is not None:
        flags["path"] = data
    opts = opts.merged(**flags)
    if not opts.path:
        raise ConfigError("fit: no data given; pass DATA (a CSV, .nc or dataset:NAME) or set "
                          "[data] path in the --config file.")
    return opts


def _fit_config(opts: CliFitOptions, config: Path | None, settings: dict[str, Any]) -> Any:
    import dataclasses
    import difflib

    import sysid.training
    from sysid.training.config import MOVED_KEYS

    known = [f.name for f in dataclasses.fields(sysid.training.FitConfig)]
    for key in settings:
        head, dot, _ = key.partition(".")
        if head in MOVED_KEYS and not dot:
            part, new = MOVED_KEYS[head]
            raise ConfigError(f"--set: '{head}' moved to the {part} part; write --set {part}.{new}="
                              f"{settings[key]} (in a config file: [fit.{part}] {new}).")
        if head not in known:
            close = difflib.get_close_matches(head, known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"--set: unknown option '{key}'.{hint} The options are those of "
                              f"[fit] (see sysid.training.FitConfig): {', '.join(known)}; a part's "
                              f"field is set as PART.KEY=VALUE, e.g. --set optimizer.lr=0.005.")
    fit = dict(opts.fit)
    fit["progress"] = not console.quiet
    try:
        return sysid.training.FitConfig.from_dict(fit)
    except ConfigError as exc:
        where = (f"config file '{config}', [fit]" if config is not None and not settings
                 else f"fit options (config file '{config}' and --set)" if config is not None
                 else "fit options")
        raise ConfigError(f"{where}: {exc}") from None


@click.command("fit", epilog=_FIT_EPILOG)
@click.argument("data", required=False)
@click.option("--time", "time_col", metavar="COL", help="Name of the time column (CSV).")
@click.option("--states", metavar="A,B", help="Measured state columns, comma-separated.")
@click.option("--inputs", metavar="U,..", help="Input (forcing) columns, comma-separated.")
@click.option("--run", "run_col", metavar="COL", help="Column holding the run id (several runs "
              "in one long file).")
@click.option("--sep", metavar="CHAR", help="Column delimiter (default: detected).")
@click.option("--decimal", metavar="CHAR", help="Decimal mark, e.g. ',' for 1,5 (default '.').")
@click.option("--encoding", metavar="NAME", help="Text encoding of the CSV (default UTF-8).")
@click.option("--missing-values", metavar="TEXT,..", help="Extra cell texts meaning 'not "
              "measured', e.g. -999 (empty, NA, NaN are always missing).")
@click.option("--sort", is_flag=True, help="Sort each run by time instead of refusing "
              "unsorted time.")
@click.option("--rename", metavar="OLD=NEW,..", help="With physics:/hybrid:SYSTEM, which "
              "system state each column is (angle=theta; the data keeps its names and units); "
              "otherwise rename variables after reading.")
@click.option("--where", metavar="CONDITION", help="Keep only the rows where CONDITION holds, "
              "e.g. \"condition == 'mixture' and dose > 1\" (any columns; comparisons, and/or/not).")
@click.option("--u", "constant", metavar="NAME=VALUE,..", help="Inputs held constant instead of "
              "read from the data (e.g. --u u=0 for undriven runs of a driven model).")
@click.option("--drop-duplicates", is_flag=True, help="Drop rows repeating a time (first kept) "
              "instead of refusing them.")
@click.option("--model", "model", metavar="KIND", help="neural (default), physics:SYSTEM, "
              "hybrid:SYSTEM (see 'sysid systems list') or equations:FILE.toml (your own "
              "equations; nn(...) terms make it hybrid).")
@click.option("--free", metavar="P,..", help="Physical parameters to fit (default: all).")
@click.option("--params", metavar="k=v,..", help="Parameter values: fixed ones, and starting "
              "values of free ones.")
@click.option("--latent", metavar="STATE=VALUE,..", help="Starting guesses of states the data "
              "does not measure (estimated per run by the fit).")
@click.option("--known-initial", metavar="STATE,..", help="States whose value at each run's start "
              "is known (the measurement, or the --latent/initial value) and not estimated.")
@click.option("--output", "outputs", multiple=True, metavar="NAME=EXPR", help="A measurement "
              "equation (repeatable), e.g. --output 'y=clip(x, 0, 0.5)': the data's column NAME "
              "is compared with EXPR of the model's states, inputs and parameters.")
@click.option("--hidden", metavar="NAME,..", help="Hidden states of a neural model: states the "
              "data does not measure (estimated per window, or by --encoder).")
@click.option("--encoder", type=click.IntRange(min=1), metavar="PAST", help="Estimate the hidden "
              "states at each window start (and when simulating a new record) from the last PAST "
              "measured samples and inputs, with a trained encoder network.")
@click.option("--width", type=click.IntRange(min=1), help="Neural network width.")
@click.option("--depth", type=click.IntRange(min=1), help="Neural network hidden layers.")
@click.option("--config", type=click.Path(path_type=Path), help="TOML file with every option "
              "(tables [data], [model], [fit]); flags override it.")
@click.option("--holdout", metavar="RUNS|FRACTION", help="Runs held out for validation: ids "
              "'B,C' or a fraction of runs like 0.25 (the last runs in file order).")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), help="Random seed (same seed, same "
              "model); 0 to 2^63-1.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any [fit] option "
              "(repeatable): a top-level key or PART.KEY of a [fit.PART] table, e.g. --set "
              "optimizer.lr=0.005 --set solver=dopri5 --set shooting.horizons=[4,8] --set loss=sse.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory "
              "(must not exist unless --force).")
@click.option("--force", is_flag=True, help="Replace --out if it exists (only once the new "
              "results are complete).")
@click.option("--max-memory", type=click.FloatRange(min=0, min_open=True), metavar="GB",
              help="Largest memory the fit may be estimated to need (default: half the "
              "machine's memory); larger fits are refused before they start.")
@click.option("--max-time", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Time budget of the fit (same as --set max_time=SECONDS): training stops "
              "when it is spent, keeps the best model so far and the results are written; the "
              "metrics after it get a budget as long.")
@parallel_options
def fit_cmd(data: str | None, time_col: str | None, states: str | None, inputs: str | None,
            run_col: str | None, sep: str | None, decimal: str | None, encoding: str | None,
            missing_values: str | None, sort: bool, rename: str | None, drop_duplicates: bool,
            model: str | None,
            free: str | None, params: str | None, width: int | None, depth: int | None,
            config: Path | None, holdout: str | None, epochs: int | None, seed: int | None,
            settings: tuple[str, ...], out: Path, force: bool, max_memory: float | None,
            where: str | None = None, constant: str | None = None, latent: str | None = None,
            known_initial: str | None = None, outputs: tuple[str, ...] = (),
            hidden: str | None = None, encoder: int | None = None, max_time: float | None = None,
            **parallel: Any) -> int:
    """Fit a continuous-time model dx/dt = f(t, x, u) to measured trajectories in DATA.

    DATA is a CSV file (give --time and --states), a quoted glob of CSV files with one run each
    ('runs/*.csv'), a .nc/.zarr file written by sysid, or dataset:NAME for a shipped dataset
    (see 'sysid datasets list').
    """
    # SIGTERM behaves like Ctrl-C for the whole command (sysid.cli.main sets it up): training
    # stops keeping the best model, and an interrupted write removes its temporary directory.
    return _fit(data, time_col, states, inputs, run_col, sep, decimal, encoding,
                missing_values, sort, rename, drop_duplicates, model, free, params, width,
                depth, config, holdout, epochs, seed, settings, out, force, max_memory,
                where=where, constant=constant, latent=latent, known_initial=known_initial,
                outputs=outputs, hidden=hidden, encoder=encoder, max_time=max_time,
                parallel=ParallelRequest.from_flags(**parallel))


def _fit(data: str | None, time_col: str | None, states: str | None, inputs: str | None,
         run_col: str | None, sep: str | None, decimal: str | None, encoding: str | None,
         missing_values: str | None, sort: bool, rename: str | None, drop_duplicates: bool,
         model: str | None, free: str | None, params: str | None, width: int | None,
         depth: int | None, config: Path | None, holdout: str | None, epochs: int | None,
         seed: int | None, settings: tuple[str, ...], out: Path, force: bool,
         max_memory: float | None = None, *, where: str | None = None, constant: str | None = None,
         latent: str | None = None, known_initial: str | None = None,
         outputs: tuple[str, ...] = (), hidden: str | None = None, encoder: int | None = None,
         max_time: float | None = None, parallel: ParallelRequest = ParallelRequest()) -> int:
    check_new_output(out, force=force)
    settings_d = parse_settings(settings)
    if max_time is not None:
        settings_d["max_time"] = max_time
    if known_initial is not None:
        settings_d["known_initial"] = list(parse_names(known_initial, option="--known-initial"))
    opts = _resolve(
        config, data, time=time_col, states=parse_names(states, option="--states") or None,
        inputs=parse_names(inputs, option="--inputs") if inputs is not None else None,
        run=run_col, sep=sep, decimal=decimal, encoding=encoding,
        missing_values=parse_names(missing_values, option="--missing-values") or None,
        sort=sort or None, drop_duplicates=drop_duplicates or None,
        rename=parse_renames(rename) if rename is not None else None, kind=model,
        free=parse_names(free, option="--free") if free is not None else None,
        params=parse_assignments(params, option="--params") if params is not None else None,
        holdout=parse_holdout(holdout), width=width, depth=depth, epochs=epochs, seed=seed,
        settings=settings_d, where=where,
        constant_inputs=parse_assignments(constant, option="--u") if constant is not None else None,
        latent=parse_assignments(latent, option="--latent") if latent is not None else None,
        outputs=parse_outputs(outputs, option="--output") if outputs else None,
        hidden=parse_names(hidden, option="--hidden") if hidden is not None else None,
        encoder=encoder,
    )
    spec = parse_model_spec(opts.kind)
    if spec.kind == "equations" and spec.file is not None:
        # kept in the resolved config.toml, so the run folder reproduces without the file
        opts = replace(opts, equations=equations_table(spec, opts)[0])
    if spec.kind == "equations" and (not opts.states or (inputs is None and not opts.inputs)):
        # the equations say which columns are measured and which are inputs
        cols, ins = equations_columns(spec, opts)
        opts = replace(opts, states=opts.states or tuple(cols),
                       inputs=opts.inputs if (inputs is not None or opts.inputs) else tuple(ins))
    # inputs are sacred: an output that is, holds or sits inside an input is refused up front
    check_output_apart(out, [*(("DATA", f) for f in data_source_files(opts.path)),
                             *((("--config", config),) if config is not None else ())])
    started = _time.time()
    ds = read_data(opts.path, opts)  # data first: its errors need no torch import
    from sysid.data.columns import check_magnitudes

    check_magnitudes(ds, context=f"DATA '{opts.path}'")
    fit_config = _fit_config(opts, config, settings_d)
    opts = opts.merged(seed=fit_config.seed)  # record the seed actually used
    train, test = split_holdout(ds, opts.holdout)
    untrained = build_model(spec, opts, train)
    if parallel.nproc is not None:  # the same fit under torchrun (sysid.cli.parallel_cmd)
        return launch_torchrun(parallel.nproc, opts, out, force)
    if not is_output_process():  # processes 1.. of a --nproc job train along and write nothing
        fit_one(untrained, train, fit_config, test)
        return 0
    # the destination is checked before training: writable, room for the results, and the data
    # written there once (a variable name netCDF cannot store fails now, not after the fit)
    build = start_output_dir(out, force=force, need_bytes=_estimate_output_bytes(ds, untrained))
    try:
        from sysid.cli.evaluate import DATA_COPY
        import sysid.data

        sysid.data.save(ds, build.path / DATA_COPY)
        console.info(f"fitting the {spec} model to {opts.path}: {_describe(train, test)}")
        console.detail(f"fit options: {fit_config}")
        import sysid
        from sysid import budget

        band, stopped_early = None, False
        with budget.limits(memory_gb=max_memory) if max_memory else contextlib.nullcontext():
            if parallel.ensemble is not None:  # members, bands: sysid.cli.parallel_cmd
                result, band, stopped_early = run_ensemble(parallel, untrained, ds, train, test,
                                                           fit_config, build.path)
            else:
                result = fit_one(untrained, train, fit_config, test)
    except BaseException:
        build.discard()
        raise
    console.detail(f"solver statistics: {result.solver_stats}")
    code = _finish(build, out, result=result, ds=ds, test=test, opts=opts, started=started,
                   band=band)
    if stopped_early and code == 0:
        print_error(f"sysid fit: interrupted; the ensemble members that finished were written to "
                    f"{out}.")
        return 130
    return code


def _estimate_output_bytes(ds: Any, model: Any) -> float:
    """Bytes the results will take: the data copy, the model, tables and the report's figures."""
    values = float(ds["time"].size) * (len(ds.data_vars) + 1)
    tensors = sum(float(v.numel()) * v.element_size() for v in model.state_dict().values())
    runs = float(ds.sizes.get("trajectory", 1))
    return 8.0 * values * 1.2 + 2 * tensors + runs * len(ds.data_vars) * 600 + 12e6


class _Outputs:
    """What was written into the results folder and what could not be, with the first error."""

    def __init__(self) -> None:
        self.missing: list[str] = []
        self.error: BaseException | None = None

    def failed(self, name: str, exc: BaseException) -> None:
        """Record that ``name`` was not written (a Ctrl-C is the error reported first)."""
        self.missing.append(name)
        if self.error is None or (isinstance(exc, KeyboardInterrupt)
                                  and not isinstance(self.error, KeyboardInterrupt)):
            self.error = exc
        if console.verbose and not isinstance(exc, KeyboardInterrupt):
            import traceback

            traceback.print_exception(exc)

    def attempt(self, name: str, write: Any) -> Any:
        """Run ``write()``; a failure (Ctrl-C included) marks ``name`` missing and is remembered."""
        try:
            return write()
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - keep what was written
            self.failed(name, exc)
            return None


_LATER = ("tables and metrics", "report", "manifest.json")


def _finish(build: Any, out: Path, *, result: Any, ds: Any, test: Any | None,
            opts: CliFitOptions, started: float, band: Any = None) -> int:
    """Write the results (the model first), move them into place and say what happened.

    The model is written with Ctrl-C held back, so it is always complete; every later output is
    attempted even when an earlier one failed, and a Ctrl-C skips the rest. Complete results
    replace ``out``; incomplete ones go to ``out`` only when it did not exist, else beside it
    (``out.incomplete``) so an old complete result is never replaced by a partial one.
    """
    import sysid
    from sysid import atomic

    tmp = build.path
    done = _Outputs()
    try:
        with atomic.signals_deferred():
            sysid.save_model(result.model, tmp / "model")
    except KeyboardInterrupt as exc:  # delivered once the model folder was complete
        for name in _LATER:
            done.failed(name, exc)
        return _place(build, out, result, done)
    except Exception as exc:  # noqa: BLE001 - save the model elsewhere rather than lose it
        return _model_not_saved(build, out, result, exc)
    try:
        _write_later(tmp, done, result=result, ds=ds, test=test, opts=opts, started=started,
                     band=band)
    except KeyboardInterrupt as exc:  # between two steps: the rest is skipped
        for name in _LATER:
            if name not in done.missing:
                done.failed(name, exc)
    return _place(build, out, result, done)


def _write_later(tmp: Path, done: _Outputs, *, result: Any, ds: Any, test: Any | None,
                 opts: CliFitOptions, started: float, band: Any = None) -> None:
    """Everything after the model: tables, metrics, config, report, and the manifest last."""
    metrics_interrupted = done.attempt("tables and metrics", lambda: _write_fit_outputs(
        tmp, result=result, ds=ds, test=test, opts=opts, elapsed=_time.time() - started))
    if metrics_interrupted:
        done.failed("metrics", KeyboardInterrupt())
    if not done.missing:
        from sysid.cli.evaluate import write_report

        console.info("writing the report (Ctrl-C skips it; the model is kept)")
        if done.attempt("report", lambda: write_report(tmp, tmp, result=result,
                                                       band=band)) is None:
            for name in ("report.html", "report.md", "report.json"):
                (tmp / name).unlink(missing_ok=True)
    else:
        done.missing.append("report")
    done.attempt("manifest.json", lambda: _write_manifest(tmp, result=result, ds=ds, test=test,
                                                           opts=opts, elapsed=_time.time() - started,
                                                           files=True))


def _model_not_saved(build: Any, out: Path, result: Any, exc: BaseException) -> int:
    """The model could not be written into the results folder: try the temporary folder."""
    import tempfile

    import sysid

    build.discard()
    try:
        spare = Path(tempfile.mkdtemp(prefix="sysid-model-")) / "model"
        sysid.save_model(result.model, spare)
        kept = f" The trained model was saved to '{spare}' instead."
    except Exception:  # noqa: BLE001 - report the first failure
        kept = " It could not be saved elsewhere either."
    print_error(f"sysid fit: error: the trained model could not be written to '{out}' "
                f"({type(exc).__name__}: {one_line(exc)}).{kept}")
    return 2 if isinstance(exc, (SysidError, OSError)) else 1


def _place(build: Any, out: Path, result: Any, done: _Outputs) -> int:
    """Move the results folder into place (or beside an old one) and report; the exit status."""
    from sysid import atomic

    existed = out.exists() or out.is_symlink()
    where = out
    try:
        with atomic.signals_deferred():
            if done.missing and existed:
                where = build.set_aside()
            else:
                build.commit()
    except KeyboardInterrupt:  # delivered after the move was complete
        if not done.missing:
            print_error(f"sysid fit: interrupted; the results were complete and written to {out}.")
            return 130
    except OSError as exc:
        # the folder could not be moved: leave the temporary folder where it is, never lose it
        print_error(f"sysid fit: error: the results could not be moved to '{out}' "
                    f"({exc.strerror or one_line(exc)}); they are kept in '{build.path}'.")
        return 2
    model_dir = where / "model"
    interrupted = result.stopped_reason == "interrupted"
    if result.stopped_reason == "diverged":
        console.info(f"sysid fit: warning: training diverged ({result.message}); the best model "
                     f"before the failure was saved.")
    if not done.missing:
        _summarise(out, result)
        if interrupted:
            console.info(f"interrupted: training stopped early; the best model so far was saved to "
                         f"{model_dir}.")
            return 130
        return 0
    err = done.error
    kept = (f" '{out}' was left as it was; the new results are in '{where}'." if where != out else "")
    if isinstance(err, KeyboardInterrupt):
        what = ("metrics or a report" if {"metrics", "tables and metrics"} & set(done.missing)
                else "a report")
        print_error(f"sysid fit: interrupted after training; the model was saved to {model_dir} "
                    f"without {what}.{kept} Run 'sysid report {where}' to write the report.")
        return 130
    if done.missing == ["report"]:
        print_error(f"sysid fit: error: the report could not be written "
                    f"({type(err).__name__}: {one_line(err)}); the model and metrics were saved."
                    f"{kept} Run 'sysid report {where}' once the cause is fixed.")
    else:
        print_error(f"sysid fit: error: could not write {', '.join(done.missing)} "
                    f"({type(err).__name__}: {one_line(err)}); the model was saved to {model_dir}."
                    f"{kept}")
    return 2 if isinstance(err, (SysidError, OSError)) else 1


def _describe(train: Any, test: Any | None) -> str:
    import sysid.data

    runs = sysid.data.run_ids(train)
    text = (f"states {sysid.data.state_names(train)}, inputs {sysid.data.input_names(train)}, "
            f"{len(runs)} training run{'s' if len(runs) != 1 else ''}")
    if test is not None:
        text += f", held out {sysid.data.run_ids(test)}"
    return text


def _write_fit_outputs(tmp: Path, *, result: Any, ds: Any, test: Any | None,
                       opts: CliFitOptions, elapsed: float) -> bool:
    """Tables, metrics and the resolved config into the (temporary) run directory.

    The metrics run under ``max_time`` (a budget of their own, as long as the fit's) and stop on
    Ctrl-C; either way the rest is written and ``metrics.json`` says why the metrics are missing.
    Returns True when Ctrl-C interrupted the metrics.
    """
    import sysid.analysis
    import sysid.data
    from sysid import budget
    from sysid.cli.evaluate import fit_metrics

    held_out = sysid.data.run_ids(test) if test is not None else []
    result.history.to_csv(tmp / "history.csv", index=False)
    if len(result.parameters):
        result.parameters.to_csv(tmp / "parameters.csv", index=False)
    if len(result.initial_states):  # per training run, fitted; run ids made spreadsheet-safe
        table = result.initial_states.copy()
        table.index = [sysid.data.safe_cell(str(r)) for r in table.index]
        table.to_csv(tmp / "initial_states.csv")
    n_runs = len(sysid.data.run_ids(ds))
    console.info(f"computing metrics on {n_runs} run{'s' if n_runs != 1 else ''} "
                 f"(Ctrl-C skips them; the model is kept)")
    deadline = budget.Deadline(result.config.max_time) if result.config.max_time else None
    interrupted = False
    try:
        with budget.active(deadline):
            metrics = fit_metrics(result, ds, held_out=held_out)
    except KeyboardInterrupt:
        metrics = {"trajectory": [], "error": "interrupted before the metrics were computed"}
        interrupted = True
    except budget.BudgetExceeded as exc:
        metrics = {"trajectory": [], "error": f"metrics not computed: {exc}"}
        console.info(f"sysid fit: warning: {exc} The model and the other results are kept.")
    metrics["parameters"] = sysid.analysis.jsonable(result.parameters)
    metrics["training"] = {"stopped_reason": result.stopped_reason, "message": result.message,
                           "epochs_run": int(len(result.history)), "best_epoch": result.best_epoch,
                           "final_loss": float(result.history["loss"].iloc[-1])
                           if len(result.history) else None}
    write_json(tmp / "metrics.json", metrics)
    (tmp / "config.toml").write_text(
        dumps_toml(_resolved(result, opts),
                   header="Resolved options of this fit; reproduce it with\n"
                          "  sysid fit --config config.toml --out NEW_DIR"),
        encoding="utf-8")
    # provenance for the report; rewritten with the list of files once everything is written
    _write_manifest(tmp, result=result, ds=ds, test=test, opts=opts, elapsed=elapsed, files=False)
    return interrupted


def _resolved(result: Any, opts: CliFitOptions) -> dict[str, Any]:
    resolved = opts.to_toml_dict()
    # the resolved [fit] table with one [fit.PART] sub-table per part
    resolved["fit"] = {k: v for k, v in result.config.to_dict().items() if k != "progress"}
    resolved["data"]["path"] = str(Path(opts.path).resolve()) if not opts.path.startswith(
        "dataset:") else opts.path
    return resolved


def _write_manifest(tmp: Path, *, result: Any, ds: Any, test: Any | None, opts: CliFitOptions,
                    elapsed: float, files: bool) -> None:
    """``manifest.json``: provenance and, written last (``files=True``), the size and sha256 of
    every file that a later command reads (checked by ``sysid report/simulate/compare`` before
    reading them)."""
    import sysid.data
    from sysid.cli.evaluate import run_files

    sources = [{"path": str(f.resolve()), "sha256": sha256_file(f)}
               for f in data_source_files(opts.path)]
    write_json(tmp / "manifest.json", {
        "format": "sysid-fit-run",
        "command": command_line(),
        "data": {"source": opts.path, "files": sources,
                 "sha256": sources[0]["sha256"] if len(sources) == 1 else None,
                 "runs": sysid.data.run_ids(ds),
                 "held_out": sysid.data.run_ids(test) if test is not None else []},
        "seed": int(result.config.seed),
        "model": opts.kind,
        "config": _resolved(result, opts),
        "stopped_reason": result.stopped_reason,
        "versions": versions(),
        "created": _time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": round(elapsed, 3),
        **({"files": run_files(tmp)} if files else {}),
    })


def _summarise(out: Path, result: Any) -> None:
    import json

    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))

    def num(x: Any, fmt: str) -> str:
        return "nan" if x is None else format(x, fmt)

    lines = [f"training {result.stopped_reason}"
             f"{': ' + result.message if result.message else ''} (best epoch {result.best_epoch})",
             f"wrote {out}/ (model, report.html, metrics.json, figures/)"]
    for row in metrics.get("trajectory", []):
        if str(row.get("run", "")).startswith("all"):
            lines.append(f"  {row['run']:<13} {row['variable']:<12} fit "
                         f"{num(row['fit_percent'], '.1f')} %  RMSE {num(row['rmse'], '.4g')}")
    for row in metrics.get("parameters", []):
        if row.get("vary"):
            err = (f"± {num(row.get('stderr'), '.2g')}" if row.get("stderr") is not None
                   else "(no standard error)")
            lines.append(f"  {row['name']} = {num(row['value'], '.6g')} {err} "
                         f"{row.get('units', '')}".rstrip())
    console.info("\n".join(lines))
