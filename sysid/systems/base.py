"""The pieces of the reference-system catalogue: :class:`ParameterSpec`, :class:`System`, the registry.

A :class:`System` is a reference ODE from the literature with named states, inputs and parameters
(defaults, units, physical bounds) and one right-hand side ``rhs(t, x, u, p, xp)`` that runs on
NumPy (for SciPy) and on torch (for hybrid models) through a :mod:`sysid.backend` namespace.
"""

from __future__ import annotations

import builtins
import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, final

import numpy as np

from sysid.backend import NUMPY
from sysid.errors import ConfigError, ParameterError, SysidError

FIELDS = ("physics", "biology", "chemistry", "epidemiology", "economics")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

RHS = Callable[[Any, Any, Any, Mapping[str, Any], Any], Any]


class UnknownSystemError(SysidError, KeyError):
    """A system name that is not in the catalogue."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


def did_you_mean(name: str, options: list[str]) -> str:
    """A ``" (did you mean 'x'?)"`` suffix when ``name`` is close to one of ``options``."""
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


@final
@dataclass(frozen=True, kw_only=True)
class ParameterSpec:
    """A named parameter of a reference system.

    Parameters
    ----------
    name : str
        Name as used in the literature source (and in ``p[name]`` inside the right-hand side).
    default : float
        Typical value (the source's estimate or textbook value).
    units : str
        Units ("" when dimensionless).
    bounds : (float, float)
        Physically admissible closed interval; rates, masses and capacities are ``>= 0``.
    description : str
        What the parameter means.

    Examples
    --------
    >>> ParameterSpec(name="k", default=0.5, units="1/day", bounds=(0.0, math.inf)).default
    0.5
    """

    name: str
    default: float
    units: str = ""
    bounds: tuple[float, float] = (-math.inf, math.inf)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"ParameterSpec: name must be a Python identifier; got {self.name!r}.")
        lo, hi = (float(b) for b in self.bounds)
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise ConfigError(
                f"ParameterSpec {self.name!r}: bounds must be (lower, upper) with lower <= upper; "
                f"got {self.bounds!r}."
            )
        value = float(self.default)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ConfigError(
                f"ParameterSpec {self.name!r}: default {self.default!r} must be finite and inside "
                f"bounds [{lo}, {hi}]."
            )
        object.__setattr__(self, "default", value)
        object.__setattr__(self, "bounds", (lo, hi))


@final
@dataclass(frozen=True, kw_only=True)
class System:
    """A reference ODE ``dx/dt = rhs(t, x, u, p, xp)`` from the literature.

    Parameters
    ----------
    name : str
        Catalogue key (lower case, underscores), e.g. ``"lotka_volterra"``.
    title : str
        Human-readable name.
    field : str
        One of ``physics``, ``biology``, ``chemistry``, ``epidemiology``, ``economics``.
    states, state_units : tuple of str
        State names and their units (same length).
    inputs, input_units : tuple of str
        Names and units of the external inputs ``u(t)`` (empty for autonomous systems).
    parameters : tuple of ParameterSpec
        In the order of the literature source.
    rhs : callable
        ``rhs(t, x, u, p, xp)``: ``x[..., i]`` is state ``i`` (states on the last axis, so the same
        function serves SciPy with ``x`` of shape ``(S,)`` and torch with ``(B, S)``), ``u[..., j]``
        input ``j`` or ``None``, ``p`` maps parameter names to scalars (floats or 0-d tensors),
        ``xp`` is :data:`sysid.backend.NUMPY` or :data:`sysid.backend.TORCH`. Returns
        ``xp.stack([...])`` with the shape of ``x``.
    y0 : tuple of float
        A typical initial state.
    t_span : (float, float)
        A typical time span, in ``time_units``.
    time_units : str
        Units of time.
    reference : str
        Literature citation of the equations and the default parameter values.
    order : int
        1, or 2 for mechanical systems written as positions then velocities: the states are
        ``(q_1..q_n, v_1..v_n)`` and the first ``n`` components of ``rhs`` are ``v_1..v_n``.
    description : str
        The equations in words and symbols.
    input_scale : tuple of float
        Typical amplitude of each input, used by :func:`sysid.systems.make_dataset` to draw
        excitation signals (default 1 for each input).

    Examples
    --------
    >>> from sysid.systems import get
    >>> lv = get("lotka_volterra")
    >>> [p.name for p in lv.parameters]
    ['a', 'b', 'c', 'd']
    >>> lv.numpy_rhs()(0.0, np.array([30.0, 4.0])).shape
    (2,)
    """

    name: str
    title: str
    field: str
    states: tuple[str, ...]
    state_units: tuple[str, ...]
    parameters: tuple[ParameterSpec, ...]
    rhs: RHS
    y0: tuple[float, ...]
    t_span: tuple[float, float]
    time_units: str
    reference: str
    description: str
    inputs: tuple[str, ...] = ()
    input_units: tuple[str, ...] = ()
    order: int = 1
    input_scale: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        where = f"System {self.name!r}"
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(
                f"System: name must be lower case letters, digits and underscores; got {self.name!r}."
            )
        if self.field not in FIELDS:
            raise ConfigError(f"{where}: field must be one of {list(FIELDS)}; got {self.field!r}.")
        for attr in ("states", "state_units", "inputs", "input_units", "parameters", "y0",
                     "t_span", "input_scale"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        if not self.states:
            raise ConfigError(f"{where}: at least one state is needed.")
        if len(self.state_units) != len(self.states):
            raise ConfigError(
                f"{where}: {len(self.state_units)} state_units for {len(self.states)} states "
                f"{list(self.states)}."
            )
        if len(self.input_units) != len(self.inputs):
            raise ConfigError(
                f"{where}: {len(self.input_units)} input_units for {len(self.inputs)} inputs "
                f"{list(self.inputs)}."
            )
        if not self.input_scale:
            object.__setattr__(self, "input_scale", (1.0,) * len(self.inputs))
        if len(self.input_scale) != len(self.inputs):
            raise ConfigError(
                f"{where}: {len(self.input_scale)} input_scale values for {len(self.inputs)} inputs."
            )
        object.__setattr__(self, "input_scale", tuple(float(s) for s in self.input_scale))
        names = [*self.states, *self.inputs, *(p.name for p in self.parameters)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"{where}: names {dup} are used more than once (states, inputs, parameters).")
        if not all(isinstance(p, ParameterSpec) for p in self.parameters):
            raise ConfigError(f"{where}: parameters must be ParameterSpec objects.")
        if len(self.y0) != len(self.states):
            raise ConfigError(
                f"{where}: y0 has {len(self.y0)} values but there are {len(self.states)} states "
                f"{list(self.states)}."
            )
        object.__setattr__(self, "y0", tuple(float(v) for v in self.y0))
        if len(self.t_span) != 2 or not float(self.t_span[0]) < float(self.t_span[1]):
            raise ConfigError(f"{where}: t_span must be (start, end) with start < end; got {self.t_span!r}.")
        object.__setattr__(self, "t_span", (float(self.t_span[0]), float(self.t_span[1])))
        if self.order not in (1, 2):
            raise ConfigError(f"{where}: order must be 1 or 2; got {self.order!r}.")
        if self.order == 2 and len(self.states) % 2:
            raise ConfigError(
                f"{where}: order 2 needs positions then velocities (an even number of states); "
                f"got {list(self.states)}."
            )
        if not callable(self.rhs):
            raise ConfigError(f"{where}: rhs must be callable rhs(t, x, u, p, xp).")

    # ------------------------------------------------------------------ parameters
    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Parameter names in literature order."""
        return tuple(p.name for p in self.parameters)

    def defaults(self) -> dict[str, float]:
        """Default parameter values, ``{name: value}`` in literature order."""
        return {p.name: p.default for p in self.parameters}

    def resolve_parameters(self, params: Mapping[str, float] | None = None) -> dict[str, float]:
        """The defaults updated with ``params``, checked.

        Raises
        ------
        ParameterError
            For an unknown name (listing the valid ones), a non-finite value or one outside the
            parameter's bounds.
        """
        values = self.defaults()
        if params is None:
            return values
        if not isinstance(params, Mapping):
            raise ParameterError(
                f"System {self.name!r}: params must be a mapping name -> value; got "
                f"{type(params).__name__}."
            )
        specs = {p.name: p for p in self.parameters}
        for name, value in params.items():
            if name not in specs:
                raise ParameterError(
                    f"System {self.name!r} has no parameter {name!r}"
                    f"{did_you_mean(str(name), builtins.list(specs))}; its parameters are "
                    f"{builtins.list(specs)}."
                )
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ParameterError(
                    f"System {self.name!r}: parameter {name!r} must be a number; got {value!r}."
                ) from None
            lo, hi = specs[name].bounds
            if not math.isfinite(v):
                raise ParameterError(f"System {self.name!r}: parameter {name!r} must be finite; got {v}.")
            if not lo <= v <= hi:
                raise ParameterError(
                    f"Parameter {name!r} of system {self.name!r}: value {v} outside bounds "
                    f"[{lo}, {hi}] ({specs[name].description or specs[name].units})."
                )
            values[name] = v
        return values

    # ------------------------------------------------------------------ evaluation
    def numpy_rhs(
        self,
        params: Mapping[str, float] | None = None,
        inputs: Callable[[float], Any] | None = None,
    ) -> Callable[[float, np.ndarray], np.ndarray]:
        """The right-hand side as ``f(t, y)`` for :func:`scipy.integrate.solve_ivp`.

        Parameters
        ----------
        params : mapping, optional
            Parameter values overriding the defaults.
        inputs : callable, optional
            ``u(t)`` returning an array of shape ``(I,)``; required when the system has inputs.

        Returns
        -------
        callable
            ``f(t, y) -> dy/dt`` with ``y`` of shape ``(S,)`` (or ``(..., S)``).

        Examples
        --------
        >>> from sysid.systems import get
        >>> f = get("harmonic_oscillator").numpy_rhs({"omega": 2.0})
        >>> f(0.0, np.array([1.0, 0.0])).tolist()
        [0.0, -4.0]
        """
        p = self.resolve_parameters(params)
        u_of_t = self.check_inputs(inputs)
        rhs = self.rhs
        n_in = len(self.inputs)
        name = self.name

        if u_of_t is None:
            def f(t: float, y: np.ndarray) -> np.ndarray:
                return rhs(t, np.asarray(y, dtype=float), None, p, NUMPY)
        else:
            def f(t: float, y: np.ndarray) -> np.ndarray:
                u = np.asarray(u_of_t(t), dtype=float).reshape(-1)
                if u.shape != (n_in,):
                    raise ConfigError(
                        f"System {name!r}: inputs(t) must return {n_in} values; it returned shape "
                        f"{u.shape} at t={t}."
                    )
                return rhs(t, np.asarray(y, dtype=float), u, p, NUMPY)

        return f

    def check_inputs(self, inputs: Callable[[float], Any] | None) -> Callable[[float], Any] | None:
        """Check that ``inputs`` is given exactly when the system has inputs; return it."""
        if self.inputs and inputs is None:
            zeros = ", ".join("0.0" for _ in self.inputs)
            raise ConfigError(
                f"System {self.name!r} has inputs {list(self.inputs)}; pass inputs=u with u(t) "
                f"returning {len(self.inputs)} values (for no forcing: inputs=lambda t: [{zeros}])."
            )
        if not self.inputs and inputs is not None:
            raise ConfigError(
                f"System {self.name!r} has no inputs; inputs= must be None."
            )
        if inputs is not None and not callable(inputs):
            raise ConfigError(
                f"System {self.name!r}: inputs must be a callable u(t) returning an array of shape "
                f"({len(self.inputs)},); got {type(inputs).__name__}."
            )
        return inputs

    @property
    def units(self) -> dict[str, str]:
        """Units of every state and input, and of ``"time"``."""
        out = dict(zip(self.states, self.state_units))
        out.update(zip(self.inputs, self.input_units))
        out["time"] = self.time_units
        return out


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, System] = {}


