"""Biology: Hudson's Bay Company hare and lynx pelts, 1900-1920, as Lotka-Volterra and as neural ODEs.

Data
    ``sysid.datasets.load("hare_lynx")``: annual pelts (thousands) of snowshoe hare (prey) and
    Canada lynx (predator) traded with the Hudson's Bay Company, 21 years (Howard 2009).
Question
    Do the classic predator-prey equations ``hare' = (a - b lynx) hare``,
    ``lynx' = (-c + d hare) lynx`` explain the two cycles, with the parameters the Stan case study
    estimated (Carpenter 2018, posterior means a = 0.55, b = 0.028, c = 0.80, d = 0.024)? And does a
    black-box neural ODE, or Lotka-Volterra plus a neural correction (hybrid), forecast the last
    years better when they are held out?
Model
    1. ``sysid.models.physics("lotka_volterra")`` with all four parameters free, fitted to all 21
       years with the multiplicative (lognormal) error model the Stan study uses
       (``loss="lognormal"``), the initial populations estimated (``initial_states="free"``), all
       else sysid's defaults: straight to the joint least-squares estimator, single shooting over
       the whole series (the likelihood the reference maximises), from a poor start.
    2. Held-out comparison: Lotka-Volterra, a neural ODE (MLP 2-32-32-2) and the hybrid
       (Lotka-Volterra + MLP 2-16-16-2 correction) trained on 1900-1915 and simulated freely from
       their fitted 1900 state to 1920; error on 1900-1915 (fit) and 1916-1920 (forecast).
    3. Phase portraits of each learned field beside the Stan reference field; the coexistence
       fixed point (reference (c/d, a/b) = (33.3, 19.6) thousand) and the cycle period of each
       model from its fitted initial state, against the reference and the data.
Result (full mode; see case_studies/README.md for the measured numbers)
    The four Lotka-Volterra parameters land within 10 % of the Stan means (they reproduce the
    least-squares-on-logs optimum a = 0.540, b = 0.0272, c = 0.796, d = 0.0237 closely). Least
    squares on the raw counts gives 0.481, 0.0248, 0.926, 0.0275 (c and d ~15 % above the Stan
    means; reported in the shared datasets README, not re-run here): the error model matters.
    The held-out table says which of the three forecasts 1916-1920 best; with 16 training
    points the neural ODE has no structure to extrapolate with, and the checks do not assume an
    order.

Run ``python case_studies/hare_lynx.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Study, parse_args, rows_between, setup  # noqa: E402

# Stan case study (Carpenter 2018, "Predator-prey population dynamics"), posterior means
STAN = {"a": 0.55, "b": 0.028, "c": 0.80, "d": 0.024}
STAN_SOURCE = "Carpenter (2018) Stan case study, posterior means"
TRAIN_END = 1915.0
RENAME = {"hare": "prey", "lynx": "predator"}


def _settings(fast: bool) -> dict:
    # The Lotka-Volterra fit has no training settings (least squares); fast mode trains the
    # neural and hybrid models for about a third of the epochs.
    if fast:
        return {"nn_epochs": 150, "hy_epochs": 120}
    return {"nn_epochs": 500, "hy_epochs": 400}


def fit_lotka_volterra(data, fast: bool):
    """Lotka-Volterra, all parameters free, lognormal error model, initial states free.

    sysid's defaults: a model without network weights goes straight to the joint least-squares
    estimator (single shooting over the whole series from the estimated 1900 populations: the
    maximum-likelihood fit of the lognormal error model), from the poor start a = 0.5, b = 0.02,
    c = 1, d = 0.02.
    """
    from sysid.models import physics
    from sysid.training import FitConfig, fit

    start = physics("lotka_volterra", values={"a": 0.5, "b": 0.02, "c": 1.0, "d": 0.02})
    return fit(start, data, FitConfig(loss="lognormal", initial_states="free", dtype="float64",
                                      progress=False))


def fit_neural(train, fast: bool):
    """A neural ODE (MLP 2-32-32-2, tanh) on the training years."""
    from sysid.models import neural
    from sysid.training import FitConfig, fit

    n = int(train.sizes["obs"])
    model = neural(["prey", "predator"], width=32, depth=2, seed=0)
    return fit(model, train, FitConfig(
        epochs=_settings(fast)["nn_epochs"], optimizer={"lr": 0.01}, loss="log",
        initial_states="free", shooting={"horizons": (5, 10, n)}, solver={"substeps": 2},
        refine={"stderr": False}, progress=False))


def fit_hybrid(train, lv_values: dict[str, float], fast: bool):
    """Lotka-Volterra (starting at the physics fit's values) plus an MLP correction."""
    from sysid.models import hybrid
    from sysid.training import FitConfig, fit

    n = int(train.sizes["obs"])
    model = hybrid("lotka_volterra", values=lv_values, width=16, depth=2, seed=0)
    return fit(model, train, FitConfig(
        epochs=_settings(fast)["hy_epochs"], optimizer={"lr": 0.01, "weight_decay": 1e-3},
        loss="log", initial_states="free", shooting={"horizons": (5, 10, n)},
        solver={"substeps": 2}, warm_start=False, refine={"stderr": False}, progress=False))


def _initial(result) -> dict[str, float]:
    row = result.initial_states.iloc[0]
    return {k: float(v) for k, v in row.items()}


def _values(result) -> dict[str, float]:
    p = result.parameters
    return {str(n): float(v) for n, v in zip(p["name"], p["value"])}


def _period(dynamics, y0: Sequence[float], years: float = 80.0) -> float:
    """Mean period of the prey oscillation simulated from ``y0`` (NaN without oscillation)."""
    import numpy as np

    from sysid.analysis import as_dynamics, integrate, oscillation_from_samples
    from sysid.errors import SolverError

    dyn = as_dynamics(dynamics)
    t = np.linspace(0.0, years, int(years * 20) + 1)
    try:
        sol = integrate(dyn, np.asarray(y0, float), t)
    except SolverError:
        return float("nan")
    if sol.y.shape[1] < t.size:
        return float("nan")
    return float(oscillation_from_samples(t, sol.y[0])["period"])


def _coexistence(model, data, reference_point):
    """The fixed point of ``model`` nearest the reference coexistence point (or NaNs)."""
    import numpy as np

    from sysid.analysis import find_fixed_points

    fp = find_fixed_points(model, data=data, n_seeds=64)
    if not len(fp):
        return {"prey": np.nan, "predator": np.nan, "stability": "none found", "count": 0}
    d = np.hypot((fp["prey"] - reference_point[0]) / reference_point[0],
                 (fp["predator"] - reference_point[1]) / reference_point[1])
    best = fp.iloc[int(np.argmin(d.to_numpy()))]
    return {"prey": float(best["prey"]), "predator": float(best["predator"]),
            "stability": str(best.get("stability", "")), "count": int(len(fp))}


def _trajectory_figure(data, predictions: dict, split: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 6), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, name, long in zip(axes, ["prey", "predator"], ["hare", "lynx"]):
        ax.plot(data["time"].values[0], data[name].values[0], "ko", ms=4, label="data")
        for k, (label, pred) in enumerate(predictions.items()):
            ax.plot(pred["time"].values[0], pred[name].values[0], "-", color=f"C{k}", label=label)
        ax.axvspan(split + 0.5, float(data["time"].values[0][-1]) + 0.5, color="0.9", zorder=0)
        ax.set_ylabel(f"{long} pelts [thousands]")
    axes[0].legend(fontsize=8, ncol=4)
    axes[0].set_title("trained on 1900-1915; shaded: held-out years (free-run forecast)")
    axes[1].set_xlabel("year")
    return fig


def main(argv: Sequence[str] | None = None) -> Study:
    """Run the study; return the measured checks and tables."""
    args = parse_args(argv, __doc__, "results/case_studies")
    setup()
    import numpy as np
    import pandas as pd

    from sysid import datasets, plot, systems
    from sysid.analysis import oscillation_from_samples, parameter_table, predict, rmse

    study = Study(name="hare_lynx", out=Path(args.out), fast=args.fast)
    data = datasets.load("hare_lynx").rename(RENAME)
    lv_ref = systems.get("lotka_volterra")  # defaults = the Stan posterior means

    # 1. Lotka-Volterra on all 21 years vs the Stan posterior means
    lv = fit_lotka_volterra(data, args.fast)
    table = parameter_table(lv, STAN)
    study.table("lv_parameters", table[["value", "reference", "percent_error", "stderr", "ci95_low",
                                         "ci95_high", "units"]])
    # full mode: the 10 %. Fast mode: 15 %, because the shorter single-shooting stage stops
    # a few percent short of the optimum (measured: within 3 % of the full-mode values).
    tol = 0.15 if args.fast else 0.10
    for name in "abcd":
        study.check(f"Lotka-Volterra {name}", table.loc[name, "value"], STAN[name], tol,
                    source=STAN_SOURCE)
    x0 = _initial(lv)
    study.notes.append(f"estimated 1900 populations: hare {x0['prey']:.2f}, lynx {x0['predator']:.2f} "
                       f"thousand (Stan posterior means 33.96, 5.93)")
    study.figure(plot.parameter_recovery(table).figure, "lv_parameter_recovery")
    fit_all = predict(lv.model, data, initial=x0)
    log_rmse = {v: rmse(np.log(data[v].values[0]), np.log(np.clip(fit_all[v].values[0], 1e-9, None)))
                for v in ("prey", "predator")}
    study.notes.append(f"Lotka-Volterra fit to all years: RMSE of log pelts hare {log_rmse['prey']:.3f}, "
                       f"lynx {log_rmse['predator']:.3f}")

    # 2. train on 1900-1915, forecast 1916-1920: physics, neural, hybrid
    train = rows_between(data, 1900.0, TRAIN_END)
    results = {"Lotka-Volterra": fit_lotka_volterra(train, args.fast)}
    results["neural ODE"] = fit_neural(train, args.fast)
    results["hybrid LV + NN"] = fit_hybrid(train, _values(results["Lotka-Volterra"]), args.fast)
    t = data["time"].values[0]
    tr, te = t <= TRAIN_END, t > TRAIN_END
    rows, preds = [], {}
    for label, res in results.items():
        pred = predict(res.model, data, initial=_initial(res))
        preds[label] = pred
        row = {"model": label}
        for v, long in (("prey", "hare"), ("predator", "lynx")):
            y, p = data[v].values[0], pred[v].values[0]
            row[f"{long} RMSE 1900-15"] = rmse(y[tr], p[tr])
            row[f"{long} RMSE 1916-20"] = rmse(y[te], p[te])
        row["mean RMSE 1916-20"] = 0.5 * (row["hare RMSE 1916-20"] + row["lynx RMSE 1916-20"])
        row["parameters"] = sum(p.numel() for p in res.model.parameters() if p.requires_grad)
        rows.append(row)
    held = pd.DataFrame(rows).set_index("model")
    study.table("held_out", held)
    best = str(held["mean RMSE 1916-20"].idxmin())
    study.notes.append(f"best forecast of the held-out years 1916-1920 (mean RMSE, thousand pelts): "
                       f"{best} ({held.loc[best, 'mean RMSE 1916-20']:.2f})")
    study.figure(_trajectory_figure(data, preds, TRAIN_END), "held_out_trajectories")

    # 3. phase portraits, fixed points, periods (models fitted on all years / on 1900-1915)
    ref_point = (STAN["c"] / STAN["d"], STAN["a"] / STAN["b"])
    ref_y0 = list(lv_ref.y0)
    dyn_rows = [{"model": "reference (Stan means)", "fixed prey": ref_point[0],
                 "fixed predator": ref_point[1], "stability": "centre",
                 "period [years]": _period(lv_ref, ref_y0)}]
    data_period = oscillation_from_samples(t, data["prey"].values[0])["period"]
    dyn_rows.append({"model": "data (hare, 2 cycles)", "period [years]": data_period})
    models = {"Lotka-Volterra (all years)": (lv, "phase_lv_all_years"),
              "Lotka-Volterra (1900-15)": (results["Lotka-Volterra"], "phase_lv_1900_1915"),
              "neural ODE (1900-15)": (results["neural ODE"], "phase_neural_1900_1915"),
              "hybrid LV + NN (1900-15)": (results["hybrid LV + NN"], "phase_hybrid_1900_1915")}
    for label, (res, slug) in models.items():
        fp = _coexistence(res.model, data, ref_point)
        init = _initial(res)
        dyn_rows.append({"model": label, "fixed prey": fp["prey"], "fixed predator": fp["predator"],
                         "stability": fp["stability"],
                         "period [years]": _period(res.model, [init["prey"], init["predator"]])})
        fig = plot.phase_portrait(res.model, lv_ref, data=data)
        fig.suptitle(f"{label} (left) vs Lotka-Volterra with the Stan means (right)")
        study.figure(fig, slug)
    dyn = pd.DataFrame(dyn_rows).set_index("model")
    study.table("fixed_points_and_periods", dyn)
    lv_fp = dyn.loc["Lotka-Volterra (all years)"]
    study.check("coexistence prey c/d [thousand]", lv_fp["fixed prey"], ref_point[0], tol,
                source="c/d of the Stan means")
    study.check("coexistence lynx a/b [thousand]", lv_fp["fixed predator"], ref_point[1], tol,
                source="a/b of the Stan means")
    study.check("cycle period [years]", lv_fp["period [years]"], dyn.iloc[0]["period [years]"], tol,
                source="Lotka-Volterra with the Stan means from their initial state")
    study.save()
    print(study.report())
    return study


if __name__ == "__main__":
    sys.exit(0 if main().passed else 1)
