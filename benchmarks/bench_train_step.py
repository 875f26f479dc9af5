"""Training step throughput at thousands of windows against a bare MLP forward + backward.

Task: 50 Lotka-Volterra runs of 100 samples (``sysid.systems``, 5 % noise), the default-sized
2-32-32-2 tanh neural field, float32, multiple shooting with windows of 20 samples (``--horizon``)
and ``--windows`` (default 4096) windows per optimiser step, rk4 with one step per sample gap.

Variants, side by side in this one process with one torch thread, interleaved:

- ``sysid step``: one epoch of the fit's training loop (``engine._epoch``: all windows of the
  stage in batches of ``--windows``, here 4096 + 854 of 4950; per batch the window gather, batched
  RK4 rollout of every window, loss, backward, gradient clipping, Adam).
- ``sysid step, per-call folding``: the same with the network's scalings folded into its weights
  at every field evaluation (``ScaledRhs.folded`` made a no-op), as before they were folded once
  per rollout.
- ``sysid step, previous stepping``: the same with the fixed-step loop that stepped with
  :func:`sysid.solvers.steps.rk_step` one step at a time (tensor step sizes: ~20 more small
  operations per RK4 step), as before it precomputed its stage times and step columns.
- ``sysid step, tanh as tanh``: the same with the network's tanh evaluated by ``torch.tanh``, as
  before sysid evaluated tanh networks as the same networks of sigmoids
  (``NeuralField._layers``: torch's CPU tanh is not vectorised, its sigmoid is).
- ``bare MLP``: the same network (an ``nn.Sequential`` of the same layers with ``nn.Tanh``), called
  per batch of the epoch as many times as the step evaluates the field (4 per RK4 step x 19
  steps), each on its own input of the batch's number of rows, then one backward pass through the
  batch's calls: the arithmetic of the epoch with nothing around it (the practical limit of what
  a user writes). (Until this version the bare MLP ran one batch of 4096 rows against sysid's
  epoch of 4950 windows: 0.83 of sysid's work, which understated sysid's throughput.)
- ``bare MLP, sigmoid form``: the same with sysid's trick (``tanh(a) = 2 sigmoid(2 a) - 1``, the
  factors folded into the weights once per batch: the layers of ``NeuralField._layers``, with
  ``torch.sigmoid``): the practical limit of the arithmetic.

Printed: the median time of each, the throughput of a sysid step as a fraction of each bare MLP's
(``bare / sysid``; goal >= 0.6), and the whole-fit FLOP utilisation: the MLP arithmetic of a short
fit (rows through the field counted by a hook; 3x the forward FLOPs with gradients, 1x without)
over its wall time, as a
fraction of this CPU's measured float32 matmul peak (one 1024 x 1024 product, one thread).

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_train_step.py [--repeats 5] [--windows 4096]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn


def previous_march(rhs, z0, t, counts: Sequence[int], tab, *, inputs=None, checkpoint=None):
    """The fixed-step loop before its stage times and step sizes were made up front."""
    from sysid import budget as time_budget
    from sysid.solvers.steps import rk_step

    dt = t[..., 1:] - t[..., :-1]
    z = z0
    out = [z0]
    for k, m in enumerate(counts):
        h = dt[..., k] / m
        u_at = None if inputs is None else (lambda tt, k=k: inputs(tt, k))
        for j in range(m):
            time_budget.check("integration")
            tk = t[..., k] + dt[..., k] * (j / m)
            z = rk_step(rhs, tk, h, z, tab, u_at)
        out.append(z)
    return out


class previous_stepping:
    """Context manager: the fit's window solves use :func:`previous_march`."""

    def __enter__(self):
        import sysid.solvers.windows as windows

        self.saved = windows.march
        windows.march = previous_march
        return self

    def __exit__(self, *exc):
        import sysid.solvers.windows as windows

        windows.march = self.saved


class per_call_folding:
    """Context manager: the networks' scalings folded at every field evaluation, as before
    :meth:`sysid.training.loss.ScaledRhs.folded` folded them once per rollout."""

    def __enter__(self):
        import contextlib

        from sysid.training.loss import ScaledRhs

        self.saved = ScaledRhs.folded
        ScaledRhs.folded = lambda rhs: contextlib.nullcontext()
        return self

    def __exit__(self, *exc):
        from sysid.training.loss import ScaledRhs

        ScaledRhs.folded = self.saved


@contextlib.contextmanager
def tanh_as_tanh():
    """Context manager: tanh networks evaluate their tanh with ``torch.tanh`` (as before
    ``NeuralField._layers`` evaluated them as networks of sigmoids)."""
    import importlib

    neural = importlib.import_module("sysid.models.neural")  # (sysid.models.neural is a function)
    saved, neural.TANH_AS_SIGMOID = neural.TANH_AS_SIGMOID, False
    try:
        yield
    finally:
        neural.TANH_AS_SIGMOID = saved


def data(runs: int = 50, samples: int = 100):
    from sysid.systems import make_dataset

    return make_dataset("lotka_volterra", n_runs=runs, n_obs=samples, noise=0.05, y0="random",
                        seed=0)


