"""The NumPy copies of the vector fields, written once and without torch.

Each torch field's ``numpy_function()`` (:class:`~sysid.models.NeuralField`,
:class:`~sysid.models.PhysicsField`, :class:`~sysid.models.HybridField`,
:class:`~sysid.models.SecondOrderField`) hands its weights and parameter values, as float64
arrays and floats, to the builders here; :func:`sysid.io.load_dynamics` hands them the arrays of
a model file. Both get the same function, and this module never imports torch, so a saved model
can be simulated without it (``sysid simulate``).

A field function is ``f(t, x, u) -> dx/dt`` of the field's outputs, with ``x`` of shape
``(..., S)``, ``u`` ``(..., I)`` or None and ``t`` a float or an array of one time per row.

A network's function also has an *in-place form* for a batch of a given size
(:func:`in_place`): ``g(t, x, u, out)`` writes ``f(t, x, u)`` into ``out`` with the scalings
folded into the first and last layers (each bias a row of its layer's matrix, the layer's input
buffer ending in a column of ones) and every layer computed into buffers made once per batch
size: 6 array operations for a 2-layer network instead of 11 and no allocation, about half the
time of ``f`` on 8 runs and 0.8x on 1000 (issue #13); a hybrid or second-order field's network
is evaluated the same way inside it. sysid's dopri5 stepper evaluates its
stages through it (``sysid.simulate``); ``f`` stays the plain function that SciPy and every
other caller see. The two differ by rounding only (a few ulps of the result; tested).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sysid.backend import NUMPY

__all__ = ["ACTIVATIONS", "InPlaceField", "NumpyField", "copies_agree", "in_place", "neural_function",
           "physics_function", "hybrid_function", "second_order_function"]

NumpyField = Callable[[Any, np.ndarray, "np.ndarray | None"], np.ndarray]
#: ``g(t, x, u, out) -> None``: a field's value at ``x`` ``(rows, S)`` written into ``out``.
InPlaceField = Callable[[Any, np.ndarray, "np.ndarray | None", np.ndarray], None]


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
#: The activations NumPy computes straight into a buffer, ``act(z, out)`` (the same ufunc as
#: :data:`ACTIVATIONS`); the others are computed and then copied into it.
_INTO: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    "tanh": lambda z, out: np.tanh(z, out=out),
    "relu": lambda z, out: np.maximum(z, 0.0, out=out),
    "softplus": lambda z, out: np.logaddexp(0.0, z, out=out),
}


def in_place(f: NumpyField, rows: int) -> InPlaceField | None:
    """The in-place form of the field function ``f`` for batches of ``rows`` rows, or None.

    Parameters
    ----------
    f : callable
        A field function of this module: a network's (:func:`neural_function`), or a hybrid or
        second-order field's whose network has one (the physics term is evaluated as it is);
        any other gives None.
    rows : int
        The batch size: ``x`` of the returned ``g(t, x, u, out)`` is ``(rows, S)``, ``u``
        ``(rows, I)`` (or broadcastable to it) or None, ``t`` a float or ``(rows,)``, and
        ``out`` a C-contiguous float64 ``(rows, outputs)``.

    Returns
    -------
    callable or None
        ``g``, which owns buffers for its batch: one solve's, not to be shared between threads.

    Examples
    --------
    >>> f = neural_function([(np.ones((2, 2)), np.zeros(2))], "tanh", x_mean=np.zeros(2),
    ...                     x_scale=np.ones(2), u_mean=np.zeros(0), u_scale=np.ones(0),
    ...                     time_scale=1.0, outputs=[0, 1], arguments=None, has_inputs=False,
    ...                     time_dependent=False)
    >>> out = np.empty((1, 2))
    >>> in_place(f, 1)(0.0, np.array([[1.0, 2.0]]), None, out)
    >>> out.tolist()
    [[3.0, 3.0]]
    """
    make = getattr(f, "in_place", None)
    return None if make is None else make(int(rows))


def _folded(weights: list[tuple[np.ndarray, np.ndarray]], in_shift: np.ndarray, in_scale: np.ndarray,
            out_scale: np.ndarray) -> list[np.ndarray]:
    """Each layer as one ``(in + 1, out)`` matrix ``[W^T; b]`` acting on ``[h, 1]``, with the
    first layer's input normalisation ``(v - in_shift) / in_scale`` (per input column; shift 0
    and scale 1 for columns that have none) and the output scaling of the last folded in."""
    mats = []
    last = len(weights) - 1
    for k, (w, b) in enumerate(weights):
        if k == 0:
            b = b - w @ (in_shift / in_scale)
            w = w / in_scale
        if k == last:
            w, b = w * out_scale[:, None], b * out_scale
        mats.append(np.ascontiguousarray(np.vstack([w.T, b[None, :]])))
    return mats


def _neural_in_place(mats: list[np.ndarray], activation: str, rows: int, arg_idx: np.ndarray | None,
                     n_x: int, n_u: int, time_dependent: bool) -> InPlaceField:
    """:func:`neural_function`'s network for ``rows`` rows on the matrices of :func:`_folded`."""
    act_into = _INTO.get(activation)
    act = ACTIVATIONS[activation]
    ins = [np.ones((rows, m.shape[0])) for m in mats]  # each layer's input, ones in its last column
    pre = [np.empty((rows, m.shape[1])) for m in mats[:-1]]  # each hidden layer's pre-activation
    x_in, u_in = ins[0][:, :n_x], ins[0][:, n_x:n_x + n_u]
    t_in = ins[0][:, n_x + n_u] if time_dependent else None
    layers = list(zip(mats[:-1], pre, [h[:, :-1] for h in ins[1:]], ins[:-1]))

    def g(t: Any, x: np.ndarray, u: np.ndarray | None, out: np.ndarray) -> None:
        x_in[...] = x if arg_idx is None else x[:, arg_idx]
        if n_u:
            u_in[...] = u
        if t_in is not None:
            t_in[...] = t
        for m, z, h, h_in in layers:
            np.dot(h_in, m, out=z)
            if act_into is not None:
                act_into(z, h)
            else:
                h[...] = act(z)
        np.dot(ins[-1], mats[-1], out=out)

    return g


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

    n_x = len(xm) if arg_idx is None else len(arg_idx)
    n_u = len(um) if has_inputs else 0
    x_cols = (xm, xs) if arg_idx is None else (xm[arg_idx], xs[arg_idx])
    shift = np.concatenate([x_cols[0], um if has_inputs else [], [0.0] if time_dependent else []])
    scale = np.concatenate([x_cols[1], us if has_inputs else [], [ts] if time_dependent else []])
    mats = _folded(weights, shift, scale, out_scale)
    for m in mats:
        m.flags.writeable = False
    f.in_place = functools.partial(  # type: ignore[attr-defined]
        _neural_in_place, mats, activation, arg_idx=arg_idx, n_x=n_x, n_u=n_u, time_dependent=time_dependent)
    return f


