"""Vector fields ``dx/dt = f(t, x, u)`` as torch modules, in user units in and out.

Build a model from what is known: nothing (:func:`neural`), a formula with unknown named constants
(:func:`physics`), or both (:func:`hybrid`); mechanical systems in position/velocity form with
:func:`second_order`; or from equations written as text in a TOML file (:func:`from_toml`). Any
of them may declare measurement equations (``outputs=``, :class:`Outputs`). Every factory returns a :class:`Model`; the fields behind it
(:class:`NeuralField`, :class:`PhysicsField`, :class:`HybridField`, :class:`SecondOrderField`) can
also be composed directly. Hidden states of any of them can be estimated from past samples by an
:class:`Encoder` (``neural(..., encoder=Encoder(past=10))``). :class:`Dynamics` is the same kind of right-hand side as batched NumPy
(what SciPy integrates; :func:`sysid.analysis.as_dynamics` makes one from anything).

The torch classes and factories are imported on first use of their names (``import sysid.models``
does not import torch).
"""

import sys
import types
from typing import Any, final

from sysid.models.dynamics import Dynamics
from sysid.models.equations_rhs import EquationsRhs
from sysid.models.interpolation import INTERPOLATIONS, InputInterpolator, numpy_interpolant
from sysid.models.parameters import Parameter, raw_from_value, value_from_raw
from sysid.solvers import (
    ADAPTIVE_METHODS,
    FIXED_METHODS,
    SolveCounter,
    SolverConfig,
    solve,
)

# the torch modules, imported on first use of one of their names: a NumPy simulation of a saved
# model (sysid.io.load_dynamics, ``sysid simulate``) never imports torch
_LAZY = {
    "ScalingLike": "base", "VectorField": "base", "scaling_arrays": "base", "scaling_to_dict": "base",
    "HybridField": "composite", "SecondOrderField": "composite",
    "Encoder": "encoder", "StateEncoder": "encoder",
    "Model": "model", "hybrid": "model", "neural": "model", "physics": "model",  # (_Package)
    "second_order": "model",
    "ACTIVATIONS": "neural", "NeuralField": "neural",
    "Outputs": "outputs",
    "from_toml": "equations",
    "PhysicsField": "physics",
}


def __getattr__(name: str) -> Any:
    """The torch-based names of this package, imported on first use."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"sysid.models.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sysid.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


@final
class _Package(types.ModuleType):
    """``sysid.models.neural`` and ``sysid.models.physics`` are the factories, though submodules
    of the same names exist: importing a submodule binds it on its package, which would hide the
    lazily imported factory (eager imports used to bind the factories last)."""

    @property
    def neural(self) -> Any:
        from sysid.models.model import neural

        return neural

    @neural.setter
    def neural(self, value: Any) -> None:
        pass  # the import system binding the submodule: the name stays the factory

    @property
    def physics(self) -> Any:
        from sysid.models.model import physics

        return physics

    @physics.setter
    def physics(self, value: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package


__all__ = [
    "ACTIVATIONS",
    "ADAPTIVE_METHODS",
    "Dynamics",
    "Encoder",
    "EquationsRhs",
    "FIXED_METHODS",
    "from_toml",
    "HybridField",
    "INTERPOLATIONS",
    "InputInterpolator",
    "Model",
    "NeuralField",
    "Outputs",
    "Parameter",
    "PhysicsField",
    "ScalingLike",
    "SecondOrderField",
    "SolveCounter",
    "SolverConfig",
    "StateEncoder",
    "VectorField",
    "hybrid",
    "neural",
    "numpy_interpolant",
    "physics",
    "raw_from_value",
    "scaling_arrays",
    "scaling_to_dict",
    "second_order",
    "solve",
    "value_from_raw",
]
