"""Budgets that hold: a deadline and a stop flag checked inside long loops, and size limits checked
before a computation starts.

Two halves:

- **During** a computation, :class:`Deadline` (``max_time`` and a stop flag) is made current with
  :func:`active`; long loops deep inside sysid (the warm start's epochs, every step of a solve,
  the polish, metrics, ``simulate``) call :func:`check` (raises :class:`BudgetExceeded` once the
  time is spent, :class:`KeyboardInterrupt` once a stop was requested) or poll :func:`expired`
  (for loops that can stop early and keep what they have). With no deadline active both cost a
  context-variable lookup and do nothing.
- **Before** a computation, :class:`Limits` bound the memory and work a fit or a simulation may
  ask for; :func:`check_memory` and :func:`check_work` refuse an estimate above them with a
  :class:`~sysid.errors.ConfigError` that names the estimate, what drives it and how to raise
  the limit (``with sysid.budget.limits(memory_gb=32): ...``, or ``--max-memory`` on the
  command line).

Examples
--------
>>> import time
>>> with active(Deadline(60.0)):
...     check("my loop")        # plenty of time left: nothing happens
>>> with active(Deadline(0.0)):
...     expired()
True
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, final

from sysid.errors import ConfigError, SysidError

__all__ = [
    "BudgetExceeded",
    "Deadline",
    "Limits",
    "active",
    "check",
    "expired",
    "remaining",
    "current_limits",
    "limits",
    "check_memory",
    "check_work",
    "check_points",
    "check_fit",
    "format_bytes",
    "Pace",
    "STIFF_HINT",
    "Sigterm",
    "sigterm_as_interrupt",
]


class BudgetExceeded(SysidError, RuntimeError):
    """The time budget (``max_time``) ran out inside a long computation.

    Attributes
    ----------
    where : str
        The computation that was stopped ("warm start", "solve", "metrics", ...).
    """

    def __init__(self, message: str, *, where: str = "") -> None:
        super().__init__(message)
        self.where = where


@final
class Deadline:
    """A time budget and a stop flag, shared by every loop that runs while it is :func:`active`.

    Parameters
    ----------
    seconds : float or None
        Time allowed from now (None: no time limit, only the stop flag).
    what : str
        How the limit is called in messages (``"max_time"``).

    Notes
    -----
    :meth:`stop` may be called from another thread or a signal handler; the loops notice it at
    their next :func:`check`.
    """

    def __init__(self, seconds: float | None, *, what: str = "max_time") -> None:
        if seconds is not None:
            seconds = float(seconds)
            if math.isnan(seconds) or seconds < 0:
                raise ConfigError(f"{what} must be a non-negative number of seconds; got {seconds}.")
        self.seconds = seconds
        self.what = what
        self.started = time.monotonic()
        self._end = math.inf if seconds is None else self.started + seconds
        self._stop = threading.Event()

    def remaining(self) -> float:
        """Seconds left (``inf`` without a time limit; never below 0)."""
        return max(0.0, self._end - time.monotonic())

    def stop(self) -> None:
        """Ask every loop checking this deadline to stop (as Ctrl-C would)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def expired(self) -> bool:
        """True once the time is spent or a stop was requested."""
        return self._stop.is_set() or time.monotonic() >= self._end

    def check(self, where: str) -> None:
        """Raise if the budget is spent (:class:`BudgetExceeded`) or a stop was requested
        (:class:`KeyboardInterrupt`)."""
        if self._stop.is_set():
            raise KeyboardInterrupt(f"{where}: stopped on request")
        if time.monotonic() >= self._end:
            raise BudgetExceeded(
                f"{where}: stopped because the time budget ({self.what}={self.seconds:g} s) was spent.",
                where=where)

    def __repr__(self) -> str:
        return f"Deadline(seconds={self.seconds!r}, remaining={self.remaining():.3g})"


_ACTIVE: contextvars.ContextVar[tuple[Deadline, ...]] = contextvars.ContextVar("sysid_deadlines",
                                                                               default=())


@contextlib.contextmanager
def active(deadline: Deadline | None) -> Iterator[Deadline | None]:
    """Make ``deadline`` current for the block (nested deadlines all hold; None does nothing)."""
    if deadline is None:
        yield None
        return
    token = _ACTIVE.set((*_ACTIVE.get(), deadline))
    try:
        yield deadline
    finally:
        _ACTIVE.reset(token)


