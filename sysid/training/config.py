"""Settings of a fit: one frozen, keyword-only dataclass read from Python or from TOML.

Every option lives in :class:`FitConfig`; an unknown key is a :class:`~sysid.errors.ConfigError`
naming it (with a "did you mean"), never a silently ignored option.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sysid.errors import ConfigError

FIXED_SOLVERS = ("rk4", "euler")
ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
LOSSES = ("mse", "log", "relative")
OPTIMIZERS = ("adam", "adamw", "rmsprop")
SCHEDULES = ("cosine", "plateau", "none")
INITIAL_STATES = ("measured", "free")
DTYPES = ("float32", "float64")
TIME_SCALES = ("characteristic", "duration")


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """All options of :func:`sysid.fit`.

    Parameters
    ----------
    epochs : int
        Number of epochs. One epoch is one pass over all windows of all runs (one optimiser step
        per batch of ``batch_windows`` windows; with ``batch_windows=None`` one step per epoch).
    lr : float
        Learning rate of the optimiser.
    optimizer : {"adam", "adamw", "rmsprop"}
        First-order optimiser.
    weight_decay : float
        Weight decay (neural weights only; physical parameters and initial states never decay).
    schedule : {"cosine", "plateau", "none"}
        Learning-rate schedule: cosine decay to ``lr * min_lr_factor`` over all epochs, or a
        factor-0.5 reduction when the monitored loss stops improving for ``plateau_patience`` epochs.
    min_lr_factor : float
        Final learning rate of the cosine schedule as a fraction of ``lr``.
    plateau_patience : int
        Epochs without improvement before the "plateau" schedule halves the learning rate.
    grad_clip : float or None
        Clip the global gradient norm to this value (None: no clipping).
    horizons : tuple of int
        The horizon curriculum: window lengths in samples (each >= 2), used one after another.
        Short windows first make long oscillating series fit without collapsing to the mean.
    stage_epochs : tuple of int or None
        Epochs spent on each horizon; None splits ``epochs`` evenly (the last stage takes the rest).
    stride : int
        Distance in samples between the starts of consecutive windows of a run.
    final_stride : int or None
        Stride of the last curriculum stage. None: with ``initial_states="free"``, ``horizon - 1``,
        so windows share only their end points and every sample counts once (multiple shooting
        proper; with a horizon as long as the runs, single shooting) — overlapping windows with
        free starts count late samples more often than early ones and let each window restart
        near the data, which biased the hare-lynx Lotka-Volterra rates by 7-8 %; with
        ``initial_states="measured"``, ``stride`` — there overlapping windows average out the
        noise of the measured starting points (non-overlapping ones raised the error of a
        60-epoch LV fit from 0.5 % to 2 %).
    batch_windows : int or None
        Windows per optimiser step (a random subset without replacement); None: all windows of
        all runs in one batched solve.
    solver : str
        "rk4" or "euler" (fixed steps, ``substeps`` steps between consecutive samples of each window)
        or an adaptive torchdiffeq method ("dopri5", "dopri8", "bosh3", "fehlberg2",
        "adaptive_heun").
    substeps : int
        Fixed-step solvers: steps between two consecutive samples (step = gap / substeps, per window).
    rtol, atol : float
        Adaptive solvers: tolerances on the scaled states (defaults suited to float32).
    max_steps : int
        Adaptive solvers: budget of steps per solve; exceeding it is a solver failure (rolled back).
    adjoint : bool
        Adaptive solvers: backpropagate with ``torchdiffeq.odeint_adjoint`` (constant memory).
    loss : {"mse", "log", "relative"}
        "mse": squared error of the scaled states; "log": squared error of log values (positive
        quantities with multiplicative noise, e.g. population counts); "relative": squared error
        relative to the measured magnitude.
    weights : mapping of str to float or None
        Per-state weights of the loss (observed states only; missing names weigh 1).
    initial_states : {"measured", "free"}
        How each window starts for the measured states: from the measurement (missing values
        from a local polynomial smoother), or as free parameters estimated with the model
        (initialised at the smoothed data). Unmeasured (latent) states always start from a free
        value per window start, see :mod:`sysid.training.windows`.
    time_scale : {"characteristic", "duration"} or float
        Time unit of neural terms (their output is scaled by state spread / time_scale):
        "characteristic" — the time in which the measured states change by about their spread
        (``std(x) / rms(dx/dt)`` from the smoothed data; right for well-sampled oscillations, where
        the run length made networks output values ~100 times their initial size); "duration" —
        the median run length, a prior of slow dynamics for short, noisy series whose derivatives
        are mostly noise (annual economic data); or a number in the data's time units.
    neural_penalty : float
        Hybrid models: weight of the mean squared neural correction (relative to the spread of the
        measured derivatives) at the smoothed data. It pulls the correction towards zero, so the
        physical parameters explain what they can and keep their meaning.
    known_initial : tuple of str
        States whose value at each run's first sample is known, so it is not estimated: a measured
        state starts from its measurement, an unmeasured one from the model's ``latent_initial``
        (e.g. ``("S", "R")`` for an epidemic whose susceptibles start at N - I0). Other states
        follow ``initial_states``.
    continuity : float
        Weight of the multiple-shooting continuity penalty that ties the free initial state of each
        window to the prediction of the windows that run through its start.
    warm_start : bool
        Before trajectory fitting, regress the vector field on smoothed finite-difference
        derivatives of the data (needs every state measured, or latent velocities of a second-order
        model whose positions are measured).
    warm_start_epochs : int
        Optimiser steps of the warm start.
    warm_start_lr : float
        Learning rate of the warm start.
    smoothing_points : int
        Samples in each local polynomial fit (odd, >= 3) used for derivatives and smoothing.
    validation_fraction : float
        When no ``validation`` dataset is given: hold out this last fraction of each run's time
        span for validation (0: no validation).
    validate_every : int
        Epochs between two validation simulations.
    patience : int or None
        Early stopping: validation checks without improvement in the final curriculum stage
        before stopping (None: never stop early).
    target : float or None
        Stop as soon as the validation NRMSE is at or below this value.
    polish : bool
        After the first-order optimiser, refine the physical parameters with L-BFGS.
    polish_iterations : int
        L-BFGS iterations of the polish.
    max_rollbacks : int
        Failed steps (non-finite loss, solver failure) that are rolled back before the fit stops.
    seed : int
        Seed of every random choice of the fit (window batches); same seed, same result.
    dtype : {"float32", "float64"}
        Floating-point type of the training tensors and of the trained model.
    progress : bool
        Show a tqdm progress bar (it still hides itself when output is not a terminal or
        ``TQDM_DISABLE=1`` is set).
    checkpoint : str or None
        File the training state is written to (atomically) every ``checkpoint_every`` epochs and
        at the end; pass it to ``fit(..., resume_from=...)`` to continue.
    checkpoint_every : int
        Epochs between checkpoints.
    max_time : float or None
        Wall-clock budget in seconds; the fit stops (keeping the best model) when it is spent.
    stderr : bool
        Compute standard errors of the physical parameters (Gauss-Newton approximation).
    """

    epochs: int = 300
    lr: float = 1e-2
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "cosine"
    min_lr_factor: float = 0.05
    plateau_patience: int = 20
    grad_clip: float | None = 10.0
    horizons: tuple[int, ...] = (5, 10, 20)
    stage_epochs: tuple[int, ...] | None = None
    stride: int = 1
    final_stride: int | None = None
    batch_windows: int | None = None
    solver: str = "rk4"
    substeps: int = 1
    rtol: float = 1e-4
    atol: float = 1e-6
    max_steps: int = 10_000
    adjoint: bool = False
    loss: str = "mse"
    weights: Mapping[str, float] | None = None
    initial_states: str = "measured"
    time_scale: str | float = "characteristic"
    known_initial: tuple[str, ...] = ()
    neural_penalty: float = 1.0
    continuity: float = 1.0
    warm_start: bool = True
    warm_start_epochs: int = 300
    warm_start_lr: float = 1e-2
    smoothing_points: int = 7
    validation_fraction: float = 0.0
    validate_every: int = 10
    patience: int | None = None
    target: float | None = None
    polish: bool = False
    polish_iterations: int = 50
    max_rollbacks: int = 8
    seed: int = 0
    dtype: str = "float32"
    progress: bool = True
    checkpoint: str | None = None
    checkpoint_every: int = 50
    max_time: float | None = None
    stderr: bool = True

    def __post_init__(self) -> None:
        _check_int(self, "epochs", 1)
        _check_pos(self, "lr")
        _check_choice(self, "optimizer", OPTIMIZERS)
        _check_nonneg(self, "weight_decay")
        _check_choice(self, "schedule", SCHEDULES)
        if not 0.0 < self.min_lr_factor <= 1.0:
            raise ConfigError(
                f"FitConfig: min_lr_factor must lie in (0, 1]; got {self.min_lr_factor!r}."
            )
        _check_int(self, "plateau_patience", 1)
        if self.grad_clip is not None:
            _check_pos(self, "grad_clip")
        horizons = tuple(self.horizons)
        if not horizons or any(not _is_int(h) or h < 2 for h in horizons):
            raise ConfigError(
                f"FitConfig: horizons must be a non-empty list of window lengths >= 2 samples; "
                f"got {self.horizons!r}."
            )
        object.__setattr__(self, "horizons", tuple(int(h) for h in horizons))
        if self.stage_epochs is not None:
            stages = tuple(self.stage_epochs)
            if len(stages) != len(horizons) or any(not _is_int(e) or e < 1 for e in stages):
                raise ConfigError(
                    f"FitConfig: stage_epochs must give one positive epoch count per horizon "
                    f"({len(horizons)} horizons {horizons}); got {self.stage_epochs!r}."
                )
            object.__setattr__(self, "stage_epochs", tuple(int(e) for e in stages))
            if sum(stages) != self.epochs:
                raise ConfigError(
                    f"FitConfig: stage_epochs {stages} add up to {sum(stages)} but epochs is "
                    f"{self.epochs}; make them agree."
                )
        _check_int(self, "stride", 1)
        if self.final_stride is not None:
            _check_int(self, "final_stride", 1)
        if self.batch_windows is not None:
            _check_int(self, "batch_windows", 1)
        _check_choice(self, "solver", FIXED_SOLVERS + ADAPTIVE_SOLVERS)
        _check_int(self, "substeps", 1)
        _check_pos(self, "rtol")
        _check_pos(self, "atol")
        _check_int(self, "max_steps", 1)
        if self.adjoint and self.solver in FIXED_SOLVERS:
            raise ConfigError(
                f"FitConfig: adjoint=True needs an adaptive solver ({', '.join(ADAPTIVE_SOLVERS)}); "
                f"got solver={self.solver!r}. Fixed-step solvers backpropagate directly."
            )
        _check_choice(self, "loss", LOSSES)
        if self.weights is not None:
            if not isinstance(self.weights, Mapping):
                raise ConfigError(
                    f"FitConfig: weights must map state names to numbers; got {self.weights!r}."
                )
            clean = {}
            for name, w in self.weights.items():
                if not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
                    raise ConfigError(
                        f"FitConfig: weight of {name!r} must be a finite number >= 0; got {w!r}."
                    )
                clean[str(name)] = float(w)
            object.__setattr__(self, "weights", clean)
        _check_choice(self, "initial_states", INITIAL_STATES)
        _check_nonneg(self, "continuity")
        _check_nonneg(self, "neural_penalty")
        known = self.known_initial
        if isinstance(known, str) or not all(isinstance(n, str) for n in known):
            raise ConfigError(f"FitConfig: known_initial must be a list of state names; got {known!r}.")
        object.__setattr__(self, "known_initial", tuple(known))
        ts = self.time_scale
        if isinstance(ts, str):
            if ts not in TIME_SCALES:
                raise ConfigError(
                    f"FitConfig: time_scale must be one of {list(TIME_SCALES)} or a positive number; "
                    f"got {ts!r}."
                )
        elif isinstance(ts, bool) or not isinstance(ts, (int, float)) or not (math.isfinite(ts) and ts > 0):
            raise ConfigError(f"FitConfig: time_scale must be one of {list(TIME_SCALES)} or a positive number; got {ts!r}.")
        _check_int(self, "warm_start_epochs", 0)
        _check_pos(self, "warm_start_lr")
        _check_int(self, "smoothing_points", 3)
        if self.smoothing_points % 2 == 0:
            raise ConfigError(
                f"FitConfig: smoothing_points must be odd (a centred window); "
                f"got {self.smoothing_points}. Use {self.smoothing_points + 1}."
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(
                f"FitConfig: validation_fraction must lie in [0, 1); got {self.validation_fraction!r}."
            )
        _check_int(self, "validate_every", 1)
        if self.patience is not None:
            _check_int(self, "patience", 1)
        if self.target is not None:
            _check_pos(self, "target")
        _check_int(self, "polish_iterations", 1)
        _check_int(self, "max_rollbacks", 0)
        _check_int(self, "seed", 0)
        _check_choice(self, "dtype", DTYPES)
        _check_int(self, "checkpoint_every", 1)
        if self.checkpoint is not None and not isinstance(self.checkpoint, str):
            object.__setattr__(self, "checkpoint", str(self.checkpoint))
        if self.max_time is not None:
            _check_pos(self, "max_time")

    # ------------------------------------------------------------------ conversions
    @classmethod
    def from_dict(cls, options: Mapping[str, Any]) -> FitConfig:
        """Build a config from a mapping (e.g. a TOML table), rejecting unknown keys.

        Raises
        ------
        ConfigError
            For an unknown key (with the closest valid names) or an invalid value.

        Examples
        --------
        >>> FitConfig.from_dict({"epochs": 10, "horizons": [4, 8]}).horizons
        (4, 8)
        """
        if not isinstance(options, Mapping):
            raise ConfigError(f"FitConfig.from_dict: expected a mapping; got {type(options).__name__}.")
        known = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
        unknown = [k for k in options if k not in known]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(str(key), known, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(
                f"FitConfig: unknown option {key!r}.{hint} Valid options: {', '.join(known)}."
            )
        values = dict(options)
        for key in ("horizons", "stage_epochs"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        try:
            return cls(**values)
        except TypeError as exc:  # a wrong type that the checks above let through
            raise ConfigError(f"FitConfig: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-friendly mapping; ``FitConfig.from_dict(c.to_dict()) == c``."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @property
    def adaptive(self) -> bool:
        """Whether the solver chooses its own steps."""
        return self.solver in ADAPTIVE_SOLVERS

    def stride_for(self, horizon: int) -> int:
        """Window stride of the stage with this horizon (see ``final_stride``)."""
        if horizon != self.horizons[-1]:
            return self.stride
        if self.final_stride is not None:
            return self.final_stride
        return max(horizon - 1, 1) if self.initial_states == "free" else self.stride

    def stages(self) -> list[tuple[int, int]]:
        """The curriculum as ``[(horizon, epochs), ...]``."""
        if self.stage_epochs is not None:
            return list(zip(self.horizons, self.stage_epochs))
        horizons = self.horizons[-self.epochs:]  # fewer epochs than stages: keep the longest
        n = len(horizons)
        base = self.epochs // n
        counts = [base] * (n - 1) + [self.epochs - base * (n - 1)]
        return list(zip(horizons, counts))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(cfg: FitConfig, name: str, minimum: int) -> None:
    value = getattr(cfg, name)
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"FitConfig: {name} must be an integer >= {minimum}; got {value!r}.")


def _check_pos(cfg: FitConfig, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= 0:
        raise ConfigError(f"FitConfig: {name} must be a finite number > 0; got {value!r}.")


def _check_nonneg(cfg: FitConfig, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ConfigError(f"FitConfig: {name} must be a finite number >= 0; got {value!r}.")


def _check_choice(cfg: FitConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"FitConfig: {name} must be one of {', '.join(repr(c) for c in choices)}; "
            f"got {value!r}.{hint}"
        )


__all__ = ["FitConfig", "FIXED_SOLVERS", "ADAPTIVE_SOLVERS", "LOSSES"]
