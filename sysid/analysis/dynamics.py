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
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np
import xarray as xr

from sysid.errors import ConfigError, DataError
from sysid.solvers import SolverConfig, default_solver, solve_scipy

BatchFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]

INTERPOLATIONS = ("zoh", "linear", "cubic")


@final
@dataclass(frozen=True, kw_only=True)
class Dynamics:
    """A right-hand side ``dX/dt = f(t, X, U)`` as batched NumPy, with names and units.

    Parameters
    ----------
    fn : callable
        ``fn(t, X, U)`` with ``t`` of shape ``(M,)`` (each row's own time), ``X`` of shape
        ``(M, S)``, ``U`` of shape ``(M, I)`` or None when there are no inputs; returns an array of
        shape ``(M, S)``.
    states, inputs : tuple of str
        State and input names, in the order of the last axes of ``X`` and ``U``.
    state_units, input_units : tuple of str
        Units of each state and input ("" when unknown).
    time_units : str
        Units of time.
    name : str
        A short description used in tables and plot titles.
    interpolation : {"zoh", "linear", "cubic"}
        How measured inputs are interpolated when this dynamics is simulated on data (a Model's
        own ``input_interpolation``; "linear" otherwise).
    latent_initial : mapping
        Initial values of states that data does not measure (a Model's ``latent_initial``).
    outputs, output_units : tuple of str
        Names and units of a Model's measurement equations (empty otherwise).
    observe : callable, optional
        ``observe(t, X, U) -> (M, O)``: the outputs at each row (a Model's measurement equations).
    """

    fn: BatchFn
    states: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    state_units: tuple[str, ...] = ()
    input_units: tuple[str, ...] = ()
    time_units: str = ""
    name: str = "dynamics"
    interpolation: str = "linear"
    latent_initial: Mapping[str, float] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    output_units: tuple[str, ...] = ()
    observe: BatchFn | None = None

    def __post_init__(self) -> None:
        if not self.states:
            raise ConfigError(f"Dynamics {self.name!r}: at least one state name is needed; got none.")
        if len(set(self.states)) != len(self.states):
            raise ConfigError(f"Dynamics {self.name!r}: state names must be unique; got {self.states}.")
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"Dynamics {self.name!r}: interpolation must be one of {list(INTERPOLATIONS)}; "
                f"got {self.interpolation!r}."
            )
        if not self.state_units:
            object.__setattr__(self, "state_units", ("",) * len(self.states))
        if not self.input_units:
            object.__setattr__(self, "input_units", ("",) * len(self.inputs))
        if len(self.state_units) != len(self.states):
            raise ConfigError(
                f"Dynamics {self.name!r}: {len(self.state_units)} state units for "
                f"{len(self.states)} states {self.states}."
            )

    @property
    def n_states(self) -> int:
        """Number of states ``S``."""
        return len(self.states)

    def __call__(self, t: float, x: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Evaluate the field at one state ``(S,)`` or a batch ``(M, S)``; same shape back."""
        x = np.asarray(x, dtype=float)
        single = x.ndim == 1
        xb = np.atleast_2d(x)
        if xb.shape[-1] != self.n_states:
            raise DataError(
                f"{self.name}: states have {xb.shape[-1]} columns but the dynamics has "
                f"{self.n_states} states {list(self.states)}."
            )
        ub = None
        if self.inputs:
            if u is None:
                raise DataError(
                    f"{self.name}: the dynamics has inputs {list(self.inputs)}; pass their values as u."
                )
            ub = np.broadcast_to(np.atleast_2d(np.asarray(u, dtype=float)), (xb.shape[0], len(self.inputs)))
        tb = np.broadcast_to(np.asarray(t, dtype=float), (xb.shape[0],))
        out = np.asarray(self.fn(tb, xb, ub), dtype=float).reshape(xb.shape)
        return out[0] if single else out

    def jacobian(
        self, x: np.ndarray, *, t: float = 0.0, u: np.ndarray | None = None, rel_step: float = 1e-6
    ) -> np.ndarray:
        """Jacobian ``df/dx`` at one state by central differences (``S x S``).

        The step for state ``i`` is ``rel_step * max(1, |x_i|)``; for smooth fields the error is of
        order ``rel_step**2`` times the third derivative.
        """
        x = np.asarray(x, dtype=float).ravel()
        n = x.size
        h = rel_step * np.maximum(1.0, np.abs(x))
        pts = np.empty((2 * n, n))
        for i in range(n):
            pts[2 * i] = x
            pts[2 * i, i] += h[i]
            pts[2 * i + 1] = x
            pts[2 * i + 1, i] -= h[i]
        f = self(t, pts, None if u is None else np.broadcast_to(np.asarray(u, float), (2 * n, len(self.inputs))))
        jac = np.empty((n, n))
        for i in range(n):
            jac[:, i] = (f[2 * i] - f[2 * i + 1]) / (2 * h[i])
        return jac


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


def _from_field(vf: Any, name: str, interpolation: str = "linear",
                latent_initial: Mapping[str, float] | None = None) -> Dynamics:
    f = vf.numpy_function()
    has_inputs = bool(vf.input_names)

    def fn(t: np.ndarray, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        tt = float(t[0]) if np.ptp(t) == 0 else t
        return np.asarray(f(tt, x, u if has_inputs else None), dtype=float).reshape(x.shape)

    return Dynamics(
        fn=fn,
        states=tuple(vf.state_names),
        inputs=tuple(vf.input_names),
        state_units=tuple(vf.state_units),
        input_units=tuple(vf.input_units),
        time_units=str(vf.time_units),
        name=name,
        interpolation=interpolation,
        latent_initial=dict(latent_initial or {}),
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
    if isinstance(obj, str):  # a catalogue name
        from sysid import systems

        obj = systems.get(obj)
    kind = type(obj).__module__
    if kind.startswith("sysid.systems"):
        dyn = _from_system(obj, params)
        if states is not None and tuple(states) != dyn.states:
            if len(tuple(states)) != len(dyn.states):
                raise ConfigError(
                    f"as_dynamics: system {obj.name!r} has {len(dyn.states)} states {list(dyn.states)}; "
                    f"{len(tuple(states))} names were given ({list(states)})."
                )
            dyn = dataclasses.replace(dyn, states=tuple(states))  # the data's names, same order
        return dyn
    if kind.startswith("sysid.training"):
        return as_dynamics(obj.model)
    if kind.startswith("sysid.models"):
        from sysid.models import Model

        if isinstance(obj, Model):
            dyn = _from_field(obj.field, name="learned model", interpolation=obj.input_interpolation,
                              latent_initial=obj.latent_initial)
            if obj.outputs is None:
                return dyn
            import torch

            with torch.no_grad():
                shared = {k: float(v.double()) for k, v in obj.field.physical_parameters().items()}
            g = obj.outputs.numpy_function(shared)
            return dataclasses.replace(dyn, outputs=obj.output_names, output_units=obj.output_units,
                                       observe=lambda t, x, u: g(t, x, u))
        return _from_field(obj, name=type(obj).__name__)
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


def run_inputs(
    ds: xr.Dataset, run: str, names: Sequence[str], *, kind: str = "linear"
) -> Callable[[np.ndarray], np.ndarray] | None:
    """The input function of one run of a schema dataset, or None when ``names`` is empty."""
    if not names:
        return None
    from sysid.data import get_run

    one = get_run(ds, run)
    missing = [n for n in names if n not in one]
    if missing:
        raise DataError(f"run {run!r} has no input variables {missing}; the dynamics needs {list(names)}.")
    vals = np.stack([one[n].values for n in names], axis=-1)
    return input_function(one["time"].values, vals, kind=kind, names=names)


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
    "Dynamics",
    "Integration",
    "as_dynamics",
    "input_function",
    "run_inputs",
    "integrate",
    "step_batch",
]
