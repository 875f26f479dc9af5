"""One NumPy view of every kind of dynamics the analysis works with, and a SciPy integrator for it.

The analysis compares learned and reference dynamics in the same way whatever they are: a
:class:`sysid.models.Model` (or a trained :class:`~sysid.training.FitResult`), a reference
:class:`sysid.systems.System`, or a user's right-hand side ``f(t, y)`` as ``solve_ivp`` takes it.
:func:`as_dynamics` wraps each of them into a :class:`Dynamics`: a batched NumPy function
``f(t, X, U) -> dX/dt`` with ``X`` of shape ``(M, S)`` in user units, plus the state and input
names and units. Everything else in :mod:`sysid.analysis` works on :class:`Dynamics` only.

:func:`integrate` integrates one with SciPy through the solver layer
(:func:`sysid.solvers.solve_scipy`: a finiteness check in the right-hand side, a work budget and a
typed :class:`~sysid.errors.SolverError` on failure).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sysid.errors import ConfigError, DataError
from sysid.models.dynamics import INTERPOLATIONS, BatchFn, Dynamics
from sysid.solvers import SolverConfig, default_solver, solve_scipy


def _from_system(system: Any, params: Mapping[str, float] | None) -> Dynamics:
    from sysid.backend import NUMPY

    p = dict(system.defaults())
    unknown = sorted(set(params or {}) - set(p))
    if unknown:
        raise ConfigError(
            f"params: {unknown} are not parameters of system {system.name!r}; it has {sorted(p)}."
        )
    p.update({k: float(v) for k, v in (params or {}).items()})
    rhs = system.rhs
    has_inputs = bool(system.inputs)

    def fn(t: np.ndarray, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        tt = float(t[0]) if np.ptp(t) == 0 else t
        return np.broadcast_to(rhs(tt, x, u if has_inputs else None, p, NUMPY), x.shape)

    return Dynamics(
        fn=fn,
        states=tuple(system.states),
        inputs=tuple(system.inputs),
        state_units=tuple(system.state_units),
        input_units=tuple(system.input_units),
        time_units=str(system.time_units),
        name=f"{system.name} (reference)",
    )


def _from_callable(
    f: Callable[..., Any], states: Sequence[str] | None, units: Sequence[str] | None, vectorized: bool
) -> Dynamics:
    if states is None:
        raise ConfigError(
            "as_dynamics: a plain function f(t, y) needs states=[...] (the names of y's entries); "
            "none were given."
        )
    states = tuple(str(s) for s in states)

    def fn(t: np.ndarray, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        if vectorized and np.ptp(t) == 0:
            return np.asarray(f(float(t[0]), x.T), dtype=float).reshape(len(states), -1).T
        return np.stack(
            [np.asarray(f(float(ti), row), dtype=float).reshape(len(states)) for ti, row in zip(t, x)]
        )

    name = getattr(f, "__name__", "f")
    return Dynamics(fn=fn, states=states, state_units=tuple(units or ()), name=str(name))


def as_dynamics(
    obj: Any,
    *,
    states: Sequence[str] | None = None,
    units: Sequence[str] | None = None,
    params: Mapping[str, float] | None = None,
    vectorized: bool = False,
) -> Dynamics:
    """Wrap a model, a fit result, a reference system or a function as :class:`Dynamics`.

    Parameters
    ----------
    obj : Dynamics, sysid.models.Model, sysid.models.VectorField, FitResult, sysid.systems.System
        or callable
        What to wrap. A callable is ``f(t, y)`` as :func:`scipy.integrate.solve_ivp` takes it (``y``
        of shape ``(S,)``), or ``(S, M)`` columns when ``vectorized=True``.
    states : sequence of str, optional
        State names; required for a callable; for a system, the names to use for its states (in
        its order, e.g. the data's names); ignored for models.
    units : sequence of str, optional
        State units for a callable.
    params : mapping, optional
        Parameter values overriding a system's defaults.
    vectorized : bool
        Whether a callable accepts ``y`` of shape ``(S, M)`` (as ``solve_ivp(vectorized=True)``).

    Returns
    -------
    Dynamics
    """
    if isinstance(obj, Dynamics):
        return obj
    from sysid.models import Model, VectorField
    from sysid.systems import System, get
    from sysid.training import FitResult

    if isinstance(obj, str):  # a catalogue name
        obj = get(obj)
    if isinstance(obj, System):
        dyn = _from_system(obj, params)
        if states is not None and tuple(states) != dyn.states:
            if len(tuple(states)) != len(dyn.states):
                raise ConfigError(
                    f"as_dynamics: system {obj.name!r} has {len(dyn.states)} states {list(dyn.states)}; "
                    f"{len(tuple(states))} names were given ({list(states)})."
                )
            dyn = dataclasses.replace(dyn, states=tuple(states))  # the data's names, same order
        return dyn
    if isinstance(obj, FitResult):
        return as_dynamics(obj.model)
    if isinstance(obj, Model):
        return Dynamics.from_model(obj, name="learned model")
    if isinstance(obj, VectorField):
        return Dynamics.from_field(obj, name=type(obj).__name__)
    if callable(obj):
        return _from_callable(obj, states, units, vectorized)
    raise ConfigError(
        f"as_dynamics: expected a sysid Model, FitResult, System (or its catalogue name) or a "
        f"function f(t, y); "
        f"got {type(obj).__name__}."
    )


# --------------------------------------------------------------------------------------------- #
# inputs
# --------------------------------------------------------------------------------------------- #
def input_function(
    times: np.ndarray, values: np.ndarray, *, kind: str = "linear", names: Sequence[str] = ()
) -> Callable[[np.ndarray], np.ndarray]:
    """Interpolate sampled inputs: returns ``u(t)`` for scalar or array ``t`` -> ``(..., I)``.

    ``kind`` is ``"zoh"`` (hold the last sample), ``"linear"`` or ``"cubic"`` (monotone PCHIP, as
    :class:`sysid.models.InputInterpolator`).
    Outside the samples the first/last value is held. Missing samples (NaN) of an input are skipped.
    """
    if kind not in INTERPOLATIONS:
        raise ConfigError(f"interpolation must be one of {list(INTERPOLATIONS)}; got {kind!r}.")
    times = np.asarray(times, float)
    values = np.asarray(values, float).reshape(times.size, -1)
    from sysid.models.interpolation import numpy_interpolant

    parts = []
    for j in range(values.shape[1]):
        ok = np.isfinite(times) & np.isfinite(values[:, j])
        label = names[j] if j < len(names) else f"input {j}"
        if not ok.any():
            raise DataError(f"input {label!r} has no finite samples; it cannot drive a simulation.")
        # the models' own interpolation rules (PCHIP for "cubic"), so a learned model sees here
        # the input it sees in sysid.simulate
        parts.append(numpy_interpolant(times[ok], values[ok, j], kind))

    def u(t: np.ndarray) -> np.ndarray:
        return np.stack([p(t)[..., 0] for p in parts], axis=-1)

    return u


# --------------------------------------------------------------------------------------------- #
# integration (through the solver layer: sysid.solvers.solve_scipy)
# --------------------------------------------------------------------------------------------- #
def Integration(**settings: Any) -> SolverConfig:  # noqa: N802 - the deprecated class name
    """Deprecated: the analysis takes a :class:`sysid.SolverConfig` (e.g. ``method="RK45"``).

    Returns the analysis default (RK45, rtol 1e-8, atol 1e-10) with ``settings`` replaced.
    """
    warnings.warn(
        "sysid.analysis.Integration is deprecated; pass sysid.SolverConfig(method='RK45', rtol=..., "
        "atol=..., max_step=...) (one settings object for fit, simulate and the analysis).",
        DeprecationWarning, stacklevel=2,
    )
    return SolverConfig.from_dict(settings, base=default_solver("analysis"))


def integrate(
    dyn: Dynamics,
    y0: np.ndarray,
    times: np.ndarray,
    *,
    u: Callable[[np.ndarray], np.ndarray] | None = None,
    settings: SolverConfig | None = None,
    events: Any = None,
) -> Any:
    """Integrate ``dyn`` from ``y0`` at ``times[0]`` and return SciPy's solution at ``times``.

    ``settings`` is a SciPy-method :class:`~sysid.solvers.SolverConfig` (default the analysis
    default: RK45, rtol 1e-8, atol 1e-10).

    Raises
    ------
    DataError
        For bad times or initial state, or missing inputs.
    SolverError
        When the right-hand side becomes non-finite or ``solve_ivp`` fails (with its message and
        the time reached, and a hint).
    """
    if dyn.inputs and u is None:
        raise DataError(f"{dyn.name}: the dynamics has inputs {list(dyn.inputs)}; no input values were given.")

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        ut = None if u is None else np.asarray(u(np.asarray(t)), float)[None, :]
        return dyn.fn(np.array([t], float), y[None, :], ut)[0]

    return solve_scipy(rhs, y0, times, settings, context=dyn.name, states=dyn.states,
                       time_units=dyn.time_units, events=events)


def step_batch(
    dyn: Dynamics,
    x0: np.ndarray,
    t0: np.ndarray,
    t1: np.ndarray,
    *,
    u: Callable[[np.ndarray], np.ndarray] | None = None,
    settings: SolverConfig | None = None,
) -> np.ndarray:
    """Advance many states at once, row ``m`` from ``t0[m]`` to ``t1[m]`` (one solve).

    Each row runs in its own rescaled time ``s`` in ``[0, 1]`` with ``t = t0 + s (t1 - t0)``, so one
    SciPy solve integrates them all. ``u`` maps an array of times ``(M,)`` to ``(M, I)``.
    """
    x0 = np.asarray(x0, float)
    m, n = x0.shape
    t0 = np.asarray(t0, float)
    dt = np.asarray(t1, float) - t0

    def rhs(s: float, y: np.ndarray) -> np.ndarray:
        tt = t0 + s * dt
        ut = None if u is None else np.asarray(u(tt), float)
        return (dyn.fn(tt, y.reshape(m, n), ut) * dt[:, None]).ravel()

    sol = solve_scipy(rhs, x0.ravel(), [0.0, 1.0], settings,
                      context=f"{dyn.name} (k-step prediction, time rescaled to [0, 1] per start)")
    return sol.y[:, -1].reshape(m, n)


__all__ = [
    "BatchFn",
    "Dynamics",
    "Integration",
    "as_dynamics",
    "input_function",
    "integrate",
    "step_batch",
]
