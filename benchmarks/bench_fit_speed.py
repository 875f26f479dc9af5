"""Time to reach the Lotka-Volterra accuracy target: sysid.fit against a torchdiffeq tutorial loop.

Task: Lotka-Volterra (``sysid.systems`` "lotka_volterra"), 8 runs of 100 samples over 20 years
with 5 % Gaussian noise; the two runs whose orbits lie in the middle of the others (by the
conserved quantity of the true system) are held out, the other 6 are trained on. Both methods
learn a black-box MLP vector field. Target: held-out NRMSE < 5 % (RMSE of a free-run simulation
from the held-out run's first sample, over its 20 years, divided by each state's standard
deviation, averaged over the two states), checked on the noise-free held-out runs.

- sysid: ``sysid.fit`` with its defaults (rk4 on windows of all runs, derivative warm start,
  horizon curriculum) plus ``initial_states="free"``, ``target=0.05`` and validation every 5
  epochs. Timed end to end: the whole ``fit`` call, warm start and validations included.
- Baseline: the loop of torchdiffeq's ``examples/ode_demo.py``, written out here: each iteration
  draws a random batch of 20 windows of 10 steps (random run and start) sharing one relative time
  grid, integrates them with ``odeint`` (dopri5, default tolerances), mean absolute error, RMSprop
  lr 1e-3; the MLP is the demo's 2-50-2 tanh network, on z-scored states (the demo's raw-valued
  network cannot learn populations of size 50). The held-out NRMSE is checked every 20 iterations
  with the clock stopped (this favours the baseline). Capped at ``--cap`` seconds of training.

Both run in one process, one torch thread, interleaved per seed; medians over seeds.

Run: ``python benchmarks/bench_fit_speed.py [--seeds 3] [--cap 60]``. The last line is
``speedup vs tutorial loop: N.Nx`` (median baseline time / median sysid time; when the baseline
never reaches the target within the cap the cap is used, so the speedup is a lower bound and the
line before says so).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from torch import nn

TARGET = 0.05


def make_data(seed: int):
    """Training and held-out datasets (the held-out runs are noise-free)."""
    from sysid.data import split_runs
    from sysid.systems import get, make_dataset

    noisy = make_dataset("lotka_volterra", n_runs=8, n_obs=100, noise=0.05, y0="random", seed=seed)
    clean = make_dataset("lotka_volterra", n_runs=8, n_obs=100, noise=0.0, y0="random", seed=seed)
    p = get("lotka_volterra").defaults()
    y0 = json.loads(noisy.attrs["initial_states"])
    level = {k: p["d"] * v["prey"] - p["c"] * np.log(v["prey"]) + p["b"] * v["predator"]
             - p["a"] * np.log(v["predator"]) for k, v in y0.items()}
    order = sorted(level, key=level.get)
    hold = order[3:5]
    train, _ = split_runs(noisy, hold)
    _, test = split_runs(clean, hold)
    return train, test


def nrmse(pred: np.ndarray, obs: np.ndarray) -> float:
    """Mean over states of RMSE / std, pooled over runs: pred, obs (R, N, S)."""
    out = []
    for j in range(obs.shape[-1]):
        o = obs[..., j].ravel()
        e = pred[..., j].ravel() - o
        out.append(float(np.sqrt(np.mean(e**2)) / np.std(o)))
    return float(np.mean(out))


def run_sysid(train, test, seed: int) -> tuple[float, float, bool, object]:
    from sysid.models import neural
    from sysid.training import FitConfig, fit

    model = neural(["prey", "predator"], width=32, depth=2, seed=seed)
    cfg = FitConfig(epochs=600, optimizer={"lr": 1e-2}, initial_states="free",
                    validation={"target": TARGET, "every": 5}, seed=seed, progress=False)
    t0 = time.perf_counter()
    result = fit(model, train, cfg, validation=test)
    elapsed = time.perf_counter() - t0
    best = float(result.history["val_nrmse"].min())
    checks = result.history.dropna(subset=["val_nrmse"])[["time_s", "val_nrmse"]]
    return elapsed, best, result.stopped_reason == "target_reached", checks


class DemoFunc(nn.Module):
    """The ode_demo network: Linear(2, 50) - Tanh - Linear(50, 2), normal(0, 0.1) weights."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(2, 50), nn.Tanh(), nn.Linear(50, 2))
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, nn.Linear):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.1)
                    m.bias.zero_()

    def forward(self, t, y):
        return self.net(y)


