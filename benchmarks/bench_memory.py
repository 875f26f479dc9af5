"""Memory and time of backpropagating through long windows: direct vs gradient checkpointing.

Task: 32 windows of a 2-32-32-2 tanh neural field (float32), rk4 with one step per sample gap,
horizons of 500, 2000 and 8000 steps (``--horizons``); one forward pass through
:func:`sysid.solvers.solve_windows`, a squared-error loss and its backward pass.

Variants: ``direct`` (``SolverConfig(method="rk4")``: every step's activations kept) and
``checkpointed`` (``SolverConfig(method="rk4", checkpoint_steps=K)``, default K = 100: segments of K
steps recomputed in the backward pass). Each (variant, horizon) runs in its own fresh process, so its
peak resident memory is its own: printed is the peak RSS growth over the process's RSS just before
the solve (after a 10-step warm-up solve), and the time of forward + backward (median of
``--repeats`` in that process). Ratios
printed: checkpointed time / direct time per horizon (goal <= 2), and each variant's memory at the
longest horizon over its memory at the shortest (goal for checkpointed: flat, ~1). Last, both
variants run interleaved in this one process at ``--interleaved`` steps (median of ``--repeats``),
the fairer time ratio on a loaded machine.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_memory.py [--horizons 500,2000,8000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, time
import torch
from sysid.models import neural
from sysid.solvers import SolverConfig, solve_windows

torch.set_num_threads(1)
H, K, repeats = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
field = neural(["x", "v"], width=32, depth=2, seed=0).field
W = 32
t = torch.linspace(0.0, H * 0.01, H).expand(W, H).contiguous()
z0 = torch.randn(W, 2, generator=torch.Generator().manual_seed(0))
solver = SolverConfig(method="rk4", checkpoint_steps=None if K == "none" else int(K))

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

def once():
    field.zero_grad(set_to_none=True)
    z = solve_windows(lambda s, x, u: field(s, x, u), z0, t, solver=solver)
    z.pow(2).mean().backward()

t_short, keep_t = t[:, :10].contiguous(), t
t = t_short
once()  # warm-up: the first checkpointed call initialises torch's machinery (~1-2 s, once)
t = keep_t
before = rss()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    once()
    times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"peak_mb": (peak - before) / 2**20, "seconds": statistics.median(times)}))
"""


def child(horizon: int, steps: str, repeats: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(horizon), steps, str(repeats)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizons", default="500,2000,8000")
    parser.add_argument("--checkpoint-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--interleaved", type=int, default=1000)
    args = parser.parse_args()
    horizons = [int(h) for h in args.horizons.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f}; 32 windows, 2-32-32-2 tanh field, rk4, float32")
    variants = {"direct": "none", f"checkpointed (K={args.checkpoint_steps})":
                str(args.checkpoint_steps)}
    res: dict = {}
    for h in horizons:
        for name, steps in variants.items():
            res[name, h] = child(h, steps, args.repeats)
            r = res[name, h]
            print(f"  horizon {h:5d}  {name:22s} peak +{r['peak_mb']:8.1f} MiB  "
                  f"forward+backward {r['seconds']:7.3f} s", flush=True)
    ck = f"checkpointed (K={args.checkpoint_steps})"
    for h in horizons:
        print(f"  horizon {h:5d}: time checkpointed / direct "
              f"{res[ck, h]['seconds'] / res['direct', h]['seconds']:.2f}")
    lo, hi = horizons[0], horizons[-1]
    for name in variants:
        print(f"  {name:22s} memory at {hi} / at {lo} steps: "
              f"{res[name, hi]['peak_mb'] / max(res[name, lo]['peak_mb'], 1e-3):.2f}")
    interleaved(args.interleaved, args.checkpoint_steps, args.repeats + 1)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def interleaved(horizon: int, steps: int, repeats: int) -> None:
    import statistics
    import time

    import torch

    from sysid.models import neural
    from sysid.solvers import SolverConfig, solve_windows

    torch.set_num_threads(1)
    field = neural(["x", "v"], width=32, depth=2, seed=0).field
    t = torch.linspace(0.0, horizon * 0.01, horizon).expand(32, horizon).contiguous()
    z0 = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    solvers = {"direct": SolverConfig(method="rk4"),
               "checkpointed": SolverConfig(method="rk4", checkpoint_steps=steps)}

    def once(solver):
        field.zero_grad(set_to_none=True)
        solve_windows(lambda s, x, u: field(s, x, u), z0, t, solver=solver).pow(2).mean().backward()

    times: dict = {k: [] for k in solvers}
    for k, solver in solvers.items():
        once(solver)  # warm-up
    for _ in range(repeats):
        for k, solver in solvers.items():
            start = time.perf_counter()
            once(solver)
            times[k].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"  interleaved in one process, {horizon} steps, median of {repeats}: direct "
          f"{med['direct']:.3f} s, checkpointed {med['checkpointed']:.3f} s, ratio "
          f"{med['checkpointed'] / med['direct']:.2f}")


if __name__ == "__main__":
    main()
