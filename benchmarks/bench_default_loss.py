"""Which error model should be the default? nmse against gaussian (and sse), measured.

``physics``: Lotka-Volterra (physics model, catalogue start), 2 runs of 40 samples, noise 0.5
(~1 %) on prey and 4.0 (~20 %) on predator, 4 seeds; prints the largest relative parameter error
of each error model. ``neural``: the Lotka-Volterra data of ``bench_fit_speed.py`` (6 training
runs), a 2-32-32-2 neural ODE, 200 epochs, free initial states, 2 seeds; prints the held-out
free-run NRMSE of each error model.

Run: ``python benchmarks/bench_default_loss.py physics`` (a few minutes) or ``... neural``
(tens of minutes).
"""
import sys, time, json, warnings
import numpy as np, torch
sys.path.insert(0, "benchmarks")
torch.set_num_threads(1)
warnings.simplefilter("ignore")
from bench_fit_speed import make_data, nrmse
from sysid.training import FitConfig, fit
from sysid.models import neural, physics
from sysid.systems import make_dataset
from sysid.analysis import predict
mode = sys.argv[1]
if mode == "neural":
    for seed in (0, 1):
        train, test = make_data(seed)
        for loss in ("nmse", "gaussian"):
            t0 = time.perf_counter()
            r = fit(neural(["prey", "predator"], width=32, seed=seed), train,
                    FitConfig(loss=loss, initial_states="free", epochs=200, progress=False, seed=seed))
            pred = predict(r.model, test)
            err = np.mean([nrmse(pred[v].values, test[v].values) for v in ("prey", "predator")])
            print(json.dumps({"seed": seed, "loss": loss, "heldout_nrmse": round(float(err), 4),
                              "time_s": round(time.perf_counter() - t0, 1)}), flush=True)
else:
    true = {"a": 0.55, "b": 0.028, "c": 0.8, "d": 0.024}
    for seed in range(4):
        ds = make_dataset("lotka_volterra", n_runs=2, n_obs=40, noise=0.0, y0="random", seed=seed)
        rng = np.random.default_rng(seed)
        ds["prey"] = ds["prey"] + 0.5 * rng.standard_normal(ds["prey"].shape)       # ~1 %
        ds["predator"] = ds["predator"] + 4.0 * rng.standard_normal(ds["predator"].shape)  # ~20 %
        row = {"seed": seed}
        for loss in ("nmse", "gaussian", "sse"):
            r = fit(physics("lotka_volterra"), ds, FitConfig(loss=loss, progress=False))
            v = r.parameters.set_index("name")["value"]
            row[loss] = round(max(abs(v[k] / true[k] - 1) for k in true), 4)
        print(json.dumps(row), flush=True)
