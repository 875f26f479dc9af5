"""Vector fields ``dx/dt = f(t, x, u)`` as torch modules, in user units in and out.

Build a model from what is known: nothing (:func:`neural`), a formula with unknown named constants
(:func:`physics`), or both (:func:`hybrid`); mechanical systems in position/velocity form with
:func:`second_order`; or from equations written as text in a TOML file (:func:`from_toml`). Any
of them may declare measurement equations (``outputs=``, :class:`Outputs`). Every factory returns a :class:`Model`; the fields behind it
(:class:`NeuralField`, :class:`PhysicsField`, :class:`HybridField`, :class:`SecondOrderField`) can
also be composed directly. Hidden states of any of them can be estimated from past samples by an
:class:`Encoder` (``neural(..., encoder=Encoder(past=10))``). :class:`Dynamics` is the same kind of right-hand side as batched NumPy
(what SciPy integrates; :func:`sysid.analysis.as_dynamics` makes one from anything).
"""

from sysid.models.base import ScalingLike, VectorField, scaling_arrays, scaling_to_dict
from sysid.models.composite import HybridField, SecondOrderField
from sysid.models.dynamics import Dynamics
from sysid.models.encoder import Encoder, StateEncoder
from sysid.models.interpolation import INTERPOLATIONS, InputInterpolator, numpy_interpolant
from sysid.models.model import Model, hybrid, neural, physics, second_order
from sysid.models.neural import ACTIVATIONS, NeuralField
from sysid.models.outputs import Outputs
from sysid.models.equations import EquationsRhs, from_toml
from sysid.models.parameters import Parameter, raw_from_value, value_from_raw
from sysid.models.physics import PhysicsField
from sysid.solvers import (
    ADAPTIVE_METHODS,
    FIXED_METHODS,
    SolveCounter,
    SolverConfig,
    solve,
)

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
