"""Multiple-shooting windows over all runs, as index tensors (no Python loop per window).

A window of horizon ``H`` starts at sample ``i`` of run ``r`` and covers samples ``i .. i+H-1`` of
that run (fewer near the run's end: the positions past the last sample are marked invalid and
have a zero time step, so the state simply stays put there). Every window is integrated on its own
time grid, so runs with different or irregular sample times batch together: the solver sees the
state tensor ``(W, S)`` and the per-window time gaps ``(W, H-1)``.

Initial states of the windows
-----------------------------
Each window needs the full state at its first sample. Measured states start from the measurement
(or, with ``initial_states="free"``, from a free value per sample initialised at the smoothed
data). **Unmeasured (latent) states start from a free value per window start** — a tensor
``(runs, samples, latent)`` optimised jointly with the model; windows of every horizon that start
at the same sample share it, and a continuity penalty ties it to the predictions of the windows
that pass through that sample (multiple shooting). These "node" values are initialised from the
derivative of a measured position (second-order models) or at the latent state's scaled zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Windows", "make_windows", "gather", "WindowInputs"]


@dataclass(frozen=True)
class Windows:
    """Index tensors of a set of windows.

    Attributes
    ----------
    run : LongTensor (W,)
        Run (row of the padded run tensors) of each window.
    start : LongTensor (W,)
        First sample of each window.
    idx : LongTensor (W, H)
        Sample index of each window position (clipped to the run's last sample).
    valid : BoolTensor (W, H)
        Whether the position lies inside the run.
    """

    run: torch.Tensor
    start: torch.Tensor
    idx: torch.Tensor
    valid: torch.Tensor

    @property
    def count(self) -> int:
        """Number of windows."""
        return int(self.run.shape[0])

    @property
    def horizon(self) -> int:
        """Samples per window."""
        return int(self.idx.shape[1])

    def subset(self, which: torch.Tensor) -> Windows:
        """The windows at positions ``which`` (a LongTensor)."""
        return Windows(self.run[which], self.start[which], self.idx[which], self.valid[which])


def make_windows(lengths: torch.Tensor, horizon: int, stride: int = 1) -> Windows:
    """All windows of ``horizon`` samples starting every ``stride`` samples of every run.

    Parameters
    ----------
    lengths : LongTensor (R,)
        Samples per run.
    horizon : int
        Samples per window (>= 2).
    stride : int
        Samples between the starts of consecutive windows of a run.

    Returns
    -------
    Windows
        Windows starting at samples ``0, stride, 2*stride, ...`` up to the second-to-last sample
        of each run (a window needs at least two samples).

    Examples
    --------
    >>> w = make_windows(torch.tensor([4, 3]), horizon=3)
    >>> w.start.tolist(), w.valid[-1].tolist()
    ([0, 1, 2, 0, 1], [True, True, False])
    """
    lengths = torch.as_tensor(lengths, dtype=torch.long)
    counts = (torch.clamp(lengths - 1, min=0) + stride - 1) // stride  # starts per run
    run = torch.repeat_interleave(torch.arange(lengths.numel()), counts)
    first = torch.cumsum(counts, 0) - counts  # position of each run's first window
    start = (torch.arange(run.numel()) - first[run]) * stride
    offsets = torch.arange(horizon, dtype=torch.long)
    raw = start[:, None] + offsets[None, :]
    last = (lengths[run] - 1)[:, None]
    valid = raw <= last
    idx = torch.minimum(raw, last)
    return Windows(run, start, idx, valid)


def gather(values: torch.Tensor, windows: Windows) -> torch.Tensor:
    """Values of a padded run tensor ``(R, N, ...)`` at the window positions: ``(W, H, ...)``."""
    return values[windows.run[:, None], windows.idx]


class WindowInputs:
    """Inputs of a batch of windows, interpolated as the model's :class:`InputInterpolator`.

    Zero-order hold is exact per sample gap: every stage inside gap ``k`` sees sample ``k`` (a
    time-based lookup would see sample ``k+1`` at the gap's right end). Linear and cubic
    interpolation are continuous, so they are evaluated at the stage times over the window's
    whole run (the same curve :func:`sysid.simulate` uses).

    Parameters
    ----------
    t, u : Tensor (R, N), (R, N, I)
        Padded run times and inputs.
    lengths : LongTensor (R,)
    windows : Windows
    kind : {"zoh", "linear", "cubic"}
    """

    def __init__(self, t: torch.Tensor, u: torch.Tensor, lengths: torch.Tensor, windows: Windows,
                 kind: str) -> None:
        from sysid.models.interpolation import InputInterpolator

        self.kind = kind
        self.samples = gather(u, windows)  # (W, H, I)
        run = windows.run
        self.interp = None if kind == "zoh" else InputInterpolator(t[run], u[run], lengths[run], kind)

    def __call__(self, t: torch.Tensor, k: int) -> torch.Tensor:
        """Inputs ``(W, I)`` at times ``t (W,)`` inside sample gap ``k`` of every window."""
        if self.interp is None:
            return self.samples[:, k]
        return self.interp(t)
