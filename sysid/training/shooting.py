"""Single or multiple shooting: the windows each curriculum stage trains on, and the "auto" rule.

:class:`~sysid.training.config.Shooting` holds what the user asked for; :func:`plan_shooting`
turns it, with the training data, into a :class:`ShootingPlan`: the stages ``(horizon, epochs,
stride)`` the engine runs and the continuity weight.

Single shooting fits one window per run from its first sample (horizon = the longest run,
stride = horizon, no continuity penalty): the classical least-squares fit of an ODE, where every
sample counts once. Multiple shooting cuts runs into short overlapping windows with free starts
tied by a continuity penalty; it is what keeps long and oscillating series from collapsing to
their mean, at the price of an optimum that is not exactly the least-squares one.

The "auto" rule (:func:`choose_method`)
--------------------------------------
1. A multiple-shooting setting (``horizons``, ``stage_epochs``, ``stride``, ``final_stride``,
   ``continuity``) that differs from its default means the user planned a curriculum:
   multiple shooting.
2. Runs longer than :data:`LONG_RUN` samples: multiple shooting. Errors of a poor starting
   model compound over a long horizon, so the single-shooting loss is rough there, and each
   step integrates sequentially over every sample.
3. A measured state that turns at least :data:`OSCILLATION_TURNS` times within a run
   (oscillation): multiple shooting; single shooting of an oscillation from a wrong frequency
   has many local optima. Turns are counted on the smoothed series (the local quadratic fits of
   the warm start, ``WarmStart.smoothing_points`` samples each), and a turn counts when the series
   retreats from its last extreme by more than :data:`TURN_FRACTION` of that state's range in
   the run, so measurement noise does not count (the raw BOD series dips by 30 % of its range
   at day 4; smoothed it rises throughout, while the hare-lynx pelts turn 3-4 times).
4. Otherwise (short, non-oscillating series such as kinetics, growth curves, one epidemic
   wave): single shooting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sysid.data.smoothing import smooth_runs
from sysid.errors import ConfigError
from sysid.training.config import FitConfig, Shooting

__all__ = ["ShootingPlan", "plan_shooting", "choose_method", "count_turns", "LONG_RUN",
           "OSCILLATION_TURNS", "TURN_FRACTION"]

#: Runs with more samples than this are "long" (multiple shooting under "auto").
LONG_RUN = 50
#: A state turning this many times in a run (up-down-up or down-up-down) oscillates.
OSCILLATION_TURNS = 2
#: A turn counts when the smoothed series retreats from its extreme by this fraction of its range
#: (hare-lynx swings by ~100 %).
TURN_FRACTION = 0.25


@dataclass(frozen=True)
class ShootingPlan:
    """The windows of a fit, resolved from :class:`Shooting` and the data.

    Attributes
    ----------
    method : {"single", "multiple"}
    reason : str
        Why this method (for "auto", the rule that decided).
    stages : tuple of (int, int, int)
        ``(horizon, epochs, stride)`` of each curriculum stage, in order.
    continuity : float
        Weight of the continuity penalty (0 for single shooting).
    """

    method: str
    reason: str
    stages: tuple[tuple[int, int, int], ...]
    continuity: float

    @property
    def final(self) -> tuple[int, int]:
        """``(horizon, stride)`` of the last stage (the best model and standard errors use it)."""
        h, _, s = self.stages[-1]
        return h, s

    def describe(self) -> str:
        """One line: method, windows and why."""
        horizons = ", ".join(str(h) for h, _, _ in self.stages)
        windows = "one window per run" if self.method == "single" else f"horizons {horizons}"
        return f"{self.method} shooting ({windows}; {self.reason})"

    def to_dict(self) -> dict:
        """JSON-able form (for ``FitResult.solver_stats["shooting"]``)."""
        return {"method": self.method, "reason": self.reason,
                "stages": [list(s) for s in self.stages], "continuity": self.continuity}


def count_turns(values: np.ndarray, threshold: float) -> int:
    """Turning points of a series with hysteresis: a turn counts when the series retreats from
    its running extreme by at least ``threshold``.

    Examples
    --------
    >>> count_turns(np.array([0.0, 1.0, 0.0, 1.0]), 0.5)
    2
    >>> count_turns(np.array([0.0, 1.0, 0.9, 2.0]), 0.5)
    0
    """
    if values.size < 3 or not threshold > 0:
        return 0
    low = high = float(values[0])
    trend, extreme, turns = 0, low, 0  # trend 0: no move of ``threshold`` yet
    for v in values[1:].tolist():
        if trend == 0:
            low, high = min(low, v), max(high, v)
            if v - low >= threshold:
                trend, extreme = 1, v
            elif high - v >= threshold:
                trend, extreme = -1, v
        elif trend * (v - extreme) > 0:
            extreme = v
        elif abs(v - extreme) >= threshold:
            turns += 1
            trend, extreme = -trend, v
    return turns


def choose_method(shooting: Shooting, t: np.ndarray, lengths: np.ndarray, y: np.ndarray,
                  mask: np.ndarray, points: int = 7, *,
                  smoothed: np.ndarray | None = None) -> tuple[str, str]:
    """``(method, reason)`` for the training data (see the module docstring for the rule).

    Parameters
    ----------
    shooting : Shooting
    t : ndarray (R, N)
        Padded sample times.
    lengths : ndarray (R,)
        Samples per run.
    y : ndarray (R, N, So)
        Measured variables in any units (padded).
    mask : ndarray of bool (R, N, So)
        Which entries are measured.
    points : int
        Samples per local quadratic fit of the smoother.
    smoothed : ndarray (R, N, So), optional
        The smoothed ``y`` (:func:`~sysid.data.smoothing.smooth_runs`), when already computed.
    """
    if shooting.method != "auto":
        return shooting.method, "as configured"
    if shooting.curriculum_given:
        return "multiple", "auto: multiple-shooting settings were given"
    longest = int(np.max(lengths)) if lengths.size else 0
    if longest > LONG_RUN:
        return "multiple", f"auto: runs up to {longest} samples long (> {LONG_RUN})"
    smooth = smoothed if smoothed is not None else smooth_runs(t, y, mask, lengths, points,
                                                               second=False)[0]
    for r in range(y.shape[0]):
        for j in range(y.shape[-1]):
            v = smooth[r, : int(lengths[r]), j]
            v = v[np.isfinite(v)]
            if v.size < 3:
                continue
            turns = count_turns(v, TURN_FRACTION * float(v.max() - v.min()))
            if turns >= OSCILLATION_TURNS:
                return "multiple", (f"auto: a measured state turns {turns} times in one run "
                                    f"(oscillation)")
    return "single", f"auto: short ({longest} samples or fewer per run), non-oscillating series"


def _multiple_stages(shooting: Shooting, epochs: int, free: bool) -> tuple[tuple[int, int, int], ...]:
    if shooting.stage_epochs is not None:
        pairs = list(zip(shooting.horizons, shooting.stage_epochs))
    else:
        horizons = shooting.horizons[-epochs:]  # fewer epochs than stages: keep the longest
        base = epochs // len(horizons)
        counts = [base] * (len(horizons) - 1) + [epochs - base * (len(horizons) - 1)]
        pairs = list(zip(horizons, counts))
    out = []
    for k, (h, e) in enumerate(pairs):
        stride = shooting.stride
        if k == len(pairs) - 1:
            if shooting.final_stride is not None:
                stride = shooting.final_stride
            elif free:
                stride = max(h - 1, 1)
        out.append((int(h), int(e), int(stride)))
    return tuple(out)


def plan_shooting(cfg: FitConfig, t: np.ndarray, lengths: np.ndarray, y: np.ndarray,
                  mask: np.ndarray, *, smoothed: np.ndarray | None = None) -> ShootingPlan:
    """The stages a fit runs, from its config and training data (see :func:`choose_method`;
    ``smoothed`` are the smoothed ``y`` when the caller has them).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(0, 1, 9)
    >>> y, m = np.exp(-t)[None, :, None], np.ones((1, 9, 1), bool)
    >>> plan = plan_shooting(FitConfig(epochs=30), t[None], np.array([9]), y, m)
    >>> plan.method, plan.stages
    ('single', ((9, 30, 9),))
    >>> plan_shooting(FitConfig(epochs=30, shooting="multiple"), t[None], np.array([9]), y, m).stages
    ((5, 10, 1), (10, 10, 1), (20, 10, 1))
    """
    method, reason = choose_method(cfg.shooting, t, np.asarray(lengths), y, mask,
                                   cfg.warm_start.smoothing_points, smoothed=smoothed)
    if method == "single":
        n = max(int(np.max(lengths)), 2)
        return ShootingPlan("single", reason, ((n, cfg.epochs, n),), 0.0)
    return multiple_plan(cfg, lengths, reason)


def multiple_plan(cfg: FitConfig, lengths: np.ndarray, reason: str) -> ShootingPlan:
    """The multiple-shooting plan of ``cfg`` (its curriculum) for runs of ``lengths`` samples;
    a horizon the user chose beyond every run is a :class:`ConfigError`."""
    stages = _multiple_stages(cfg.shooting, cfg.epochs, cfg.initial_states == "free")
    longest = int(np.max(lengths))
    too_long = [h for h, _, _ in stages if h > longest]
    if too_long and tuple(cfg.shooting.horizons) != Shooting().horizons:
        # the default curriculum on short runs is fine (windows are cut at the run's end); a
        # horizon the user chose beyond every run is a mistake that only costs memory
        raise ConfigError(
            f"Shooting: horizons {too_long} are longer than the longest training run ({longest} "
            f"samples); a window cannot be longer than its run. Use horizons up to {longest}, or "
            f"shooting='single' for one window per run.")
    return ShootingPlan("multiple", reason, stages, cfg.shooting.continuity)
