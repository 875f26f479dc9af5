"""Scale: many runs through the whole workflow (issue 17, item 7).

Two data sets, each through every step a ``sysid fit`` command takes, each step timed on its own:

- ``10000 x 3``: 10 000 runs of 3 samples (logistic growth from random starts, closed form);
  ``physics:logistic`` with r and K free.
- ``1000 x 5000``: 1000 runs of 5000 samples (damped oscillations from random starts, closed
  form); ``physics:damped_oscillator`` with omega and zeta free. Multiple shooting over 5 million
  samples does not fit in memory in one batch (the fit's size check refuses it before starting,
  as it should), so this fit uses ``optimizer.batch_windows`` and ``shooting.stride``.

Steps: ``build`` (``from_arrays``), ``to_csv`` and ``load_csv`` (the CSV round trip), ``fit``
(a few epochs; ``max_time`` = 0.8 x the step limit bounds it), ``metrics`` (the CLI's free-run metrics of every run,
``sysid.cli.evaluate.fit_metrics``), ``report`` (``sysid.report``: HTML, Markdown, JSON,
figures). A step over ``--step-limit`` seconds is stopped through ``sysid.budget`` (where the
step checks the budget) and reported as "stopped after N s" - no figure is derived from a limit.

Times are wall-clock seconds of one run on one torch thread; they depend on the machine and its
load (this is a scale check, not a speed comparison). Run:
``python benchmarks/bench_scale.py [--cases 10000x3,1000x5000] [--epochs 5] [--step-limit 900]``.

Measured 30 Nov 2026 on the shared 2-core machine, one case at a time (wall seconds):

- ``python benchmarks/bench_scale.py --cases 10000x3 --step-limit 240`` (load average 3.4-3.7):
  build 1.5, to_csv 0.1, load_csv 2.5, fit 7.7, metrics 2.8, report 13.8 (before the metrics and
  report read every run once and integrated the runs together: metrics 104.8, report 230.1 at
  load 7.7-9.8).
- ``python benchmarks/bench_scale.py --cases 1000x5000 --step-limit 420`` (load 2.1-2.9): build
  2.1, to_csv 13.4, load_csv 8.4, fit 89.7 (5 epochs), metrics 4.7, report 19.5 (before: fit
  233.5, metrics 287.2, report 414.6 at load 5.3 -> 2.8).

The metrics and the report's free runs are SciPy RK45 solves, up to 256 runs stacked in one
``solve_ivp`` (:func:`sysid.solvers.ivp.solve_scipy_runs`); the report simulates densely and
draws only the first 8 runs and shows the first 60 rows of its per-run tables (``report.json``
has all). An earlier run of the same day gave the 1000 x 5000 fit 368 s with ``max_time`` 336:
the refinement, which skips this size as too large, first built its integration grid with a
Python loop over 5 million sample gaps (~100 s, no deadline check); now built per run with
tensor ops (0.5 s). At this size ``max_time`` 40 and 100 s gave fits of 40.5 and 100.6 s.

``--csv-writers N`` compares, side by side in this process (interleaved, median of 3), the CSV
writer ``to_csv`` had before (one ``csv.writer`` row per sample, kept below as the reference)
with today's (column by column) on N runs of 5000 samples, checks they write the same bytes and
prints the ratio.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch


class _StepTimeout(BaseException):
    pass


def _timed(name: str, fn: Callable[[], Any], limit: float, table: list) -> Any:
    """Run one step under an alarm of ``limit`` seconds; record its time or that it was stopped."""
    def alarm(signum, frame):
        raise _StepTimeout

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    started = time.perf_counter()
    try:
        out = fn()
        table.append((name, f"{time.perf_counter() - started:.1f}"))
    except _StepTimeout:
        out = None
        table.append((name, f"stopped after {limit:.0f} s"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    print(f"  {name:<10} {table[-1][1]}", flush=True)
    return out


def logistic_runs(n_runs: int, n_obs: int, seed: int = 0):
    import sysid

    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 2.0, n_obs)
    starts = rng.uniform(1.0, 3.0, n_runs)
    values = [10.0 / (1.0 + (10.0 / a - 1.0) * np.exp(-0.8 * t)) for a in starts]
    ds = sysid.from_arrays([t] * n_runs, {"N": values}, states=["N"])
    model = sysid.models.physics("logistic", free=["r", "K"], values={"r": 0.5, "K": 8.0})
    return ds, model, {}


def oscillator_runs(n_runs: int, n_obs: int, seed: int = 0):
    import sysid

    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 50.0, n_obs)
    omega, zeta = 2.0, 0.05
    wd = omega * np.sqrt(1 - zeta**2)
    xs, vs = [], []
    for x0, v0 in zip(rng.uniform(-1, 1, n_runs), rng.uniform(-1, 1, n_runs)):
        a, b = x0, (v0 + zeta * omega * x0) / wd
        env = np.exp(-zeta * omega * t)
        x = env * (a * np.cos(wd * t) + b * np.sin(wd * t))
        v = env * ((-zeta * omega) * (a * np.cos(wd * t) + b * np.sin(wd * t))
                   + wd * (-a * np.sin(wd * t) + b * np.cos(wd * t)))
        xs.append(x)
        vs.append(v)
    ds = sysid.from_arrays([t] * n_runs, {"x": xs, "v": vs}, states=["x", "v"])
    model = sysid.models.physics("damped_oscillator", free=["omega", "zeta"],
                                 values={"omega": 1.8, "zeta": 0.1})
    fit = {"optimizer": {"batch_windows": 4096}, "shooting": {"method": "multiple", "stride": 50}}
    return ds, model, fit


CASES = {"10000x3": (logistic_runs, 10_000, 3), "1000x5000": (oscillator_runs, 1000, 5000)}


def run_case(name: str, epochs: int, limit: float) -> list:
    import sysid
    from sysid.cli.evaluate import fit_metrics

    make, n_runs, n_obs = CASES[name]
    print(f"{name}: {n_runs} runs x {n_obs} samples", flush=True)
    table: list = []
    built = _timed("build", lambda: make(n_runs, n_obs), limit, table)
    if built is None:
        return table
    ds, model, fit_options = built
    states = sysid.data.state_names(ds)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        _timed("to_csv", lambda: sysid.data.to_csv(ds, path), limit, table)
        _timed("load_csv", lambda: sysid.load_csv(path, time="time", states=states,
                                                  trajectory="trajectory"), limit, table)
        # max_time below the step's alarm, so that a fit cut short by its own budget returns its
        # model (and metrics and report run on it) instead of being stopped by the alarm
        cfg = sysid.FitConfig(epochs=epochs, progress=False, max_time=0.8 * limit,
                              refine={"stderr": False}, **fit_options)
        result = _timed("fit", lambda: sysid.fit(model, ds, cfg), limit, table)
        if result is None:
            return table
        _timed("metrics", lambda: fit_metrics(result, ds, held_out=[]), limit, table)
        _timed("report", lambda: sysid.report(result, ds, out=Path(tmp) / "report"), limit, table)
    return table


def _to_csv_row_by_row(ds, path: Path) -> None:
    """The previous ``sysid.data.to_csv`` body (reference for ``--csv-writers``)."""
    import csv

    from sysid.data.files import _header, safe_cell
    from sysid.data.schema import TIME, TRAJ, input_names, run_ids, run_length, state_names

    names = state_names(ds) + input_names(ds)
    head = ["trajectory", _header("time", str(ds[TIME].attrs.get("units", "")))]
    head += [_header(n, str(ds[n].attrs.get("units", ""))) for n in names]
    with open(path, "x", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(head)
        for rid in run_ids(ds):
            n = run_length(ds, rid)
            one = ds.sel({TRAJ: rid})
            cols = [one[TIME].values[:n]] + [one[v].values[:n] for v in names]
            cell = safe_cell(str(rid))
            for k in range(n):
                writer.writerow([cell] + ["" if np.isnan(c[k]) else repr(float(c[k])) for c in cols])


def compare_csv_writers(n_runs: int) -> None:
    import statistics

    import sysid

    ds, _, _ = oscillator_runs(n_runs, 5000)
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(3):
            t0 = time.perf_counter()
            _to_csv_row_by_row(ds, Path(tmp) / f"old{k}.csv")
            t1 = time.perf_counter()
            sysid.data.to_csv(ds, Path(tmp) / f"new{k}.csv")
            t2 = time.perf_counter()
            assert (Path(tmp) / f"old{k}.csv").read_bytes() == (Path(tmp) / f"new{k}.csv").read_bytes()
            ratios.append((t1 - t0) / (t2 - t1))
            print(f"  repeat {k + 1}: row by row {t1 - t0:.1f} s, column by column {t2 - t1:.1f} s",
                  flush=True)
    print(f"to_csv, {n_runs} runs x 5000 samples: row-by-row / column-by-column time = "
          f"{statistics.median(ratios):.1f} (median of 3; range {min(ratios):.1f}-{max(ratios):.1f}); "
          f"same bytes written")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--step-limit", type=float, default=900.0, help="seconds per step")
    parser.add_argument("--csv-writers", type=int, default=0, metavar="N",
                        help="only compare the CSV writers on N runs of 5000 samples")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    if args.csv_writers:
        compare_csv_writers(args.csv_writers)
        return
    results = {c: run_case(c, args.epochs, args.step_limit) for c in args.cases.split(",")}
    print("\n| case | " + " | ".join(name for name, _ in next(iter(results.values()))) + " |")
    for case, table in results.items():
        print(f"| {case} | " + " | ".join(value for _, value in table) + " |")
    print("(seconds, wall clock, one torch thread)")


if __name__ == "__main__":
    main()
