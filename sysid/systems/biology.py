"""Reference systems from population biology and neuroscience."""

from __future__ import annotations

import math

from sysid.systems.base import ParameterSpec, System, register

INF = math.inf


# ---------------------------------------------------------------------- Lotka-Volterra
def _lv_rhs(t, x, u, p, xp):
    prey, pred = x[..., 0], x[..., 1]
    return xp.stack([
        (p["a"] - p["b"] * pred) * prey,
        (-p["c"] + p["d"] * prey) * pred,
    ])


LOTKA_VOLTERRA = register(System(
    name="lotka_volterra",
    title="Lotka-Volterra predator-prey",
    field="biology",
    states=("prey", "predator"),
    state_units=("thousands", "thousands"),
    parameters=(
        ParameterSpec(name="a", default=0.55, units="1/year", bounds=(0.0, INF),
                      description="prey growth rate"),
        ParameterSpec(name="b", default=0.028, units="1/(thousands year)", bounds=(0.0, INF),
                      description="predation rate"),
        ParameterSpec(name="c", default=0.80, units="1/year", bounds=(0.0, INF),
                      description="predator death rate"),
        ParameterSpec(name="d", default=0.024, units="1/(thousands year)", bounds=(0.0, INF),
                      description="predator growth per prey eaten"),
    ),
    rhs=_lv_rhs,
    y0=(33.956, 5.933),
    t_span=(0.0, 20.0),
    time_units="year",
    reference="Carpenter, B. (2018). Predator-Prey Population Dynamics: the Lotka-Volterra model "
              "in Stan. Stan Case Studies 5 (Hudson Bay Company hare and lynx pelts, 1900-1920; "
              "defaults are its posterior means). Lotka, A. J. (1925), Volterra, V. (1926).",
    description="u' = (a - b v) u, v' = (-c + d u) v for prey u and predators v (thousands of "
                "pelts). V = d u - c ln u + b v - a ln v is conserved.",
))


# ---------------------------------------------------------------------- competitive LV
def _clv_rhs(t, x, u, p, xp):
    n1, n2 = x[..., 0], x[..., 1]
    return xp.stack([
        p["r1"] * n1 * (1.0 - (n1 + p["a12"] * n2) / p["K1"]),
        p["r2"] * n2 * (1.0 - (n2 + p["a21"] * n1) / p["K2"]),
    ])


COMPETITIVE_LOTKA_VOLTERRA = register(System(
    name="competitive_lotka_volterra",
    title="Competitive Lotka-Volterra (two species)",
    field="biology",
    states=("species1", "species2"),
    state_units=("individuals", "individuals"),
    parameters=(
        ParameterSpec(name="r1", default=1.0, units="1/day", bounds=(0.0, INF),
                      description="intrinsic growth rate of species 1"),
        ParameterSpec(name="K1", default=100.0, units="individuals", bounds=(0.0, INF),
                      description="carrying capacity of species 1"),
        ParameterSpec(name="a12", default=0.5, units="", bounds=(0.0, INF),
                      description="competitive effect of species 2 on species 1"),
        ParameterSpec(name="r2", default=0.8, units="1/day", bounds=(0.0, INF),
                      description="intrinsic growth rate of species 2"),
        ParameterSpec(name="K2", default=80.0, units="individuals", bounds=(0.0, INF),
                      description="carrying capacity of species 2"),
        ParameterSpec(name="a21", default=0.4, units="", bounds=(0.0, INF),
                      description="competitive effect of species 1 on species 2"),
    ),
    rhs=_clv_rhs,
    y0=(10.0, 10.0),
    t_span=(0.0, 30.0),
    time_units="day",
    reference="Murray, J. D. (2002). Mathematical Biology I: An Introduction, 3rd ed., "
              "Section 3.5 (competition models). Springer.",
    description="N1' = r1 N1 (1 - (N1 + a12 N2)/K1), N2' = r2 N2 (1 - (N2 + a21 N1)/K2); the "
                "defaults give stable coexistence.",
))


# ---------------------------------------------------------------------- FitzHugh-Nagumo
def _fhn_rhs(t, x, u, p, xp):
    v, w = x[..., 0], x[..., 1]
    return xp.stack([
        v - v ** 3 / 3.0 - w + p["I"],
        p["eps"] * (v + p["a"] - p["b"] * w),
    ])


FITZHUGH_NAGUMO = register(System(
    name="fitzhugh_nagumo",
    title="FitzHugh-Nagumo neuron",
    field="biology",
    states=("v", "w"),
    state_units=("", ""),
    parameters=(
        ParameterSpec(name="a", default=0.7, units="", description="recovery offset"),
        ParameterSpec(name="b", default=0.8, units="", bounds=(0.0, INF),
                      description="recovery feedback"),
        ParameterSpec(name="eps", default=0.08, units="", bounds=(0.0, INF),
                      description="time-scale ratio of recovery to excitation (1/tau)"),
        ParameterSpec(name="I", default=0.5, units="", description="applied stimulus current"),
    ),
    rhs=_fhn_rhs,
    y0=(-1.0, 1.0),
    t_span=(0.0, 100.0),
    time_units="",
    reference="FitzHugh, R. (1961). Impulses and physiological states in theoretical models of "
              "nerve membrane. Biophysical Journal 1(6), 445-466; written as in Izhikevich, E. M. & "
              "FitzHugh, R. (2006). FitzHugh-Nagumo model. Scholarpedia 1(9), 1349.",
    description="v' = v - v^3/3 - w + I, w' = eps (v + a - b w) (dimensionless membrane potential "
                "v and recovery w); repetitive spiking for the defaults.",
))


# ---------------------------------------------------------------------- logistic growth
def _logistic_rhs(t, x, u, p, xp):
    n = x[..., 0]
    return xp.stack([p["r"] * n * (1.0 - n / p["K"])])


LOGISTIC = register(System(
    name="logistic",
    title="Logistic growth",
    field="biology",
    states=("N",),
    state_units=("million",),
    parameters=(
        ParameterSpec(name="r", default=0.0313395, units="1/year", bounds=(0.0, INF),
                      description="intrinsic growth rate"),
        ParameterSpec(name="K", default=197.27, units="million", bounds=(0.0, INF),
                      description="carrying capacity"),
    ),
    rhs=_logistic_rhs,
    y0=(3.929,),
    t_span=(0.0, 180.0),
    time_units="year",
    reference="Verhulst, P.-F. (1838). Notice sur la loi que la population suit dans son "
              "accroissement. Correspondance mathematique et physique 10, 113-121; Pearl, R. & "
              "Reed, L. J. (1920). On the rate of growth of the population of the United States "
              "since 1790. PNAS 6(6), 275-288 (defaults: their fit to the US census, K = 197.27 "
              "million; y0 = the 1790 census).",
    description="N' = r N (1 - N/K); N(t) = K / (1 + (K/N0 - 1) exp(-r t)).",
))
