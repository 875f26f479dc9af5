"""Array namespaces that let one right-hand side run on NumPy (for SciPy) and on torch.

A right-hand side in sysid is written once as ``rhs(t, x, u, p, xp)`` where ``x`` has the states on
its last axis, ``p`` maps parameter names to scalars (floats or 0-d tensors) and ``xp`` is one of
:data:`NUMPY` or :data:`TORCH` below. Use ``xp.sin``, ``xp.stack([...])`` (stacks on the last
axis) and so on instead of calling numpy or torch directly.

:data:`TORCH` is built on first use (``from sysid.backend import TORCH`` imports torch then), so
NumPy code that imports this module (a catalogue system integrated by SciPy, ``sysid simulate``
of a saved model) does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


@dataclass(frozen=True)
class ArrayNamespace:
    """The few array functions a right-hand side needs, for one backend."""

    name: str
    sin: Callable[[Any], Any]
    cos: Callable[[Any], Any]
    tan: Callable[[Any], Any]
    exp: Callable[[Any], Any]
    log: Callable[[Any], Any]
    sqrt: Callable[[Any], Any]
    tanh: Callable[[Any], Any]
    abs: Callable[[Any], Any]
    sign: Callable[[Any], Any]
    where: Callable[[Any, Any, Any], Any]
    maximum: Callable[[Any, Any], Any]
    minimum: Callable[[Any, Any], Any]
    _stack: Callable[..., Any]
    zeros_like: Callable[[Any], Any]

    def stack(self, items: list[Any]) -> Any:
        """Stack arrays (or scalars broadcast against them) along a new last axis."""
        return self._stack(items)


def _np_stack(items: list[Any]) -> np.ndarray:
    shape = items[0].shape if items and type(items[0]) is np.ndarray else None
    if shape is not None and all(type(a) is np.ndarray and a.dtype == np.float64 and a.shape == shape
                                 for a in items):
        # the usual case (float64 arrays of one shape) written into one block, without
        # broadcast_arrays and stack: a Lotka-Volterra evaluation 0.52-0.79 of the time it took
        # (bench_simulate.py part 7, 8 and 1000 runs)
        out = np.empty((*shape, len(items)))
        for k, a in enumerate(items):
            out[..., k] = a
        return out
    arrays = np.broadcast_arrays(*[np.asarray(i, dtype=float) for i in items])
    return np.stack(arrays, axis=-1)


NUMPY = ArrayNamespace(
    name="numpy",
    sin=np.sin,
    cos=np.cos,
    tan=np.tan,
    exp=np.exp,
    log=np.log,
    sqrt=np.sqrt,
    tanh=np.tanh,
    abs=np.abs,
    sign=np.sign,
    where=np.where,
    maximum=np.maximum,
    minimum=np.minimum,
    _stack=_np_stack,
    zeros_like=np.zeros_like,
)



#: The torch namespace: built by the module's ``__getattr__`` on first use (imports torch).
TORCH: ArrayNamespace


def _torch_namespace() -> ArrayNamespace:
    """The torch namespace (imports torch)."""
    import torch

    def stack(items: list[Any]) -> torch.Tensor:
        ref = next((i for i in items if isinstance(i, torch.Tensor)), None)
        if ref is None:
            return torch.stack([torch.as_tensor(i) for i in items], dim=-1)
        tensors = [i if isinstance(i, torch.Tensor) else torch.full_like(ref, float(i)) for i in items]
        return torch.stack(torch.broadcast_tensors(*tensors), dim=-1)

    def maximum(a: Any, b: Any) -> torch.Tensor:
        return torch.maximum(torch.as_tensor(a), torch.as_tensor(b))

    def minimum(a: Any, b: Any) -> torch.Tensor:
        return torch.minimum(torch.as_tensor(a), torch.as_tensor(b))

    return ArrayNamespace(
        name="torch", sin=torch.sin, cos=torch.cos, tan=torch.tan, exp=torch.exp, log=torch.log,
        sqrt=torch.sqrt, tanh=torch.tanh, abs=torch.abs, sign=torch.sign, where=torch.where,
        maximum=maximum, minimum=minimum, _stack=stack, zeros_like=torch.zeros_like,
    )


def __getattr__(name: str) -> Any:
    """:data:`TORCH`, built once on first use (importing torch takes over a second)."""
    if name == "TORCH":
        namespace = globals()["TORCH"] = _torch_namespace()
        return namespace
    raise AttributeError(f"module 'sysid.backend' has no attribute {name!r}")


__all__ = ["ArrayNamespace", "NUMPY", "TORCH"]
