"""``sysid fit``: data file in, a directory with the model, metrics, figures and report out."""

from __future__ import annotations

import signal
import time as _time
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
    atomic_dir,
    check_new_output,
    console,
    one_line,
    parse_assignments,
    parse_holdout,
    parse_names,
    parse_renames,
    parse_settings,
    print_error,
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

    A catalogue system brings its own state names: the data's states must be among them (states
    the data lacks are latent, estimated by the fit) and its inputs must be the system's inputs.
    """
    import sysid.data
    import sysid.models
    import sysid.systems

    states = sysid.data.state_names(ds)
    inputs = sysid.data.input_names(ds)
    units = {n: str(ds[n].attrs.get("units", "")) for n in (*states, *inputs)}
    time_units = str(ds["time"].attrs.get("units", ""))
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
        return sysid.models.neural(states, inputs, seed=seed, state_units=[units[n] for n in states],
                                   input_units=[units[n] for n in inputs], time_units=time_units,
                                   **neural_kw)
    system = sysid.systems.get(spec.system)
    foreign = [n for n in states if n not in system.states]
    if foreign:
        raise ConfigError(
            f"--model {spec}: the data's states {foreign} are not states of '{system.name}', whose "
            f"states are {list(system.states)}; map them with --rename, e.g. --rename "
            f"{foreign[0]}={system.states[0]} (see 'sysid systems show {system.name}').")
    if list(inputs) != list(system.inputs):
        raise ConfigError(f"--model {spec}: '{system.name}' takes inputs {list(system.inputs)} but "
                          f"--inputs gives {list(inputs)}; they must match.")
    names = [p.name for p in system.parameters]
    for option, given in (("--free", opts.free or ()), ("--params", tuple(opts.params))):
        unknown = [n for n in given if n not in names]
        if unknown:
            raise ConfigError(f"{option}: {unknown} {'is' if len(unknown) == 1 else 'are'} not a "
                              f"parameter of '{system.name}'; its parameters are {names}.")
    if spec.kind == "physics" and (opts.width is not None or opts.depth is not None):
        raise ConfigError(f"--width/--depth size a neural network; --model {spec} has none "
                          f"(use hybrid:{system.name} for physics plus a network).")
    common: dict[str, Any] = {"free": list(opts.free) if opts.free is not None else None,
                              "values": dict(opts.params) or None, "observed": list(states)}
    if spec.kind == "physics":
        return sysid.models.physics(system, **common)
    return sysid.models.hybrid(system, seed=seed, **common, **neural_kw)


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


class _Sigterm(KeyboardInterrupt):
    """SIGTERM turned into an interrupt so a killed fit stops as cleanly as after Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Sigterm()


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
@click.option("--rename", metavar="OLD=NEW,..", help="Rename variables after reading, e.g. "
              "population=N to match a reference system's state names.")
@click.option("--drop-duplicates", is_flag=True, help="Drop rows repeating a time (first kept) "
              "instead of refusing them.")
@click.option("--model", "model", metavar="KIND", help="neural (default), physics:SYSTEM or "
              "hybrid:SYSTEM (see 'sysid systems list').")
@click.option("--free", metavar="P,..", help="Physical parameters to fit (default: all).")
@click.option("--params", metavar="k=v,..", help="Parameter values: fixed ones, and starting "
              "values of free ones.")
@click.option("--width", type=click.IntRange(min=1), help="Neural network width.")
@click.option("--depth", type=click.IntRange(min=1), help="Neural network hidden layers.")
@click.option("--config", type=click.Path(path_type=Path), help="TOML file with every option "
              "(tables [data], [model], [fit]); flags override it.")
@click.option("--holdout", metavar="RUNS|FRACTION", help="Runs held out for validation: ids "
              "'B,C' or a fraction of runs like 0.25 (the last runs in file order).")
@click.option("--epochs", type=click.IntRange(min=1), help="Training epochs.")
@click.option("--seed", type=int, help="Random seed (same seed, same model).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any [fit] option "
              "(repeatable): a top-level key or PART.KEY of a [fit.PART] table, e.g. --set "
              "optimizer.lr=0.005 --set solver=dopri5 --set shooting.horizons=[4,8] --set loss=sse.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory "
              "(must not exist unless --force).")
@click.option("--force", is_flag=True, help="Replace --out if it exists (only once the new "
              "results are complete).")
