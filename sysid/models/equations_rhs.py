"""The right-hand side of text equations (:class:`EquationsRhs`), without torch.

Kept apart from :mod:`sysid.models.equations` (which builds torch models from a TOML table) so a
model file whose physics term is text equations can be read into NumPy dynamics
(:func:`sysid.io.load_dynamics`) without importing torch. The equations are parsed by
:mod:`sysid.expressions`, never evaluated as Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, final

from sysid.backend import ArrayNamespace
from sysid.errors import ConfigError
from sysid.expressions import Expression, parse

__all__ = ["EquationsRhs", "TIME_NAME"]

TIME_NAME = "t"  # the name of time inside equations


@final
class EquationsRhs:
    """The right-hand side ``fn(t, x, u, p, xp)`` of text equations, one per state.

    Parameters
    ----------
    equations : mapping of str to str
        State name -> right-hand side (``nn(...)`` terms are allowed and left out here: the
        networks are separate :class:`~sysid.models.NeuralField` terms).
    states, inputs : sequence of str
        Names in the order of ``x`` and ``u``.
    parameters : sequence of str
        Names of the parameters the equations may read.

    Examples
    --------
    >>> from sysid.backend import NUMPY
    >>> import numpy as np
    >>> f = EquationsRhs({"x": "v", "v": "-k*x"}, states=["x", "v"], parameters=["k"])
    >>> f(0.0, np.array([1.0, 0.0]), None, {"k": 4.0}, NUMPY).tolist()
    [0.0, -4.0]
    """

    def __init__(self, equations: Mapping[str, str], *, states: Sequence[str],
                 inputs: Sequence[str] = (), parameters: Sequence[str] = ()) -> None:
        self.states = tuple(str(s) for s in states)
        self.inputs = tuple(str(s) for s in inputs)
        self.parameters = tuple(str(s) for s in parameters)
        missing = [s for s in self.states if s not in equations]
        extra = [k for k in equations if k not in self.states]
        if missing or extra:
            raise ConfigError(f"EquationsRhs: one equation per state {list(self.states)} is needed; "
                              f"missing {missing}, not states {extra}.")
        known = (*self.states, *self.inputs, *self.parameters, TIME_NAME)
        self.expressions: dict[str, Expression] = {
            s: parse(str(equations[s]), names=known, where=f"equation d{s}", allow_nn=True)
            for s in self.states}
        local = {*self.states, *self.inputs, TIME_NAME}
        self._reads = tuple(dict.fromkeys(n for e in self.expressions.values() for n in e.names
                                          if n not in local))

    @property
    def texts(self) -> dict[str, str]:
        """The equations as written, by state."""
        return {s: e.text for s, e in self.expressions.items()}

    def __call__(self, t: Any, x: Any, u: Any, p: Mapping[str, Any], xp: ArrayNamespace) -> Any:
        env: dict[str, Any] = {s: x[..., i] for i, s in enumerate(self.states)}
        if self.inputs:
            env.update({n: u[..., j] for j, n in enumerate(self.inputs)})
        env[TIME_NAME] = t
        for name in self._reads:
            env[name] = p[name]  # a parameter (the probe records which are read)
        ref = x[..., 0]
        out = []
        for s in self.states:
            value = self.expressions[s].compile(xp)(env)
            if getattr(value, "shape", None) != ref.shape:  # a constant, or a parameter only
                value = xp.zeros_like(ref) + value
            out.append(value)
        return xp.stack(out)

    def to_dict(self) -> dict[str, Any]:
        """The equations as text, for model files."""
        return {"equations": self.texts, "states": list(self.states), "inputs": list(self.inputs),
                "parameters": list(self.parameters)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EquationsRhs:
        """Inverse of :meth:`to_dict` (the equations are parsed again; nothing is executed)."""
        return cls(dict(data["equations"]), states=data["states"], inputs=data.get("inputs", ()),
                   parameters=data.get("parameters", ()))

    def __repr__(self) -> str:
        return "EquationsRhs(" + ", ".join(f"d{s}={e.text!r}" for s, e in self.expressions.items()) + ")"
