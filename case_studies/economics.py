"""Economics: US population growth (logistic) and the US Phillips curve (neural and grey-box ODEs).

Data
    ``sysid.datasets.load("us_population")``: decennial census 1790-1970 (millions).
    ``sysid.datasets.load("us_phillips")``: annual unemployment rate ``unem`` and CPI inflation
    ``inf`` (%), 1948-2003 (Economic Report of the President; Wooldridge's PHILLIPS data).
Questions
    1. Population: fitted on 1790-1910 only, what carrying capacity K and growth rate r does the
       logistic ``N' = r N (1 - N / K)`` give, against Pearl & Reed (1920: K = 197.27 M,
       r = 0.0313 /yr) and least squares on the same years (K = 190.7 M, r = 0.03155), and how
       well does it extrapolate 1920-1970?
    2. Phillips curve: the accelerationist curve says inflation rises when unemployment is below
       a natural rate, ``d(inf) = 3.031 - 0.543 unem`` on 1948-1996 (Wooldridge, Example 11.5):
       natural rate 3.031 / 0.543 = 5.58 %. Does a neural ODE of the two series, which is told
       nothing about economics, learn a field whose ``d(inf)/dt`` falls with unemployment and
       crosses zero near 5.6 %?
Models
    1. ``sysid.models.physics("logistic")``, r, K and the 1790 population estimated by sysid's
       least-squares estimator (defaults; single shooting over 1790-1910), squared error
       (``loss="sse"``, the least-squares reference's criterion) and, as a variant, the lognormal
       error model; then simulated to 1970.
    2. (a) The discrete regression itself, recomputed from the shipped data (checks the data).
       (b) A neural ODE ``(unem, inf)' = MLP(unem, inf)`` (2-32-32-2) fitted on 1948-1996 with
       one- and two-year windows and free initial states; its ``d(inf)/dt`` evaluated at the data
       is regressed on ``unem``: slope, intercept and zero crossing (the learned natural rate);
       1997-2003 held out. (c) A grey-box ODE: ``inf' = c0 + c1 unem`` (the accelerationist curve
       in continuous time) with ``unem'`` a neural network: c1 and -c0/c1 directly, with
       standard errors.
Result (full mode; see case_studies/README.md for the measured numbers)
    The logistic reproduces the least-squares K and r within 1 %, and sits 3 % below Pearl &
    Reed's K (the log error model lands on Pearl & Reed). The extrapolation is within a few
    percent through 1930 and then undershoots: the census kept growing past the fitted K.
    The natural rate (where the learned d(inf)/dt crosses zero) lands near 5.6 % for both the
    neural and the grey-box ODE. Their slope is flatter than -0.543: the published regression pairs
    the change of inflation during year t with unemployment *in* year t, while a continuous-time
    field sees unemployment along the year; recomputing the regression with the previous year's
    unemployment gives -0.10 and with the year average -0.37, and the learned slopes fall in that
    band. Timing, not the network, is what separates them.

Run ``python case_studies/economics.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Study, parse_args, rows_between, setup  # noqa: E402

PEARL_REED = {"K": 197.27, "r": 0.0313395}
LSQ_1910 = {"K": 190.7, "r": 0.03155}
WOOLDRIDGE = {"intercept": 3.031, "slope": -0.543, "natural rate": 3.031 / 0.543}
WOOLDRIDGE_SOURCE = "Wooldridge, Introductory Econometrics, Example 11.5 (1948-1996)"


def _settings(fast: bool) -> dict:
    # Fast mode: the Phillips-curve networks get about 40 % of the full training (the population
    # fit has no training settings: it goes straight to least squares).
    if fast:
        return {"nn_epochs": 200, "gb_epochs": 200}
    return {"nn_epochs": 600, "gb_epochs": 500}


# ----------------------------------------------------------------------------- population
def fit_logistic(train, loss: str, fast: bool):
    """Logistic growth, r, K and the 1790 population estimated, with sysid's defaults.

    A model without network weights goes straight to the joint least-squares estimator (single
    shooting from the estimated 1790 population, as the least-squares reference did); ``loss``
    is "sse" (least squares on the counts) or "lognormal" (multiplicative error).
    """
    import torch

    from sysid.models import physics
    from sysid.training import FitConfig, fit

    model = physics("logistic", values={"r": 0.02, "K": 300.0}, dtype=torch.float64)
    return fit(model, train, FitConfig(loss=loss, initial_states="free", dtype="float64",
                                       progress=False))


def population(study: Study, fast: bool) -> None:
    """Logistic fit on 1790-1910, extrapolated to 1970."""
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

    from sysid import datasets, systems
    from sysid.analysis import parameter_table, predict

    census = datasets.load("us_population").rename({"population": "N"})
    train = rows_between(census, 1790.0, 1910.0)
    fits = {"least squares": fit_logistic(train, "sse", fast),
            "log error model": fit_logistic(train, "lognormal", fast)}
    rows = []
    preds = {}
    for label, res in fits.items():
        table = parameter_table(res, PEARL_REED)
        rows.append({"fit": label, "K [million]": table.loc["K", "value"],
                     "stderr K": table.loc["K", "stderr"], "r [1/year]": table.loc["r", "value"],
                     "stderr r": table.loc["r", "stderr"]})
        preds[label] = predict(res.model, census)
    rows.append({"fit": "reference: least squares 1790-1910", "K [million]": LSQ_1910["K"],
                 "r [1/year]": LSQ_1910["r"]})
    rows.append({"fit": "reference: Pearl & Reed 1920", "K [million]": PEARL_REED["K"],
                 "r [1/year]": PEARL_REED["r"]})
    study.table("population_parameters", pd.DataFrame(rows).set_index("fit"))
    lsq = fits["least squares"].parameters.set_index("name")["value"]
    # 1 % against the least-squares reference: the same criterion on the same years, the 1790
    # population estimated as well (the estimator converges; measured: 0.02 %)
    for name in ("K", "r"):
        study.check(f"logistic {name} (least squares) vs least-squares reference", lsq[name],
                    LSQ_1910[name], 0.01, source="least squares on 1790-1910 (shared datasets README)")
    # 5 % against Pearl & Reed, who fitted by a different method (three-point, all years to 1910)
    for name in ("K", "r"):
        study.check(f"logistic {name} (least squares) vs Pearl & Reed", lsq[name], PEARL_REED[name],
                    0.05, source="Pearl & Reed (1920)")
    t = census["time"].values[0]
    y = census["N"].values[0]
    ext = {"year": t[t > 1910]}
    ext["census [million]"] = y[t > 1910]
    for label, pred in preds.items():
        ext[f"{label} [million]"] = pred["N"].values[0][t > 1910]
        ext[f"{label} error %"] = 100 * (pred["N"].values[0][t > 1910] - y[t > 1910]) / y[t > 1910]
    pr = predict(systems.get("logistic"), census, params=PEARL_REED)
    ext["Pearl & Reed [million]"] = pr["N"].values[0][t > 1910]
    ext["Pearl & Reed error %"] = 100 * (ext["Pearl & Reed [million]"] - ext["census [million]"]) \
        / ext["census [million]"]
    ext_tab = pd.DataFrame(ext).set_index("year")
    study.table("population_extrapolation", ext_tab)
    worst_1930 = float(np.max(np.abs(ext_tab.loc[[1920.0, 1930.0], "least squares error %"])))
    # Pearl & Reed's curve is within ~3 % of the census through 1930; the refit should be too (5 %)
    study.check("extrapolation 1920-1930: largest |error| [%]", worst_1930, 0.0, 5.0, absolute=True,
                source="Pearl & Reed's curve: within ~3 % through 1930")
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(t, y, "ko", ms=4, label="census")
    for k, (label, pred) in enumerate(preds.items()):
        ax.plot(pred["time"].values[0], pred["N"].values[0], color=f"C{k}", label=f"logistic, {label}")
    ax.plot(t, pr["N"].values[0], "k--", lw=1, label="Pearl & Reed 1920")
    ax.axvspan(1915, 1975, color="0.9", zorder=0)
    ax.set_xlabel("year")
    ax.set_ylabel("US population [million]")
    ax.set_title("fitted on 1790-1910 (shaded: extrapolation)")
    ax.legend(fontsize=8)
    study.figure(fig, "population")


# ----------------------------------------------------------------------------- Phillips curve
def _phillips_fn(t, x, u, p, xp):
    """Accelerationist curve in continuous time: inf' = c0 + c1 unem (unem' left to a network)."""
    unem = x[..., 0]
    return xp.stack([0.0 * unem, p["c0"] + p["c1"] * unem])


#: Time unit of the networks: the 49-year span. Year-to-year changes of annual unemployment and
#: inflation are mostly noise, so the default characteristic time (spread / rms derivative, ~1 yr
#: here) lets the network chase that noise: measured, the learned natural rate went to -74 % and
#: the 1997-2003 inflation forecast error to 9 points. The span encodes the prior that the
#: economy's own dynamics are slow.
SLOW = "duration"


def fit_phillips_neural(train, fast: bool):
    """Neural ODE of (unem, inf): one- and two-year windows, free initial states."""
    from sysid.models import neural
    from sysid.training import FitConfig, fit

    model = neural(["unem", "inf"], width=32, depth=2, seed=0)
    return fit(model, train, FitConfig(
        epochs=_settings(fast)["nn_epochs"], optimizer={"lr": 0.01}, shooting={"horizons": (2, 3)},
        initial_states="free", solver={"substeps": 2}, refine={"stderr": False}, progress=False,
        time_scale=SLOW))


def fit_phillips_greybox(train, fast: bool):
    """``inf' = c0 + c1 unem`` (physics, free c0, c1) and ``unem'`` from an MLP (2-16-16-1)."""
    from sysid.models import Parameter, hybrid
    from sysid.training import FitConfig, fit

    model = hybrid(_phillips_fn, {"c0": Parameter(0.0, units="%/year"),
                                  "c1": Parameter(0.0, units="1/year")},
                   ["unem", "inf"], neural_states=["unem"], width=16, depth=2, seed=0,
                   state_units=["%", "%"], time_units="year")
    return fit(model, train, FitConfig(
        epochs=_settings(fast)["gb_epochs"], optimizer={"lr": 0.01}, shooting={"horizons": (2, 3)},
        initial_states="free", solver={"substeps": 2}, loss={"neural_penalty": 0.0},
        progress=False, time_scale=SLOW))


def phillips(study: Study, fast: bool) -> None:
    """Regression, neural ODE and grey-box ODE of unemployment and inflation."""
    import numpy as np
    import pandas as pd
    import torch

    from sysid import datasets, plot
    from sysid.analysis import predict, rmse

    ds = datasets.load("us_phillips")
    t = ds["time"].values[0]
    unem, inf = ds["unem"].values[0], ds["inf"].values[0]
    # (a) the published regression, recomputed: d(inf)_t = inf_t - inf_{t-1} on unem_t, 1949-1996
    k = np.flatnonzero((t >= 1949) & (t <= 1996))
    X = np.c_[np.ones(k.size), unem[k]]
    (b0, b1), *_ = np.linalg.lstsq(X, inf[k] - inf[k - 1], rcond=None)
    study.check("regression slope (recomputed from the data)", b1, WOOLDRIDGE["slope"], 0.01,
                source=WOOLDRIDGE_SOURCE)
    study.check("regression intercept (recomputed)", b0, WOOLDRIDGE["intercept"], 0.01,
                source=WOOLDRIDGE_SOURCE)
    # the same regression with unemployment of the previous year and averaged over the year: a
    # continuous-time inf' = c0 + c1 unem(t) integrated over [t-1, t] sees the path of unem
    # during the year, between these conventions, so its slope is compared with that band
    timing = {}
    for label, xu in (("previous year", unem[k - 1]), ("year average", 0.5 * (unem[k] + unem[k - 1]))):
        (a0, a1), *_ = np.linalg.lstsq(np.c_[np.ones(k.size), xu], inf[k] - inf[k - 1], rcond=None)
        timing[label] = (a0, a1)
    band = sorted([b1, timing["previous year"][1]])

    train = rows_between(ds, 1948.0, 1996.0)
    nn = fit_phillips_neural(train, fast)
    gb = fit_phillips_greybox(train, fast)
    # (b) the learned d(inf)/dt at the 1948-1996 data, regressed on unem (as the discrete curve)
    x = torch.as_tensor(np.c_[unem[k], inf[k]], dtype=nn.model.dtype)
    with torch.no_grad():
        f = nn.model(torch.zeros((), dtype=x.dtype), x).double().numpy()
    (n0, n1), *_ = np.linalg.lstsq(X, f[:, 1], rcond=None)
    # the learned field along unem at the median inflation: where does d(inf)/dt cross zero?
    grid = np.linspace(unem.min(), unem.max(), 201)
    xg = torch.as_tensor(np.c_[grid, np.full_like(grid, np.median(inf[k]))], dtype=nn.model.dtype)
    with torch.no_grad():
        fg = nn.model(torch.zeros((), dtype=xg.dtype), xg).double().numpy()[:, 1]
    sign = np.flatnonzero(np.diff(np.sign(fg)) != 0)
    cross = float(grid[sign[0]] - fg[sign[0]] * (grid[sign[0] + 1] - grid[sign[0]])
                  / (fg[sign[0] + 1] - fg[sign[0]])) if sign.size else float("nan")
    p = gb.parameters.set_index("name")
    c0, c1 = float(p.loc["c0", "value"]), float(p.loc["c1", "value"])
    rows = [
        {"model": "Wooldridge Example 11.5", "slope": WOOLDRIDGE["slope"],
         "intercept": WOOLDRIDGE["intercept"], "natural rate [%]": WOOLDRIDGE["natural rate"]},
        {"model": "regression recomputed from the data", "slope": b1, "intercept": b0,
         "natural rate [%]": -b0 / b1},
        {"model": "regression on unem of the previous year", "slope": timing["previous year"][1],
         "intercept": timing["previous year"][0],
         "natural rate [%]": -timing["previous year"][0] / timing["previous year"][1]},
        {"model": "regression on the year-average unem", "slope": timing["year average"][1],
         "intercept": timing["year average"][0],
         "natural rate [%]": -timing["year average"][0] / timing["year average"][1]},
        {"model": "neural ODE: d(inf)/dt at the data regressed on unem", "slope": n1,
         "intercept": n0, "natural rate [%]": -n0 / n1},
        {"model": "neural ODE: zero of d(inf)/dt along unem at median inflation",
         "natural rate [%]": cross},
        {"model": "grey-box ODE: inf' = c0 + c1 unem", "slope": c1, "intercept": c0,
         "natural rate [%]": -c0 / c1, "stderr slope": float(p.loc["c1", "stderr"]),
         "stderr intercept": float(p.loc["c0", "stderr"])},
    ]
    curve = pd.DataFrame(rows).set_index("model")
    study.table("phillips_curve", curve)
    # Tolerances are about the economics, not the fit. The natural rate (the zero crossing) is
    # robust to the timing convention (5.47-5.59 % for same-year and year-average regressions):
    # within 15 % (~0.8 points of unemployment). The slope is not (-0.54 same year, -0.10 previous
    # year): a continuous-time flow over a year must land inside that band, and be negative.
    mid, half = 0.5 * (band[0] + band[1]), 0.5 * (band[1] - band[0])
    band_name = f"in the regression band [{band[0]:.3f}, {band[1]:.3f}]"
    study.check("neural ODE natural rate [%]", -n0 / n1, WOOLDRIDGE["natural rate"], 0.15,
                source=WOOLDRIDGE_SOURCE)
    study.check(f"neural ODE slope of d(inf)/dt on unem {band_name}", n1, mid, half, absolute=True,
                source="regressions of the data with same-year and previous-year unemployment")
    study.check("grey-box natural rate -c0/c1 [%]", -c0 / c1, WOOLDRIDGE["natural rate"], 0.15,
                source=WOOLDRIDGE_SOURCE)
    study.check(f"grey-box slope c1 {band_name}", c1, mid, half, absolute=True,
                source="regressions of the data with same-year and previous-year unemployment")

    # held-out 1997-2003: free-run forecasts from the 1996 state, vs "no change" (random walk)
    held = rows_between(ds, 1996.0, 2003.0)
    frows = []
    for label, res in (("neural ODE", nn), ("grey-box ODE", gb)):
        pred = predict(res.model, held)
        frows.append({"model": label,
                      "unem RMSE 1997-2003": rmse(held["unem"].values[0][1:], pred["unem"].values[0][1:]),
                      "inf RMSE 1997-2003": rmse(held["inf"].values[0][1:], pred["inf"].values[0][1:])})
    last = {v: np.full(held.sizes["obs"] - 1, held[v].values[0][0]) for v in ("unem", "inf")}
    frows.append({"model": "no change from 1996",
                  "unem RMSE 1997-2003": rmse(held["unem"].values[0][1:], last["unem"]),
                  "inf RMSE 1997-2003": rmse(held["inf"].values[0][1:], last["inf"])})
    study.table("phillips_forecast", pd.DataFrame(frows).set_index("model"))

    fig = plot.phase_portrait(nn.model, data=train)
    fig.suptitle("neural ODE of (unemployment, inflation), 1948-1996")
    study.figure(fig, "phillips_phase_portrait")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(unem[k], inf[k] - inf[k - 1], "ko", ms=3, label="d(inf), one-year change (data)")
    ax.plot(unem[k], f[:, 1], "C0.", ms=5, label="neural ODE d(inf)/dt at the data")
    ug = np.linspace(unem.min(), unem.max(), 50)
    ax.plot(ug, WOOLDRIDGE["intercept"] + WOOLDRIDGE["slope"] * ug, "k--",
            label="Wooldridge: 3.031 - 0.543 unem")
    ax.plot(ug, n0 + n1 * ug, "C0-", label=f"neural ODE projection: {n0:.2f} {n1:+.3f} unem")
    ax.plot(ug, c0 + c1 * ug, "C1-", label=f"grey-box: {c0:.2f} {c1:+.3f} unem")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("unemployment [%]")
    ax.set_ylabel("change of inflation [%/year]")
    ax.legend(fontsize=7)
    study.figure(fig, "phillips_curve")


def main(argv: Sequence[str] | None = None) -> Study:
    """Run both studies; return the measured checks and tables."""
    args = parse_args(argv, __doc__, "results/case_studies")
    setup()
    study = Study(name="economics", out=Path(args.out), fast=args.fast)
    population(study, args.fast)
    phillips(study, args.fast)
    study.save()
    print(study.report())
    return study


if __name__ == "__main__":
    sys.exit(0 if main().passed else 1)
