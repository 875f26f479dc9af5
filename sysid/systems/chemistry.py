"""Reaction kinetics and pharmacokinetics."""

from __future__ import annotations

import math

from sysid.systems.base import ParameterSpec, System, register

INF = math.inf


# ---------------------------------------------------------------------- first-order kinetics (BOD)
def _first_order_rhs(t, x, u, p, xp):
    y = x[..., 0]
    return xp.stack([p["k"] * (p["A"] - y)])


FIRST_ORDER_KINETICS = register(System(
    name="first_order_kinetics",
    title="First-order kinetics (biochemical oxygen demand)",
    field="chemistry",
    states=("y",),
    state_units=("mg/L",),
    parameters=(
        ParameterSpec(name="A", default=19.143, units="mg/L", bounds=(0.0, INF),
                      description="asymptotic (ultimate) oxygen demand"),
        ParameterSpec(name="k", default=0.5311, units="1/day", bounds=(0.0, INF),
                      description="first-order rate constant"),
    ),
    rhs=_first_order_rhs,
    y0=(0.0,),
    t_span=(0.0, 7.0),
    time_units="day",
    reference="Bates, D. M. & Watts, D. G. (1988). Nonlinear Regression Analysis and Its "
              "Applications, Appendix A1.4 (biochemical oxygen demand). Wiley. Defaults: the "
              "least-squares fit of y = A (1 - exp(-k t)) to the BOD data.",
    description="y' = k (A - y); y(t) = A + (y0 - A) exp(-k t).",
))


# ---------------------------------------------------------------------- A -> B -> C
def _chain_rhs(t, x, u, p, xp):
    a, b = x[..., 0], x[..., 1]
    r1 = p["k1"] * a
    r2 = p["k2"] * b
    return xp.stack([-r1, r1 - r2, r2])


REACTION_CHAIN = register(System(
    name="reaction_chain",
    title="Consecutive first-order reactions A -> B -> C",
    field="chemistry",
    states=("A", "B", "C"),
    state_units=("mol/L", "mol/L", "mol/L"),
    parameters=(
        ParameterSpec(name="k1", default=1.0, units="1/min", bounds=(0.0, INF),
                      description="rate constant of A -> B"),
        ParameterSpec(name="k2", default=0.5, units="1/min", bounds=(0.0, INF),
                      description="rate constant of B -> C"),
    ),
    rhs=_chain_rhs,
    y0=(1.0, 0.0, 0.0),
    t_span=(0.0, 10.0),
    time_units="min",
    reference="Bateman, H. (1910). The solution of a system of differential equations occurring "
              "in the theory of radioactive transformations. Proc. Cambridge Philos. Soc. 15, "
              "423-427; Atkins, P. & de Paula, J. (2014). Physical Chemistry, 10th ed., "
              "Topic 20E (consecutive reactions). Oxford University Press.",
    description="A' = -k1 A, B' = k1 A - k2 B, C' = k2 B; A + B + C is conserved and the "
                "solution is Bateman's sum of exponentials.",
))


# ---------------------------------------------------------------------- one-compartment PK
def _pk_rhs(t, x, u, p, xp):
    gut, conc = x[..., 0], x[..., 1]
    absorbed = p["ka"] * gut
    return xp.stack([-absorbed, absorbed / p["V"] - p["ke"] * conc])


PK_ONE_COMPARTMENT = register(System(
    name="pk_one_compartment",
    title="One-compartment pharmacokinetics with first-order absorption",
    field="chemistry",
    states=("gut", "C"),
    state_units=("mg/kg", "mg/L"),
    parameters=(
        ParameterSpec(name="ka", default=1.57, units="1/h", bounds=(0.0, INF),
                      description="first-order absorption rate constant"),
        ParameterSpec(name="ke", default=0.0878, units="1/h", bounds=(0.0, INF),
                      description="first-order elimination rate constant"),
        ParameterSpec(name="V", default=0.457, units="L/kg", bounds=(0.0, INF),
                      description="apparent volume of distribution (V/F for oral doses)"),
    ),
    rhs=_pk_rhs,
    y0=(4.5, 0.0),
    t_span=(0.0, 25.0),
    time_units="h",
    reference="Pinheiro, J. C. & Bates, D. M. (2000). Mixed-Effects Models in S and S-PLUS, "
              "Springer (theophylline, first-order open one-compartment model); data from "
              "Boeckmann, A. J., Sheiner, L. B. & Beal, S. L. (1994). NONMEM Users Guide Part V. "
              "Defaults: nlme's fixed effects for Theoph (lKe = -2.4327, lKa = 0.4514, "
              "lCl = -3.2145; V = Cl/ke), with a typical oral dose of 4.5 mg/kg.",
    description="gut' = -ka gut, C' = ka gut / V - ke C (oral dose into the gut at t = 0); "
                "C(t) = D ka / (V (ka - ke)) (exp(-ke t) - exp(-ka t)).",
))