def check(where: str) -> None:
    """Raise if any active deadline is spent or stopped (see :meth:`Deadline.check`)."""
    for d in _ACTIVE.get():
        d.check(where)


def expired() -> bool:
    """True when any active deadline is spent or stopped."""
    return any(d.expired() for d in _ACTIVE.get())


def remaining() -> float:
    """Seconds left under the active deadlines (``inf`` when none limits time)."""
    return min((d.remaining() for d in _ACTIVE.get()), default=math.inf)


# ----------------------------------------------------------------------------------------------
# the pace of a solve: steps that collapse are seen early, not after the whole budget

#: What to do about a solve whose steps collapse (named in every such message).
STIFF_HINT = ("the dynamics are stiff (fast and slow time scales together) or the solution blows "
              "up. For stiff dynamics use an implicit SciPy method: method='LSODA', 'Radau' or "
              "'BDF' (sysid simulate --method LSODA)")


@final
class Pace:
    """Watch a solve's progress and tell, early, when its evaluation budget cannot suffice.

    An explicit solver on stiff dynamics takes tiny steps all the way: a van der Pol oscillator
    with mu = 1000 spent its whole budget (1.4 million evaluations, 107 s) before failing at
    t = 435 of 3000. From the pace so far the solve's total is projected every ``every``
    evaluations; once ``warmup`` evaluations are spent and even the more hopeful of two paces
    (since the start, and over the last ``every`` evaluations) needs more than ``factor`` times
    the budget, :meth:`hopeless` says so and the solver stops with :meth:`message`.

    Stiffness keeps an explicit method's steps at its stability limit, so its pace stays the same;
    a fast transient that dies out (or time scales spread over decades, as in chemical kinetics)
    quickens the pace from one window to the next. So a solve is stopped only while its pace did
    not at least double over the last window, after a warm-up of 5000 evaluations (about 800
    adaptive steps). Meant for explicit methods: an implicit method's steps are limited by
    accuracy alone (Radau at rtol 1e-10 spends 6000 evaluations on the first 0.1 % of a transient
    and the rest on 99.9 %), and it is the remedy this class points to.

    Parameters
    ----------
    t0, t1 : float
        Start and end of the solve (``t1 > t0``).
    limit : int
        Evaluations of the right-hand side the solve may make.
    every, warmup : int
        How often the pace is measured, and how many evaluations are always allowed.
    factor : float
        How far beyond the budget the projection must go (a pace that quickens later, as after a
        fast transient, is not stopped).

    Examples
    --------
    >>> pace = Pace(0.0, 3000.0, limit=100_000, every=1000, warmup=2000)
    >>> [pace.hopeless(n, 1e-3 * n) for n in (1000, 2000)]  # 3 million evaluations needed
    [False, True]
    """

    def __init__(self, t0: float, t1: float, limit: float, *, every: int = 1000,
                 warmup: int = 5000, factor: float = 2.0) -> None:
        self.t0, self.t1, self.limit = float(t0), float(t1), float(limit)
        self.every, self.warmup, self.factor = int(every), int(warmup), float(factor)
        self.projected = 0.0
        self._nfe, self._t, self._rate = 0, float(t0), math.inf

    def hopeless(self, nfe: int, t: float) -> bool:
        """Whether the solve, at ``nfe`` evaluations and time ``t`` reached, cannot finish."""
        if nfe - self._nfe < self.every:
            return False
        recent = (t - self._t) / (nfe - self._nfe)
        overall = (t - self.t0) / nfe
        quickening = recent >= 2.0 * self._rate
        self._nfe, self._t, self._rate = nfe, t, recent
        if nfe < self.warmup or self.t1 <= self.t0 or quickening:
            return False
        rate = max(recent, overall)
        self.projected = nfe + ((self.t1 - t) / rate if rate > 0 else math.inf)
        return self.projected > self.factor * self.limit

    def message(self, nfe: int, t: float) -> str:
        """Why the solve was stopped, with the remedy."""
        need = "no progress in time" if not math.isfinite(self.projected) else \
            f"about {self.projected:.3g} evaluations to reach the end"
        return (f"the steps collapsed: after {nfe} evaluations of the right-hand side the solve has "
                f"reached t={t:.6g} of [{self.t0:g}, {self.t1:g}]; at this pace it needs {need}, "
                f"more than its budget of {self.limit:.3g} (max_steps); {STIFF_HINT}")


