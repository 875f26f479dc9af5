"""Macroeconomic growth models."""

from __future__ import annotations

import math

from sysid.systems.base import ParameterSpec, System, register

INF = math.inf


# ---------------------------------------------------------------------- Goodwin growth cycle
def _goodwin_rhs(t, x, u, p, xp):
    v, w = x[..., 0], x[..., 1]
    return xp.stack([
        v * ((1.0 - w) / p["sigma"] - (p["alpha"] + p["beta"])),
        w * (p["rho"] * v - (p["alpha"] + p["gamma"])),
    ])


GOODWIN = register(System(
    name="goodwin",
    title="Goodwin growth cycle",
    field="economics",
    states=("employment", "wage_share"),
    state_units=("1", "1"),
    parameters=(
        ParameterSpec(name="alpha", default=0.018, units="1/year", bounds=(0.0, INF),
                      description="growth rate of labour productivity"),
        ParameterSpec(name="beta", default=0.02, units="1/year", bounds=(0.0, INF),
                      description="growth rate of the labour force"),
        ParameterSpec(name="sigma", default=3.0, units="year", bounds=(0.0, INF),
                      description="capital-output ratio"),
        ParameterSpec(name="gamma", default=0.6, units="1/year", bounds=(0.0, INF),
                      description="intercept of the linear Phillips curve (wage growth -gamma "
                                  "+ rho v)"),
        ParameterSpec(name="rho", default=0.65, units="1/year", bounds=(0.0, INF),
                      description="slope of the linear Phillips curve"),
    ),
    rhs=_goodwin_rhs,
    y0=(0.9, 0.85),
    t_span=(0.0, 60.0),
    time_units="year",
    reference="Goodwin, R. M. (1967). A growth cycle. In C. H. Feinstein (ed.), Socialism, "
              "Capitalism and Economic Growth, 54-58. Cambridge University Press.",
    description="v' = v ((1 - w)/sigma - (alpha + beta)), w' = w (rho v - (alpha + gamma)) for "
                "employment rate v and wage share w: a Lotka-Volterra cycle around "
                "v* = (alpha + gamma)/rho, w* = 1 - sigma (alpha + beta).",
))


# ---------------------------------------------------------------------- Solow growth
def _solow_rhs(t, x, u, p, xp):
    k = x[..., 0]
    # k^alpha is undefined below 0; a neural correction may push k there, so floor at 0
    output = xp.maximum(k, 0.0) ** p["alpha"]
    return xp.stack([p["s"] * output - (p["n"] + p["g"] + p["delta"]) * k])


SOLOW = register(System(
    name="solow",
    title="Solow-Swan growth model",
    field="economics",
    states=("k",),
    state_units=("capital per effective worker",),
    parameters=(
        ParameterSpec(name="s", default=0.25, units="", bounds=(0.0, 1.0),
                      description="saving rate"),
        ParameterSpec(name="alpha", default=0.33, units="", bounds=(0.0, 1.0),
                      description="capital share in Cobb-Douglas output y = k^alpha"),
        ParameterSpec(name="n", default=0.01, units="1/year", bounds=(-1.0, INF),
                      description="population growth rate"),
        ParameterSpec(name="g", default=0.02, units="1/year", bounds=(-1.0, INF),
                      description="growth rate of technology (labour-augmenting)"),
        ParameterSpec(name="delta", default=0.05, units="1/year", bounds=(0.0, INF),
                      description="depreciation rate"),
    ),
    rhs=_solow_rhs,
    y0=(1.0,),
    t_span=(0.0, 100.0),
    time_units="year",
    reference="Solow, R. M. (1956). A contribution to the theory of economic growth. Quarterly "
              "Journal of Economics 70(1), 65-94; effective-worker form and typical values as in "
              "Mankiw, N. G., Romer, D. & Weil, D. N. (1992). QJE 107(2), 407-437.",
    description="k' = s k^alpha - (n + g + delta) k; with lam = (1 - alpha)(n + g + delta), "
                "k^(1-alpha)(t) = s/(n+g+delta) + (k0^(1-alpha) - s/(n+g+delta)) exp(-lam t).",
))