def physics_function(fn: Callable[..., Any], values: Mapping[str, float], n_outputs: int,
                     has_inputs: bool) -> NumpyField:
    """``fn(t, x, u, p, NUMPY)`` of a :class:`~sysid.models.PhysicsField` with its parameter
    ``values`` as floats, broadcast to ``(..., n_outputs)`` (a read-only view) unless it has
    that shape already."""
    p = {k: float(v) for k, v in values.items()}

    def f(t: Any, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        out = np.asarray(fn(t, x, u if has_inputs else None, p, NUMPY), dtype=float)
        shape = (*x.shape[:-1], n_outputs)
        # np.broadcast_to costs 4 us, a quarter of a Lotka-Volterra evaluation on 8 runs: only
        # when the function returned fewer dimensions (e.g. a constant)
        return out if out.shape == shape else np.broadcast_to(out, shape)

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

    def in_place_sum(rows: int) -> InPlaceField | None:
        """The physics term as it is, the network's in place (None when it has no such form)."""
        g = in_place(neural, rows)
        if g is None:
            return None
        corr = np.empty((rows, len(idx)))

        def h(t: Any, x: np.ndarray, u: np.ndarray | None, out: np.ndarray) -> None:
            out[...] = physics(t, x, u[..., ip] if ip and u is not None else None)
            g(t, x, u[..., ineu] if ineu and u is not None else None, corr)
            out[:, idx] += corr

        return h

    f.in_place = in_place_sum  # type: ignore[attr-defined]
    return f


def second_order_function(acceleration: NumpyField, n_positions: int) -> NumpyField:
    """``[v, acceleration(t, x, u)]`` of a :class:`~sysid.models.SecondOrderField`."""
    n = int(n_positions)

    def f(t: Any, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        return np.concatenate([x[..., n:], acceleration(t, x, u)], axis=-1)

    def in_place_pair(rows: int) -> InPlaceField | None:
        """The velocities copied, the acceleration in place (None when it has no such form)."""
        g = in_place(acceleration, rows)
        if g is None:
            return None
        acc = np.empty((rows, n))

        def h(t: Any, x: np.ndarray, u: np.ndarray | None, out: np.ndarray) -> None:
            g(t, x, u, acc)
            out[:, :n] = x[:, n:]
            out[:, n:] = acc

        return h

    f.in_place = in_place_pair  # type: ignore[attr-defined]
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
