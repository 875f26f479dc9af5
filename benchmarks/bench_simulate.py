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

Part 3 runs, side by side, the whole ``sysid.simulate`` call (rk4, one step per output interval:
planning, the batched solve and the returned dataset) and a plain batched torch RK4 loop over the
same 200 steps calling the same model (``y + h/6 (k1 + 2 k2 + 2 k3 + k4)`` with tensor times, in
``torch.no_grad``), and prints the ratio (goal: <= 1.2).

Part 4 runs, side by side, the default adaptive ``sysid.simulate`` (dopri5, rtol 1e-6, atol 1e-8)
and one vectorised ``scipy.integrate.solve_ivp`` (RK45) of all runs stacked in one state vector on
the model's NumPy field, for 8 and for 1000 runs, and prints the ratios (goal: < 1). Two
baselines: ``solve_ivp`` at the same rtol/atol (one root mean square over all R runs' elements:
a run's own error may reach sqrt(R) times the tolerance, as it is diluted by the others') and
``solve_ivp`` at rtol/sqrt(R), atol/sqrt(R) (each run's own error norm within rtol/atol at every
step: what ``simulate`` guarantees, and what ``sysid.solvers.ivp.solve_scipy_runs`` does). For
each variant the worst run's error against a tight reference (DOP853, rtol 1e-12/sqrt(R), atol
1e-14/sqrt(R)) is printed in units of the tolerance (``atol + rtol * abs(y)``, largest over
times, states and runs), so the accuracy each buys is beside its time. A third baseline compares
at equal accuracy: ``solve_ivp`` at rtol/k, atol/k for the smallest k of 1, 1.5, 2, 3, 4, 6, ...
(up to sqrt(R)) whose worst run is no less accurate than ``simulate``'s. ``simulate`` is timed whole: planning, the solve and the returned dataset; beside it,
sysid's stepper alone (``sysid.solvers.solve_numpy``) on the same NumPy field as SciPy's and,
for the networks, the stepper with its stages evaluated through the field's in-place form
(``into=``, :func:`sysid.models.numpy_fields.in_place`: what ``simulate`` runs). Three
models: the physics model, the untrained network (nearly linear: its solve is a handful of steps,
~1 ms for 8 runs, so the fixed costs of a Dataset result weigh most; part 6 splits them) and the
same network fitted to the Lotka-Volterra runs (``sysid.fit``, 100 epochs: a field that
oscillates, as fitted models do; its solve takes ~130 steps).
Part 6 splits one ``simulate`` call of 8 runs of the network (the case where the solve is short)
into the stepper alone (on the plain field, and with the field in place as ``simulate`` runs it;
what ``simulate`` costs beyond the latter is printed last), ``from_block`` of the result (what ``simulate`` builds: a shallow copy of
the Dataset's frame, kept from the previous call, around one block of values), ``from_arrays`` of
it and a bare ``xarray.Dataset`` of the same arrays built from scratch, each beside one
vectorised ``solve_ivp``: the fixed costs a Dataset result carries.

Part 7 times two pieces of every adaptive NumPy solve side by side: the Lotka-Volterra field's
NumPy evaluation (its ``xp.stack``) with ``NUMPY.stack`` as it was (``np.broadcast_arrays`` then
``np.stack``) and as it is (float64 arrays of one shape written into one block), and the step
control's per-run norm (``run_norm``: each run's squares summed by ``einsum`` and, as now, by a
product with ones), for 8 and 1000 runs; it prints the ratios.

