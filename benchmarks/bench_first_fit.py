"""The first model and fit of a fresh process: with and without the imports torch made for them.

torch.optim's optimisers import ``torch._dynamo`` on their first use (the wrappers that keep
``torch.compile`` out of ``add_param_group`` and ``step``); sysid's optimisers call the wrapped
methods directly (:mod:`sysid.training.eager`), so a process that only fits never imports it.
``nn.utils.skip_init``, which built the networks' layers, imports sympy (through
``torch.fx.experimental.symbolic_shapes``) on its first call; ``neural.seeded_layers`` does not.
``scipy.stats`` (the parameter intervals' quantiles) is imported where it is used, which a neural
fit never reaches.
Each repeat starts three fresh Python processes in turn that build the default network and fit
``bench_fit_speed.py``'s task (seed 0, 40 epochs, no target: the same work in all) and time that
inside the process:

- "today": as sysid runs;
- "with skip_init's import": the same, with ``torch.fx.experimental.symbolic_shapes`` (and so
  sympy) imported first;
- "with scipy.stats": the same, with ``scipy.stats`` imported first;
- "before": ``torch._dynamo`` (the import inside the optimiser's construction; it imports sympy
  too) and ``scipy.stats`` imported first: what every process paid before.

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
import importlib
import sysid
train, test = make_data(0)
cfg = sysid.FitConfig(epochs=40, optimizer={{"lr": 1e-2}}, seed=0, progress=False,
                      validation={{"every": 5}})
start = time.perf_counter()
for name in {modules!r}:
    importlib.import_module(name)
model = sysid.models.neural(["prey", "predator"], width=32, depth=2, seed=0)
sysid.fit(model, train, cfg, validation=test)
print(time.perf_counter() - start, "torch._dynamo" in sys.modules, "sympy" in sys.modules)
"""

SKIP_INIT = "with skip_init's import"
VARIANTS = {"today": [], SKIP_INIT: ["torch.fx.experimental.symbolic_shapes"],
            "with scipy.stats": ["scipy.stats"], "before": ["torch._dynamo", "scipy.stats"]}


def one(modules: list[str]) -> tuple[float, float, str]:
    """(seconds of the model and fit, of the whole process, which of torch._dynamo and sympy
    the process imported)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD.format(here=str(HERE), modules=modules)],
                         capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    fit, dynamo, sympy = out.stdout.split()[-3:]
    return float(fit), wall, f"torch._dynamo {dynamo}, sympy {sympy}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    runs: dict[str, list[tuple[float, float, str]]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, modules in VARIANTS.items():
            runs[name].append(one(modules))
    med = {}
    for name, got in runs.items():
        med[name] = statistics.median(f for f, _, _ in got)
        print(f"{name:25s} model + fit {med[name]:.2f} s (median of {args.repeats}; "
              f"{min(f for f, _, _ in got):.2f}-{max(f for f, _, _ in got):.2f}), process "
              f"{statistics.median(w for _, w, _ in got):.2f} s; imported: "
              f"{sorted({i for _, _, i in got})}")
    print(f"first model + fit: with skip_init's import / today "
          f"{med[SKIP_INIT] / med['today']:.2f}, with scipy.stats / today "
          f"{med['with scipy.stats'] / med['today']:.2f}, before / today "
          f"{med['before'] / med['today']:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
