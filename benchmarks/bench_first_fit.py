"""The first fit of a fresh process: with and without torch's import of ``torch._dynamo``.

torch.optim's optimisers import ``torch._dynamo`` on their first use (the wrappers that keep
``torch.compile`` out of ``add_param_group`` and ``step``); sysid's optimisers call the wrapped
methods directly (:mod:`sysid.training.eager`), so a process that only fits never imports it. Each
repeat starts two fresh Python processes in turn that fit ``bench_fit_speed.py``'s task (seed 0,
40 epochs, no target: the same work in both) and time ``sysid.fit`` inside the process:

- "today": as sysid runs;
- "with torch._dynamo": the same, with ``import torch._dynamo`` as the fit's first step (what
  every fit paid before: the import inside the optimiser's construction).

Printed: the median seconds of each over the repeats and their ratio, and the median wall time
of the whole process (Python, imports, data, fit). Run:
``OMP_NUM_THREADS=1 python benchmarks/bench_first_fit.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = """
import sys, time
sys.path.insert(0, {here!r})
from bench_fit_speed import make_data
import sysid
train, test = make_data(0)
model = sysid.models.neural(["prey", "predator"], width=32, depth=2, seed=0)
cfg = sysid.FitConfig(epochs=40, optimizer={{"lr": 1e-2}}, seed=0, progress=False,
                      validation={{"every": 5}})
start = time.perf_counter()
if {dynamo}:
    import torch._dynamo
sysid.fit(model, train, cfg, validation=test)
print(time.perf_counter() - start, "torch._dynamo" in sys.modules)
"""


def one(dynamo: bool) -> tuple[float, float, bool]:
    """(seconds of the fit, of the whole process, whether torch._dynamo was imported)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD.format(here=str(HERE), dynamo=dynamo)],
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    fit, imported = out.stdout.split()[-2:]
    return float(fit), wall, imported == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    runs: dict[str, list[tuple[float, float, bool]]] = {"today": [], "with torch._dynamo": []}
    for _ in range(args.repeats):
        runs["today"].append(one(False))
        runs["with torch._dynamo"].append(one(True))
    med = {}
    for name, got in runs.items():
        med[name] = statistics.median(f for f, _, _ in got)
        print(f"{name:20s} fit {med[name]:.2f} s (median of {args.repeats}; "
              f"{min(f for f, _, _ in got):.2f}-{max(f for f, _, _ in got):.2f}), process "
              f"{statistics.median(w for _, w, _ in got):.2f} s, torch._dynamo imported: "
              f"{sorted({i for _, _, i in got})}")
    print(f"first fit: with torch._dynamo / today {med['with torch._dynamo'] / med['today']:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