def context(ds, windows: int, horizon: int, epochs: int = 10):
    import sysid
    from sysid.training import engine

    model = sysid.models.neural(["prey", "predator"], width=32, depth=2, seed=0)
    cfg = sysid.FitConfig(epochs=epochs, progress=False, warm_start={"enabled": False},
                          optimizer={"batch_windows": windows},
                          shooting={"method": "multiple", "horizons": [horizon]})
    ctx = engine._setup(model, ds, cfg, None)
    ctx.opt = engine._optimizer(engine._param_groups(ctx.work, ctx.nodes, cfg), cfg)
    return ctx


def flops_per_eval(model: nn.Module) -> int:
    """Forward FLOPs of the network per row (2 per multiply-add of every Linear layer)."""
    return sum(2 * m.in_features * m.out_features for m in model.modules()
               if isinstance(m, nn.Linear))


def matmul_peak(n: int = 1024) -> float:
    """float32 FLOP/s of one n x n product (median of 5)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--windows", type=int, default=4096)
    parser.add_argument("--horizon", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from sysid.training import engine

    print(f"load average {os.getloadavg()[0]:.2f}")
    ds = data()
    ctx = context(ds, args.windows, args.horizon)
    W = min(args.windows, ctx.windows_for(args.horizon, 1)[0].count)
    net = ctx.work.field
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    bare_net = nn.Sequential(*(x for lin in linears for x in (lin, nn.Tanh())))[:-1]
    evals = 4 * (args.horizon - 1)
    n_all = ctx.windows_for(args.horizon, 1)[0].count
    sizes = [min(W, n_all - i) for i in range(0, n_all, W)]  # the epoch's batches
    xs = [[torch.randn(n, linears[0].in_features) for _ in range(evals)] for n in sizes]

    def bare():
        net.zero_grad(set_to_none=True)
        for batch in xs:
            total = sum(bare_net(x).sum() for x in batch)
            total.backward()

    def bare_sigmoid():
        net.zero_grad(set_to_none=True)
        for batch in xs:
            layers = net._layers()  # the layers sysid evaluates (tanh as sigmoids)
            total = 0.0
            for x in batch:
                h = x
                for w, b in layers[:-1]:
                    h = torch.sigmoid(torch.nn.functional.linear(h, w, b))
                total = total + torch.nn.functional.linear(h, *layers[-1]).sum()
            total.backward()

    def tanh_step():
        with tanh_as_tanh():
            step()

    def step():
        ctx.loop.stage_best = float("inf")
        engine._epoch(ctx, 0, 1e-3)

    def old_step():
        with previous_stepping():
            step()

    def unfolded_step():
        with per_call_folding():
            step()

    fns = {"sysid step": step, "sysid step, per-call folding": unfolded_step,
           "sysid step, previous stepping": old_step, "sysid step, tanh as tanh": tanh_step,
           "bare MLP": bare, "bare MLP, sigmoid form": bare_sigmoid}
    for fn in fns.values():
        fn()
    times: dict = {k: [] for k in fns}
    for _ in range(args.repeats):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    total = ctx.windows_for(args.horizon, 1)[0].count
    print(f"one epoch: {total} windows in steps of {W} ({' + '.join(map(str, sizes))}), horizon "
          f"{args.horizon}, rk4, "
          f"{evals} field evaluations; median of {args.repeats}, interleaved")
    for k, v in med.items():
        print(f"  {k:32s} {v * 1e3:8.1f} ms")
    for bare_name in ("bare MLP", "bare MLP, sigmoid form"):
        ratio = {k: med[bare_name] / med[k] for k in med if k.startswith("sysid")}
        print(f"  throughput of a sysid step vs the {bare_name}: {ratio['sysid step']:.2f} "
              f"(per-call folding: {ratio['sysid step, per-call folding']:.2f}, "
              f"previous stepping: {ratio['sysid step, previous stepping']:.2f}, "
              f"tanh as tanh: {ratio['sysid step, tanh as tanh']:.2f}; goal >= 0.6)")

    import sysid

    cfg = sysid.FitConfig(epochs=10, progress=False, optimizer={"batch_windows": args.windows},
                          shooting={"method": "multiple", "horizons": [args.horizon]},
                          refine={"enabled": False})
    model = sysid.models.neural(["prey", "predator"], width=32, depth=2, seed=0)
    rows = {"grad": 0, "no_grad": 0}
    from sysid.models.neural import NeuralField

    network = NeuralField.network

    def counted(self, t, z, u, params):  # rows through the layers (every path calls network)
        rows["grad" if torch.is_grad_enabled() else "no_grad"] += z.reshape(-1, z.shape[-1]).shape[0]
        return network(self, t, z, u, params)

    NeuralField.network = counted
    try:
        start = time.perf_counter()
        sysid.fit(model, ds, cfg)
        wall = time.perf_counter() - start
    finally:
        NeuralField.network = network
    useful = flops_per_eval(net) * (3 * rows["grad"] + rows["no_grad"])
    peak = matmul_peak()
    print(f"whole fit (10 epochs, warm start and validation included): {wall:.2f} s; "
          f"{rows['grad'] / 1e6:.1f} M rows through the field with gradients, "
          f"{rows['no_grad'] / 1e6:.2f} M without; MLP arithmetic (backward = 2x forward) "
          f"{useful / wall / 1e9:.2f} GFLOP/s = {useful / wall / peak:.1%} of the measured "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
