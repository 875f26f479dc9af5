"""Compartmental epidemic models."""

from __future__ import annotations

import math

from sysid.systems.base import ParameterSpec, System, register

INF = math.inf


# ---------------------------------------------------------------------- SIR
def _sir_rhs(t, x, u, p, xp):
    s, i = x[..., 0], x[..., 1]
    infection = p["beta"] * s * i / p["N"]
    recovery = p["gamma"] * i
    return xp.stack([-infection, infection - recovery, recovery])


SIR = register(System(
    name="sir",
    title="SIR epidemic (Kermack-McKendrick)",
    field="epidemiology",
    states=("S", "I", "R"),
    state_units=("persons", "persons", "persons"),
    parameters=(
        ParameterSpec(name="beta", default=1.66, units="1/day", bounds=(0.0, INF),
                      description="transmission rate"),
        ParameterSpec(name="gamma", default=0.4545, units="1/day", bounds=(0.0, INF),
                      description="recovery rate (1 / infectious period)"),
        ParameterSpec(name="N", default=763.0, units="persons", bounds=(0.0, INF),
                      description="population size"),
    ),
    rhs=_sir_rhs,
    y0=(762.0, 1.0, 0.0),
    t_span=(0.0, 14.0),
    time_units="day",
    reference="Kermack, W. O. & McKendrick, A. G. (1927). A contribution to the mathematical theory "
              "of epidemics. Proc. R. Soc. A 115, 700-721. Defaults: the fit to the 1978 English "
              "boarding-school influenza outbreak (N = 763; BMJ 1978;1:587) in Keeling, M. J. & "
              "Rohani, P. (2008). Modeling Infectious Diseases in Humans and Animals, Chapter 2. "
              "Princeton University Press (beta = 1.66/day, 1/gamma = 2.2 days); see also "
              "Grinsztajn, L. et al. (2021). Bayesian workflow for disease transmission modeling "
              "in Stan. Statistics in Medicine 40(27), 6209-6234.",
    description="S' = -beta S I / N, I' = beta S I / N - gamma I, R' = gamma I; S + I + R is "
                "conserved.",
))


# ---------------------------------------------------------------------- SEIR
def _seir_rhs(t, x, u, p, xp):
    s, e, i = x[..., 0], x[..., 1], x[..., 2]
    infection = p["beta"] * s * i / p["N"]
    onset = p["sigma"] * e
    recovery = p["gamma"] * i
    return xp.stack([-infection, infection - onset, onset - recovery, recovery])


SEIR = register(System(
    name="seir",
    title="SEIR epidemic with a latent period",
    field="epidemiology",
    states=("S", "E", "I", "R"),
    state_units=("persons", "persons", "persons", "persons"),
    parameters=(
        ParameterSpec(name="beta", default=0.5, units="1/day", bounds=(0.0, INF),
                      description="transmission rate"),
        ParameterSpec(name="sigma", default=0.2, units="1/day", bounds=(0.0, INF),
                      description="rate of becoming infectious (1 / latent period)"),
        ParameterSpec(name="gamma", default=0.1, units="1/day", bounds=(0.0, INF),
                      description="recovery rate (1 / infectious period)"),
        ParameterSpec(name="N", default=10000.0, units="persons", bounds=(0.0, INF),
                      description="population size"),
    ),
    rhs=_seir_rhs,
    y0=(9990.0, 0.0, 10.0, 0.0),
    t_span=(0.0, 150.0),
    time_units="day",
    reference="Hethcote, H. W. (2000). The mathematics of infectious diseases. SIAM Review 42(4), "
              "599-653; Anderson, R. M. & May, R. M. (1991). Infectious Diseases of Humans. Oxford "
              "University Press.",
    description="S' = -beta S I / N, E' = beta S I / N - sigma E, I' = sigma E - gamma I, "
                "R' = gamma I (R0 = beta / gamma = 5 by default).",
))
