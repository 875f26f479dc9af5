"""Dynamics as batched NumPy with names and units: the view the SciPy paths integrate.

A :class:`Dynamics` is a right-hand side ``dX/dt = f(t, X, U)`` with ``X`` of shape ``(M, S)`` in
user units, plus the state and input names and units, how measured inputs are interpolated and the
default initial values of states that data does not measure. :meth:`Dynamics.from_field` builds one
from a model's vector field (through its pure-NumPy copy, no torch at call time);
:func:`sysid.analysis.as_dynamics` builds one from anything the analysis accepts (a reference
system, a fit result, a plain ``f(t, y)``). :func:`sysid.simulate` integrates either a
:class:`~sysid.models.Model` or a :class:`Dynamics`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, final

import numpy as np

from sysid.errors import ConfigError, DataError
from sysid.models.interpolation import INTERPOLATIONS

__all__ = ["Dynamics", "BatchFn", "INTERPOLATIONS", "constant_inputs"]

BatchFn = Callable[[np.ndarray, np.ndarray, "np.ndarray | None"], np.ndarray]


def constant_inputs(names: tuple[str, ...], u: Any, where: str) -> np.ndarray:
    """Constant input values ``(I,)`` in ``names`` order from a mapping ``{name: value}`` or a
    sequence of ``len(names)`` numbers."""
    if isinstance(u, Mapping):
        missing = [n for n in names if n not in u]
        if missing:
            raise ConfigError(f"{where}: u has no values for inputs {missing}; the inputs are {list(names)}.")
        return np.array([float(u[n]) for n in names])
    arr = np.asarray(u, dtype=float).ravel()
    if arr.size != len(names):
        raise ConfigError(f"{where}: u has {arr.size} values for {len(names)} inputs {list(names)}.")
    return arr


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

    @property
    def observed(self) -> tuple[str, ...]:
        """States without a default initial value (they must come from data or the caller)."""
        return tuple(n for n in self.states if n not in self.latent_initial)

    def point(self, values: Any) -> np.ndarray:
        """A state ``(S,)`` from a mapping ``{state: value}`` or a sequence in state order."""
        if isinstance(values, Mapping):
            missing = [n for n in self.states if n not in values]
            if missing:
                raise DataError(f"point has no values for states {missing}; the states are {list(self.states)}.")
            return np.array([float(values[n]) for n in self.states])
        arr = np.asarray(values, dtype=float).ravel()
        if arr.size != self.n_states:
            raise DataError(
                f"point has {arr.size} values but {self.name} has {self.n_states} states {list(self.states)}."
            )
        return arr

    def constant_inputs(self, u: Any, *, purpose: str = "fixed points") -> np.ndarray | None:
        """Constant input values ``(I,)`` (None without inputs) for analyses of an autonomous field.

        Raises
        ------
        ConfigError
            When ``u`` is given for dynamics without inputs, missing for dynamics with inputs, or
            of the wrong size.
        """
        if not self.inputs:
            if u is not None:
                raise ConfigError(f"{self.name} has no inputs; u must be None, got {u!r}.")
            return None
        if u is None:
            raise ConfigError(
                f"{self.name} has inputs {list(self.inputs)}: {purpose} need constant input values, "
                f"e.g. u={{{self.inputs[0]!r}: 0.0}}."
            )
        return constant_inputs(self.inputs, u, self.name)

    @classmethod
    def from_model(cls, model: Any, *, name: str = "model") -> Dynamics:
        """The NumPy view of a :class:`~sysid.models.Model`: its field, input interpolation,
        ``latent_initial`` and measurement equations (``observe``), parameters copied as floats."""
        dyn = cls.from_field(model.field, name=name, interpolation=model.input_interpolation,
                             latent_initial=model.latent_initial)
        if model.outputs is None:
            return dyn
        import torch

        with torch.no_grad():
            shared = {k: float(v.double()) for k, v in model.field.physical_parameters().items()}
        g = model.outputs.numpy_function(shared)
        return dataclasses.replace(dyn, outputs=model.output_names, output_units=model.output_units,
                                   observe=lambda t, x, u: g(t, x, u))

    @classmethod
    def from_field(cls, vf: Any, *, name: str, interpolation: str = "linear",
                   latent_initial: Mapping[str, float] | None = None) -> Dynamics:
        """The NumPy view of a :class:`~sysid.models.VectorField` (its ``numpy_function()``)."""
        return cls.from_numpy_field(vf.numpy_function(), states=vf.state_names, inputs=vf.input_names,
                                    state_units=vf.state_units, input_units=vf.input_units,
                                    time_units=vf.time_units, name=name, interpolation=interpolation,
                                    latent_initial=latent_initial)

    @classmethod
    def from_numpy_field(cls, f: Callable[[Any, np.ndarray, np.ndarray | None], np.ndarray], *,
                         states: Sequence[str], inputs: Sequence[str] = (),
                         state_units: Sequence[str] = (), input_units: Sequence[str] = (),
                         time_units: str = "", name: str = "dynamics", interpolation: str = "linear",
                         latent_initial: Mapping[str, float] | None = None) -> Dynamics:
        """Dynamics of a field's NumPy function ``f(t, x, u)`` (a ``numpy_function()``, or
        :func:`sysid.io.load_dynamics`'s copy of a model file), which takes one time as a float
        when every row has the same time."""
        has_inputs = bool(inputs)

        def fn(t: np.ndarray, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
            tt = float(t[0]) if np.ptp(t) == 0 else t
            return np.asarray(f(tt, x, u if has_inputs else None), dtype=float).reshape(x.shape)

        return cls(fn=fn, states=tuple(states), inputs=tuple(inputs), state_units=tuple(state_units),
                   input_units=tuple(input_units), time_units=str(time_units), name=name,
                   interpolation=interpolation, latent_initial=dict(latent_initial or {}))
