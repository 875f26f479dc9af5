"""The vector field in scaled coordinates and the continuity penalty of multiple shooting.

Training integrates scaled states ``z = (x - mean) / scale`` so a concentration of 1e-6 mol/L
and a position of 1e3 m step alike. The data misfit itself is an error model of
:mod:`sysid.estimation.error_models` ("nmse", "sse", "wls", "gaussian", "lognormal", "poisson",
"relative"), evaluated in user units by :class:`~sysid.training.problem.WindowProblem`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from sysid.models.neural import NeuralField

__all__ = ["ScaledRhs", "continuity_loss"]


class ScaledRhs(nn.Module):
    """``dz/dt`` of the scaled state ``z = (x - mean) / scale`` for a field in user units.

    Parameters
    ----------
    field : nn.Module
        ``field(t, x, u) -> dx/dt`` in user units (all states).
    mean, scale : Tensor (S,)
        Centre and scale of each state.
    """

    def __init__(self, field: nn.Module, mean: torch.Tensor, scale: torch.Tensor) -> None:
        super().__init__()
        self.field = field
        self.register_buffer("mean", mean.clone())
        self.register_buffer("scale", scale.clone())
        # the network's layers folded for z directly (see folded), while a block lasts
        self._direct: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._direct_grad = False

    def forward(self, t: torch.Tensor, z: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Scaled derivatives ``(W, S)``."""
        direct = self._direct
        if direct is not None and (self._direct_grad or not torch.is_grad_enabled()):
            return self.field.network(t, z, u, direct)
        x = self.mean + self.scale * z
        return self.field(t, x, u) / self.scale

    @contextlib.contextmanager
    def folded(self) -> Iterator[None]:
        """Fold the networks' scalings into their weights once for a block of evaluations in
        which the weights do not change (one rollout; with gradients when they are enabled, so
        the backward pass after the block reaches the weights through the one fold).

        A :class:`~sysid.models.neural.NeuralField` of all states to all states whose mean is
        this scaling's mean (a fit sets the data's scaling on an unscaled model) is evaluated on
        the scaled states directly: ``x = mean + scale * z``, the network's own centring and
        scaling and the final ``/ scale`` become one scaling of its first and last layer (the
        same values up to rounding; 5 instead of 12 operations per evaluation of the default
        network). Any other field has its networks folded once (:func:`folded_once`).
        """
        from sysid.models.neural import folded_once

        field = self.direct_network()
        if field is not None:
            saved = (self._direct, self._direct_grad)
            try:
                self._direct = field._layers(self.scale)
                self._direct_grad = torch.is_grad_enabled()
                yield
            finally:
                self._direct, self._direct_grad = saved
            return
        with folded_once(self.field):
            yield

    def direct_network(self) -> NeuralField | None:
        """The field when it is a :class:`~sysid.models.neural.NeuralField` of all states to all
        states on this scaling's mean, which :meth:`folded` evaluates on ``z`` directly (its
        layers ``field._layers(self.scale)``); else None."""
        from sysid.models.neural import NeuralField

        field = self.field
        if (isinstance(field, NeuralField) and field._all_args and field._all_outputs
                and torch.equal(field.x_mean, self.mean)):
            return field
        return None

    def numpy_function(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """A float64 NumPy copy ``g(t (B,), z (B, S)) -> dz/dt (B, S)`` of this field without
        inputs, with the current weights (a snapshot: later training does not change it).

        The network of :meth:`folded` (a field of all states to all states on the fit's scaling)
        is evaluated on ``z`` directly: its ``numpy_function`` with this scaling composed into
        its normalisation (``coordinates=(mean, scale)``), and ``g.in_place`` its
        in-place form (:func:`sysid.models.numpy_fields.in_place`: 6 NumPy operations per
        evaluation of the default network, written into a given buffer). Any other field goes
        through its own ``numpy_function`` in user units.

        Raises
        ------
        ValueError
            For a field with inputs (their interpolation lives in torch).
        """
        field = self.field
        if field.input_names:
            raise ValueError("ScaledRhs.numpy_function: the field has inputs")
        with torch.no_grad():
            mean = self.mean.double().numpy().copy()
            scale = self.scale.double().numpy().copy()
            net = self.direct_network()
            if net is not None:
                # the network on z (its normalisation composed with this scaling), whose
                # in-place form (numpy_fields.in_place) the held-out checks step with
                f = net.numpy_function(coordinates=(mean, scale))

                def network(t: np.ndarray | None, z: np.ndarray) -> np.ndarray:
                    return f(t, z, None)

                network.in_place = f.in_place  # type: ignore[attr-defined]
                return network
        f = field.numpy_function()

        def scaled(t: np.ndarray, z: np.ndarray) -> np.ndarray:
            return np.asarray(f(t, mean + scale * z, None), dtype=float) / scale

        return scaled


def continuity_loss(pred_z: torch.Tensor, nodes_z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean squared mismatch between predicted states and the free node values at later samples.

    Parameters
    ----------
    pred_z, nodes_z : Tensor (W, H-1, F)
        Predicted free states at window positions 1..H-1 and the node values there.
    valid : BoolTensor (W, H-1)
        Positions inside the run.
    """
    d = (pred_z - nodes_z) * valid[..., None].to(pred_z.dtype)
    count = (valid.sum() * pred_z.shape[-1]).clamp(min=1)
    return (d * d).sum() / count
