"""Many fits from the command line: ``sysid fit --ensemble/--nproc`` and ``sysid sweep``.

- ``sysid fit ... --ensemble N [--bootstrap | --starts] [--workers N | --scheduler ADDRESS]``:
  N fits at once (local processes, or a Dask scheduler); DIR/model is the representative fit
  (bootstrap: the fit to the data; otherwise the member with the lowest final loss) and
  DIR/ensemble/ holds the members, their parameters, the ensemble intervals and the bands.
- ``sysid fit ... --nproc N``: one fit whose window batches are split over N local processes
  (``torchrun`` with torch.distributed; see :mod:`sysid.parallel.distributed`).
- ``sysid sweep CONFIG.toml``: a grid or random search from the file's ``[sweep]`` table.

Ctrl-C stops every worker; the fits that finished are written (exit status 130).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time as _time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from sysid.cli._support import atomic_dir, check_new_output, console, one_line, print_error
from sysid.errors import ConfigError

__all__ = ["ParallelRequest", "parallel_options", "fit_one", "run_ensemble", "launch_torchrun",
           "is_output_process", "sweep_cmd", "progress_line"]


@dataclass(frozen=True, kw_only=True)
class ParallelRequest:
    """The parallel flags of ``sysid fit``, checked."""

    ensemble: int | None = None
    kind: str = "seeds"
    workers: int | None = None
    scheduler: str | None = None
    nproc: int | None = None

    @classmethod
    def from_flags(cls, *, ensemble: int | None, bootstrap: bool, starts: bool,
                   workers: int | None, scheduler: str | None, nproc: int | None) -> ParallelRequest:
        """Check the flag combinations (a wrong one is a one-line user error)."""
        if bootstrap and starts:
            raise ConfigError("--bootstrap and --starts choose different ensembles; give one.")
        if (bootstrap or starts) and ensemble is None:
            raise ConfigError(f"--{'bootstrap' if bootstrap else 'starts'} makes an ensemble; add "
                              f"--ensemble N (the number of fits).")
        if workers is not None and scheduler is not None:
            raise ConfigError("--workers (local processes) and --scheduler (a Dask cluster) exclude "
                              "each other; give one.")
        if ensemble is None and (workers is not None or scheduler is not None):
            raise ConfigError("--workers/--scheduler run several fits at once: add --ensemble N, "
                              "or use --nproc N to split one fit over processes.")
        if nproc is not None and ensemble is not None:
            raise ConfigError("--nproc splits one fit over processes; it cannot be combined with "
                              "--ensemble (use --workers for an ensemble).")
        kind = "bootstrap" if bootstrap else "starts" if starts else "seeds"
        return cls(ensemble=ensemble, kind=kind, workers=workers, scheduler=scheduler, nproc=nproc)

    def executor(self) -> Any:
        """The executor the flags ask for (a scheduler address is opened by the fits' runner)."""
        if self.scheduler is not None:
            return self.scheduler
        from sysid.parallel import LocalPool

        return LocalPool(self.workers) if self.workers is not None else None


def parallel_options(command: Callable) -> Callable:
    """Add ``--ensemble --bootstrap --starts --workers --scheduler --nproc`` to a command."""
    options = [
        click.option("--ensemble", type=click.IntRange(min=2), metavar="N",
                     help="Fit N models at once: seeds (default; neural and hybrid models), "
                          "--bootstrap or --starts. Writes DIR/ensemble/ with the members, "
                          "parameter intervals and prediction bands."),
        click.option("--bootstrap", is_flag=True,
                     help="With --ensemble: each member fits resampled data (whole runs with 5 or "
                          "more runs, else block-resampled residuals)."),
        click.option("--starts", is_flag=True,
                     help="With --ensemble: members start from random parameter values; "
                          "DIR/model is the best of them."),
        click.option("--workers", type=click.IntRange(min=1), metavar="N",
                     help="Local worker processes for --ensemble (default: one per core)."),
        click.option("--scheduler", metavar="ADDRESS",
                     help="Run the --ensemble fits on a Dask cluster, e.g. tcp://host:8786 "
                          "(needs pip install 'sysid[parallel]')."),
        click.option("--nproc", type=click.IntRange(min=1), metavar="N",
                     help="Split one fit's window batches over N local processes (torchrun, "
                          "torch.distributed); the same loss curve as one process, faster on many "
                          "trajectories."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def progress_line(done: int, total: int, label: str, result: Any) -> str:
    """``[3/16] member 2: completed, loss 0.0123`` (or the failure) for one finished task."""
    from sysid.parallel import TaskFailure

    head = f"[{done}/{total}] {label}: "
    if isinstance(result, TaskFailure):
        return head + f"failed ({result.error_type}: {one_line(result.message)})"
    fit = getattr(result, "result", result)  # a sweep trial carries its fit
    text = head + str(fit.stopped_reason)
    if len(fit.history):
        text += f", loss {float(fit.history['loss'].iloc[-1]):.4g}"
    score = getattr(result, "errors", {}).get("score")
    if score is not None:
        text += f", held-out error {score:.4g}"
    return text


# ----------------------------------------------------------------------------------------------
# one fit (possibly one process of a torchrun job)


def _torchrun_world() -> int:
    from sysid.parallel.distributed import TORCHRUN_ENV

    if os.environ.get(TORCHRUN_ENV) != "1":
        return 1
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_output_process() -> bool:
    """False in processes 1.. of a ``--nproc`` job (only process 0 writes and prints)."""
    return _torchrun_world() == 1 or int(os.environ.get("RANK", "0")) == 0


def fit_one(model: Any, train: Any, config: Any, validation: Any) -> Any:
    """``sysid.fit``, or, inside a ``--nproc`` job, the data-parallel fit of this process."""
    if _torchrun_world() > 1:
        from sysid.parallel import fit_distributed

        if not is_output_process():
            console.quiet = True
        return fit_distributed(model, train, config, validation=validation)
    import sysid

    return sysid.fit(model, train, config, validation=validation)


def launch_torchrun(nproc: int, opts: Any, out: Path, force: bool) -> int:
    """Run this fit in ``nproc`` processes: write the resolved options to a config file and start
    ``torchrun ... -m sysid fit --config FILE --out DIR``; its exit status is returned."""
    from sysid.cli._config import dumps_toml
    from sysid.parallel.distributed import TORCHRUN_ENV, torchrun_command

    check_new_output(out, force=force)
    resolved = opts.to_toml_dict()
    if resolved["data"].get("path") and not str(resolved["data"]["path"]).startswith("dataset:"):
        resolved["data"]["path"] = str(Path(resolved["data"]["path"]).resolve())
    fd, cfg_path = tempfile.mkstemp(prefix="sysid-nproc-", suffix=".toml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dumps_toml(resolved, header="options of a 'sysid fit --nproc' job"))
        args = ["fit", "--config", cfg_path, "--out", str(out)]
        if force:
            args.append("--force")
        if console.quiet:
            args.append("--quiet")
        if console.verbose:
            args.append("--verbose")
        env = {**os.environ, TORCHRUN_ENV: "1", "OMP_NUM_THREADS": os.environ.get(
            "OMP_NUM_THREADS", "1")}
        console.info(f"starting {nproc} processes (torchrun, gloo): one fit, window batches split "
                     f"between them")
        try:
            done = subprocess.run(torchrun_command(nproc, args), env=env, check=False)
        except KeyboardInterrupt:
            return 130
        return 130 if done.returncode in (-2, 130) else done.returncode
    finally:
        os.unlink(cfg_path)


# ----------------------------------------------------------------------------------------------
# ensembles


def run_ensemble(request: ParallelRequest, model: Any, ds: Any, train: Any, test: Any | None,
                 config: Any, folder: Path) -> tuple[Any, Any, bool]:
    """``sysid fit --ensemble N``: run the members and write ``folder/ensemble/``.

    Returns the representative fit (bootstrap: the fit to the data; else the member with the
    lowest final loss), the observation band over ``ds`` for the report (None if it failed) and
    whether Ctrl-C stopped the ensemble (the members that finished are written all the same).
    """
    from sysid.parallel import Interrupted
    from sysid.parallel.ensembles import ensemble

    n = request.ensemble
    total = n + (1 if request.kind == "bootstrap" else 0)
    finished = [0]
    where = (f"the Dask scheduler {request.scheduler}" if request.scheduler else
             f"{request.workers} local workers" if request.workers else "local workers (one per core)")
    console.info(f"ensemble of {n} fits ({request.kind}) on {where}")

    def report(label: str, result: Any) -> None:
        finished[0] += 1
        console.info(progress_line(finished[0], total, label, result))

    executor = request.executor()
    interrupted = False
    try:
        ens = ensemble(model, train, config, members=n, kind=request.kind, executor=executor,
                       validation=test, progress=False, callback=report)
    except Interrupted as exc:
        ens, interrupted = exc.partial, True
        if ens is None or not ens.fits:
            raise KeyboardInterrupt from None  # nothing finished: nothing to write
    finally:
        if executor is not None and not isinstance(executor, str):
            executor.shutdown(wait=False, cancel_futures=True)
    if not ens.fits:
        first = ens.failures[0]
        raise ConfigError(f"--ensemble: every member failed; the first: {first.error_type}: "
                          f"{first.message}")
    band = _write_members(ens, ds, test, folder / "ensemble")
    return _representative(ens), band, interrupted


def _representative(ens: Any) -> Any:
    from sysid.parallel import TaskFailure

    if ens.base is not None and not isinstance(ens.base, TaskFailure):
        return ens.base
    return ens.best


def _write_members(ens: Any, ds: Any, test: Any | None, folder: Path) -> Any:
    """Members' models, tables, bands and coverage into ``folder``; the observation band."""
    import json

    import pandas as pd

    import sysid
    import sysid.data
    from sysid.errors import SysidError
    from sysid.parallel import TaskFailure
    from sysid.parallel.ensembles import band_coverage, summary

    folder.mkdir()
    rows = []
    for i, m in enumerate(ens.members):
        failed = isinstance(m, TaskFailure)
        row = {"member": i, "stopped_reason": "failed" if failed else str(m.stopped_reason),
               "final_loss": None if failed or not len(m.history) else
               float(m.history["loss"].iloc[-1]), "error": str(m) if failed else ""}
        if not failed:
            sysid.save_model(m.model, folder / f"member_{i:03d}")
        rows.append(row)
    pd.DataFrame(rows).to_csv(folder / "members.csv", index=False)
    ens.member_parameters().to_csv(folder / "member_parameters.csv", index=False)
    ens.parameters().to_csv(folder / "parameters.csv")
    info = dict(summary(ens))
    held = sysid.data.run_ids(test) if test is not None else []
    bands = {}
    for name, noise in (("trajectory", False), ("observation", True)):
        try:
            bands[name] = ens.predict(ds, noise=noise)
        except SysidError as exc:
            info[f"band_{name}"] = f"not computed: {exc}"
            continue
        sysid.data.save(bands[name], folder / f"band_{name}.nc")
        if held:
            cov = band_coverage(ds, bands[name], runs=held)
            info[f"coverage_{name}_held_out"] = json.loads(cov.reset_index().to_json(
                orient="records"))
    (folder / "summary.json").write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    table = ens.parameters()
    lines = [f"{len(ens.fits)} of {len(ens.members)} members finished"]
    if len(table):
        lines.append("ensemble parameter intervals (central 90 % of the members):")
        for name, r in table.iterrows():
            lines.append(f"  {name} = {r['estimate']:.6g}  [{r['low']:.6g}, {r['high']:.6g}] "
                         f"{r['units']}".rstrip())
    if ens.failures:
        lines.append(f"{len(ens.failures)} member(s) failed; see ensemble/members.csv")
    console.info("\n".join(lines))
    return bands.get("observation")


# ----------------------------------------------------------------------------------------------
# sysid sweep

SWEEP_KEYS = ("grid", "random", "samples", "seed", "holdout", "holdout_time")

_SWEEP_EPILOG = """\b
Example (from the repository root; 4 trials of a hybrid Lotka-Volterra model):
  sysid sweep examples/sweep_hare_lynx.toml --out hl_sweep
  sysid fit --config hl_sweep/best.toml --out hl_best
\b
The config file is a 'sysid fit' config ([data], [model], [fit]) plus a [sweep] table:
\b
  [sweep]
  holdout_time = 0.2            # score on the last 20 % of every run (or holdout = 0.25 / ["B"])
  [sweep.grid]                  # every combination
  fit.optimizer.lr = [0.003, 0.01, 0.03]
  model.width = [16, 32]
  [sweep.random]                # or: 'samples' random draws
  fit.optimizer.weight_decay = { log_uniform = [1e-5, 1e-2] }
  # samples = 8  (in [sweep])
\b
Keys are "fit.<FitConfig field>" (a dotted path reaches into a part) or "model.<kind|width|depth|
free|params>". Writes DIR/sweep.csv (trials, best first), DIR/best.toml (the best trial as a
config: 'sysid fit --config DIR/best.toml --out NEW' refits it), DIR/best_model/ and
DIR/sweep.json. Ctrl-C stops every worker and writes the trials that finished.
"""


def _flatten(table: dict, prefix: str = "") -> dict:
    from sysid.parallel.sweeps import DISTRIBUTIONS

    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        is_spec = isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS
        if isinstance(value, dict) and not is_spec:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _sweep_table(raw: dict, source: str) -> dict:
    from sysid.cli._config import MODEL_KEYS

    table = raw.get("sweep")
    if not isinstance(table, dict):
        raise ConfigError(f"{source} has no [sweep] table; add one with [sweep.grid] or "
                          f"[sweep.random] (see 'sysid sweep --help').")
    unknown = [k for k in table if k not in SWEEP_KEYS]
    if unknown:
        raise ConfigError(f"{source}: unknown key 'sweep.{unknown[0]}'; [sweep] accepts "
                          f"{list(SWEEP_KEYS)}.")
    for part in ("grid", "random"):
        if part in table:
            if not isinstance(table[part], dict):
                raise ConfigError(f"{source}: 'sweep.{part}' must be a table ([sweep.{part}]).")
            flat = _flatten(table[part])
            for key in flat:
                space, _, name = key.partition(".")
                if space not in ("fit", "model") or not name:
                    raise ConfigError(f"{source}: [sweep.{part}] key '{key}' must start with "
                                      f"'fit.' or 'model.' (e.g. fit.optimizer.lr, model.width).")
                if space == "model" and name not in MODEL_KEYS:
                    raise ConfigError(f"{source}: [sweep.{part}] key '{key}': the model options "
                                      f"are {['model.' + k for k in MODEL_KEYS]}.")
            table[part] = flat
    return table


def _holdout(table: dict, opts: Any, source: str) -> Any:
    from sysid.cli._support import parse_holdout
    from sysid.parallel.sweeps import Holdout

    if "holdout" in table and "holdout_time" in table:
        raise ConfigError(f"{source}: give one of sweep.holdout (runs) and sweep.holdout_time.")
    if "holdout_time" in table:
        return Holdout(time=table["holdout_time"])
    runs = parse_holdout(table["holdout"], option=f"{source}, sweep.holdout") \
        if "holdout" in table else opts.holdout
    return Holdout(runs=runs) if runs is not None else None


@click.command("sweep", epilog=_SWEEP_EPILOG)
@click.argument("config", type=click.Path(path_type=Path))
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="Local worker processes (default: one per core).")
@click.option("--scheduler", metavar="ADDRESS", help="Run the trials on a Dask cluster, e.g. "
              "tcp://host:8786 (needs pip install 'sysid[parallel]').")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory "
              "(must not exist unless --force).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def sweep_cmd(config: Path, workers: int | None, scheduler: str | None, out: Path,
              force: bool) -> int:
    """Grid or random search over fit and model options in CONFIG's [sweep] table, ranked by the
    error on held-out data."""
    import tomllib

    from sysid.cli._config import read_config
    from sysid.cli._pipeline import read_data
    from sysid.cli.fit_cmd import _fit_config
    from sysid.parallel import Interrupted
    from sysid.parallel.sweeps import sweep

    check_new_output(out, force=force)
    if workers is not None and scheduler is not None:
        raise ConfigError("--workers (local processes) and --scheduler (a Dask cluster) exclude "
                          "each other; give one.")
    opts = read_config(config, extra=("sweep",))
    source = f"config file '{config}'"
    with open(config, "rb") as fh:
        table = _sweep_table(tomllib.load(fh), source)
    if not opts.path:
        raise ConfigError(f"{source}: [data] path is missing; a sweep reads its data from the file.")
    ds = read_data(opts.path, opts)
    base = _fit_config(opts, config, {})
    holdout = _holdout(table, opts, source)
    factory = _model_factory(opts, ds)
    executor = ParallelRequest(ensemble=2, workers=workers, scheduler=scheduler).executor()
    started = _time.time()
    done = [0]
    result, interrupted = None, False

    def report(i: int, trial: Any) -> None:
        done[0] += 1
        console.info(progress_line(done[0], total[0], f"trial {i}", trial))

    total = [0]
    from sysid.parallel.sweeps import trials

    total[0] = len(trials(table.get("grid"), table.get("random"), table.get("samples"),
                          int(table.get("seed", 0))))
    console.info(f"sweep of {total[0]} trials over {opts.path}")
    try:
        result = sweep(factory, ds, base, grid=table.get("grid"), random=table.get("random"),
                       samples=table.get("samples"), seed=int(table.get("seed", 0)),
                       validation=holdout, executor=executor, progress=False, callback=report)
    except Interrupted as exc:
        result, interrupted = exc.partial, True
    finally:
        if executor is not None and not isinstance(executor, str):
            executor.shutdown(wait=False, cancel_futures=True)
    _write_sweep(result, opts, table, out, force, started)
    if interrupted:
        print_error(f"sysid sweep: interrupted; the trials that finished were written to {out}.")
        return 130
    return 0


def _model_factory(opts: Any, ds: Any) -> Callable[..., Any]:
    import dataclasses

    from sysid.cli._pipeline import parse_model_spec
    from sysid.cli.fit_cmd import build_model

    def factory(**options: Any) -> Any:
        changes = dict(options)
        if "free" in changes and changes["free"] is not None:
            changes["free"] = tuple(changes["free"])
        o = dataclasses.replace(opts, **changes)
        return build_model(parse_model_spec(o.kind), o, ds)

    return factory


def _write_sweep(result: Any, opts: Any, table: dict, out: Path, force: bool,
                 started: float) -> None:
    import json
    import math

    import sysid
    from sysid.cli._config import dumps_toml
    from sysid.cli._pipeline import versions, write_json

    with atomic_dir(out, force=force) as tmp:
        result.table.to_csv(tmp / "sweep.csv", index=False)
        summary: dict[str, Any] = {"format": "sysid-sweep", "held_out": result.holdout,
                                   "trials": len(result.settings), "versions": versions(),
                                   "elapsed_s": round(_time.time() - started, 3)}
        try:
            best = result.best_trial
        except ConfigError as exc:
            summary["best"] = None
            summary["error"] = str(exc)
            best = None
        if best is not None:
            settings = result.best_settings
            resolved = opts.to_toml_dict()
            for key, value in settings.items():
                space, _, name = key.partition(".")
                if space == "model":
                    resolved["model"][name] = list(value) if isinstance(value, tuple) else value
            resolved["fit"] = {k: v for k, v in result.best_config.to_dict().items()
                               if k != "progress" and v is not None}
            if opts.path and not opts.path.startswith("dataset:"):
                resolved["data"]["path"] = str(Path(opts.path).resolve())
            score = float(result.table["score"].iloc[0])
            (tmp / "best.toml").write_text(dumps_toml(resolved, header=(
                f"Best trial ({best}) of 'sysid sweep': held-out error {score:.6g} on "
                f"{result.holdout}.\nRefit it with: sysid fit --config best.toml --out NEW_DIR")),
                encoding="utf-8")
            sysid.save_model(result.best_result.model, tmp / "best_model")
            summary["best"] = {"trial": best, "settings": settings, "score": score}
        records = json.loads(result.table.replace([math.inf, -math.inf], None).to_json(
            orient="records"))
        summary["table"] = records
        write_json(tmp / "sweep.json", summary)
    lines = [f"held out: {result.holdout}", result.table.head(5).drop(
        columns=["failure"], errors="ignore").to_string(index=False)]
    if summary.get("best"):
        lines.append(f"best trial {summary['best']['trial']}: {summary['best']['settings']}; "
                     f"wrote {out}/best.toml")
    console.info("\n".join(lines))
