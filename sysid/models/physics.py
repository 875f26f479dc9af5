"""A physics term: a plain right-hand-side function of named, bounded parameters."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, final

import torch
from torch import nn

from sysid.backend import TORCH
from sysid.errors import ConfigError, ParameterError
from sysid.models.base import NumpyField, VectorField
from sysid.models.numpy_fields import physics_function
from sysid.models.parameters import (
    Parameter,
    ReadRecorder,
    as_parameter,
    raw_from_value,
    value_from_raw,
)

__all__ = ["PhysicsField", "RhsFunction"]

# rhs(t, x, u, p, xp): x[..., i] states on the last axis, u[..., j] inputs or None,
# p a mapping name -> scalar, xp a sysid.backend namespace; returns xp.stack([...]).
RhsFunction = Callable[[Any, Any, Any, Mapping[str, Any], Any], Any]


def _fn_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _renamed(system: str, kind: str, names: tuple[str, ...], new: Sequence[str] | None) -> tuple[str, ...]:
    """The system's state or input names, or the user's names for them (same count, same order)."""
    if new is None:
        return tuple(names)
    if isinstance(new, str):
        raise ConfigError(f"PhysicsField.from_system: {kind} must be a list of names, not {new!r}.")
    new = tuple(str(n) for n in new)
    if len(new) != len(names):
        raise ConfigError(
            f"PhysicsField.from_system: system {system!r} has {len(names)} {kind} {list(names)}; "
            f"{len(new)} names were given ({list(new)}). Give one name per {kind[:-1]}, in this order."
        )
    return new


@final
class PhysicsField(VectorField):
    """A known right-hand side ``fn(t, x, u, p, xp)`` with named :class:`Parameter` values.

    Parameters
    ----------
    fn : callable
        ``fn(t, x, u, p, xp)`` as the catalogue systems write it: ``x[..., i]`` is state ``i``,
        ``u[..., j]`` input ``j`` (None without inputs), ``p[name]`` a parameter value, ``xp``
        :data:`sysid.backend.TORCH` here (:data:`sysid.backend.NUMPY` in NumPy exports). It returns
        ``xp.stack([...])`` with one entry per name in ``outputs``.
    parameters : mapping of str to Parameter or float
        Every parameter ``fn`` reads, no more (a plain number is a free, unbounded parameter).
    states, inputs : sequence of str
        State and input names, in the order ``fn`` indexes them.
    outputs : sequence of str, optional
        States whose derivatives ``fn`` returns (default all; e.g. only the velocities for an
        acceleration inside :class:`~sysid.models.SecondOrderField`).
    state_units, input_units, time_units
        Units (one string per name, or a mapping).
    dtype : torch.dtype, optional
        Dtype of the stored parameters (default ``torch.get_default_dtype()``); use float64 when
        the values must be kept to full precision.

    Raises
    ------
    ParameterError
        When ``fn`` reads a parameter that is not given, or a given parameter is never read
        (checked by one probe call at construction), or a value lies outside its bounds.

    Notes
    -----
    Free parameters are stored as one unconstrained tensor ``raw`` (see
    :mod:`sysid.models.parameters` for the transforms); fixed ones as the buffer ``fixed``.

    Examples
    --------
    >>> def decay(t, x, u, p, xp):
    ...     return xp.stack([-p["k"] * x[..., 0]])
    >>> f = PhysicsField(decay, {"k": Parameter(0.5, bounds=(0, 10))}, states=["c"])
    >>> f(torch.tensor(0.0), torch.ones(2, 1)).squeeze(-1).tolist()
    [-0.5, -0.5]
    """

    def __init__(
        self,
        fn: RhsFunction,
        parameters: Mapping[str, Parameter | float],
        states: Sequence[str],
        inputs: Sequence[str] = (),
        *,
        outputs: Sequence[str] | None = None,
        state_units: Sequence[str] | Mapping[str, str] | None = None,
        input_units: Sequence[str] | Mapping[str, str] | None = None,
        time_units: str = "",
        dtype: torch.dtype | None = None,
        system: str | None = None,
    ) -> None:
        super().__init__()
        if not callable(fn):
            raise ConfigError(f"PhysicsField: fn must be callable; got {type(fn).__name__}.")
        self._init_names("PhysicsField", states, inputs, outputs, state_units, input_units, time_units)
        if not isinstance(parameters, Mapping):
            raise ParameterError(
                f"PhysicsField: parameters must be a mapping name -> Parameter; got {type(parameters).__name__}."
            )
        specs: dict[str, Parameter] = {}
        for name, spec in parameters.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ParameterError(
                    f"PhysicsField: parameter name {name!r} must be a Python identifier (letters, digits, _)."
                )
            p = as_parameter(name, spec)
            if p.kind == "free" and p.scale is None:
                p = p.replace(scale=p.effective_scale)  # keep the scale fixed from here on
            specs[name] = p
        self.fn = fn
        self.system = system
        self._override: dict[str, torch.Tensor] | None = None
        self._frozen: dict[str, torch.Tensor] | None = None  # set by neural.frozen_weights
        self._specs = specs
        self._free = [n for n, p in specs.items() if p.vary]
        self._fixed = [n for n, p in specs.items() if not p.vary]
        dtype = dtype or torch.get_default_dtype()
        raw = [raw_from_value(specs[n].value, specs[n]) for n in self._free]
        self.raw = nn.Parameter(torch.tensor(raw, dtype=dtype))
        self.register_buffer("fixed", torch.tensor([specs[n].value for n in self._fixed], dtype=dtype))
        self._probe()

    # -- construction helpers -------------------------------------------------------------------
    @classmethod
    def from_system(
        cls,
        system: Any,
        free: Iterable[str] | None = None,
        values: Mapping[str, float] | None = None,
        *,
        states: Sequence[str] | None = None,
        inputs: Sequence[str] | None = None,
        units: Mapping[str, str] | None = None,
        dtype: torch.dtype | None = None,
    ) -> PhysicsField:
        """The right-hand side of a catalogue :class:`sysid.systems.System` as a physics term.

        Parameters
        ----------
        system : sysid.systems.System or str
            A system or its catalogue name.
        free : iterable of str, optional
            Parameters a fit estimates; default all. The others are fixed.
        values : mapping, optional
            Starting values replacing the catalogue defaults.
        states, inputs : sequence of str, optional
            The names your data uses for the system's states and inputs, in the system's order
            (e.g. ``states=["hare", "lynx"]`` for Lotka-Volterra's ``("prey", "predator")``).
        units : mapping, optional
            Units replacing the system's, by (new) state or input name, and ``"time"``.
        dtype : torch.dtype, optional
            Dtype of the stored parameters.
        """
        if isinstance(system, str):
            from sysid import systems as catalogue

            system = catalogue.get(system)
        names = [ps.name for ps in system.parameters]
        if values is not None and not isinstance(values, Mapping):
            raise ParameterError(
                f"PhysicsField.from_system: values must be a mapping of parameter name to value, "
                f"e.g. {{{names[0]!r}: 1.0}}; got {type(values).__name__} {values!r}."
                if names else f"PhysicsField.from_system: values must be a mapping; got {values!r}.")
        values = dict(values or {})
        unknown = [n for n in values if n not in names]
        if unknown:
            raise ParameterError(
                f"PhysicsField.from_system: system {system.name!r} has no parameters {unknown}; "
                f"its parameters are {names}."
            )
        free_l = names if free is None else list(free)
        if isinstance(free, str):
            raise ParameterError(f"PhysicsField.from_system: free must be a list of names, not {free!r}.")
        unknown = [n for n in free_l if n not in names]
        if unknown:
            raise ParameterError(
                f"PhysicsField.from_system: free names {unknown} are not parameters of {system.name!r}; "
                f"its parameters are {names}."
            )
        params = {}
        for ps in system.parameters:
            value = float(values.get(ps.name, ps.default))
            try:
                params[ps.name] = Parameter(value, bounds=tuple(ps.bounds), vary=ps.name in free_l,
                                            units=ps.units, description=ps.description)
            except ParameterError as exc:
                raise ParameterError(f"Parameter {ps.name!r} of system {system.name!r}: {exc}") from exc
        state_names = _renamed(system.name, "states", system.states, states)
        input_names = _renamed(system.name, "inputs", system.inputs, inputs)
        units = dict(units or {})
        unknown = [n for n in units if n not in (*state_names, *input_names, "time")]
        if unknown:
            raise ConfigError(
                f"PhysicsField.from_system: units given for {unknown}, which are not states or inputs "
                f"{[*state_names, *input_names]} (or 'time')."
            )
        return cls(
            system.rhs,
            params,
            state_names,
            input_names,
            state_units=[units.get(n, u) for n, u in zip(state_names, system.state_units)],
            input_units=[units.get(n, u) for n, u in zip(input_names, system.input_units)],
            time_units=units.get("time", system.time_units),
            dtype=dtype,
            system=system.name,
        )

    def _probe(self) -> None:
        n = len(self.state_names)
        like = self.raw if self.raw.numel() else self.fixed
        x = torch.ones(1, n, dtype=like.dtype)
        u = torch.ones(1, len(self.input_names), dtype=like.dtype) if self.input_names else None
        with torch.no_grad():
            rec = ReadRecorder(self.physical_parameters(),
                               missing_value=lambda: torch.ones((), dtype=like.dtype))
            try:
                out = self.fn(torch.zeros((), dtype=like.dtype), x, u, rec, TORCH)
            except ParameterError:
                raise
            except Exception as exc:
                raise ConfigError(
                    f"PhysicsField: calling {_fn_name(self.fn)} on a test state (states "
                    f"{list(self.state_names)} = 1, inputs = 1, t = 0) raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        unused = [k for k in self._specs if k not in rec.read]
        if rec.missing or unused:
            parts = []
            if rec.missing:
                parts.append(f"it reads {rec.missing} which are not given")
            if unused:
                parts.append(f"it never reads {unused}")
            raise ParameterError(
                f"PhysicsField: parameter names do not match {_fn_name(self.fn)}: {'; '.join(parts)}. "
                f"Give exactly the parameters the function reads."
            )
        self._check_out(out, x)

    def _check_out(self, out: Any, x: torch.Tensor) -> torch.Tensor:
        n_o = len(self.output_names)
        want = (*x.shape[:-1], n_o)
        if not isinstance(out, torch.Tensor):
            raise ConfigError(
                f"PhysicsField: {_fn_name(self.fn)} returned {type(out).__name__}; it must return "
                f"xp.stack([...]) of {n_o} derivatives ({list(self.output_names)})."
            )
        if out.shape[-1:] != (n_o,):
            raise ConfigError(
                f"PhysicsField: {_fn_name(self.fn)} returned {tuple(out.shape)[-1:] or '()'} values on "
                f"the last axis but the field has {n_o} outputs ({list(self.output_names)})."
            )
        if out.shape != want:
            out = torch.broadcast_to(out, want)
        return out

    # -- parameters ----------------------------------------------------------------------------
    @contextmanager
    def values_from(self, raw: torch.Tensor) -> Iterator[None]:
        """Within the block, evaluate with the free parameters' raw values ``raw`` (a tensor that
        may carry a graph, e.g. a slice of an optimiser's vector) instead of :attr:`raw`.

        The constrained values are computed once on entry, not at every call of the field: a
        fixed-step solve calls it hundreds of times (sysid.estimation uses this).
        """
        if raw.shape != self.raw.shape:
            raise ParameterError(f"PhysicsField.values_from: raw must have shape {tuple(self.raw.shape)} "
                                 f"(free parameters {self._free}); got {tuple(raw.shape)}.")
        values = self._values(raw)
        previous = self._override
        self._override = values
        try:
            yield
        finally:
            self._override = previous

    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """Constrained value of every parameter (free ones differentiable w.r.t. ``raw``)."""
        if self._override is not None:
            return self._override
        if self._frozen is not None and not torch.is_grad_enabled():
            return dict(self._frozen)  # a copy: callers may add to it
        return self._values(self.raw)

    def _values(self, raw: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {}
        free = {n: i for i, n in enumerate(self._free)}
        fixed = {n: i for i, n in enumerate(self._fixed)}
        for name, spec in self._specs.items():
            if name in free:
                out[name] = value_from_raw(raw[free[name]], spec)  # type: ignore[assignment]
            else:
                out[name] = self.fixed[fixed[name]]
        return out

    def parameter_specs(self) -> dict[str, Parameter]:
        """The :class:`Parameter` of each name (values as given at construction)."""
        return dict(self._specs)

    @property
    def free_names(self) -> tuple[str, ...]:
        """Names of the free parameters, in the order of ``raw``."""
        return tuple(self._free)

    def set_values(self, values: Mapping[str, float]) -> None:
        """Set current values of free parameters (checked against their bounds), in place."""
        check = [n for n in values if n not in self._free]
        if check:
            raise ParameterError(
                f"PhysicsField.set_values: {check} are not free parameters; free ones are {self._free}."
            )
        with torch.no_grad():
            for name, value in values.items():
                spec = self._specs[name]
                lo, hi = spec.bounds
                if not lo < float(value) < hi:
                    raise ParameterError(
                        f"Parameter {name!r}: value {float(value)} outside bounds [{lo}, {hi}]."
                    )
                self.raw[self._free.index(name)] = raw_from_value(float(value), spec)

    # -- evaluation ----------------------------------------------------------------------------
    def forward(self, t: torch.Tensor, x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
        """Derivatives of ``output_names``: ``fn(t, x, u, p, TORCH)``."""
        self._check_xu(x, u)
        out = self.fn(t, x, u if self.input_names else None, self.physical_parameters(), TORCH)
        return self._check_out(out, x)

    def numpy_function(self) -> NumpyField:
        """Pure-NumPy ``fn(t, x, u, p, NUMPY)`` with the current parameter values as floats."""
        with torch.no_grad():
            p = {k: float(v.double()) for k, v in self.physical_parameters().items()}
        return physics_function(self.fn, p, len(self.output_names), bool(self.input_names))

    def function_ref(self) -> dict[str, str]:
        """How a model file names ``fn``: ``{"system": name}``, ``{"equations": {...}}`` (text
        equations) or ``{"import": "module:qualname"}``."""
        from sysid.models.equations import EquationsRhs  # here: equations builds on this module

        if self.system is not None:
            return {"system": self.system}
        if isinstance(self.fn, EquationsRhs):
            return {"equations": self.fn.to_dict()}  # text, parsed again on load: no import
        return {"import": _fn_name(self.fn)}

    def spec(self) -> dict[str, Any]:
        """Structure for model files."""
        return {
            "type": "PhysicsField",
            "function": self.function_ref(),
            "parameters": {n: p.to_dict() for n, p in self._specs.items()},
            "states": list(self.state_names),
            "inputs": list(self.input_names),
            "outputs": list(self.output_names),
            "state_units": list(self.state_units),
            "input_units": list(self.input_units),
            "time_units": self.time_units,
        }

    def extra_repr(self) -> str:
        return f"fn={_fn_name(self.fn)}, parameters={list(self._specs)}"
