"""Where a fit's time goes: setup, warm start, validation, training, refinement.

Task: the configuration of ``bench_fit_speed.py``'s sysid variant: Lotka-Volterra, 6 training runs
of 100 samples with 5 % noise, 2 noise-free held-out runs as validation data, the default 2-32-32-2
tanh neural field, ``epochs=600``, validation every 5 epochs with target NRMSE 0.05 (the fit stops
when it is reached).

The engine's steps are timed by wrapping them in this process (``engine._setup``,
``engine._warm_start`` + ``engine._shoot_latent``, ``engine._select`` (validation and the
best-model checks), ``engine._epoch`` (training), ``engine._guarded_refine``); the rest of ``fit``
(result tables, bookkeeping) is "other". Five variants run side by side, interleaved per seed
after one untimed warm-up fit:

- "today": the code as it is.
- "autograd warm start": today's code with the warm start's gradient through autograd and
  Adam's update through ``torch.optim.adam.adam`` as today (the code before a network's backward
  pass and the folding's transpose were written out, ``warmstart._WrittenBackward``).
- "tanh as tanh": today's code with the network's tanh evaluated by ``torch.tanh``, as before
  sysid evaluated tanh networks as networks of sigmoids (``NeuralField._layers``; torch's CPU
  tanh is not vectorised): the checks (NumPy) are as today, the warm start and training slower.
- "torch checks": today's training (tanh as tanh) with the held-out checks and the warm start as
  they were before the NumPy rollout (the held-out runs integrated in torch, ``stats.NUMPY_ROWS = 0``), and
  the warm start of before (through autograd, Adam's multi-tensor update instead of its fused
  one, stopped at ``WarmStart(plateau=0.1)``: ~125 steps here instead of ~75).
- "previous" (the code of issue 13's measurement): that, plus the fixed-step loop that stepped
  with ``rk_step`` (see ``bench_train_step.py``), Adam's per-tensor update loop
  (``foreach=False``, as torch defaults to on a CPU), the networks' scalings folded at every
  evaluation, and all 300 warm-start Adam steps.

The epochs to the target differ between the variants (the rounding differs and the fits are
chaotic). Each fit runs ``--repeats`` times (the variants in turn, one round after another): one
timing of a 0.4-s fit on this 2-core machine moves its share by up to ~5 points (seed 5's: 13.9 %
and 14.4 % alone, 16.4 % once in the rotation; seed 1's three repeats 13.8-18.5 %), so a fit's
share is the median over its repeats.
Printed per fit: epochs, checks, and that median with the range over the repeats; per variant:
seconds and share of each step summed over all fits and repeats, the median and range of the
per-fit shares, and one held-out check's cost in training epochs. Goal: warm start + validation
<= 15 % of a fit. Fits that reach the target sooner carry the same warm start over fewer epochs,
so their share is higher: the per-fit range shows it.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_fit_breakdown.py [--seeds 4] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_fit_speed import TARGET, make_data  # noqa: E402
from bench_train_step import per_call_folding, previous_stepping, tanh_as_tanh  # noqa: E402

STEPS = {"_setup": "setup", "_warm_start": "warm start", "_shoot_latent": "warm start",
         "_select": "validation", "_epoch": "training", "_guarded_refine": "refinement"}


@contextlib.contextmanager
def timed_engine(totals: dict):
    """Wrap the engine's steps so their time adds up in ``totals``."""
    from sysid.training import engine

    saved = {name: getattr(engine, name) for name in STEPS}

    def wrap(name, fn):
        def inner(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[STEPS[name]] = totals.get(STEPS[name], 0.0) + time.perf_counter() - start
        return inner

    for name, fn in saved.items():
        setattr(engine, name, wrap(name, fn))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(engine, name, fn)


def one_fit(train, test, seed: int, totals: dict,
            warm: dict | None = None) -> tuple[int, float, int]:
    """One fit of the benchmark config; its time adds up in ``totals``. Returns the epochs run,
    the best held-out NRMSE and the number of held-out checks."""
    import sysid

    model = sysid.models.neural(["prey", "predator"], width=32, depth=2, seed=seed)
    cfg = sysid.FitConfig(epochs=600, optimizer={"lr": 1e-2}, seed=seed, progress=False,
                          validation={"target": TARGET, "every": 5},
                          warm_start=warm or {})
    mine: dict = {}
    start = time.perf_counter()
    with timed_engine(mine):
        result = sysid.fit(model, train, cfg, validation=test)
    mine["fit"] = time.perf_counter() - start
    for k, v in mine.items():
        totals[k] = totals.get(k, 0.0) + v
    totals.setdefault("shares", []).append(
        (mine.get("warm start", 0.0) + mine.get("validation", 0.0)) / mine["fit"])
    epochs = int(result.history["epoch"].max())
    totals["epochs"] = totals.get("epochs", 0) + epochs
    checks = int(result.history["val_nrmse"].notna().sum()) + 1  # + the one before training
    return epochs, float(result.history["val_nrmse"].min()), checks


class _LoopAdam(torch.optim.Adam):
    def __init__(self, *args, **kwargs):
        kwargs["foreach"], kwargs["fused"] = False, False
        super().__init__(*args, **kwargs)


class _ForeachAdam(torch.optim.Adam):
    def __init__(self, *args, **kwargs):
        kwargs["foreach"], kwargs["fused"] = True, False
        super().__init__(*args, **kwargs)


@contextlib.contextmanager
def autograd_warm_start(update: str = "fused"):
    """The warm start's gradient through autograd (as before ``warmstart._WrittenBackward``),
    with Adam's ``update``: "fused" (today's), "foreach" (multi-tensor) or "loop" (per tensor)."""
    from sysid.training import warmstart

    saved = warmstart._WrittenBackward.of, warmstart.adam_update
    real = saved[1]

    def adam_update(*args, **kwargs):
        if update != "fused":
            kwargs.update(fused=False, foreach=update == "foreach")
        return real(*args, **kwargs)

    warmstart._WrittenBackward.of = classmethod(lambda cls, *args: None)
    warmstart.adam_update = adam_update
    try:
        yield
    finally:
        warmstart._WrittenBackward.of, warmstart.adam_update = saved


@contextlib.contextmanager
def torch_checks(adam: type = _ForeachAdam):
    """The held-out checks in torch and the warm start's multi-tensor Adam through autograd
    (as before)."""
    from sysid.training import stats

    saved = stats.NUMPY_ROWS, torch.optim.Adam
    stats.NUMPY_ROWS = 0
    torch.optim.Adam = adam
    try:
        with autograd_warm_start("loop" if adam is _LoopAdam else "foreach"):
            yield
    finally:
        stats.NUMPY_ROWS, torch.optim.Adam = saved


@contextlib.contextmanager
def older_checks():
    """Torch checks with tanh evaluated by ``torch.tanh`` (the code before the NumPy rollout)."""
    with torch_checks(), tanh_as_tanh():
        yield


@contextlib.contextmanager
def previous():
    """The previous stepping, Adam's per-tensor loop and per-call folding of the scalings."""
    with torch_checks(_LoopAdam), tanh_as_tanh(), previous_stepping(), per_call_folding():
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}")
    variants = {"today": contextlib.nullcontext, "autograd warm start": autograd_warm_start,
                "tanh as tanh": tanh_as_tanh, "torch checks": older_checks, "previous": previous}
    # the warm start: today's default stops on its plateau (0.4); before, at 0.1; at first all
    # 300 Adam steps ran
    warm = {"today": {}, "autograd warm start": {}, "tanh as tanh": {},
            "torch checks": {"plateau": 0.1}, "previous": {"plateau": 0.0}}
    totals: dict = {k: {} for k in variants}
    checks: dict = {k: 0 for k in variants}
    train, test = make_data(0)
    one_fit(train, test, 0, {})  # warm-up: imports and first-call caches
    per_fit: dict = {k: [] for k in variants}  # each fit's median share over its repeats
    for seed in range(args.seeds):
        train, test = make_data(seed)
        mine: dict = {k: [] for k in variants}
        seen: dict = {}
        for _ in range(args.repeats):
            for name, ctx in variants.items():
                with ctx():
                    epochs, best, n = one_fit(train, test, seed, totals[name], warm[name])
                checks[name] += n
                mine[name].append(totals[name]["shares"][-1])
                if name in seen and seen[name] != (epochs, best, n):  # a fit is deterministic
                    print(f"  note: seed {seed} {name} differed between repeats: "
                          f"{seen[name]} then {(epochs, best, n)}")
                seen[name] = epochs, best, n
        for name in variants:
            epochs, best, n = seen[name]
            share = statistics.median(mine[name])
            per_fit[name].append(share)
            print(f"  seed {seed} {name:14s} {epochs} epochs, {n} held-out checks, best held-out "
                  f"NRMSE {best:.4f}; warm start + validation {share:.1%} (median of "
                  f"{args.repeats}: {min(mine[name]):.1%}-{max(mine[name]):.1%})")
    fits = {name: t["fit"] for name, t in totals.items()}
    for name, t in totals.items():
        fit = t.pop("fit")
        epochs = t.pop("epochs")
        t.pop("shares")
        shares = per_fit[name]
        t["other"] = fit - sum(t.values())
        print(f"{name}: {fit:.2f} s over {args.seeds} fits x {args.repeats} repeats")
        for step in ("setup", "warm start", "validation", "training", "refinement", "other"):
            print(f"  {step:12s} {t.get(step, 0.0):7.2f} s  {t.get(step, 0.0) / fit:6.1%}")
        per_check = t.get("validation", 0.0) / max(checks[name], 1)
        per_epoch = t.get("training", 0.0) / max(epochs, 1)
        print(f"  one held-out check costs {per_check * 1e3:.2f} ms = {per_check / per_epoch:.2f} "
              f"training epochs ({per_epoch * 1e3:.2f} ms)")
        both = t.get("warm start", 0.0) + t.get("validation", 0.0)
        print(f"  warm start + validation: {both / fit:.1%} of the fits' time (goal <= 15 %); "
              f"per fit: median {statistics.median(shares):.1%}, "
              f"{min(shares):.1%}-{max(shares):.1%}")
    print(f"time to the target (whole fits, summed over the seeds; the epochs differ, the fits "
          f"are chaotic): autograd warm start / today "
          f"{fits['autograd warm start'] / fits['today']:.2f}, "
          f"tanh as tanh / today {fits['tanh as tanh'] / fits['today']:.2f}, "
          f"torch checks / today {fits['torch checks'] / fits['today']:.2f}, "
          f"previous / today {fits['previous'] / fits['today']:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
