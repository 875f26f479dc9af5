"""Setup time of a fit (smoothing, derivative estimates, scaling, windows) on wide data.

Task: 50 runs x 32 states x 1000 samples (sinusoids with 1 % noise), a 32-64-64-32 neural field.

Part 1 runs two variants side by side in this one process on the same arrays: the previous
smoother (one :func:`sysid.data.smoothing.local_polynomial` per run and state, as ``smooth_runs``
did before it was vectorised) and today's vectorised :func:`sysid.data.smoothing.smooth_runs`,
and prints their median times, the ratio and the largest difference of their results.

Part 2 times the whole setup of ``sysid.fit`` before the first epoch (``engine._setup``: data
checks, the one smoothing, scaling, prepared tensors, shooting plan, size check) plus the windows of
every stage of the curriculum, and prints how much of it each step takes. The previous setup
called the smoother twice (scaling and data preparation); part 1's loop time is what one such
call cost.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_setup.py [--repeats 3] [--runs 50]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch


def _median_time(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def loop_smoother(t, y, mask, lengths, points):
    """The previous ``smooth_runs``: a Python loop over runs and states."""
    from sysid.data.smoothing import local_polynomial

    R, N, S = y.shape
    val, d1, d2 = (np.full((R, N, S), np.nan) for _ in range(3))
    for r in range(R):
        n = int(lengths[r])
        for j in range(S):
            v, a, _ = local_polynomial(t[r, :n], y[r, :n, j], mask[r, :n, j], points, 2)
            _, _, c = local_polynomial(t[r, :n], y[r, :n, j], mask[r, :n, j],
                                       points + points // 2 * 2, 3)
            val[r, :n, j], d1[r, :n, j], d2[r, :n, j] = v, a, c
    return val, d1, d2


def data(runs: int, states: int, samples: int):
    import sysid

    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 10.0, samples)
    values = {f"x{j}": [np.sin((j + 1) * 0.3 * t + rng.uniform(0, 6))
                        + 0.01 * rng.standard_normal(samples) for _ in range(runs)]
              for j in range(states)}
    return sysid.from_arrays([t] * runs, values, states=list(values))


def part1(ds, repeats: int) -> None:
    from sysid.data import state_names, to_arrays
    from sysid.data.smoothing import smooth_runs

    arrays = to_arrays(ds, state_names(ds))
    args = (arrays.t, arrays.values, arrays.mask, arrays.lengths, 7)
    old, a = _median_time(lambda: loop_smoother(*args), repeats)
    new, b = _median_time(lambda: smooth_runs(*args), repeats)
    diff = max(float(np.nanmax(np.abs(x - z))) for x, z in zip(a, b))
    print(f"part 1: smoothing (value, 1st and 2nd derivative), median of {repeats}")
    print(f"  per-run, per-state loop   {old:8.3f} s")
    print(f"  vectorised smooth_runs    {new:8.3f} s   ratio loop/vectorised {old / new:6.1f}x")
    print(f"  largest difference        {diff:.2e}")


def part2(ds, repeats: int) -> None:
    import sysid
    from sysid.training import engine
    from sysid.training.windows import make_windows

    model = sysid.models.neural(sysid.data.state_names(ds), width=64, depth=2, seed=0)
    cfg = sysid.FitConfig(epochs=300, progress=False, optimizer={"batch_windows": 4096})

    def setup():
        started = time.perf_counter()
        ctx = engine._setup(model, ds, cfg, None)
        mid = time.perf_counter()
        windows = [make_windows(ctx.train.lengths, h, s) for h, _, s in ctx.plan.stages]
        return mid - started, time.perf_counter() - mid, sum(w.count for w in windows)

    results = [setup() for _ in range(repeats + 1)][1:]  # the first call imports
    fit_setup = statistics.median(r[0] for r in results)
    win = statistics.median(r[1] for r in results)
    print(f"part 2: fit setup before the first epoch, median of {repeats}")
    print(f"  engine._setup             {fit_setup:8.3f} s")
    print(f"  windows of every stage    {win:8.3f} s   ({results[0][2]} windows)")
    print(f"  total                     {fit_setup + win:8.3f} s   (goal: < 1 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--states", type=int, default=32)
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = data(args.runs, args.states, args.samples)
    print(f"{args.runs} runs x {args.states} states x {args.samples} samples; torch threads 1; "
          f"load average {os.getloadavg()[0]:.2f}")
    part1(ds, args.repeats)
    part2(ds, args.repeats)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
