"""The NumPy copies of the vector fields, written once and without torch.

Each torch field's ``numpy_function()`` (:class:`~sysid.models.NeuralField`,
:class:`~sysid.models.PhysicsField`, :class:`~sysid.models.HybridField`,
:class:`~sysid.models.SecondOrderField`) hands its weights and parameter values, as float64
arrays and floats, to the builders here; :func:`sysid.io.load_dynamics` hands them the arrays of
a model file. Both get the same function, and this module never imports torch, so a saved model
can be simulated without it (``sysid simulate``).

A field function is ``f(t, x, u) -> dx/dt`` of the field's outputs, with ``x`` of shape
``(..., S)``, ``u`` ``(..., I)`` or None and ``t`` a float or an array of one time per row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sysid.backend import NUMPY

__all__ = ["ACTIVATIONS", "NumpyField", "copies_agree", "neural_function", "physics_function", "hybrid_function",
           "second_order_function"]

NumpyField = Callable[[Any, np.ndarray, "np.ndarray | None"], np.ndarray]


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, z)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _silu(z: np.ndarray) -> np.ndarray:
    return z * _sigmoid(z)


def _elu(z: np.ndarray) -> np.ndarray:
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))


def _gelu(z: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


#: name -> the NumPy activation (the torch ones are in :data:`sysid.models.neural.ACTIVATIONS`).
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh, "relu": _relu, "softplus": _softplus, "sigmoid": _sigmoid, "silu": _silu,
    "elu": _elu, "gelu": _gelu,
}


def neural_function(weights: Sequence[tuple[np.ndarray, np.ndarray]], activation: str, *,
                    x_mean: np.ndarray, x_scale: np.ndarray, u_mean: np.ndarray,
                    u_scale: np.ndarray, time_scale: float, outputs: Sequence[int],
                    arguments: Sequence[int] | None, has_inputs: bool,
                    time_dependent: bool) -> NumpyField:
    """The multilayer perceptron of a :class:`~sysid.models.NeuralField` in float64.

    Parameters
    ----------
    weights : sequence of (weight, bias)
        Each layer's ``(out, in)`` weight and ``(out,)`` bias.
    activation : str
        A key of :data:`ACTIVATIONS`.
    x_mean, x_scale, u_mean, u_scale : numpy.ndarray
        The normalisation of every state and input; ``time_scale`` that of time.
    outputs : sequence of int
        The state index of each output (the output scale is ``x_scale[outputs] / time_scale``).
    arguments : sequence of int, optional
        The states the network reads (None: all).
    has_inputs, time_dependent : bool
        Whether the network reads the inputs and ``t / time_scale``.
    """
    weights = [(np.array(w, dtype=float), np.array(b, dtype=float)) for w, b in weights]
    act = ACTIVATIONS[activation]
    xm, xs = np.array(x_mean, dtype=float), np.array(x_scale, dtype=float)
    um, us = np.array(u_mean, dtype=float), np.array(u_scale, dtype=float)
    ts = float(time_scale)
    out_scale = xs[np.asarray(outputs, dtype=int)] / ts
    arg_idx = None if arguments is None else np.array(arguments, dtype=int)

    def f(t: Any, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        z = (x - xm) / xs
        parts = [z if arg_idx is None else z[..., arg_idx]]
        if has_inputs:
            parts.append((np.asarray(u, dtype=float) - um) / us)
        if time_dependent:
            tt = np.asarray(t, dtype=float) / ts
            parts.append(np.broadcast_to(tt.reshape(-1, 1) if tt.ndim else tt, (*x.shape[:-1], 1)))
        h = np.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
        for w, b in weights[:-1]:
            h = act(h @ w.T + b)
        w, b = weights[-1]
        return (h @ w.T + b) * out_scale

    return f


def physics_function(fn: Callable[..., Any], values: Mapping[str, float], n_outputs: int,
                     has_inputs: bool) -> NumpyField:
    """``fn(t, x, u, p, NUMPY)`` of a :class:`~sysid.models.PhysicsField` with its parameter
    ``values`` as floats, broadcast to ``(..., n_outputs)``."""
    p = {k: float(v) for k, v in values.items()}

    def f(t: Any, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        out = np.asarray(fn(t, x, u if has_inputs else None, p, NUMPY), dtype=float)
        return np.broadcast_to(out, (*x.shape[:-1], n_outputs))

    return f


def hybrid_function(physics: NumpyField, neural: NumpyField, physics_inputs: Sequence[int],
                    neural_inputs: Sequence[int], neural_states: Sequence[int]) -> NumpyField:
    """The sum of a :class:`~sysid.models.HybridField`'s terms: the physics term's derivatives
    plus the network's on ``neural_states`` (each term reads its own inputs by index)."""
    ip, ineu = list(physics_inputs), list(neural_inputs)
    idx = np.array(neural_states, dtype=int)

    def f(t: Any, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        base = np.array(physics(t, x, u[..., ip] if ip and u is not None else None), dtype=float)
        corr = neural(t, x, u[..., ineu] if ineu and u is not None else None)
        base[..., idx] += corr
        return base

    return f


def second_order_function(acceleration: NumpyField, n_positions: int) -> NumpyField:
    """``[v, acceleration(t, x, u)]`` of a :class:`~sysid.models.SecondOrderField`."""
    n = int(n_positions)

    def f(t: Any, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        return np.concatenate([x[..., n:], acceleration(t, x, u)], axis=-1)

    return f


def copies_agree(got: np.ndarray, want: np.ndarray, *, rtol: float, atol: float) -> bool:
    """Whether a NumPy copy's derivatives ``got`` equal the torch field's ``want`` to rounding:
    same shape and, elementwise, ``abs(got - want) <= atol * max(1, max abs(want)) + rtol *
    abs(want)`` (``np.allclose``'s test with an ``atol`` relative to the largest derivative; NaN
    or inf anywhere disagrees). Used before a NumPy copy stands in for the torch field
    (``sysid.simulate``; a fit's held-out checks, with the rounding of the fit's dtype)."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if got.shape != want.shape:
        return False
    scale = np.abs(want)
    bound = atol * max(1.0, float(scale.max())) + rtol * scale
    return bool((np.abs(got - want) <= bound).all())
