"""load_csv against pandas.read_csv on a long CSV: time and peak Python memory, side by side.

A CSV of ``--rows`` rows (columns run, t, x, y, u: a run id and four float columns printed with
17 significant digits) is written to a temporary folder; ``sysid.data.load_csv`` (long format,
``trajectory="run"``) and ``pandas.read_csv`` read it in turns in one process, ``--repeats``
times each. Printed: median wall time (untraced) and peak memory traced (in a separate call) by ``tracemalloc`` (NumPy and pandas
buffers included) for each, and their ratios (load_csv / pandas).

Run: ``python benchmarks/bench_load_csv.py [--rows 1000000] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd


def write_csv(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    runs = 10
    per = rows // runs
    frame = pd.DataFrame({
        "run": np.repeat([f"r{k}" for k in range(runs)], per),
        "t": np.tile(np.arange(per) * 0.01, runs),
        "x": rng.standard_normal(per * runs),
        "y": rng.standard_normal(per * runs) * 1e3,
        "u": rng.uniform(size=per * runs),
    })
    frame.to_csv(path, index=False, float_format="%.17g")


def measure(fn) -> tuple[float, float]:
    """Wall seconds of one call (untraced) and peak traced MiB of a second call."""
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from sysid.data import load_csv

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.csv"
        write_csv(path, args.rows)
        ours = {"t": [], "m": []}
        theirs = {"t": [], "m": []}
        for _ in range(args.repeats):
            t, m = measure(lambda: load_csv(path, time="t", states=["x", "y"], inputs=["u"],
                                            trajectory="run"))
            ours["t"].append(t)
            ours["m"].append(m)
            t, m = measure(lambda: pd.read_csv(path))
            theirs["t"].append(t)
            theirs["m"].append(m)
    to, tp = statistics.median(ours["t"]), statistics.median(theirs["t"])
    mo, mp = statistics.median(ours["m"]), statistics.median(theirs["m"])
    print(f"{args.rows} rows: load_csv {to:.2f} s, {mo:.0f} MiB peak | pandas.read_csv {tp:.2f} s, "
          f"{mp:.0f} MiB peak")
    print(f"ratio load_csv / pandas.read_csv: time {to / tp:.2f}x, peak memory {mo / mp:.2f}x")


if __name__ == "__main__":
    main()
