"""Ensembles: a bootstrap prediction band for the hare-lynx forecast and how often it is right.

Data
    ``sysid.datasets.load("hare_lynx")``: annual hare and lynx pelts (thousands), 1900-1920. The
    fits see 1900-1915 (16 years); 1916-1920 (5 years, 10 values) are held out.
Question
    A forecast is more useful with a band. How wide is the band an ensemble of Lotka-Volterra fits
    gives for 1916-1920, and how much of the held-out data does the nominal 90 % band cover?
Model
    Lotka-Volterra, all four rates and both initial populations free, log error model (as
    ``hare_lynx.py``): the two-stage fit of that study on 1900-1915 gives the start; then
    ``sysid.ensemble(kind="bootstrap")`` refits single shooting (L-BFGS refinement) to bootstrap
    copies of the 16 years. One run, so the bootstrap resamples residuals: the fitted trajectory
    times moving blocks of 3 years of its log residuals (``resample="residuals"``, block
    ``ceil(16 ** (1/3)) = 3``). Two bands, both 5 %-95 % quantiles, from each member's free run
    from its own fitted 1900 state: the *trajectory* band (the members' simulations: parameter and
    initial-state uncertainty) and the *observation* band (each member's simulation times its own
    log-normal measurement noise: the band a new observation should fall in).
Result (full mode; see case_studies/README.md)
    The coverage of the held-out values by each band, the band widths, and the ensemble's 90 %
    intervals of the four rates beside the Stan posterior means. Ten held-out values give a
    coarse coverage estimate (one value = 10 %); the training years are scored as well.

Run ``python case_studies/ensemble_band.py [--fast] [--out DIR] [--workers N]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Study, rows_between, setup, study_parser  # noqa: E402

TRAIN_END = 1915.0
RENAME = {"hare": "prey", "lynx": "predator"}
STAN = {"a": 0.55, "b": 0.028, "c": 0.80, "d": 0.024}


def _settings(fast: bool) -> dict:
    # Full mode: 40 members (a 5 %/95 % quantile from 40 members moves by about one member); fast
    # mode: 6 members and shorter fits, enough to exercise the whole path in the test suite.
    if fast:
        return {"members": 6, "epochs": 40}
    return {"members": 40, "epochs": 200}


def member_config(fast: bool):
    """Single shooting from the start's initial states, log error model, L-BFGS refinement."""
    from sysid.training import FitConfig

    return FitConfig(epochs=_settings(fast)["epochs"], optimizer={"lr": 0.01, "schedule": "none"},
                     loss="log", initial_states="free", shooting="single",
                     solver={"substeps": 2}, warm_start=False,
                     refine={"enabled": True, "stderr": False}, dtype="float64", progress=False)


def band_figure(data, outer, inner):
    from sysid import plot

    fig = plot.band(data, outer, inner=inner, after=TRAIN_END + 0.5)
    fig.suptitle("Lotka-Volterra bootstrap ensemble, trained on 1900-1915\n"
                 "light: observation band, dark: trajectory band (5-95 %); shaded: held out",
                 fontsize=9)
    return fig


def main(argv: Sequence[str] | None = None) -> Study:
    """Run the study; return the measured tables."""
    parser = study_parser(__doc__, "results/case_studies")
    parser.add_argument("--workers", type=int, default=None,
                        help="local worker processes (default: one per core)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    setup()
    import numpy as np
    import pandas as pd

    import sysid
    from hare_lynx import fit_lotka_volterra
    from sysid import datasets
    from sysid.parallel import LocalPool
    from sysid.parallel.ensembles import band_coverage

    study = Study(name="ensemble_band", out=Path(args.out), fast=args.fast)
    s = _settings(args.fast)
    data = datasets.load("hare_lynx").rename(RENAME)
    train = rows_between(data, 1900.0, TRAIN_END)
    start = fit_lotka_volterra(train, args.fast)  # the hare_lynx study's two-stage fit
    with LocalPool(args.workers) as pool:
        ens = sysid.ensemble(start.model, train, member_config(args.fast), members=s["members"],
                             kind="bootstrap", executor=pool, seed=0, progress=False)
    study.notes.append(f"{len(ens.fits)} of {len(ens.members)} members finished; resampling: "
                       f"{ens.resample} (block bootstrap of the log residuals of one run)")
    trajectory = ens.predict(data)
    observation = ens.predict(data, noise=True)

    rows = []
    for name, band in (("trajectory band", trajectory), ("observation band", observation)):
        held = band_coverage(data, band, after=TRAIN_END)
        fit_years = band_coverage(data, band)  # all 21 years
        t = data["time"].values[0]
        late = t > TRAIN_END
        width = {v: float(np.mean(band[v].sel(quantile=0.95).values[0][late]
                                  / band[v].sel(quantile=0.05).values[0][late]))
                 for v in ("prey", "predator")}
        rows.append({"band": name,
                     "held-out coverage 1916-20": held.loc["all", "coverage"],
                     "held-out inside / n": f"{held.loc['all', 'inside']}/{held.loc['all', 'n']}",
                     "hare held-out": held.loc["prey", "coverage"],
                     "lynx held-out": held.loc["predator", "coverage"],
                     "coverage 1900-20": fit_years.loc["all", "coverage"],
                     "nominal": held.loc["all", "nominal"],
                     "hare q95/q05 1916-20": width["prey"],
                     "lynx q95/q05 1916-20": width["predator"]})
    study.table("coverage", pd.DataFrame(rows).set_index("band"))

    params = ens.parameters(0.9)[["estimate", "median", "low", "high", "sd", "units"]].copy()
    params["Stan mean"] = [STAN[n] for n in params.index]
    params["Stan mean inside"] = (params["low"] <= params["Stan mean"]) & (
        params["Stan mean"] <= params["high"])
    study.table("parameters_90pct_interval", params)

    median = observation.sel(quantile=0.5)
    forecast = []
    for year in data["time"].values[0][data["time"].values[0] > TRAIN_END]:
        i = int(np.flatnonzero(data["time"].values[0] == year)[0])
        for v, long in (("prey", "hare"), ("predator", "lynx")):
            lo = float(observation[v].sel(quantile=0.05).values[0][i])
            hi = float(observation[v].sel(quantile=0.95).values[0][i])
            y = float(data[v].values[0][i])
            forecast.append({"year": int(year), "species": long, "data": y,
                             "median": float(median[v].values[0][i]), "q05": lo, "q95": hi,
                             "inside": bool(lo <= y <= hi)})
    study.table("held_out_values", pd.DataFrame(forecast).set_index(["year", "species"]))
    study.figure(band_figure(data, observation, trajectory), "band_hare_lynx")
    study.save()
    print(study.report())
    return study


if __name__ == "__main__":
    sys.exit(0 if main().passed else 1)