# ----------------------------------------------------------------------------------------------
# limits checked before starting


def _physical_memory() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16.0 * 2**30


@final
@dataclass(frozen=True, kw_only=True)
class Limits:
    """Largest computations sysid starts without being told to.

    Attributes
    ----------
    memory_bytes : float
        Peak memory a fit or simulation may be estimated to need (default: half the machine's
        physical memory).
    work : float
        Estimated work of a fit without ``max_time``, in row-evaluations of the vector field
        (each call of the field counts its rows plus :data:`CALL_OVERHEAD` for its fixed cost
        in Python and torch). The default 1e11 is a few hours on one CPU core (about 1e7 such
        units per second were measured for small fields); with ``max_time`` set the deadline
        bounds the time instead and this limit is not applied.
    output_points : float
        Output times x runs one simulation may produce (1e6 points took about a minute with
        an adaptive solver on one core).
    """

    memory_bytes: float = 0.5 * _physical_memory()
    work: float = 1e11
    output_points: float = 2e6

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "work", "output_points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(f"Limits: {name} must be a positive number; got {value!r}.")


#: Row-evaluations that one call of the vector field costs beyond its rows (a forward and
#: backward pass and an optimiser step take ~0.3 ms on one core for a small field; a row ~0.1 us).
CALL_OVERHEAD = 3000.0

_LIMITS: contextvars.ContextVar[Limits] = contextvars.ContextVar("sysid_limits", default=Limits())


def current_limits() -> Limits:
    """The limits in force (the defaults unless changed with :func:`limits`)."""
    return _LIMITS.get()


@contextlib.contextmanager
def limits(*, memory_gb: float | None = None, work: float | None = None,
           output_points: float | None = None) -> Iterator[Limits]:
    """Raise (or lower) the limits for the block.

    Examples
    --------
    >>> with limits(memory_gb=64) as lim:
    ...     lim.memory_bytes == 64 * 2**30
    True
    """
    changes: dict[str, float] = {}
    if memory_gb is not None:
        changes["memory_bytes"] = float(memory_gb) * 2**30
    if work is not None:
        changes["work"] = float(work)
    if output_points is not None:
        changes["output_points"] = float(output_points)
    new = replace(_LIMITS.get(), **changes)
    token = _LIMITS.set(new)
    try:
        yield new
    finally:
        _LIMITS.reset(token)