def register(system: System, *, replace: bool = False) -> System:
    """Add a system to the catalogue (``replace=True`` to overwrite one of the same name).

    Returns the system, so it can be used as ``my_sys = register(System(...))``.
    """
    if not isinstance(system, System):
        raise ConfigError(f"register: expected a System; got {type(system).__name__}.")
    if system.name in _REGISTRY and not replace and _REGISTRY[system.name] is not system:
        raise ConfigError(
            f"register: a system named {system.name!r} is already in the catalogue; pass "
            f"replace=True to overwrite it or choose another name."
        )
    _REGISTRY[system.name] = system
    return system


def get(name: str) -> System:
    """The catalogue system called ``name``.

    Raises
    ------
    UnknownSystemError
        (a :class:`KeyError` and :class:`~sysid.errors.SysidError`) listing the names and
        suggesting the closest.
    """
    if isinstance(name, System):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        names = sorted(_REGISTRY)
        raise UnknownSystemError(
            f"No reference system {name!r}{did_you_mean(str(name), names)}; available systems are "
            f"{names}."
        ) from None


def names(field_name: str | None = None) -> builtins.list[str]:
    """Sorted names of the catalogue's systems, optionally only those of one field."""
    if field_name is not None and field_name not in FIELDS:
        raise ConfigError(f"list: field must be one of {builtins.list(FIELDS)}; got {field_name!r}.")
    return sorted(n for n, s in _REGISTRY.items() if field_name is None or s.field == field_name)


__all__ = [
    "FIELDS",
    "ParameterSpec",
    "System",
    "UnknownSystemError",
    "register",
    "get",
    "names",
]
