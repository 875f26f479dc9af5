"""Time of ``sysid.simulate`` per solver, and sysid's fixed-step stepper against torchdiffeq's.

Task: 8 runs of 201 samples each over [0, 40] of (a) the Lotka-Volterra physics model (float64)
and (b) a 2-32-32-2 tanh neural field (float64), from the catalogue's typical initial states.

Part 1 times ``sysid.simulate`` with explicit settings (so the figures compare like with like across
versions of sysid): dopri5 at rtol 1e-6 / atol 1e-8, rk4 with one step per output interval, and,
where the installed sysid has it, SciPy's RK45 at rtol 1e-6 / atol 1e-8 (run by run, on the NumPy
export of the model). Run the script under two versions (``PYTHONPATH=old`` / ``PYTHONPATH=new``)
to compare them; the numbers are medians of ``--repeats`` runs in one process and one torch thread.

Part 2 runs two variants side by side in this one process: the same rk4 solve (same field, same
grid of 200 intervals, 8 runs batched) with sysid's own stepper (``sysid.solvers.solve``) and with
``torchdiffeq.odeint(method="rk4")``, and prints the ratio of their median times.

Run: ``python benchmarks/bench_simulate.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up (imports, first-call caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _models():
    import sysid

    lv = sysid.models.physics("lotka_volterra", dtype=torch.float64)
    net = sysid.models.neural(["prey", "predator"], width=32, depth=2, seed=0)
    net = net.to(torch.float64)
    return {"physics (Lotka-Volterra)": lv, "neural 2-32-32-2": net}


def part1(repeats: int) -> None:
    import sysid
    from sysid.errors import ConfigError

    t = np.linspace(0.0, 40.0, 201)
    rng = np.random.default_rng(0)
    y0 = np.column_stack([30.0 * np.exp(0.2 * rng.standard_normal(8)),
                          4.0 * np.exp(0.2 * rng.standard_normal(8))])
    settings = {
        "dopri5 1e-6": dict(method="dopri5", rtol=1e-6, atol=1e-8),
        "rk4 (1 step/interval)": dict(method="rk4"),
        "SciPy RK45 1e-6": dict(method="RK45", rtol=1e-6, atol=1e-8),
    }
    print(f"part 1: sysid.simulate, 8 runs x {t.size} samples, median of {repeats} (seconds)")
    for name, model in _models().items():
        for label, kw in settings.items():
            try:
                solver = sysid.SolverConfig(**kw)
                sysid.simulate(model, y0[:1], t[:2], solver=solver)
            except ConfigError:
                print(f"  {name:26s} {label:24s} not available in this version")
                continue
            sec = _median_time(lambda: sysid.simulate(model, y0, t, solver=solver), repeats)
            print(f"  {name:26s} {label:24s} {sec:8.4f}")


def part2(repeats: int) -> None:
    import torchdiffeq

    from sysid.models import SolverConfig, solve

    t = torch.linspace(0.0, 40.0, 201, dtype=torch.float64)
    print(f"part 2: rk4 over {t.numel() - 1} intervals, 8 runs batched, median of {repeats}")
    for name, model in _models().items():
        y0 = torch.tensor([[30.0, 4.0]] * 8, dtype=torch.float64)

        def field(s, y, model=model):
            return model(s, y, None)

        with torch.no_grad():
            own = _median_time(lambda: solve(field, y0, t, SolverConfig(method="rk4")), repeats)
            ref = _median_time(lambda: torchdiffeq.odeint(field, y0, t, method="rk4"), repeats)
        print(f"  {name:26s} sysid {own:.4f} s, torchdiffeq {ref:.4f} s, ratio sysid/torchdiffeq "
              f"{own / ref:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    part1(args.repeats)
    part2(args.repeats)


if __name__ == "__main__":
    main()