def format_bytes(n: float) -> str:
    """``1.5 GB``-style text (powers of 1024)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PB"  # pragma: no cover


def check_memory(estimate: float, *, what: str, drivers: str, remedy: str = "") -> None:
    """Refuse a computation estimated to need more memory than :class:`Limits` allow.

    Parameters
    ----------
    estimate : float
        Estimated peak bytes.
    what : str
        The computation ("fit", "simulate").
    drivers : str
        What the estimate is made of, as the user set it (windows, steps, states ...).
    remedy : str
        How to make it smaller.

    Raises
    ------
    ConfigError
        When ``estimate`` exceeds the memory limit.
    """
    limit = current_limits().memory_bytes
    if not math.isfinite(estimate) or estimate > limit:
        raise ConfigError(
            f"{what}: would need about {format_bytes(estimate)} of memory ({drivers}), above the "
            f"limit of {format_bytes(limit)}. {remedy + ' ' if remedy else ''}To allow it, raise the "
            f"limit: --max-memory GB on the command line, or "
            f"`with sysid.budget.limits(memory_gb=...)` in Python."
        )


def check_work(estimate: float, *, what: str, drivers: str, remedy: str = "") -> None:
    """Refuse a computation estimated to need more work than :class:`Limits` allow.

    Raises
    ------
    ConfigError
        When ``estimate`` (row-evaluations of the field) exceeds the work limit.
    """
    limit = current_limits().work
    if not math.isfinite(estimate) or estimate > limit:
        raise ConfigError(
            f"{what}: would take about {estimate:.3g} field evaluations ({drivers}), above the "
            f"limit of {limit:.3g} (a few hours). {remedy + ' ' if remedy else ''}Set max_time "
            f"to bound the time instead (--set max_time=SECONDS), or raise the limit with "
            f"`with sysid.budget.limits(work=...)`."
        )


def check_points(points: float, *, what: str, drivers: str) -> None:
    """Refuse a simulation producing more output points (times x runs) than the limit.

    Raises
    ------
    ConfigError
        When ``points`` exceeds :attr:`Limits.output_points`.
    """
    limit = current_limits().output_points
    if not math.isfinite(points) or points > limit:
        raise ConfigError(
            f"{what}: {points:.3g} output points ({drivers}) are more than the limit of {limit:.3g}; "
            f"such a simulation takes many minutes. Choose a larger step or a shorter span, or "
            f"raise the limit: --max-points N on the command line, or "
            f"`with sysid.budget.limits(output_points=...)` in Python."
        )


def check_fit(*, stages: Any, lengths: Any, substeps: int, stages_per_step: int,
              floats_per_row: int, batch_windows: int | None, warm_epochs: int, warm_rows: int,
              bytes_per_float: int, timed: bool, what: str = "fit",
              checkpoint_steps: int | None = None) -> None:
    """Estimate a fit's peak memory and work from its windows before it starts; refuse above
    :class:`Limits`.

    Parameters
    ----------
    stages : sequence of (horizon, epochs, stride)
        The curriculum (see :class:`sysid.training.shooting.ShootingPlan`).
    lengths : array of int
        Samples per training run.
    substeps, stages_per_step : int
        Solver steps per sample gap and field evaluations per step.
    floats_per_row : int
        Floats one field evaluation keeps per batch row for the backward pass.
    batch_windows : int or None
        Windows per optimiser step (None: all).
    warm_epochs, warm_rows : int
        Warm-start epochs and the samples each sees.
    bytes_per_float : int
    timed : bool
        Whether ``max_time`` bounds the time (then only memory is checked).
    checkpoint_steps : int, optional
        ``SolverConfig.checkpoint_steps``: the backward pass keeps the activations of at most
        this many steps at once (gradient checkpointing).

    Raises
    ------
    ConfigError
        Naming the estimate, the setting that drives it and how to lower or allow it.
    """
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    peak, work, driver = 0.0, 0.0, ""
    for horizon, epochs, stride in stages:
        windows = float(np.ceil(np.maximum(lengths - 1, 0) / max(int(stride), 1)).sum())
        rows = windows if batch_windows is None else min(float(batch_windows), windows)
        steps = float(max(int(horizon) - 1, 1)) * float(substeps)
        calls = steps * stages_per_step
        held = min(steps, float(checkpoint_steps)) * stages_per_step if checkpoint_steps else calls
        memory = (rows * held * floats_per_row * bytes_per_float * 1.5  # the autograd graph
                  + windows * float(horizon) * 8 * 4)  # window index tensors and masks
        if memory > peak:
            peak = memory
            driver = (f"{windows:.0f} window{'s' if windows != 1 else ''} of {horizon} samples, "
                      f"{substeps} substep{'s' if substeps != 1 else ''} per sample, {rows:.0f} "
                      f"window{'s' if rows != 1 else ''} per step")
        work += float(epochs) * (windows * calls + np.ceil(windows / max(rows, 1.0)) * calls
                                 * CALL_OVERHEAD)
    work += float(warm_epochs) * (float(warm_rows) + CALL_OVERHEAD)
    check_memory(peak, what=what, drivers=driver,
                 remedy="Use fewer windows per step (optimizer.batch_windows), a larger "
                        "shooting.stride, shorter shooting.horizons or fewer solver.substeps.")
    if not timed:
        check_work(work, what=what,
                   drivers=f"the epochs of every stage and {warm_epochs} warm-start epochs",
                   remedy="Use fewer epochs or warm_start.epochs, or larger strides.")


# ----------------------------------------------------------------------------------------------
# SIGTERM as Ctrl-C


class Sigterm(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler's stop) raised as a Ctrl-C, see :func:`sigterm_as_interrupt`."""


def _raise_sigterm(signum: int, frame: object) -> None:
    raise Sigterm()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Sigterm` (a ``KeyboardInterrupt``) like Ctrl-C, so
    that a killed fit keeps its best model and a file being written is finished or removed; the
    previous handler is restored afterwards. Outside the main thread (where signals cannot be
    handled) the block simply runs."""
    installed, previous = False, None
    if threading.current_thread() is threading.main_thread():
        try:
            previous = signal.signal(signal.SIGTERM, _raise_sigterm)
            installed = True
        except (ValueError, OSError):  # pragma: no cover - embedded interpreters without signals
            pass
    try:
        yield
    finally:
        if installed:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