def run_baseline(train, test, seed: int, cap: float) -> tuple[float, float, bool, int, float]:
    from torchdiffeq import odeint

    t = torch.as_tensor(train["time"].values[0], dtype=torch.float32)
    y = np.stack([train["prey"].values, train["predator"].values], axis=-1)  # (R, N, 2)
    mean = y.reshape(-1, 2).mean(0)
    sd = y.reshape(-1, 2).std(0)
    true_y = torch.as_tensor((y - mean) / sd, dtype=torch.float32)
    R, N, _ = true_y.shape
    test_t = torch.as_tensor(test["time"].values[0], dtype=torch.float32)
    test_y = np.stack([test["prey"].values, test["predator"].values], axis=-1)
    test_y0 = torch.as_tensor((test_y[:, 0] - mean) / sd, dtype=torch.float32)
    batch_time, batch_size = 10, 20
    func = DemoFunc(seed)
    opt = torch.optim.RMSprop(func.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    spent, best, it, best_at = 0.0, float("inf"), 0, 0.0
    while spent < cap:
        t0 = time.perf_counter()
        for _ in range(20):
            it += 1
            runs = torch.randint(0, R, (batch_size,), generator=gen)
            starts = torch.randint(0, N - batch_time, (batch_size,), generator=gen)
            batch_y0 = true_y[runs, starts]
            batch_t = t[:batch_time] - t[0]
            batch_y = torch.stack([true_y[runs, starts + i] for i in range(batch_time)], dim=0)
            opt.zero_grad()
            pred_y = odeint(func, batch_y0, batch_t).to(batch_y.dtype)
            loss = torch.mean(torch.abs(pred_y - batch_y))
            loss.backward()
            opt.step()
        spent += time.perf_counter() - t0
        with torch.no_grad():
            pred = odeint(func, test_y0, test_t - test_t[0], rtol=1e-5, atol=1e-6)
        err = nrmse(pred.transpose(0, 1).numpy() * sd + mean, test_y) if torch.isfinite(
            pred).all() else float("inf")
        if err < best:
            best, best_at = err, spent
        if err < TARGET:
            return spent, best, True, it, best_at
    return spent, best, False, it, best_at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="number of data/model seeds")
    parser.add_argument("--cap", type=float, default=60.0, help="baseline training cap (s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ours, base, equal = [], [], []
    capped = False
    for seed in range(args.seeds):
        train, test = make_data(seed)
        t_s, e_s, ok_s, checks = run_sysid(train, test, seed)
        t_b, e_b, ok_b, iters, b_at = run_baseline(train, test, seed, args.cap)
        capped |= not ok_b
        ours.append(t_s)
        base.append(t_b)
        # equal accuracy: time for sysid to first reach the baseline's best NRMSE
        hit = checks[checks["val_nrmse"] <= e_b]
        if len(hit) and b_at > 0:
            equal.append(b_at / float(hit["time_s"].iloc[0]))
        print(f"seed {seed}: sysid {t_s:6.2f} s (best NRMSE {e_s:.4f}, reached={ok_s}) | "
              f"tutorial loop {t_b:6.2f} s (best NRMSE {e_b:.4f} after {b_at:.1f} s, "
              f"reached={ok_b}, {iters} iters)", flush=True)
    m_s, m_b = statistics.median(ours), statistics.median(base)
    print(f"median time to held-out NRMSE < {TARGET}: sysid {m_s:.2f} s, tutorial loop {m_b:.2f} s")
    if equal:
        print(f"median speedup at the tutorial loop's best accuracy (time for each to first reach "
              f"it): {statistics.median(equal):.1f}x")
    if capped:
        print(f"note: the tutorial loop did not reach the target within {args.cap:.0f} s in at least "
              f"one seed; its time there is the cap, so the speedup is a lower bound")
    print(f"speedup vs tutorial loop: {m_b / m_s:.1f}x")


if __name__ == "__main__":
    main()
