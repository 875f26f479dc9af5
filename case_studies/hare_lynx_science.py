"""From a learned field to science: hare and lynx, distilled, with derived quantities and their trust.

Data
    ``sysid.datasets.load("hare_lynx")``: annual hare and lynx pelts (thousands), 1900-1920, all
    21 years (as ``hare_lynx.py``).
Question
    A universal differential equation keeps the growth of the hare and the death of the lynx
    (``hare' = a hare + nn``, ``lynx' = -c lynx + nn``) and lets a network learn the interaction.
    Does the network, distilled into equations, give the Lotka-Volterra interaction terms
    ``-b hare lynx`` and ``+d hare lynx``? Are the coexistence point and the cycle period read off
    the learned field real - how far do they lie from the data, and how much do they move between
    members of an ensemble - and how do they compare with the Lotka-Volterra reference when its
    parameters carry their fitted uncertainty? And what happens when a and c are left free next
    to the network?
Model
    1. Reference: Lotka-Volterra fitted as in ``hare_lynx.py`` (lognormal error model, 1900
       populations free). Its covariance gives parameter draws (``sample_parameters``); every draw
       is integrated with SciPy (``derived("lotka_volterra", parameters=draws)``): the coexistence
       point and the period with percentile intervals. ``identifiability`` gives the sensitivity
       spectrum of a, b, c, d.
    2. UDE: a and c fixed at the reference fit's values, a tanh MLP (2-16-16-2) for the
       interaction, an ensemble of seeds (``sysid.ensemble``); ``distill`` over the members
       (quadratic library, BIC, inclusion frequencies), compared with -b and +d of the reference
       fit; ``derived`` over the members (with each member's vector-field error against the
       Stan Lotka-Volterra field); the report with the derived-quantities section.
    3. The same UDE with a and c free (one fit): ``identifiability`` checks whether the network
       absorbed the growth or death term.
Result (full mode; see case_studies/README.md)
    The reference's coexistence point and period agree with the Stan values and the data's period
    (the checks). What the UDE learns is measured and reported, not assumed: the distilled terms,
    their inclusion frequencies, the relative errors of the interaction coefficients, the derived
    quantities' intervals with their distances to the data, and the absorption check.

Run ``python case_studies/hare_lynx_science.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Study, parse_args, setup  # noqa: E402

RENAME = {"hare": "prey", "lynx": "predator"}
STAN = {"a": 0.55, "b": 0.028, "c": 0.80, "d": 0.024}
STAN_SOURCE = "Carpenter (2018) Stan case study, posterior means"
DATA_PERIOD = 10.29  # years, mean interval of the hare pelts' upward mean crossings (hare_lynx.py)


def _settings(fast: bool) -> dict:
    # Full mode: 6 members of 200 epochs. Fast mode (the test suite): 2 members of 20 epochs,
    # enough to run every step; its numbers are not the study's result.
    if fast:
        return {"members": 2, "epochs": 20, "draws": 20}
    return {"members": 6, "epochs": 200, "draws": 400}


def ude(a: float, c: float, *, free: bool):
    """Growth and death as physics, the interaction as a network (equations file syntax)."""
    import torch

    from sysid.models import from_toml

    par = {"a": {"value": a, "bounds": [0, 5], "units": "1/year", "fixed": not free},
           "c": {"value": c, "bounds": [0, 5], "units": "1/year", "fixed": not free}}
    return from_toml({"model": {
        "name": "Lotka-Volterra growth and death + network interaction", "time_units": "year",
        "states": {"prey": "thousands", "predator": "thousands"}, "parameters": par,
        "equations": {"dprey": "a*prey + nn(prey, predator)",
                      "dpredator": "-c*predator + nn(prey, predator)"},
        "neural": {"width": 16, "depth": 2}}}, dtype=torch.float64)


def ude_config(data, fast: bool):
    from sysid.training import FitConfig

    n = int(data.sizes["obs"])
    return FitConfig(epochs=_settings(fast)["epochs"], optimizer={"lr": 0.01, "weight_decay": 1e-3},
                     loss="log", initial_states="free", shooting={"horizons": (5, 10, n)},
                     solver={"substeps": 2}, refine={"stderr": False}, dtype="float64",
                     progress=False)


def fit_quality(data, fits: dict):
    """RMSE of log pelts of each fit's free run from its fitted 1900 state (the fit's criterion)."""
    import numpy as np
    import pandas as pd

    from sysid.analysis import predict, rmse

    rows = []
    for label, res in fits.items():
        pred = predict(res, data)
        rows.append({"fit": label, **{
            f"{long} RMSE of log": rmse(np.log(data[v].values[0]),
                                        np.log(np.clip(pred[v].values[0], 1e-9, None)))
            for v, long in (("prey", "hare"), ("predator", "lynx"))}})
    return pd.DataFrame(rows).set_index("fit")


def reference_section(study: Study, data, fast: bool):
    """The Lotka-Volterra fit, its identifiability and its derived quantities under its covariance."""
    import pandas as pd

    from hare_lynx import fit_lotka_volterra
    from sysid.analysis import derived, identifiability, sample_parameters

    lv = fit_lotka_volterra(data, fast)
    study.table("lv_fit", fit_quality(data, {"Lotka-Volterra": lv}))
    values = {str(n): float(v) for n, v in zip(lv.parameters["name"], lv.parameters["value"])}
    ident = identifiability(lv, data)
    study.table("lv_identifiability", ident.spectrum)
    draws = sample_parameters(lv, n=_settings(fast)["draws"], seed=0)
    y0 = [float(v) for v in lv.initial_states.iloc[0]]
    ref = derived("lotka_volterra", parameters=draws, y0=y0, t_end=80.0,
                  bounds={"prey": (-10.0, 120.0), "predator": (-10.0, 80.0)})
    study.table("reference_derived", ref.table)
    fp = ref.fixed_points()
    coexist = fp.loc[fp["prey"].idxmax()]
    tol = 0.10
    study.check("reference coexistence hare (c/d)", float(coexist["prey"]), STAN["c"] / STAN["d"],
                tol, source=STAN_SOURCE)
    study.check("reference coexistence lynx (a/b)", float(coexist["predator"]),
                STAN["a"] / STAN["b"], tol, source=STAN_SOURCE)
    study.check("reference cycle period [yr]", float(ref.table.loc["period", "estimate"]),
                DATA_PERIOD, 0.05, source="the data (hare_lynx.py, mean-crossing period)")
    study.notes.append(
        f"Lotka-Volterra parameters {values}; 90 % intervals of the coexistence point from "
        f"{len(draws)} draws of the fit's covariance: hare [{coexist['prey_low']:.2f}, "
        f"{coexist['prey_high']:.2f}], lynx [{coexist['predator_low']:.2f}, "
        f"{coexist['predator_high']:.2f}] thousand; period [{ref.table.loc['period', 'low']:.2f}, "
        f"{ref.table.loc['period', 'high']:.2f}] yr.")
    study.notes.append("identifiability of a, b, c, d: "
                       + "; ".join(f"{r['combination']} (sd {r['sd']:.3f})"
                                   for _, r in ident.spectrum.iterrows()))
    return lv, values, ref, pd


def ude_section(study: Study, data, lv_values: dict, ref, fast: bool, out: Path):
    """The UDE ensemble: distillation with inclusion frequencies, derived quantities, report."""
    import sysid
    from sysid.analysis import ExtrapolationWarning, derived, distill
    from sysid.parallel import SerialExecutor

    s = _settings(fast)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ens = sysid.ensemble(ude(lv_values["a"], lv_values["c"], free=False), data,
                             ude_config(data, fast), members=s["members"], kind="seeds",
                             executor=SerialExecutor(), progress=False)
    study.notes.append(f"UDE ensemble: {len(ens.fits)} of {len(ens.members)} members finished.")
    study.table("ude_fit", fit_quality(data, {f"UDE member {i}": f for i, f in enumerate(ens.fits)}))
    dist = distill(ens, data)
    study.table("distilled_inclusion", dist.inclusion)
    study.notes.append("distilled network (consensus of the members): " + dist.text().replace("\n", "; "))
    cmp = dist.compare({"prey": "-b*prey*predator", "predator": "d*prey*predator"},
                       parameters={"b": lv_values["b"], "d": lv_values["d"]}, rtol=0.1)
    study.table("distilled_vs_lotka_volterra", cmp)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ExtrapolationWarning)
        dq = derived(ens, data, y0=[float(v) for v in ens.fits[0].initial_states.iloc[0]],
                     t_end=80.0, bounds={"prey": (-10.0, 120.0), "predator": (-10.0, 80.0)},
                     reference="lotka_volterra")  # the catalogue's defaults: the Stan means
    study.notes += [f"ExtrapolationWarning: {w.message}" for w in caught]
    study.table("ude_derived", dq.table)
    study.table("ude_vs_reference", dq.compare(ref))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sysid.report(ens.fits[0], data, out=out / "ude_report", derived=dq, overwrite=True,
                     title="UDE (member 0) with the ensemble's derived quantities")
    return ens, dist, dq


def absorption_section(study: Study, data, lv_values: dict, fast: bool) -> None:
    """The UDE with a and c free: what the network took over."""
    import sysid
    from sysid.analysis import IdentifiabilityWarning, identifiability

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = sysid.fit(ude(lv_values["a"], lv_values["c"], free=True), data, ude_config(data, fast))
    p = {str(n): float(v) for n, v in zip(free.parameters["name"], free.parameters["value"])}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IdentifiabilityWarning)
        ident = identifiability(free, data)
    study.table("free_ude_absorption", ident.absorption)
    study.table("free_ude_spectrum", ident.spectrum)
    study.notes.append(f"UDE with a, c free: a = {p['a']:.3f}, c = {p['c']:.3f} 1/yr (reference "
                       f"{lv_values['a']:.3f}, {lv_values['c']:.3f}).")
    study.notes += [f"IdentifiabilityWarning: {w.message}" for w in caught]


def main(argv: Sequence[str] | None = None) -> Study:
    """Run the study; return the measured checks and tables."""
    args = parse_args(argv, __doc__, "results/case_studies")
    setup()
    from sysid import datasets

    study = Study(name="hare_lynx_science", out=Path(args.out), fast=args.fast)
    data = datasets.load("hare_lynx").rename(RENAME)
    _, values, ref, _ = reference_section(study, data, args.fast)
    ude_section(study, data, values, ref, args.fast, study.folder)
    absorption_section(study, data, values, args.fast)
    study.save()
    print(study.report())
    return study


if __name__ == "__main__":
    sys.exit(0 if main().passed else 1)
