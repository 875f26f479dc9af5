"""Loss functions of the window predictions, and the vector field in scaled coordinates.

States are compared in scaled units ``z = (x - mean) / scale`` so a concentration of 1e-6 mol/L
and a position of 1e3 m weigh alike; ``"lognormal"`` compares logarithms (multiplicative error,
positive quantities such as population counts) and ``loss="relative"`` errors relative to the
measured magnitude.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ScaledRhs", "data_loss", "continuity_loss", "residuals"]

# below this, log(softplus(z)) equals z to float64 precision (softplus(z) = exp(z) (1 + O(exp(z))))
_LOG_SOFTPLUS_CUT = -30.0


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


def residuals(pred_z: torch.Tensor, y_z: torch.Tensor, kind: str, mean: torch.Tensor,
              scale: torch.Tensor) -> torch.Tensor:
    """Per-entry residuals of the observed states (same shape as ``y_z``).

    Parameters
    ----------
    pred_z, y_z : Tensor (..., So)
        Predicted and measured observed states in scaled units.
    kind : {"nmse", "lognormal", "relative"}
        The error model (see module docstring); "nmse" is the plain difference of scaled states.
    mean, scale : Tensor (So,)
        Scaling of the observed states (to return to user units for "log" and "relative").
    """
    if kind == "nmse":
        return pred_z - y_z
    x_pred = mean + scale * pred_z
    x_obs = mean + scale * y_z
    floor = 1e-3 * scale
    if kind == "lognormal":
        # a smooth positive floor keeps a gradient when a prediction dips below zero:
        # log(floor * softplus(z)) with z = x / floor. softplus underflows to 0 (log -> -inf) for
        # z below about -100 in float32, so far below the floor use its asymptote log softplus(z) ~ z
        # (the clamp keeps the unused branch's gradient finite).
        z = x_pred / floor
        log_sp = torch.where(z > _LOG_SOFTPLUS_CUT, torch.log(F.softplus(z.clamp(min=_LOG_SOFTPLUS_CUT))), z)
        obs = torch.clamp(x_obs, min=1e-30)
        return torch.log(floor) + log_sp - torch.log(obs)
    if kind == "relative":
        return (x_pred - x_obs) / (x_obs.abs() + floor)
    raise ValueError(f"unknown loss kind {kind!r}; the training loss computes 'nmse', 'lognormal' "
                     f"and 'relative'")


def data_loss(pred_z: torch.Tensor, y_z: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor,
              kind: str, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Weighted mean squared residual over the measured entries.

    Parameters
    ----------
    pred_z, y_z : Tensor (W, H, So)
        Predictions and measurements (scaled).
    mask : BoolTensor (W, H, So)
        Which entries are measured (and inside their run).
    weights : Tensor (So,)
        Per-state weights.
    """
    r = residuals(pred_z, torch.where(mask, y_z, pred_z.detach()), kind, mean, scale)
    r = torch.where(mask, r, torch.zeros_like(r))
    m = mask.to(r.dtype)
    denom = m.sum().clamp(min=1.0)
    return (weights * r * r).sum() / denom


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