In parts 3, 4, 6 and 7 each of the ``--repeats`` samples times enough back-to-back calls of a variant
to last ~50 ms (a 1 ms call read once from the clock is mostly the machine's other work), and the
ratio is of the medians of the per-call times.

Part 5 times the command line ``sysid simulate`` of one 600-step run (a fresh process: start-up
included) of the saved Lotka-Volterra model and of a saved 2-32-32-2 network, both read by
``sysid.io.load_dynamics`` and simulated without importing torch (dopri5, the default), and of
the Lotka-Volterra model with ``--method rk4`` (a torch method: the torch model is loaded, as
every simulation was before), beside processes that only import xarray (the floor of the NumPy
route, which returns a dataset), torch, and torch and xarray (the floor of any torch
simulation): wall time and CPU time (user + system of the child; on a loaded machine the CPU
time is the better estimate of the wall time on an idle one), after one warm-up run of each with
bytecode caching on (as an installed package has its ``.pyc`` files). The goal (issue #13):
under 1.5 s wall on an idle machine. The load average is printed with each figure.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_simulate.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def plain_rk4(f, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A plain batched RK4 loop, as one would write it by hand."""
    ys = [y0]
    y = y0
    for i in range(t.numel() - 1):
        ti, h = t[i], t[i + 1] - t[i]
        k1 = f(ti, y)
        k2 = f(ti + h / 2, y + h / 2 * k1)
        k3 = f(ti + h / 2, y + h / 2 * k2)
        k4 = f(ti + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        ys.append(y)
    return torch.stack(ys)


def _y0(runs: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.column_stack([30.0 * np.exp(0.2 * rng.standard_normal(runs)),
                            4.0 * np.exp(0.2 * rng.standard_normal(runs))])


def _fitted_network():
    """The 2-32-32-2 network fitted by ``sysid.fit`` (100 epochs, float64) to 8 runs of the
    Lotka-Volterra model: a field that oscillates, as a fitted model's does. The untrained network
    of :func:`_models` is nearly linear, and its solve takes a handful of steps."""
    import sysid

    lv = _models()["physics (Lotka-Volterra)"]
    data = sysid.simulate(lv, _y0(8), np.linspace(0.0, 40.0, 201))
    net = sysid.models.neural(["prey", "predator"], width=32, depth=2, seed=0)
    cfg = sysid.FitConfig(epochs=100, progress=False, dtype="float64")
    return sysid.fit(net, data, config=cfg).model


def _interleaved(fns: dict, repeats: int, sample: float = 0.05) -> dict:
    """Median time per call of each function, the variants interleaved (same load for each).

    Each of the ``repeats`` samples times enough back-to-back calls to last about ``sample``
    seconds (the count fixed per variant from its warm-up call), so a 1 ms call is not measured
    by a single reading of the clock amid the machine's other work."""
    loops = {}
    for k, fn in fns.items():  # warm-up, and the calls per sample
        start = time.perf_counter()
        fn()
        loops[k] = max(1, int(sample / max(time.perf_counter() - start, 1e-6)))
    times: dict = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            for _ in range(loops[k]):
                fn()
            times[k].append((time.perf_counter() - start) / loops[k])
    return {k: statistics.median(v) for k, v in times.items()}


def part3(repeats: int) -> None:
    import sysid

    t = np.linspace(0.0, 40.0, 201)
    y0 = _y0()
    print(f"part 3: rk4, 200 steps, 8 runs; sysid.simulate vs a plain batched torch RK4 loop "
          f"(median of {repeats}, interleaved)")
    for name, model in _models().items():
        tt = torch.as_tensor(t)
        y0_t = torch.as_tensor(y0)

        def plain(model=model):
            with torch.no_grad():
                return plain_rk4(lambda s, y: model(s, y, None), y0_t, tt)

        def simulate(model=model):
            return sysid.simulate(model, y0, t, solver="rk4")

        ref = plain().numpy()
        got = np.stack([simulate()[n].values for n in ("prey", "predator")], axis=-1)
        gap = float(np.max(np.abs(got - ref.transpose(1, 0, 2))))
        med = _interleaved({"plain": plain, "simulate": simulate}, repeats)
        print(f"  {name:33s} simulate {med['simulate']:.4f} s, plain loop {med['plain']:.4f} s, "
              f"ratio {med['simulate'] / med['plain']:.2f} (largest difference {gap:.1e})")


def _stacked(fn, R: int, S: int):
    """The field of all runs in one state vector, as ``solve_ivp`` takes it."""
    return lambda s, y: fn(np.full(R, s), y.reshape(R, S), None).reshape(-1)


def _ivp(f, y0: np.ndarray, t: np.ndarray, rtol: float, atol: float, method: str = "RK45") -> np.ndarray:
    """One vectorised ``solve_ivp`` of all runs stacked: ``(R, N, S)``."""
    import scipy.integrate

    R, S = y0.shape
    sol = scipy.integrate.solve_ivp(f, (t[0], t[-1]), y0.reshape(-1), t_eval=t, method=method,
                                    rtol=rtol, atol=atol)
    return sol.y.T.reshape(len(t), R, S).transpose(1, 0, 2)


def _worst_run(got: np.ndarray, ref: np.ndarray, rtol: float = 1e-6, atol: float = 1e-8) -> float:
    """The worst run's largest error against ``ref`` in tolerance units ``atol + rtol * abs(ref)``."""
    return float(np.max(np.abs(got - ref) / (atol + rtol * np.abs(ref))))


def _matched(f, y0: np.ndarray, t: np.ndarray, ref: np.ndarray, target: float,
             most: float) -> tuple[float, float]:
    """The smallest k of 1, 1.5, 2, 3, 4, ... up to ``most`` for which ``solve_ivp`` at rtol/k,
    atol/k has its worst run's error (tolerance units) at or below ``target``, and that error."""
    grid = [k for k in (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64) if k < most] + [most]
    for k in grid:
        err = _worst_run(_ivp(f, y0, t, 1e-6 / k, 1e-8 / k), ref)
        if err <= target:
            return k, err
    return grid[-1], err


def part4(repeats: int) -> None:
    import sysid
    from sysid.models.numpy_fields import in_place
    from sysid.solvers import solve_numpy

    t = np.linspace(0.0, 40.0, 201)
    print(f"part 4: adaptive, rtol 1e-6 atol 1e-8; default sysid.simulate (dopri5) vs one vectorised "
          f"solve_ivp (RK45) of all runs, at the same tolerances and at tolerances / sqrt(R) (each run's "
          f"own error within them, as simulate); ratios of medians of {repeats}, interleaved; errors: the "
          f"worst run's, in tolerance units, against DOP853 at 1e-12/sqrt(R)")
    models = {**_models(), "neural fitted to Lotka-Volterra": _fitted_network()}
    for runs in (8, 1000):
        y0 = _y0(runs)
        R, S = y0.shape
        shrink = float(np.sqrt(R))
        for name, model in models.items():
            fn = model.field.numpy_function()
            f = _stacked(fn, R, S)

            def ivp(f=f):  # same tolerances: the RMS over all runs within them
                return _ivp(f, y0, t, 1e-6, 1e-8)

            def ivp_run(f=f):  # each run's own RMS within rtol/atol (solve_scipy_runs' rule)
                return _ivp(f, y0, t, 1e-6 / shrink, 1e-8 / shrink)

            def simulate(model=model):
                return sysid.simulate(model, y0, t)

            def stepper(fn=fn):  # sysid's stepper alone on the same NumPy field
                return solve_numpy(lambda s, y: fn(np.full(R, s), y, None), y0, t)

            g = in_place(fn, R)

            def stepper_in_place(fn=fn, g=g):  # ... with the stages through its in-place form
                return solve_numpy(lambda s, y: fn(np.full(R, s), y, None), y0, t,
                                   into=lambda s, y, out: g(s, y, None, out))

            ref = _ivp(f, y0, t, 1e-12 / shrink, 1e-14 / shrink, method="DOP853")
            got = np.stack([simulate()[n].values for n in ("prey", "predator")], axis=-1)
            errors = {"simulate": _worst_run(got, ref), "ivp": _worst_run(ivp(), ref),
                      "ivp_run": _worst_run(ivp_run(), ref)}
            # equal accuracy: solve_ivp at the loosest tolerances / k (k from 1 to sqrt(R)) whose
            # worst run is no less accurate than simulate's
            k, errors["ivp_matched"] = _matched(f, y0, t, ref, errors["simulate"], shrink)

            def ivp_matched(f=f, k=k):
                return _ivp(f, y0, t, 1e-6 / k, 1e-8 / k)

            variants = {"ivp": ivp, "ivp_run": ivp_run, "ivp_matched": ivp_matched,
                        "simulate": simulate, "stepper": stepper}
            if g is not None:
                variants["in place"] = stepper_in_place
            med = _interleaved(variants, repeats)
            alone = f"{med['stepper'] / med['ivp']:.2f}"
            if g is not None:
                alone += f", in place {med['in place'] / med['ivp']:.2f}"
            print(f"  {runs:5d} runs {name:33s} simulate {med['simulate']:.4f} s (error {errors['simulate']:.1f}); "
                  f"solve_ivp same tol {med['ivp']:.4f} s (error {errors['ivp']:.1f}), ratio "
                  f"{med['simulate'] / med['ivp']:.2f}; solve_ivp tol/sqrt(R) {med['ivp_run']:.4f} s (error "
                  f"{errors['ivp_run']:.1f}), ratio {med['simulate'] / med['ivp_run']:.2f}; solve_ivp at "
                  f"equal accuracy (tol/{k:g}) {med['ivp_matched']:.4f} s (error {errors['ivp_matched']:.1f}), "
                  f"ratio {med['simulate'] / med['ivp_matched']:.2f}; the stepper alone "
                  f"{alone} x solve_ivp same tol (load {os.getloadavg()[0]:.1f})")


def part6(repeats: int) -> None:
    import scipy.integrate
    import xarray as xr

    import sysid
    from sysid.data import from_arrays
    from sysid.data.schema import from_block
    from sysid.models.numpy_fields import in_place
    from sysid.solvers import solve_numpy

    t = np.linspace(0.0, 40.0, 201)
    y0 = _y0(8)
    R, S = y0.shape
    model = _models()["neural 2-32-32-2"]
    fn = model.field.numpy_function()
    g = in_place(fn, R)
    ds = sysid.simulate(model, y0, t)
    names = ["prey", "predator"]
    arrays = {n: ds[n].values.copy() for n in names}
    t_runs = [t] * R
    ids = [f"run{i}" for i in range(R)]
    block = np.stack([np.tile(t, (R, 1))] + [arrays[n] for n in names])
    attrs = {k: ds.attrs[k] for k in ("source", "solver")}

    def ivp():
        return scipy.integrate.solve_ivp(lambda s, y: fn(np.full(R, s), y.reshape(R, S), None).reshape(-1),
                                         (t[0], t[-1]), y0.reshape(-1), t_eval=t, method="RK45",
                                         rtol=1e-6, atol=1e-8)

    def ivp_run():  # each run's own error within rtol/atol, as simulate's
        return scipy.integrate.solve_ivp(lambda s, y: fn(np.full(R, s), y.reshape(R, S), None).reshape(-1),
                                         (t[0], t[-1]), y0.reshape(-1), t_eval=t, method="RK45",
                                         rtol=1e-6 / np.sqrt(R), atol=1e-8 / np.sqrt(R))

    def dataset():  # the bare xarray object of the same arrays: the floor of any Dataset result
        return xr.Dataset({n: (("trajectory", "obs"), a, {"role": "state"}) for n, a in arrays.items()},
                          coords={"trajectory": ("trajectory", np.array(ids, dtype=object)),
                                  "time": (("trajectory", "obs"), np.tile(t, (R, 1)), {"units": ""})})

    fns = {
        "solve_ivp": ivp,
        "solve_ivp, tol / sqrt(8)": ivp_run,
        "simulate": lambda: sysid.simulate(model, y0, t),
        "stepper alone": lambda: solve_numpy(lambda s, y: fn(np.full(R, s), y, None), y0, t),
        "stepper, field in place": lambda: solve_numpy(lambda s, y: fn(np.full(R, s), y, None), y0, t,
                                                       into=lambda s, y, out: g(s, y, None, out)),
        "from_block of the result": lambda: from_block(block.copy(), states=names, runs=ids, attrs=attrs),
        "from_arrays of the result": lambda: from_arrays(t_runs, {n: list(a) for n, a in arrays.items()},
                                                         states=names, runs=ids),
        "bare xarray Dataset": dataset,
    }
    med = _interleaved(fns, repeats)
    print(f"part 6: where one simulate call of 8 runs of the network goes (median of {repeats}, "
          f"interleaved; load {os.getloadavg()[0]:.1f})")
    for key, sec in med.items():
        print(f"  {key:28s} {sec * 1e3:7.3f} ms  {sec / med['solve_ivp']:5.2f} x solve_ivp")
    print(f"  simulate / solve_ivp at tol / sqrt(8) (the same guarantee per run): "
          f"{med['simulate'] / med['solve_ivp, tol / sqrt(8)']:.2f}")
    beyond = med["simulate"] - med["stepper, field in place"]
    print(f"  simulate beyond the stepper  {beyond * 1e3:7.3f} ms (the stepper with the field in place, as simulate)")


def part7(repeats: int) -> None:
    import dataclasses

    import sysid.backend as backend
    from sysid.solvers.dopri import run_norm

    def stack_before(items):
        return np.stack(np.broadcast_arrays(*[np.asarray(i, dtype=float) for i in items]), axis=-1)

    def norm_einsum(x, runs):
        r = x.reshape(runs, -1)
        return float(np.sqrt(np.einsum("ij,ij->i", r, r).max() / r.shape[1]))

    field = _models()["physics (Lotka-Volterra)"].field
    rhs, p = field.fn, {k: float(v.detach()) for k, v in field.physical_parameters().items()}
    now = backend.NUMPY
    before = dataclasses.replace(now, _stack=stack_before)
    print(f"part 7: a Lotka-Volterra evaluation with NUMPY.stack before / now, and the per-run "
          f"norm by einsum / now (medians of {repeats}, interleaved)")
    for runs in (8, 1000):
        y0 = _y0(runs)
        err = np.random.default_rng(0).standard_normal((runs, 2))

        def evaluate(namespace, y0=y0):  # the system's right-hand side on that namespace
            return lambda: rhs(0.0, y0, None, p, namespace)

        np.testing.assert_array_equal(evaluate(before)(), evaluate(now)())
        med = _interleaved({"before": evaluate(before), "now": evaluate(now),
                            "einsum": lambda: norm_einsum(err, runs),
                            "norm": lambda: run_norm(err, runs)}, repeats)
        print(f"  {runs:5d} runs: evaluation {med['before'] * 1e6:.1f} -> {med['now'] * 1e6:.1f} us "
              f"({med['now'] / med['before']:.2f}); norm {med['einsum'] * 1e6:.1f} -> "
              f"{med['norm'] * 1e6:.1f} us ({med['norm'] / med['einsum']:.2f}) "
              f"(load {os.getloadavg()[0]:.1f})")


def _child(cmd: list[str]) -> tuple[float, float]:
    # as installed: sysid's modules compiled once (pip writes .pyc files), not at every start
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def part5(repeats: int) -> None:
    import sysid
    from sysid.io import save_model

    with tempfile.TemporaryDirectory() as tmp:
        lv, net = Path(tmp) / "lv", Path(tmp) / "net"
        save_model(sysid.models.physics("lotka_volterra"), lv)
        save_model(sysid.models.neural(["prey", "predator"], width=32, depth=2, seed=0), net)
        out = Path(tmp) / "sim.csv"

        def cli(model: Path, *extra: str) -> list[str]:
            return [sys.executable, "-m", "sysid", "simulate", str(model), "--y0", "prey=30,predator=4",
                    "--t-end", "60", "--dt", "0.1", "--out", str(out), *extra]

        variants = {
            "sysid simulate (physics)": cli(lv),
            "sysid simulate (network)": cli(net),
            "  torch route (rk4)": cli(lv, "--method", "rk4"),
            "import xarray": [sys.executable, "-c", "import xarray"],
            "import torch": [sys.executable, "-c", "import torch"],
            "import torch, xarray": [sys.executable, "-c", "import torch, xarray"],
        }
        rows: dict = {k: [] for k in variants}
        for cmd in variants.values():  # warm-up: the .pyc files, the disk cache
            out.unlink(missing_ok=True)
            _child(cmd)
        for _ in range(repeats):  # interleaved: each variant sees the same load
            for key, cmd in variants.items():
                out.unlink(missing_ok=True)
                rows[key].append(_child(cmd))
    print(f"part 5: `sysid simulate` of one 600-step run in a fresh process (median of {repeats}; "
          f"load {os.getloadavg()[0]:.1f}; goal: under 1.5 s wall on an idle machine)")
    med = {key: (statistics.median(w for w, _ in rows[key]), statistics.median(c for _, c in rows[key]))
           for key in variants}
    floor = med["import torch, xarray"]
    for key, (wall, cpu) in med.items():
        print(f"  {key:26s} wall {wall:6.2f} s   cpu {cpu:6.2f} s   {cpu / floor[1]:5.2f} x the cpu "
              "of import torch, xarray")
    load = os.getloadavg()[0]
    judged = "wall" if load < 1.0 else "cpu"  # on a loaded machine the cpu time stands for the idle wall
    for key in ("sysid simulate (physics)", "sysid simulate (network)"):
        wall, cpu = med[key]
        verdict = "met" if (wall if judged == "wall" else cpu) < 1.5 else "NOT met"
        print(f"  goal 1.5 s, {key}: {verdict} (judged by the {judged} time; load {load:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", default="1,2,3,4,5,6,7", help="which parts to run, e.g. 3,4")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}")
    parts = {int(p) for p in args.parts.split(",")}
    for number, part in ((1, part1), (2, part2), (3, part3), (4, part4), (5, part5), (6, part6),
                         (7, part7)):
        if number in parts:
            part(args.repeats)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
