"""Small physics problems: ``sysid.fit`` against a hand-written ``scipy.optimize.least_squares``.

A model without network weights and a handful of parameters goes straight to sysid's
least-squares estimator (``Refine(first_order="auto")``): Levenberg-Marquardt on single-shooting
residuals with a torch Jacobian, RK4 on a grid refined until the trajectories are accurate to 1 %
of the noise level. The baseline is what a scientist writes by hand: ``least_squares`` on
residuals from ``scipy.integrate.solve_ivp`` (RK45, rtol 1e-8, atol 1e-10), finite-difference
Jacobian, ``x_scale="jac"``, the same starting values and the same data. Both minimise the same
sum of squares in data units (``loss="sse"``).

Problems
    bod      First-order kinetics ``y' = k (A - y)``, ``y(0) = 0`` on the shipped ``bod`` data
             (6 samples); start A = 10, k = 0.2 (published optimum 19.143, 0.5311).
    pinene   Five-species linear kinetics of alpha-pinene isomerisation (Fuguitt & Hawkins 1947;
             Box, Hunter, MacGregor & Erjavec 1973; Bates & Watts 1988, A1.6), 9 irregular samples
             over 36420 min, five rates ~1e-5 /min in a user-written physics function, each
             started 2.5-3x off (least squares, Tjoa & Biegler 1991: 5.926, 2.963, 2.047, 27.47,
             4.008 x 1e-5).
    census   Logistic growth on the US census 1790-1910 (``us_population``), r, K and the 1790
             population estimated; start r = 0.02, K = 300 (least squares 0.03155, 190.7).

Each pair runs interleaved in one process on one torch thread, ``--repeats`` times; the table
gives median wall times (sysid: the whole ``fit`` call - checks, scaling, refinement, covariance),
their ratio and the largest relative difference between the two parameter estimates.

Run: ``python benchmarks/bench_small_problems.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

PINENE_T = [0.0, 1230.0, 3060.0, 4920.0, 7800.0, 10680.0, 15030.0, 22620.0, 36420.0]
PINENE_Y = [
    [100.0, 88.35, 76.4, 65.1, 50.4, 37.5, 25.9, 14.0, 4.5],
    [0.0, 7.3, 15.6, 23.1, 32.9, 42.7, 49.1, 57.4, 63.1],
    [0.0, 2.3, 4.5, 5.3, 6.0, 6.0, 5.9, 5.1, 3.8],
    [0.0, 0.4, 0.7, 1.1, 1.5, 1.9, 2.2, 2.6, 2.9],
    [0.0, 1.75, 2.8, 5.8, 9.3, 12.0, 17.0, 21.0, 25.7],
]
PINENE_START = {"k1": 1.5e-4, "k2": 1.0e-5, "k3": 6.0e-5, "k4": 1.0e-4, "k5": 1.2e-4}


def pinene_rhs(t, x, u, p, xp):
    """alpha-pinene -> dipentene (k1), -> allo-ocimene (k2); allo-ocimene -> pyronenes (k3),
    <-> dimer (k4, k5)."""
    y1, y3, y5 = x[..., 0], x[..., 2], x[..., 4]
    return xp.stack([-(p["k1"] + p["k2"]) * y1, p["k1"] * y1,
                     p["k2"] * y1 - (p["k3"] + p["k4"]) * y3 + p["k5"] * y5,
                     p["k3"] * y3, p["k4"] * y3 - p["k5"] * y5])


def problems():
    """``name -> (model factory, dataset, fit options, scipy residual fn, scipy start, names)``."""
    from sysid import datasets
    from sysid.data import from_arrays
    from sysid.models import Parameter, physics

    bod = datasets.load("bod")
    t_bod = np.concatenate([[0.0], bod["time"].values[0]])
    y_bod = np.concatenate([[0.0], bod["demand"].values[0]])
    bod_ds = from_arrays([t_bod], {"y": [y_bod]}, states=["y"], runs=["bod"])

    def bod_res(q):
        from scipy.integrate import solve_ivp

        a, k = q
        s = solve_ivp(lambda tt, y: k * (a - y), (0.0, t_bod[-1]), [0.0], t_eval=t_bod,
                      rtol=1e-8, atol=1e-10)
        return s.y[0][1:] - y_bod[1:]

    pin_ds = from_arrays([np.array(PINENE_T)], {f"y{i + 1}": [np.array(v)] for i, v in enumerate(PINENE_Y)},
                         states=[f"y{i + 1}" for i in range(5)], runs=["pinene"])
    yp = np.array(PINENE_Y)

    def pin_res(q):
        from scipy.integrate import solve_ivp

        p = dict(zip(PINENE_START, q))
        s = solve_ivp(lambda tt, y: pinene_rhs(tt, y, None, p, np), (0.0, PINENE_T[-1]), yp[:, 0],
                      t_eval=PINENE_T, rtol=1e-8, atol=1e-10)
        return (s.y[:, 1:] - yp[:, 1:]).ravel()

    def pin_model():
        params = {k: Parameter(v, bounds=(0.0, np.inf), units="1/min") for k, v in PINENE_START.items()}
        return physics(pinene_rhs, params, [f"y{i + 1}" for i in range(5)])

    census = datasets.load("us_population")
    tc, nc = census["time"].values[0], census["population"].values[0]
    keep = tc <= 1910
    tc, nc = tc[keep], nc[keep]
    cen_ds = from_arrays([tc], {"N": [nc]}, states=["N"], runs=["us"])

    def cen_res(q):
        from scipy.integrate import solve_ivp

        r, k, n0 = q
        s = solve_ivp(lambda tt, n: r * n * (1 - n / k), (tc[0], tc[-1]), [n0], t_eval=tc,
                      rtol=1e-8, atol=1e-10)
        return s.y[0] - nc

    return {
        "bod": (lambda: physics("first_order_kinetics", values={"A": 10.0, "k": 0.2}), bod_ds, {},
                bod_res, [10.0, 0.2], ["A", "k"]),
        "pinene": (pin_model, pin_ds, {}, pin_res, list(PINENE_START.values()), list(PINENE_START)),
        "census": (lambda: physics("logistic", values={"r": 0.02, "K": 300.0}), cen_ds,
                   {"initial_states": "free"}, cen_res, [0.02, 300.0, float(nc[0])],
                   ["r", "K", "x0[us].N"]),
    }


def run_sysid(factory, data, options):
    from sysid.training import FitConfig, fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit(factory(), data, FitConfig(loss="sse", progress=False, **options))
    values = {str(n): float(v) for n, v in zip(result.parameters["name"], result.parameters["value"])}
    for (run, row) in result.initial_states.iterrows():
        for state, v in row.items():
            values[f"x0[{run}].{state}"] = float(v)
    return values, result


def run_scipy(res, start):
    from scipy.optimize import least_squares

    return least_squares(res, start, x_scale="jac").x


def main(argv=None) -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for name, (factory, data, options, res, start, names) in problems().items():
        run_sysid(factory, data, options)  # first call: imports and caches outside the timing
        t_sysid, t_scipy = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ours, result = run_sysid(factory, data, options)
            t1 = time.perf_counter()
            ref = run_scipy(res, start)
            t2 = time.perf_counter()
            t_sysid.append(t1 - t0)
            t_scipy.append(t2 - t1)
        diff = max(abs(ours[n] - r) / abs(r) for n, r in zip(names, ref))
        a, b = statistics.median(t_sysid), statistics.median(t_scipy)
        rows.append((name, a, b, a / b, diff, result.convergence.reason.value,
                     result.convergence.iterations, result.solver_stats.get("route")))
        print(f"{name}: sysid {dict((n, round(ours[n], 10)) for n in names)}")
        print(f"{name}: scipy {dict(zip(names, np.round(ref, 10)))}")
    print()
    print(f"{'problem':8s} {'sysid [s]':>10s} {'scipy [s]':>10s} {'ratio':>6s} {'max rel diff':>13s}  "
          f"sysid stopped")
    for name, a, b, ratio, diff, reason, its, route in rows:
        print(f"{name:8s} {a:10.3f} {b:10.3f} {ratio:6.2f} {diff:13.2e}  {reason} after {its} "
              f"iterations ({route})")


if __name__ == "__main__":
    main()