def fit_cmd(data: str | None, time_col: str | None, states: str | None, inputs: str | None,
            run_col: str | None, sep: str | None, decimal: str | None, encoding: str | None,
            missing_values: str | None, sort: bool, rename: str | None, drop_duplicates: bool,
            model: str | None,
            free: str | None, params: str | None, width: int | None, depth: int | None,
            config: Path | None, holdout: str | None, epochs: int | None, seed: int | None,
            settings: tuple[str, ...], out: Path, force: bool) -> int:
    """Fit a continuous-time model dx/dt = f(t, x, u) to measured trajectories in DATA.

    DATA is a CSV file (give --time and --states), a quoted glob of CSV files with one run each
    ('runs/*.csv'), a .nc/.zarr file written by sysid, or dataset:NAME for a shipped dataset
    (see 'sysid datasets list').
    """
    # SIGTERM behaves like Ctrl-C for the whole command: training stops keeping the best model,
    # and an interrupted write removes its temporary directory.
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _fit(data, time_col, states, inputs, run_col, sep, decimal, encoding,
                    missing_values, sort, rename, drop_duplicates, model, free, params, width,
                    depth, config, holdout, epochs, seed, settings, out, force)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fit(data: str | None, time_col: str | None, states: str | None, inputs: str | None,
         run_col: str | None, sep: str | None, decimal: str | None, encoding: str | None,
         missing_values: str | None, sort: bool, rename: str | None, drop_duplicates: bool,
         model: str | None, free: str | None, params: str | None, width: int | None,
         depth: int | None, config: Path | None, holdout: str | None, epochs: int | None,
         seed: int | None, settings: tuple[str, ...], out: Path, force: bool) -> int:
    check_new_output(out, force=force)
    settings_d = parse_settings(settings)
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
        settings=settings_d,
    )
    started = _time.time()
    ds = read_data(opts.path, opts)  # data first: its errors need no torch import
    spec = parse_model_spec(opts.kind)
    fit_config = _fit_config(opts, config, settings_d)
    opts = opts.merged(seed=fit_config.seed)  # record the seed actually used
    train, test = split_holdout(ds, opts.holdout)
    untrained = build_model(spec, opts, train)
    console.info(f"fitting a {spec} model to {opts.path}: {_describe(train, test)}")
    console.detail(f"fit options: {fit_config}")
    import sysid

    result = sysid.fit(untrained, train, fit_config, validation=test)
    console.detail(f"solver statistics: {result.solver_stats}")
    interrupted = result.stopped_reason == "interrupted"
    report_error: BaseException | None = None
    with atomic_dir(out, force=force) as tmp:
        metrics_interrupted = _write_fit_outputs(tmp, result=result, ds=ds, test=test, opts=opts,
                                                 elapsed=_time.time() - started)
        from sysid.cli.evaluate import write_report

        try:
            if metrics_interrupted:
                raise KeyboardInterrupt
            write_report(tmp, tmp, result=result)
        except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - keep the trained model
            report_error = exc
            for name in ("report.html", "report.md", "report.json"):
                (tmp / name).unlink(missing_ok=True)
    _summarise(out, result)
    if result.stopped_reason == "diverged":
        console.info(f"sysid fit: warning: training diverged ({result.message}); the best model "
                     f"before the failure was saved.")
    if isinstance(report_error, KeyboardInterrupt):
        print_error(f"sysid fit: interrupted after training; the model was saved to {out / 'model'} "
                    f"without {'metrics or ' if metrics_interrupted else ''}a report. Run 'sysid "
                    f"report {out}' to write the report.")
        return 130
    if report_error is not None:
        if console.verbose:
            import traceback

            traceback.print_exception(report_error)
        print_error(f"sysid fit: error: the report could not be written "
                    f"({type(report_error).__name__}: {one_line(report_error)}); the model and "
                    f"metrics were saved. Run 'sysid report {out}' once the cause is fixed.")
        return 2 if isinstance(report_error, SysidError) else 1
    if interrupted:
        console.info(f"interrupted: training stopped early; the best model so far was saved to "
                     f"{out / 'model'}.")
        return 130
    return 0


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
    """Model, metrics, history, resolved config and manifest into the (temporary) run directory.

    Returns True when Ctrl-C interrupted the metrics (the rest is written; metrics.json says so).
    """
    import sysid
    import sysid.analysis
    import sysid.data
    from sysid.cli.evaluate import fit_metrics

    from sysid.cli.evaluate import DATA_COPY

    sysid.save_model(result.model, tmp / "model")
    sysid.data.save(ds, tmp / DATA_COPY)
    held_out = sysid.data.run_ids(test) if test is not None else []
    result.history.to_csv(tmp / "history.csv", index=False)
    if len(result.parameters):
        result.parameters.to_csv(tmp / "parameters.csv", index=False)
    if len(result.initial_states):
        result.initial_states.to_csv(tmp / "initial_states.csv")  # per training run, fitted
    try:
        metrics = fit_metrics(result, ds, held_out=held_out)
        interrupted = False
    except KeyboardInterrupt:
        metrics = {"trajectory": [], "error": "interrupted before the metrics were computed"}
        interrupted = True
    metrics["parameters"] = sysid.analysis.jsonable(result.parameters)
    metrics["training"] = {"stopped_reason": result.stopped_reason, "message": result.message,
                           "epochs_run": int(len(result.history)), "best_epoch": result.best_epoch,
                           "final_loss": float(result.history["loss"].iloc[-1])
                           if len(result.history) else None}
    write_json(tmp / "metrics.json", metrics)
    resolved = opts.to_toml_dict()
    # the resolved [fit] table with one [fit.PART] sub-table per part
    resolved["fit"] = {k: v for k, v in result.config.to_dict().items() if k != "progress"}
    resolved["data"]["path"] = str(Path(opts.path).resolve()) if not opts.path.startswith(
        "dataset:") else opts.path
    (tmp / "config.toml").write_text(
        dumps_toml(resolved, header="Resolved options of this fit; reproduce it with\n"
                                    f"  sysid fit --config config.toml --out NEW_DIR"),
        encoding="utf-8")
    files = [{"path": str(f.resolve()), "sha256": sha256_file(f)}
             for f in data_source_files(opts.path)]
    write_json(tmp / "manifest.json", {
        "format": "sysid-fit-run",
        "command": command_line(),
        "data": {"source": opts.path, "files": files,
                 "sha256": files[0]["sha256"] if len(files) == 1 else None,
                 "runs": sysid.data.run_ids(ds), "held_out": held_out},
        "seed": int(result.config.seed),
        "model": opts.kind,
        "config": resolved,
        "stopped_reason": result.stopped_reason,
        "versions": versions(),
        "created": _time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": round(elapsed, 3),
    })
    return interrupted


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
            lines.append(f"  {row['name']} = {num(row['value'], '.6g')} "
                         f"± {num(row.get('stderr'), '.2g')} {row.get('units', '')}".rstrip())
    console.info("\n".join(lines))
