"""Reference systems from mechanics and fluid dynamics.

Second-order mechanical systems are written as positions then velocities (``order=2``).
"""

from __future__ import annotations

import math

from sysid.systems.base import ParameterSpec, System, register

INF = math.inf


# ---------------------------------------------------------------------- harmonic oscillator
def _harmonic_rhs(t, x, u, p, xp):
    pos, vel = x[..., 0], x[..., 1]
    return xp.stack([vel, -(p["omega"] ** 2) * pos])


HARMONIC_OSCILLATOR = register(System(
    name="harmonic_oscillator",
    title="Harmonic oscillator",
    field="physics",
    states=("x", "v"),
    state_units=("m", "m/s"),
    parameters=(
        ParameterSpec(name="omega", default=1.0, units="rad/s", bounds=(0.0, INF),
                      description="angular frequency sqrt(k/m)"),
    ),
    rhs=_harmonic_rhs,
    y0=(1.0, 0.0),
    t_span=(0.0, 20.0),
    time_units="s",
    order=2,
    reference="Landau, L. D. & Lifshitz, E. M. (1976). Mechanics, 3rd ed., Section 21 "
              "(free oscillations in one dimension). Pergamon Press.",
    description="x'' = -omega^2 x. Energy E = v^2/2 + omega^2 x^2/2 is conserved; "
                "x(t) = x0 cos(omega t) + (v0/omega) sin(omega t).",
))


# ---------------------------------------------------------------------- damped oscillator
def _damped_rhs(t, x, u, p, xp):
    pos, vel = x[..., 0], x[..., 1]
    w = p["omega"]
    return xp.stack([vel, -(w ** 2) * pos - 2.0 * p["zeta"] * w * vel])


DAMPED_OSCILLATOR = register(System(
    name="damped_oscillator",
    title="Damped harmonic oscillator",
    field="physics",
    states=("x", "v"),
    state_units=("m", "m/s"),
    parameters=(
        ParameterSpec(name="omega", default=1.0, units="rad/s", bounds=(0.0, INF),
                      description="undamped angular frequency sqrt(k/m)"),
        ParameterSpec(name="zeta", default=0.1, units="", bounds=(0.0, INF),
                      description="damping ratio c / (2 sqrt(k m))"),
    ),
    rhs=_damped_rhs,
    y0=(1.0, 0.0),
    t_span=(0.0, 30.0),
    time_units="s",
    order=2,
    reference="Landau, L. D. & Lifshitz, E. M. (1976). Mechanics, 3rd ed., Section 25 "
              "(damped oscillations). Pergamon Press.",
    description="x'' + 2 zeta omega x' + omega^2 x = 0 (underdamped for zeta < 1).",
))


# ---------------------------------------------------------------------- pendulum
def _pendulum_rhs(t, x, u, p, xp):
    theta, omega = x[..., 0], x[..., 1]
    return xp.stack([omega, -p["w2"] * xp.sin(theta) - p["c"] * omega])


PENDULUM = register(System(
    name="pendulum",
    title="Nonlinear damped pendulum",
    field="physics",
    states=("theta", "omega"),
    state_units=("rad", "rad/s"),
    parameters=(
        ParameterSpec(name="w2", default=9.81, units="1/s^2", bounds=(0.0, INF),
                      description="g / L, squared small-angle frequency"),
        ParameterSpec(name="c", default=0.1, units="1/s", bounds=(0.0, INF),
                      description="linear (viscous) damping rate"),
    ),
    rhs=_pendulum_rhs,
    y0=(1.0, 0.0),
    t_span=(0.0, 20.0),
    time_units="s",
    order=2,
    reference="Strogatz, S. H. (2015). Nonlinear Dynamics and Chaos, 2nd ed., Section 6.7 "
              "(pendulum). Westview Press.",
    description="theta'' = -w2 sin(theta) - c theta', theta measured from the hanging-down "
                "position (w2 = g/L; a 1 m pendulum by default).",
))


# ---------------------------------------------------------------------- Duffing
def _duffing_rhs(t, x, u, p, xp):
    pos, vel = x[..., 0], x[..., 1]
    acc = -p["delta"] * vel - p["alpha"] * pos - p["beta"] * pos ** 3 + u[..., 0]
    return xp.stack([vel, acc])


