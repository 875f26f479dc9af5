"""Epidemiology: influenza in an English boarding school, January 1978, as an SIR epidemic.

Data
    ``sysid.datasets.load("influenza_1978")``: boys confined to bed (``in_bed``) on days 1-14 of
    the outbreak among N = 763 pupils (BMJ 1978;1:587).
Question
    How fast did the flu spread and how long were boys infectious? The SIR model
    ``S' = -beta S I / N``, ``I' = beta S I / N - gamma I``, ``R' = gamma I`` with S0 = 762,
    I0 = 1 on day 0 has a least-squares fit to ``in_bed`` of beta = 1.669 /day, gamma = 0.4435 /day
    (R0 = beta / gamma = 3.76; Keeling & Rohani: beta = 1.66, 1/gamma = 2.2 days). Does sysid
    recover it, and does a neural correction of the infection rate forecast the end of the
    outbreak better?
Model
    1. ``sysid.models.physics("sir", free=["beta", "gamma"])`` (N = 763 fixed), I measured as
       ``in_bed``; the known day-0 state (762, 1, 0) is added as the first sample, so the whole
       series is one window integrated from it (single shooting, ``loss="sse"`` on I: the
       reference's least squares) by sysid's least-squares estimator with its defaults.
    2. Held-out days 11-14: SIR and a hybrid SIR fitted on days 0-10. The hybrid's infection
       rate is ``beta S I / N + g(S, I)`` with ``g`` an MLP (2-16-16-1): the same term leaves S and
       enters I, so S + I + R stays N. Both are simulated from day 0 to day 14.
Result (full mode; see case_studies/README.md)
    beta and gamma within 1 % of the reference (checked at 1 %), R0 3.76. Whether the hybrid
    improves the held-out days is measured and reported as it comes out, not assumed.

Run ``python case_studies/influenza.py [--fast] [--out DIR]``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Study, parse_args, setup, with_initial_sample  # noqa: E402

REFERENCE = {"beta": 1.669, "gamma": 0.4435}
REFERENCE_SOURCE = "least squares of SIR to in_bed (shared datasets README; Keeling & Rohani 2008)"
N_PUPILS = 763.0
TRAIN_LAST_DAY = 10.0


def _settings(fast: bool) -> dict:
    # Fast mode: fewer Adam epochs for the hybrid (the SIR fit has no training settings: it goes
    # straight to least squares).
    if fast:
        return {"substeps": 2, "hybrid_epochs": 120}
    return {"substeps": 4, "hybrid_epochs": 400}


def sir_data(ds):
    """``in_bed`` as the measured I, with the known day-0 state as the first sample."""
    return with_initial_sample(ds[["in_bed"]], 0.0, {"S": N_PUPILS - 1.0, "I": 1.0, "R": 0.0},
                               rename={"in_bed": "I"}, units={"S": "boys", "R": "boys"})


def _single_shooting(*, epochs: int, substeps: int, lr: float, polish: bool,
                     weight_decay: float = 0.0):
    from sysid.training import FitConfig, Loss, Optimizer

    # S and R are known only on day 0: weight 0 (their day-0 value is the initial state anyway)
    # neural_penalty=0: the engine's hybrid penalty is evaluated at samples where every measured
    # state has a smoothed value, and S, R are measured on day 0 only (no such sample: the
    # penalty would be the mean of nothing, NaN). The correction is kept small by weight decay.
    return FitConfig(epochs=epochs, dtype="float64", progress=False, shooting="single",
                     optimizer=Optimizer(lr=lr, weight_decay=weight_decay),
                     solver={"substeps": substeps}, refine=polish,
                     loss=Loss(weights={"S": 0.0, "R": 0.0}, neural_penalty=0.0), warm_start=False)


def fit_sir(data, fast: bool):
    """SIR with beta, gamma free and N = 763 fixed, single shooting from the day-0 state."""
    import torch

    from sysid.models import physics
    from sysid.training import fit

    from sysid.training import FitConfig

    model = physics("sir", free=["beta", "gamma"], values={"beta": 1.0, "gamma": 0.3, "N": N_PUPILS},
                    dtype=torch.float64)
    # sysid's defaults: no network weights, so straight to the joint least-squares estimator
    # (single shooting from the day-0 state; S and R are measured on day 0 only: no residuals)
    return fit(model, data, FitConfig(loss="sse", dtype="float64", progress=False))


def infection_correction(width: int = 16, depth: int = 2, seed: int = 0):
    """A neural term ``g(S, I)`` added to the infection rate: ``(-g, +g)`` on ``(S', I')``.

    Returns a :class:`sysid.models.VectorField` over (S, I, R) whose outputs are S and I, for
    :class:`sysid.models.HybridField` with ``neural_states=["S", "I"]``.
    """
    import numpy as np
    import torch

    from sysid.models import NeuralField, VectorField

    class InfectionCorrection(VectorField):
        """``g(S, I)`` from an MLP, leaving S and entering I (S + I + R conserved)."""

        def __init__(self) -> None:
            super().__init__()
            self._init_names("InfectionCorrection", ("S", "I", "R"), (), ("S", "I"),
                             ("boys", "boys", "boys"), (), "day")
            self.net = NeuralField(("S", "I"), outputs=("I",), width=width, depth=depth, seed=seed,
                                   state_units=("boys", "boys"), time_units="day")

        def forward(self, t: torch.Tensor, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
            g = self.net(t, x[..., :2])
            return torch.cat([-g, g], dim=-1)

        def set_scaling(self, scaling: Any) -> None:
            self.net.set_scaling(scaling)

        def numpy_function(self):
            inner = self.net.numpy_function()

            def f(t, x, u):
                g = inner(t, np.asarray(x)[..., :2], None)
                return np.concatenate([-g, g], axis=-1)

            return f

        def spec(self) -> dict[str, Any]:
            return {"class": "InfectionCorrection", "net": self.net.spec()}

    return InfectionCorrection()


def fit_hybrid(data, sir_values: dict[str, float], fast: bool):
    """SIR (starting at the SIR fit's beta, gamma) with the neural infection-rate correction."""
    import torch

    from sysid.models import HybridField, Model, PhysicsField
    from sysid.training import fit

    s = _settings(fast)
    phys = PhysicsField.from_system("sir", free=["beta", "gamma"],
                                    values={**sir_values, "N": N_PUPILS}, dtype=torch.float64)
    field = HybridField(phys, infection_correction().to(torch.float64), neural_states=["S", "I"])
    return fit(Model(field), data, _single_shooting(
        epochs=s["hybrid_epochs"], substeps=s["substeps"], lr=0.005, polish=False,
        weight_decay=1e-3))


def _values(result) -> dict[str, float]:
    p = result.parameters
    return {str(n): float(v) for n, v in zip(p["name"], p["value"]) if n != "N"}


def _figure(data, preds: dict, split: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(data["time"].values[0][1:], data["I"].values[0][1:], "ko", ms=4, label="boys in bed")
    for k, (label, pred) in enumerate(preds.items()):
        ax.plot(pred["time"].values[0], pred["I"].values[0], "-", color=f"C{k}", label=f"I, {label}")
    ax.axvspan(split + 0.5, float(data["time"].values[0][-1]) + 0.5, color="0.9", zorder=0)
    ax.set_xlabel("day of outbreak")
    ax.set_ylabel("infectious boys")
    ax.set_title("SIR fits (shaded: days held out from the train-only fits)")
    ax.legend(fontsize=8)
    return fig


def main(argv: Sequence[str] | None = None) -> Study:
    """Run the study; return the measured checks and tables."""
    args = parse_args(argv, __doc__, "results/case_studies")
    setup()
    import numpy as np
    import pandas as pd

    from sysid import datasets, plot
    from sysid.analysis import parameter_table, predict, rmse

    study = Study(name="influenza", out=Path(args.out), fast=args.fast)
    data = sir_data(datasets.load("influenza_1978"))

    # 1. SIR on all 14 days
    sir = fit_sir(data, args.fast)
    table = parameter_table(sir, REFERENCE)
    study.table("sir_parameters", table.loc[["beta", "gamma"], ["value", "reference", "percent_error",
                                                                "stderr", "ci95_low", "ci95_high", "units"]])
    # 1 % in both modes: the least-squares estimator converges the two-parameter fit
    for name in ("beta", "gamma"):
        study.check(f"SIR {name} [1/day]", table.loc[name, "value"], REFERENCE[name], 0.01,
                    source=REFERENCE_SOURCE)
    r0 = table.loc["beta", "value"] / table.loc["gamma", "value"]
    study.check("R0 = beta / gamma", r0, REFERENCE["beta"] / REFERENCE["gamma"], 0.05,
                source="ratio of the reference rates")
    study.notes.append(f"R0 = {r0:.3f}; mean infectious period 1/gamma = "
                       f"{1 / table.loc['gamma', 'value']:.2f} days (Keeling & Rohani: 2.2)")
    study.figure(plot.parameter_recovery(table.loc[["beta", "gamma"]]).figure, "sir_parameter_recovery")

    # 2. held-out days 11-14: SIR vs hybrid SIR, both fitted on days 0-10
    t = data["time"].values[0]
    train = data.isel(obs=np.flatnonzero(t <= TRAIN_LAST_DAY))
    train.attrs = dict(data.attrs)
    sir_train = fit_sir(train, args.fast)
    hyb = fit_hybrid(train, _values(sir_train), args.fast)
    preds = {"SIR, all days": predict(sir.model, data)}
    rows = []
    for label, res in (("SIR", sir_train), ("hybrid SIR + neural infection", hyb)):
        pred = predict(res.model, data)
        preds[f"{label}, days 0-10"] = pred
        y, p = data["I"].values[0], pred["I"].values[0]
        fit_days = (t >= 1) & (t <= TRAIN_LAST_DAY)
        held = t > TRAIN_LAST_DAY
        vals = _values(res)
        rows.append({"model": label, "beta": vals["beta"], "gamma": vals["gamma"],
                     "RMSE days 1-10": rmse(y[fit_days], p[fit_days]),
                     "RMSE days 11-14 (held out)": rmse(y[held], p[held]),
                     "S+I+R at day 14": float(pred["S"].values[0][-1] + pred["I"].values[0][-1]
                                              + pred["R"].values[0][-1])})
    held_tab = pd.DataFrame(rows).set_index("model")
    study.table("held_out", held_tab)
    e_sir = held_tab.iloc[0]["RMSE days 11-14 (held out)"]
    e_hyb = held_tab.iloc[1]["RMSE days 11-14 (held out)"]
    change = 100.0 * (e_hyb - e_sir) / e_sir
    # call a difference under 10 % of the error "no real change": 4 held-out days of counts
    verdict = ("improves" if change < -10 else "worsens" if change > 10 else "does not materially change")
    study.notes.append(f"the hybrid {verdict} the held-out days 11-14: RMSE {e_hyb:.1f} vs {e_sir:.1f} "
                       f"boys for plain SIR ({change:+.0f} %); hybrid fit stopped: "
                       f"{hyb.stopped_reason}")
    # conservation is structural in the hybrid (the correction leaves S and enters I)
    study.check("hybrid fit completed (1 = yes)", float(hyb.stopped_reason != "diverged"), 1.0, 0.0,
                absolute=True, source="a diverged fit returns its starting model")
    study.check("hybrid S+I+R at day 14", held_tab.iloc[1]["S+I+R at day 14"], N_PUPILS, 1e-6,
                source="N = 763 (conserved by construction)")
    study.figure(_figure(data, preds, TRAIN_LAST_DAY), "trajectories")
    study.save()
    print(study.report())
    return study


if __name__ == "__main__":
    sys.exit(0 if main().passed else 1)
