"""The vector field in scaled coordinates and the continuity penalty of multiple shooting.

Training integrates scaled states ``z = (x - mean) / scale`` so a concentration of 1e-6 mol/L
and a position of 1e3 m step alike. The data misfit itself is an error model of
:mod:`sysid.estimation.error_models` ("nmse", "sse", "wls", "gaussian", "lognormal", "poisson",
"relative"), evaluated in user units by :class:`~sysid.training.problem.WindowProblem`.
"""

from __future__ import annotations

import torch
from torch import nn

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

    def forward(self, t: torch.Tensor, z: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        """Scaled derivatives ``(W, S)``."""
        x = self.mean + self.scale * z
        return self.field(t, x, u) / self.scale


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
