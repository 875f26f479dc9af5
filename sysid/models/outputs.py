"""Measurement equations ``y = g(t, x, u, p)``: what a sensor reports, as a function of the states.

A model's states need not be what is measured: a sensor saturates (``y = clip(h2, 0, 0.5)``), has
an offset and a gain (``y = gain*x + offset``), measures a sum of compartments or a concentration
(``C = A / V``). :class:`Outputs` holds such equations as text (parsed by :mod:`sysid.expressions`,
never executed as code), owns the parameters only they read (free ones are fitted like any
physical parameter) and reads the field's parameters by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, final

import numpy as np
import torch
from torch import nn

from sysid.backend import NUMPY, TORCH
from sysid.errors import ConfigError, ParameterError
from sysid.expressions import FUNCTIONS, NEURAL, Expression, parse
from sysid.models.equations_rhs import TIME_NAME
from sysid.models.parameters import Parameter, as_parameter, raw_from_value, value_from_raw

__all__ = ["Outputs", "TIME_NAME"]


def _broadcast(value: Any, like: Any) -> Any:
    """``value`` with the shape of ``like`` (a number becomes a constant array)."""
    if isinstance(like, torch.Tensor):
        v = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=like.dtype)
        return torch.broadcast_to(v.to(like.dtype), like.shape) if v.shape != like.shape else v.to(like.dtype)
    return np.broadcast_to(np.asarray(value, dtype=float), np.shape(like))


@final
class Outputs(nn.Module):
    """Measurement equations of a model: one expression per measured output.

    Parameters
    ----------
    equations : mapping of str to str
        Output name -> expression over the states, inputs, ``t`` and parameters, e.g.
        ``{"y": "clip(h2, 0, 0.5)"}`` (see :mod:`sysid.expressions` for what is allowed).
    states, inputs : sequence of str
        The model's state and input names (the order of ``x`` and ``u``).
    parameters : mapping of str to Parameter or float, optional
        Parameters only the output equations read (a gain, an offset, a volume); a plain
        number is a free, unbounded parameter. Each must be read by some equation.
    shared : sequence of str, optional
        Names of the field's parameters the equations may read (their values are passed to
        :meth:`forward`).
    units : mapping or sequence of str, optional
        Units of each output.
    dtype : torch.dtype, optional
        Dtype of the stored parameters.

    Examples
    --------
    >>> g = Outputs({"y": "gain*clip(h, 0, 0.5)"}, states=["h"], parameters={"gain": 2.0})
    >>> g(torch.tensor(0.0), torch.tensor([[0.2], [0.9]])).squeeze(-1).tolist()
    [0.4, 1.0]
    """

    def __init__(self, equations: Mapping[str, str], *, states: Sequence[str],
                 inputs: Sequence[str] = (), parameters: Mapping[str, Parameter | float] | None = None,
                 shared: Sequence[str] = (), units: Sequence[str] | Mapping[str, str] | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not isinstance(equations, Mapping) or not equations:
            raise ConfigError("Outputs: equations must be a non-empty mapping output name -> "
                              f"expression, e.g. {{'y': 'clip(h2, 0, 0.5)'}}; got {equations!r}.")
        self.state_names = tuple(str(s) for s in states)
        self.input_names = tuple(str(s) for s in inputs)
        names = tuple(str(n) for n in equations)
        taken = {**{s: "a state" for s in self.state_names}, **{s: "an input" for s in self.input_names}}
        parameters = dict(parameters or {})
        for n in names:
            if not n.isidentifier() or "__" in n:
                raise ConfigError(f"Outputs: output name {n!r} must be a name (letters, digits, _).")
            if n in taken or n in parameters or n in shared:
                what = taken.get(n, "a parameter")
                raise ConfigError(f"Outputs: output {n!r} is also {what}; give the measured "
                                  "quantity its own name (e.g. 'y' or 'h2_sensor').")
            if n in FUNCTIONS or n in (NEURAL, TIME_NAME):
                raise ConfigError(f"Outputs: {n!r} is reserved (a function or time); rename the output.")
        self.output_names = names
        if units is None:
            self.output_units = tuple("" for _ in names)
        elif isinstance(units, Mapping):
            unknown = [k for k in units if k not in names]
            if unknown:
                raise ConfigError(f"Outputs: units given for {unknown}, which are not outputs {list(names)}.")
            self.output_units = tuple(str(units.get(n, "")) for n in names)
        else:
            units = [str(u) for u in units]
            if len(units) != len(names):
                raise ConfigError(f"Outputs: {len(units)} units for the outputs {list(names)}.")
            self.output_units = tuple(units)
        specs: dict[str, Parameter] = {}
        for name, spec in parameters.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ParameterError(f"Outputs: parameter name {name!r} must be a name (letters, digits, _).")
            if name in taken or name in shared:
                raise ParameterError(f"Outputs: parameter {name!r} is also "
                                     f"{taken.get(name, 'a parameter of the field')}.")
            p = as_parameter(name, spec)
            if p.kind == "free" and p.scale is None:
                p = p.replace(scale=p.effective_scale)
            specs[name] = p
        known = (*self.state_names, *self.input_names, *specs, *shared, TIME_NAME)
        self.expressions: dict[str, Expression] = {}
        read: list[str] = []
        for n in names:
            text = equations[n]
            self.expressions[n] = parse(text, names=known, where=f"output {n!r}")
            read.extend(self.expressions[n].names)
        unused = [p for p in specs if p not in read]
        if unused:
            raise ParameterError(f"Outputs: parameters {unused} are given but no output equation "
                                 f"reads them ({ {n: e.text for n, e in self.expressions.items()} }).")
        self.shared_names = tuple(n for n in shared if n in read)
        self._specs = specs
        self._free = [n for n, p in specs.items() if p.vary]
        self._fixed = [n for n, p in specs.items() if not p.vary]
        dtype = dtype or torch.get_default_dtype()
        self.raw = nn.Parameter(torch.tensor([raw_from_value(specs[n].value, specs[n]) for n in self._free],
                                             dtype=dtype))
        self.register_buffer("fixed", torch.tensor([specs[n].value for n in self._fixed], dtype=dtype))

    # -- parameters ----------------------------------------------------------------------------
    @property
    def free_names(self) -> tuple[str, ...]:
        """Names of the free parameters, in the order of ``raw``."""
        return tuple(self._free)

    def physical_parameters(self) -> dict[str, torch.Tensor]:
        """Constrained values of the parameters the outputs own."""
        out: dict[str, torch.Tensor] = {}
        for name, spec in self._specs.items():
            if name in self._free:
                out[name] = value_from_raw(self.raw[self._free.index(name)], spec)  # type: ignore[assignment]
            else:
                out[name] = self.fixed[self._fixed.index(name)]
        return out

    def parameter_specs(self) -> dict[str, Parameter]:
        """The :class:`Parameter` of each owned name (values as given at construction)."""
        return dict(self._specs)

    def set_values(self, values: Mapping[str, float]) -> None:
        """Set current values of free parameters (checked against their bounds), in place."""
        bad = [n for n in values if n not in self._free]
        if bad:
            raise ParameterError(f"Outputs.set_values: {bad} are not free output parameters; "
                                 f"free ones are {self._free}.")
        with torch.no_grad():
            for name, value in values.items():
                spec = self._specs[name]
                lo, hi = spec.bounds
                if not lo < float(value) < hi:
                    raise ParameterError(f"Parameter {name!r}: value {float(value)} outside bounds [{lo}, {hi}].")
                self.raw[self._free.index(name)] = raw_from_value(float(value), spec)

    # -- evaluation ----------------------------------------------------------------------------
    def _env(self, t: Any, x: Any, u: Any, params: Mapping[str, Any]) -> dict[str, Any]:
        env: dict[str, Any] = {n: x[..., i] for i, n in enumerate(self.state_names)}
        if self.input_names:
            if u is None:
                raise ConfigError(f"Outputs: the inputs {list(self.input_names)} are needed but u is None.")
            env.update({n: u[..., j] for j, n in enumerate(self.input_names)})
        env[TIME_NAME] = t
        env.update(params)
        return env

    def forward(self, t: torch.Tensor, x: torch.Tensor, u: torch.Tensor | None = None,
                shared: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Outputs ``(..., O)`` for states ``x`` (..., S), inputs ``u`` (..., I) and time ``t``
        (a scalar or broadcastable to ``x[..., 0]``); ``shared`` holds the field's parameters."""
        shared = shared or {}
        missing = [n for n in self.shared_names if n not in shared]
        if missing:
            raise ConfigError(f"Outputs: the field's parameters {missing} are needed (pass shared=).")
        params = {**{n: shared[n] for n in self.shared_names}, **self.physical_parameters()}
        env = self._env(t, x, u, params)
        like = x[..., 0]
        vals = [_broadcast(self.expressions[n].compile(TORCH)(env), like) for n in self.output_names]
        return torch.stack(vals, dim=-1)

    def numpy_function(self, shared: Mapping[str, float] | None = None) -> Any:
        """Pure-NumPy ``g(t, x, u) -> (..., O)`` with the current parameter values as floats."""
        shared = dict(shared or {})
        with torch.no_grad():
            params = {n: float(shared[n]) for n in self.shared_names}
            params.update({k: float(v.double()) for k, v in self.physical_parameters().items()})
        fns = [self.expressions[n].compile(NUMPY) for n in self.output_names]

        def g(t: Any, x: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
            x = np.asarray(x, dtype=float)
            env = self._env(np.asarray(t, dtype=float), x, u, params)
            like = x[..., 0]
            with np.errstate(all="ignore"):
                return np.stack([_broadcast(f(env), like) for f in fns], axis=-1)

        return g

    def spec(self) -> dict[str, Any]:
        """Structure for model files (the equations as text; no code)."""
        return {
            "equations": {n: self.expressions[n].text for n in self.output_names},
            "units": list(self.output_units),
            "states": list(self.state_names),
            "inputs": list(self.input_names),
            "parameters": {n: p.to_dict() for n, p in self._specs.items()},
            "shared": list(self.shared_names),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, dtype: torch.dtype | None = None) -> Outputs:
        """Rebuild from :meth:`spec` (parses the equations again; nothing is executed)."""
        params = {n: Parameter.from_dict(p) for n, p in dict(spec.get("parameters", {})).items()}
        return cls(dict(spec["equations"]), states=spec["states"], inputs=spec.get("inputs", ()),
                   parameters=params, shared=spec.get("shared", ()), units=spec.get("units"),
                   dtype=dtype)

    def extra_repr(self) -> str:
        return ", ".join(f"{n} = {self.expressions[n].text!r}" for n in self.output_names)