DUFFING = register(System(
    name="duffing",
    title="Forced Duffing oscillator",
    field="physics",
    states=("x", "v"),
    state_units=("m", "m/s"),
    inputs=("u",),
    input_units=("m/s^2",),
    input_scale=(0.3,),
    parameters=(
        ParameterSpec(name="delta", default=0.2, units="1/s", bounds=(0.0, INF),
                      description="damping"),
        ParameterSpec(name="alpha", default=-1.0, units="1/s^2",
                      description="linear stiffness (negative: double well)"),
        ParameterSpec(name="beta", default=1.0, units="1/(m^2 s^2)",
                      description="cubic stiffness (positive: hardening)"),
    ),
    rhs=_duffing_rhs,
    y0=(1.0, 0.0),
    t_span=(0.0, 50.0),
    time_units="s",
    order=2,
    reference="Kovacic, I. & Brennan, M. J., eds. (2011). The Duffing Equation: Nonlinear "
              "Oscillators and their Behaviour, Chapter 1. Wiley. (Duffing, G. (1918), Erzwungene "
              "Schwingungen bei veraenderlicher Eigenfrequenz, Vieweg.)",
    description="x'' + delta x' + alpha x + beta x^3 = u(t), with u(t) an external forcing per "
                "unit mass (gamma cos(omega t) in the classical form).",
))


# ---------------------------------------------------------------------- mass-spring-damper
def _msd_rhs(t, x, u, p, xp):
    pos, vel = x[..., 0], x[..., 1]
    acc = (u[..., 0] - p["c"] * vel - p["k"] * pos) / p["m"]
    return xp.stack([vel, acc])


MASS_SPRING_DAMPER = register(System(
    name="mass_spring_damper",
    title="Mass-spring-damper with input force",
    field="physics",
    states=("x", "v"),
    state_units=("m", "m/s"),
    inputs=("F",),
    input_units=("N",),
    input_scale=(1.0,),
    parameters=(
        ParameterSpec(name="m", default=1.0, units="kg", bounds=(0.0, INF), description="mass"),
        ParameterSpec(name="c", default=0.5, units="N s/m", bounds=(0.0, INF),
                      description="viscous damping coefficient"),
        ParameterSpec(name="k", default=4.0, units="N/m", bounds=(0.0, INF),
                      description="spring stiffness"),
    ),
    rhs=_msd_rhs,
    y0=(0.1, 0.0),
    t_span=(0.0, 20.0),
    time_units="s",
    order=2,
    reference="Ogata, K. (2010). Modern Control Engineering, 5th ed., Section 3-3 (mechanical "
              "systems). Prentice Hall.",
    description="m x'' + c x' + k x = F(t): the forced damped oscillator.",
))


# ---------------------------------------------------------------------- Van der Pol
def _vdp_rhs(t, x, u, p, xp):
    pos, vel = x[..., 0], x[..., 1]
    return xp.stack([vel, p["mu"] * (1.0 - pos ** 2) * vel - pos])


VAN_DER_POL = register(System(
    name="van_der_pol",
    title="Van der Pol oscillator",
    field="physics",
    states=("x", "v"),
    state_units=("", ""),
    parameters=(
        ParameterSpec(name="mu", default=1.0, units="", bounds=(0.0, INF),
                      description="nonlinear damping strength"),
    ),
    rhs=_vdp_rhs,
    y0=(2.0, 0.0),
    t_span=(0.0, 20.0),
    time_units="",
    order=2,
    reference="van der Pol, B. (1926). On 'relaxation-oscillations'. The London, Edinburgh, and "
              "Dublin Philosophical Magazine and Journal of Science 2(11), 978-992.",
    description="x'' - mu (1 - x^2) x' + x = 0 (dimensionless); a stable limit cycle for mu > 0.",
))


# ---------------------------------------------------------------------- Lorenz
def _lorenz_rhs(t, x, u, p, xp):
    a, b, c = x[..., 0], x[..., 1], x[..., 2]
    return xp.stack([
        p["sigma"] * (b - a),
        a * (p["rho"] - c) - b,
        a * b - p["beta"] * c,
    ])


LORENZ = register(System(
    name="lorenz",
    title="Lorenz system",
    field="physics",
    states=("x", "y", "z"),
    state_units=("", "", ""),
    parameters=(
        ParameterSpec(name="sigma", default=10.0, units="", bounds=(0.0, INF),
                      description="Prandtl number"),
        ParameterSpec(name="rho", default=28.0, units="", bounds=(0.0, INF),
                      description="Rayleigh number relative to the critical one"),
        ParameterSpec(name="beta", default=8.0 / 3.0, units="", bounds=(0.0, INF),
                      description="aspect-ratio factor b"),
    ),
    rhs=_lorenz_rhs,
    y0=(1.0, 1.0, 1.0),
    t_span=(0.0, 10.0),
    time_units="",
    reference="Lorenz, E. N. (1963). Deterministic nonperiodic flow. Journal of the Atmospheric "
              "Sciences 20(2), 130-141.",
    description="x' = sigma (y - x), y' = x (rho - z) - y, z' = x y - beta z (dimensionless "
                "convection modes); chaotic for the defaults.",
))
