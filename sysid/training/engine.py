"""``fit``: single- or multiple-shooting training of a model on trajectory data.

The loop, in order: copy the model (the caller's is never changed); scale states from the data;
smooth the measurements and (optionally) warm-start the vector field on their derivatives; choose
the windows (:mod:`sysid.training.shooting`); then, for each stage of the curriculum, integrate
all windows of all runs in one batched solve per optimiser step. Each good epoch is remembered; a
non-finite loss or a failed solve rolls back to it, halves the learning rate (and, for fixed-step
solvers, doubles the substeps) and goes on; after ``max_rollbacks`` failures the fit stops with a
warning and the best model. Ctrl-C (and SIGTERM) stop cleanly with the best model. Checkpoints
are atomic and resuming from one gives the same result as an uninterrupted run with the same
seed. :func:`_least_squares` is the one place where the joint least-squares refinement of
:mod:`sysid.estimation` runs: instead of the first-order stage for a model without network
weights (unless that fit is poor), after it otherwise.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from sysid import budget as time_budget
from sysid.data.scaling import Scaling
from sysid.errors import ConfigError, FitError, SolverError
from sysid.training.checkpoint import (
    check_compatible,
    data_fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from sysid.training.config import FitConfig, flatten
from sysid.training.eager import eager
from sysid.training.loss import ScaledRhs
from sysid.training.problem import (
    ModelSpec,
    Prepared,
    WindowProblem,
    fit_scaling,
    prepare,
    read_arrays,
    smooth_measured,
    setup_encoder,
)
from sysid.training.result import FitResult, StopReason
from sysid.training.shooting import ShootingPlan, multiple_plan, plan_shooting
from sysid.training.solvers import StepCounter
from sysid.training.stats import (
    HeldOut,
    initial_table,
    latent_table,
    parameter_table,
    physics_raw,
    validation_nrmse,
)
from sysid.training.warmstart import regress_derivatives
from sysid.training.windows import make_windows

__all__ = ["fit", "FitWarning"]

# a loss this many times above the best of the current stage counts as a blow-up
_BLOWUP = 100.0
# settings that may differ between a checkpointed run and its resumption (flattened keys)
_RESUME_FREE = ("progress", "checkpoint.path", "checkpoint.every", "max_time")
# seconds between two progress lines when stderr is not a terminal
_LOG_INTERVAL_S = 10.0


class FitWarning(UserWarning):
    """A fit that stopped early for a reason the user should know (divergence, skipped step)."""


class _StepFailure(Exception):
    """A training step whose loss, gradient or solve was not usable.

    ``first`` is True when it failed on the first batch of an epoch, before any step: then the
    state saved at the end of the previous epoch is itself bad and the one before is restored.
    """

    def __init__(self, message: str, *, first: bool, solver: bool = False) -> None:
        super().__init__(message)
        self.first = first
        self.solver = solver


def _model_spec(model: Any) -> ModelSpec:
    from sysid.models import Model, SecondOrderField

    if not isinstance(model, Model):
        raise ConfigError(
            f"fit: model must be a sysid.models.Model (build one with sysid.models.neural, physics "
            f"or hybrid); got {type(model).__name__}."
        )
    meta = [k for k, v in model.state_dict().items() if v.is_meta]
    if meta:
        raise ConfigError(
            f"fit: the model's tensors {meta[:3]} are on the meta device (shapes without values); "
            f"build the model on the CPU (or call model.to_empty(device='cpu') and initialise it).")
    field_ = model.field
    states = tuple(field_.state_names)
    velocity_of: dict[int, int] = {}
    if isinstance(field_, SecondOrderField):
        for q, v in zip(field_.positions, field_.velocities):
            if v not in model.observed and q in model.observed:
                velocity_of[states.index(v)] = states.index(q)
    guess = {states.index(n): float(v) for n, v in model.latent_initial.items()
             if states.index(n) not in velocity_of}
    return ModelSpec(states=states, observed=tuple(model.observed), inputs=tuple(field_.input_names),
                     interpolation=model.input_interpolation, velocity_of=velocity_of,
                     latent_guess=guess, outputs=tuple(model.output_names))


def _param_groups(model: Any, nodes: torch.nn.Parameter, cfg: FitConfig) -> list[dict]:
    phys = [raw for _, raw in physics_raw(model)]
    phys_ids = {id(p) for p in phys}
    neural = [p for p in model.parameters() if p.requires_grad and id(p) not in phys_ids]
    groups = []
    if neural:
        groups.append({"params": neural, "weight_decay": cfg.optimizer.weight_decay})
    if phys:
        groups.append({"params": phys, "weight_decay": 0.0})
    groups.append({"params": [nodes], "weight_decay": 0.0})
    return groups


def _optimizer(groups: list[dict], cfg: FitConfig) -> torch.optim.Optimizer:
    """The optimiser, with its multi-tensor ("foreach") update on every device: one operation per
    step for all parameters instead of ~10 per tensor, the same arithmetic (torch uses it by
    default only on GPUs; on a CPU the per-tensor loop was a visible share of small fits)."""
    base = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
            "rmsprop": torch.optim.RMSprop}[cfg.optimizer.name]  # validated by Optimizer
    # eager(): torch's class without its first-use import of torch._dynamo (~1.1 s per process)
    return eager(base)(groups, lr=cfg.optimizer.lr, foreach=True)


class _Loop:
    """Mutable state of the training loop (everything a checkpoint holds)."""

    def __init__(self, cfg: FitConfig) -> None:
        self.epoch = 0  # epochs completed
        self.lr_factor = 1.0
        self.plateau_best = math.inf
        self.plateau_wait = 0
        self.rollbacks = 0
        self.substeps = cfg.solver.substeps
        self.history: list[dict[str, Any]] = []
        self.best_key: list[float] = [math.inf, math.inf]
        self.best_epoch = 0
        self.best_model: dict[str, torch.Tensor] | None = None
        self.best_nodes: torch.Tensor | None = None
        self.stage_best = math.inf
        self.patience_wait = 0
        self.val_best = math.inf
        self.initial_metric = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}

    def load(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


@dataclass
class _Context:
    """Everything the training loop works on (one object instead of a dozen arguments)."""

    cfg: FitConfig
    spec: ModelSpec
    plan: ShootingPlan
    scaling: Scaling  # of the model's states (user units <-> the scaled units of training)
    work: Any  # the model being trained (a copy of the caller's)
    rhs: ScaledRhs
    train: Prepared
    val: Prepared | None
    problem: WindowProblem
    nodes: torch.nn.Parameter
    counter: StepCounter
    gen: torch.Generator
    loop: _Loop
    started: float
    opt: torch.optim.Optimizer | None = None
    warm_info: dict[str, Any] = field(default_factory=dict)
    windows: dict[tuple[int, int], tuple] = field(default_factory=dict)
    held_out: HeldOut | None = None  # the validation runs, ready for checks (made at the first)

    def windows_for(self, horizon: int, stride: int) -> tuple:
        """``(windows, inputs)`` of a stage (built once)."""
        key = (horizon, stride)
        if key not in self.windows:
            ws = make_windows(self.train.lengths, horizon, stride)
            self.windows[key] = (ws, self.problem.inputs_for(ws))
        return self.windows[key]


@dataclass(frozen=True)
class _Snapshot:
    """The training state at the end of a complete epoch, for rollbacks and interruptions.

    Loop scalars are copied shallowly (their tensors are replaced, never changed in place); the
    history by its length.
    """

    model: dict[str, torch.Tensor]
    nodes: torch.Tensor
    optimizer: dict[str, Any]
    rng: torch.Tensor
    loop: dict[str, Any]
    history_len: int

    @classmethod
    def take(cls, ctx: _Context) -> _Snapshot:
        scalars = {k: v for k, v in vars(ctx.loop).items() if k != "history"}
        return cls(model=_clone_state(ctx.work), nodes=ctx.nodes.detach().clone(),
                   optimizer=_copy_tree(ctx.opt.state_dict()), rng=ctx.gen.get_state(),
                   loop=scalars, history_len=len(ctx.loop.history))

    def restore(self, ctx: _Context, *, everything: bool = False) -> None:
        """Roll back the model and optimiser (with ``everything``, also the RNG and loop state,
        as after an interruption)."""
        ctx.work.load_state_dict(self.model)
        with torch.no_grad():
            ctx.nodes.copy_(self.nodes)
        ctx.opt.load_state_dict(_copy_tree(self.optimizer))  # the optimiser adopts its tensors
        if everything:
            ctx.gen.set_state(self.rng)
            ctx.loop.load(dict(self.loop))
            del ctx.loop.history[self.history_len:]


def _clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _copy_tree(obj: Any) -> Any:
    """A copy of an optimiser's ``state_dict()``: its dicts, lists and tuples rebuilt and its
    tensors cloned; numbers, strings and None shared (immutable). ``copy.deepcopy`` did the same
    through Python's generic protocol: 0.59 ms per copy of Adam's state for the default network,
    against 0.11 ms (a snapshot is taken after every epoch; an epoch of a small fit is ~10 ms)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _copy_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copy_tree(v) for v in obj)
    return obj


def fit(model: Any, data: xr.Dataset, config: FitConfig | None = None, *,
        validation: xr.Dataset | None = None, resume_from: str | None = None,
        data_parallel: Any = None, executor: Any = None,
        initial: pd.DataFrame | None = None) -> FitResult:
    """Fit a model to trajectory data.

    Parameters
    ----------
    model : sysid.models.Model
        The model to train; it is copied, never changed.
    data : xarray.Dataset
        Training trajectories (the sysid schema; several runs, irregular grids and missing values
        allowed).
    config : FitConfig, optional
        All settings (defaults: 300 epochs, Adam, rk4, shooting chosen from the data).
    validation : xarray.Dataset, optional
        Held-out runs: each is simulated from its first sample every ``validation.every``
        epochs; its NRMSE (RMSE / standard deviation per measured state, averaged) picks the
        best model and drives early stopping. Without it, ``config.validation.fraction`` holds
        out the tail of each run's time span.
    resume_from : str, optional
        A checkpoint written with ``FitConfig(checkpoint=...)``: continue that fit (same data and
        settings) and get the same result as if it had never stopped.
    data_parallel : sysid.parallel.distributed.DataParallel, optional
        Split every window batch across the processes of a torch.distributed job (use
        :func:`sysid.parallel.fit_distributed`, which passes it).
    executor : concurrent.futures.Executor, optional
        With ``config.starts > 1``: runs the starts (a process pool, Dask's
        ``client.get_executor()``); default one after another. See
        :func:`sysid.estimation.multistart`.
    initial : pandas.DataFrame, optional
        Starting values of the initial states the fit estimates (runs x states, user units; e.g.
        another fit's ``initial_states``), instead of the smoothed data or the model's
        ``latent_initial``. Runs or states the fit does not estimate are ignored. Profile points
        and bootstrap replicates start here from a neighbouring optimum.

    Returns
    -------
    FitResult
        The trained copy, history, parameter table with standard errors, solver statistics.

    Raises
    ------
    ConfigError, DataError
        For invalid settings, a model that does not match the data, or an unusable checkpoint.
    sysid.budget.BudgetExceeded
        When ``max_time`` is spent before training can start (the setup's smoothing of millions
        of samples): there is no model to return yet. A budget spent later returns the model
        with ``stopped_reason == "max_time"``.
    """
    cfg = config if config is not None else FitConfig()
    if not isinstance(cfg, FitConfig):
        raise ConfigError(f"fit: config must be a FitConfig; got {type(cfg).__name__}. "
                          f"Build one with FitConfig(...) or FitConfig.from_dict({{...}}).")
    if cfg.starts > 1:
        if resume_from is not None:
            raise ConfigError(f"fit: resume_from continues one fit; it cannot be combined with "
                              f"starts={cfg.starts}. Resume with FitConfig(starts=1).")
        from sysid.estimation.multistart import multistart

        return multistart(model, data, cfg, executor=executor, validation=validation)
    # max_time and Ctrl-C/SIGTERM hold everywhere, from the start: the setup's smoothing, the
    # warm start, every solve, the refinement
    deadline = time_budget.Deadline(cfg.max_time) if cfg.max_time is not None else None
    with time_budget.sigterm_as_interrupt():
        with time_budget.active(deadline):
            ctx = _timed_setup(model, data, cfg, validation)
            _start_initial(ctx, initial)
            if data_parallel is not None:  # the one hook of sysid.parallel.distributed
                if ctx.spec.encoder is not None:
                    raise ConfigError("fit: a model with an encoder cannot be fitted across "
                                      "processes yet (the encoder's gradients are not gathered); "
                                      "fit it in one process.")
                data_parallel.attach(ctx.problem)
            return _run(ctx, resume_from)


def _timed_setup(model: Any, data: xr.Dataset, cfg: FitConfig,
                 validation: xr.Dataset | None) -> _Context:
    """:func:`_setup` under ``max_time``: a budget spent before training can start (smoothing
    millions of samples) leaves nothing to return, so it is a :class:`~sysid.budget.BudgetExceeded`
    that says so (a budget spent after the setup returns the model with ``MAX_TIME``)."""
    started = time.perf_counter()
    try:
        return _setup(model, data, cfg, validation)
    except time_budget.BudgetExceeded as exc:
        spent = time.perf_counter() - started
        raise time_budget.BudgetExceeded(
            f"fit: the time budget max_time={cfg.max_time:g} s was spent in the setup, before "
            f"training started ({exc.where or 'setup'}, after {spent:.3g} s): nothing was trained. "
            f"Give a larger max_time (the setup alone needs more than {spent:.3g} s here), or fit "
            f"fewer samples (fewer or subsampled runs).", where="setup") from None


def _run(ctx: _Context, resume_from: str | None) -> FitResult:
    """Warm start, training, refinement and the result; an interruption or a spent budget at any
    point returns the best model so far (never a NaN one)."""
    cfg = ctx.cfg
    direct = _direct(ctx) if resume_from is None and _direct_route(ctx) else None
    if isinstance(direct, FitResult):
        return direct
    interrupted = False
    before_warm = _clone_state(ctx.work)
    try:
        ctx.warm_info = {"skipped": "resumed"} if resume_from else _warm_start(ctx)
        if resume_from is None:
            _shoot_latent(ctx)
    except KeyboardInterrupt:  # Ctrl-C during the warm start: keep the model as it was given
        ctx.work.load_state_dict(before_warm)
        ctx.warm_info, interrupted = {"skipped": "interrupted"}, True
    except time_budget.BudgetExceeded:  # the latent guesses keep their start
        ctx.warm_info = {**ctx.warm_info, "note": "max_time spent in the warm start"}
    if resume_from is None and not interrupted:
        try:  # max_time and Ctrl-C hold here too (a long first solve): keep the model
            _check_single_start(ctx)
        except KeyboardInterrupt:
            interrupted = True
        except time_budget.BudgetExceeded:  # max_time ran out in the check: _train stops at once
            pass
    ctx.opt = _optimizer(_param_groups(ctx.work, ctx.nodes, cfg), cfg)
    if resume_from is not None:
        _resume(ctx, resume_from)
    loop = ctx.loop
    if loop.best_model is None:
        loop.best_model, loop.best_nodes = _clone_state(ctx.work), ctx.nodes.detach().clone()
    if interrupted:
        stopped, message = StopReason.INTERRUPTED, "interrupted during the warm start"
    else:
        stopped, message = _train(ctx)
    ctx.work.load_state_dict(loop.best_model)
    with torch.no_grad():
        ctx.nodes.copy_(loop.best_nodes)
    if not _finite(ctx.work):  # a NaN model is never returned as the best one
        ctx.work.load_state_dict(before_warm)
        if not _finite(ctx.work):
            raise FitError("fit: the model given to fit has NaN or infinite parameters; build it "
                           "again (or load a saved one) before fitting.")
        stopped, message = StopReason.DIVERGED, (
            "every trained state had NaN or infinite parameters; the model is returned as given")
    ctx.problem.substeps = loop.substeps
    estimate = None
    if stopped != StopReason.INTERRUPTED:
        stopped, message, estimate = _guarded_refine(ctx, stopped, message)
        if direct is not None and _better(direct.estimate, estimate):
            ctx.work.load_state_dict(direct.model)
            with torch.no_grad():
                ctx.nodes.copy_(direct.nodes)
            estimate = direct.estimate
            message = "; ".join(m for m in (message, "the least-squares fit from the model's start "
                                            "was better than the one after the first-order stage") if m)
    return _result(ctx, stopped, message, estimate,
                   route="fallback" if direct is not None else "first-order")


def _check_single_start(ctx: _Context) -> None:
    """``shooting="auto"`` chose single shooting, but the whole runs cannot be integrated from the
    start, or their gradient is not finite (e.g. logistic growth from a noisy negative first
    count, which runs away over a long run): switch to multiple shooting, whose short windows stay finite while the parameters and
    initial states move (the classical remedy, Bock 1981), and say so in the plan's reason."""
    cfg = ctx.cfg
    if ctx.plan.method != "single" or cfg.shooting.method != "auto":
        return
    ws, inp = ctx.windows_for(*ctx.plan.final)
    params = [p for p in ctx.work.parameters() if p.requires_grad] + [ctx.nodes]
    try:
        loss = ctx.problem.loss(ctx.nodes, ws, inp)
        grads = [g for g in torch.autograd.grad(loss, params, allow_unused=True) if g is not None]
        # the norm the optimizer's gradient clipping takes: it overflows (float32) long before
        # the gradient itself does
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(
            torch.nn.utils.get_total_norm(grads)))
    except SolverError:
        finite = False
    if finite:
        return
    ctx.plan = multiple_plan(cfg, ctx.train.lengths.numpy(),
                             "auto: the whole runs could not be integrated from the start "
                             "(single shooting); short windows first")
    ctx.problem.continuity = ctx.plan.continuity
    _check_size(ctx)


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in model.state_dict().values()
               if v.is_floating_point())


def _guarded_refine(ctx: _Context, stopped: StopReason,
                    message: str) -> tuple[StopReason, str, Any]:
    """:func:`_least_squares` after the first-order stage, undone when Ctrl-C or a spent
    ``max_time`` cuts it short outside the least-squares solve (which itself stops cleanly with
    its best point and says so); returns the stop reason, message and the estimate (or None)."""
    if time_budget.expired():
        return stopped, "; ".join(m for m in (message, "refinement skipped: max_time spent") if m), None
    saved, nodes = _clone_state(ctx.work), ctx.nodes.detach().clone()
    try:
        estimate = _least_squares(ctx)
    except (KeyboardInterrupt, time_budget.BudgetExceeded) as exc:
        ctx.work.load_state_dict(saved)
        with torch.no_grad():
            ctx.nodes.copy_(nodes)
        if isinstance(exc, KeyboardInterrupt):
            return StopReason.INTERRUPTED, "interrupted during the refinement (not applied)", None
        return StopReason.MAX_TIME, (f"the time budget of {ctx.cfg.max_time} s ran out in the "
                                     "refinement (not applied)"), None
    reason = estimate.convergence.reason
    if reason in (StopReason.INTERRUPTED, StopReason.MAX_TIME):
        stopped = reason
    return stopped, message, estimate


def _start_initial(ctx: _Context, initial: pd.DataFrame | None) -> None:
    """Start the estimated initial states at the values of ``initial`` (runs x states)."""
    if initial is None:
        return
    if not isinstance(initial, pd.DataFrame):
        raise ConfigError(f"fit: initial must be a DataFrame of initial states (runs x states, "
                          f"e.g. a FitResult's initial_states); got {type(initial).__name__}.")
    states = ctx.spec.states
    unknown = [str(c) for c in initial.columns if c not in states]
    if unknown:
        raise ConfigError(f"fit: initial has columns {unknown}, which are not states of the "
                          f"model; its states are {list(states)}.")
    free = ctx.problem.free & ~ctx.problem.known
    mean, scale = np.asarray(ctx.scaling.mean), np.asarray(ctx.scaling.scale)
    with torch.no_grad():
        for r, run in enumerate(ctx.train.run_ids):
            if run not in initial.index:
                continue
            for name in initial.columns:
                s = states.index(name)
                value = float(initial.loc[run, name])
                if bool(free[s]) and math.isfinite(value):
                    ctx.nodes[r, 0, s] = (value - mean[s]) / scale[s]


def _setup(model: Any, data: xr.Dataset, cfg: FitConfig,
           validation: xr.Dataset | None) -> _Context:
    """Check the inputs (each dataset validated once), scale and prepare the data, build the
    problem and the loop state."""
    from sysid.data import split_time, validate
    from sysid.data.columns import check_magnitudes

    started = time.perf_counter()
    spec = _model_spec(model)
    _check_loss(cfg, spec)
    unknown = [n for n in cfg.known_initial if n not in spec.states]
    if unknown:
        raise ConfigError(
            f"fit: known_initial names {unknown} are not states of the model; its states are "
            f"{list(spec.states)}."
        )
    validate(data, where="fit data")
    check_magnitudes(data, context="fit data")
    if validation is not None:
        validate(validation, where="fit validation")
    train_ds, val_ds = data, validation
    if val_ds is None and cfg.validation.fraction > 0:
        train_ds, val_ds = split_time(data, cfg.validation.fraction)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    work = copy.deepcopy(model).to(dtype)
    if spec.outputs:  # the measurement equations of the copy being trained
        spec = dataclasses.replace(spec, observer=work)
    points = cfg.warm_start.smoothing_points
    arrays = read_arrays(train_ds, spec, "fit")
    smoothed = smooth_measured(arrays, spec, points)  # one smoothing for scaling, data and plan
    scaling = fit_scaling(arrays, spec, points, cfg.time_scale,  # states, inputs, outputs
                          smoothed=smoothed)
    if work.scaling is None:
        work.set_scaling(scaling.select(spec.states + spec.inputs))
    if work.encoder is not None:  # latent window starts from past samples (sysid.models.encoder)
        setup_encoder(work.encoder, arrays, scaling, "fit")
        spec = dataclasses.replace(spec, encoder=work.encoder)
    states = scaling.select(spec.states)
    train = prepare(arrays, spec, scaling, points, dtype, smoothed=smoothed)
    val = prepare(read_arrays(val_ds, spec, "fit validation"), spec, scaling, points, dtype) \
        if val_ds is not None else None
    plan = plan_shooting(cfg, arrays.t, arrays.lengths, *arrays.select(spec.measured),
                         smoothed=smoothed[0])
    if spec.encoder is not None and plan.method == "single":  # the encoder learns at window starts
        if cfg.shooting.method == "single":
            raise ConfigError("fit: the model's encoder is trained at the starts of multiple-shooting "
                              "windows; shooting='single' never uses it. Use shooting='auto' or "
                              "'multiple', or a model without an encoder.")
        multi = dataclasses.replace(cfg, shooting=dataclasses.replace(cfg.shooting, method="multiple"))
        plan = dataclasses.replace(plan_shooting(multi, arrays.t, arrays.lengths,
                                                 *arrays.select(spec.measured), smoothed=smoothed[0]),
                                   reason="auto: the model's encoder trains at window starts")
    rhs = ScaledRhs(work.field, torch.tensor(states.mean, dtype=dtype),
                    torch.tensor(states.scale, dtype=dtype))
    counter = StepCounter()
    problem = WindowProblem(rhs, train, spec, cfg, counter, continuity=plan.continuity)
    problem.check_data()
    problem.setup_penalty(work.field, scaling.time_scale)
    ctx = _Context(cfg=cfg, spec=spec, plan=plan, scaling=states, work=work, rhs=rhs, train=train,
                   val=val, problem=problem, nodes=torch.nn.Parameter(train.z_guess.clone()),
                   counter=counter, gen=torch.Generator().manual_seed(cfg.seed),
                   loop=_Loop(cfg), started=started)
    _check_size(ctx)
    return ctx


def _check_size(ctx: _Context) -> None:
    """Refuse, before any work, a fit whose memory (or, without ``max_time``, whose work) would
    exceed :class:`sysid.budget.Limits` (``horizons=[100000]``, ``substeps=1e9``,
    ``warm_start.epochs=1e8``)."""
    cfg, train = ctx.cfg, ctx.train
    lengths = train.lengths.numpy()
    ok = np.isfinite(train.deriv.numpy()).all(-1).sum() if cfg.warm_start.enabled else 0
    time_budget.check_fit(
        stages=ctx.plan.stages, lengths=lengths, substeps=cfg.solver.substeps,
        stages_per_step=_rk_stages(cfg.solver.method), floats_per_row=_activation_floats(ctx.work),
        batch_windows=cfg.optimizer.batch_windows, warm_epochs=cfg.warm_start.epochs if ok else 0,
        warm_rows=int(ok), bytes_per_float=train.t.element_size(), timed=cfg.max_time is not None,
        checkpoint_steps=cfg.solver.checkpoint_steps)


def _rk_stages(method: str) -> int:
    return {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4, "bosh3": 4,
            "dopri8": 13}.get(method, 6)


def _activation_floats(model: torch.nn.Module) -> int:
    """Floats one evaluation of the field keeps per batch row for the backward pass (layer
    outputs before and after the activation, the state and the stage values)."""
    states = len(getattr(model, "state_names", ())) or 1
    linear = sum(2 * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    return linear + 8 * states


def _check_loss(cfg: FitConfig, spec: ModelSpec) -> None:
    """Loss settings that need the model: the names of weights and sigma."""
    loss = cfg.loss
    for what, given in (("weights", loss.weights), ("sigma", loss.sigma)):
        unknown = [n for n in (given or {}) if n not in spec.measured]
        if unknown:
            raise ConfigError(f"fit: loss {what} name {unknown}, which are not measured states of "
                              f"the model; measured states are {list(spec.measured)}.")
    if loss.kind == "wls":
        missing = [n for n in spec.measured if n not in (loss.sigma or {})]
        if missing:
            raise ConfigError(f"fit: loss kind 'wls' needs sigma for every measured state; "
                              f"missing {missing}. Add them to Loss(sigma={{...}}).")


def _resume(ctx: _Context, path: str) -> None:
    state = load_checkpoint(path)
    saved = flatten(state.get("config", {}))
    now = flatten(ctx.cfg.to_dict())
    diff = sorted(k for k in set(now) | set(saved)
                  if k not in _RESUME_FREE and saved.get(k) != now.get(k))
    if diff:
        raise ConfigError(
            f"fit: checkpoint {path!r} was written with different settings for {diff} "
            f"(saved {[saved.get(k) for k in diff]}, now {[now.get(k) for k in diff]}); resume with "
            f"the same FitConfig (only {list(_RESUME_FREE)} may change)."
        )
    check_compatible(state, model_state=ctx.work.state_dict(), nodes=ctx.nodes,
                     fingerprint=_fingerprint(ctx), path=path)
    ctx.work.load_state_dict(state["model"])
    with torch.no_grad():
        ctx.nodes.copy_(state["nodes"])
    ctx.opt.load_state_dict(state["optimizer"])
    ctx.gen.set_state(state["rng"])
    ctx.loop.load(state["loop"])
    ctx.counter.nfe = int(state["nfe"])
    ctx.warm_info = dict(state.get("warm_start", ctx.warm_info))


@dataclass(frozen=True)
class _Fallback:
    """The direct least-squares fit kept aside while the first-order stage runs."""

    estimate: Any
    model: dict[str, torch.Tensor]
    nodes: torch.Tensor


# a direct least-squares fit that explains less than this share of the data's variation (as the
# error model weighs it) is "poor" (a local optimum such as an oscillator's mean): the first-order
# stage runs as well and the better fit is kept
_GOOD_FIT = 0.75


def _first_order_planned(cfg: FitConfig) -> list[str]:
    """Settings of the first-order stage that differ from their defaults (a planned stage)."""
    from sysid.training.config import Checkpoint, Optimizer, Shooting, Validation, WarmStart

    default = FitConfig()
    changed = [name for name, value, base in (
        ("epochs", cfg.epochs, default.epochs), ("optimizer", cfg.optimizer, Optimizer()),
        ("shooting", cfg.shooting, Shooting()), ("warm_start", cfg.warm_start, WarmStart()),
        ("validation", cfg.validation, Validation()), ("checkpoint", cfg.checkpoint, Checkpoint()))
        if value != base]
    return changed


def _direct_route(ctx: _Context) -> bool:
    """A model without network weights goes straight to least squares (``Refine.first_order``
    "auto"), unless a first-order setting was changed from its default (a planned stage)."""
    from sysid.estimation.refinement import has_network_weights

    r = ctx.cfg.refine
    return (r.enabled and r.first_order == "auto" and not has_network_weights(ctx.work)
            and not _first_order_planned(ctx.cfg))


def _direct(ctx: _Context) -> FitResult | _Fallback | None:
    """Least squares from the model's start: the result when it is good (or interrupted), the
    fit kept aside (the model back at its start) when it is poor, None when it did not run."""
    start_state, start_nodes = _clone_state(ctx.work), ctx.nodes.detach().clone()
    estimate = _least_squares(ctx)
    if estimate.convergence.reason == StopReason.INTERRUPTED or _good(estimate):
        _record_direct(ctx)
        return _result(ctx, estimate.convergence.reason, "", estimate, route="direct")
    if estimate.convergence.reason == StopReason.SKIPPED:
        return None
    kept = _Fallback(estimate, _clone_state(ctx.work), ctx.nodes.detach().clone())
    ctx.work.load_state_dict(start_state)
    with torch.no_grad():
        ctx.nodes.copy_(start_nodes)
    return kept


def _record_direct(ctx: _Context) -> None:
    """One history row for a fit that went straight to least squares (with the validation NRMSE
    of the result when there is validation data)."""
    val = math.nan
    if ctx.val is not None and not time_budget.expired():
        try:
            val = validation_nrmse(ctx.rhs, ctx.val, ctx.spec, ctx.cfg, ctx.loop.substeps,
                                   ctx.counter)
        except (KeyboardInterrupt, time_budget.BudgetExceeded):
            val = math.nan
    ctx.loop.history.append({"epoch": 0, "stage": 0, "horizon": ctx.plan.stages[0][0],
                             "loss": math.nan, "full_loss": math.nan, "val_nrmse": val,
                             "lr": math.nan, "nfe": ctx.counter.nfe,
                             "time_s": time.perf_counter() - ctx.started, "event": "least squares"})


def _good(estimate: Any) -> bool:
    return bool(estimate.convergence.converged and estimate.explained >= _GOOD_FIT)


def _better(a: Any, b: Any) -> bool:
    """Whether estimate ``a`` has a higher likelihood than ``b`` (a refined one beats one that
    did not run)."""
    if not a.refined:
        return False
    if not b.refined or not math.isfinite(b.loglik):
        return math.isfinite(a.loglik)
    return a.loglik > b.loglik


def _least_squares(ctx: _Context) -> Any:
    """The joint least-squares refinement of everything that is not a network weight, from the
    current model and initial states (:mod:`sysid.estimation.refinement`); writes the result
    into the model and the first-sample nodes when it ran."""
    from sysid.estimation.refinement import apply, refine_model

    problem, train = ctx.problem, ctx.train
    R = len(train.run_ids)
    free = (problem.free & ~problem.known)[None, :].expand(R, -1).clone()
    z0 = torch.where(free, ctx.nodes.detach()[:, 0], train.z_guess[:, 0])
    left = None
    if ctx.cfg.max_time is not None:
        left = max(ctx.cfg.max_time - (time.perf_counter() - ctx.started), 0.0)
    estimate = refine_model(ctx.work, ctx.spec, train, ctx.scaling, problem.error_model, free, z0,
                            ctx.cfg.refine, max_time=left)
    if estimate.refined:
        apply(estimate, ctx.work)
        z_new = (torch.tensor(estimate.initial) - torch.tensor(ctx.scaling.mean)) / \
            torch.tensor(ctx.scaling.scale)
        with torch.no_grad():
            ctx.nodes[:, 0] = torch.where(free, z_new.to(ctx.nodes.dtype), ctx.nodes[:, 0])
    return estimate


def _result(ctx: _Context, stopped: StopReason, message: str, estimate: Any = None,
            route: str = "first-order") -> FitResult:
    """The FitResult (and the provenance written into the model's metadata)."""
    from sysid.estimation.refinement import has_network_weights
    from sysid.estimation.refinement import parameter_table as refined_table

    cfg, loop, spec, train = ctx.cfg, ctx.loop, ctx.spec, ctx.train
    horizon, stride = ctx.plan.final
    blank = ctx.work.parameter_table().assign(stderr=np.nan, ci95_low=np.nan, ci95_high=np.nan)
    try:
        if estimate is not None and estimate.uncertainty is not None:
            params = refined_table(estimate, ctx.work.parameter_table())
        elif cfg.refine.stderr and not time_budget.expired():  # Gauss-Newton on the final windows
            params = parameter_table(ctx.work, spec, ctx.scaling, train, ctx.nodes, cfg, horizon,
                                     loop.substeps)
            params = params.assign(ci95_low=params["value"] - 1.96 * params["stderr"],
                                   ci95_high=params["value"] + 1.96 * params["stderr"])
        else:
            params = blank
    except (KeyboardInterrupt, time_budget.BudgetExceeded) as exc:  # keep the model, skip them
        params = blank
        message = "; ".join(m for m in (message, "standard errors skipped (" + (
            "interrupted" if isinstance(exc, KeyboardInterrupt) else "max_time spent") + ")") if m)
        if isinstance(exc, KeyboardInterrupt):
            stopped = StopReason.INTERRUPTED
    history = pd.DataFrame(loop.history, columns=["epoch", "stage", "horizon", "loss", "full_loss",
                                                  "val_nrmse", "lr", "nfe", "time_s", "event"])
    problem = ctx.problem
    latent = latent_table(spec, ctx.scaling, train, ctx.nodes, problem.known)
    initial = initial_table(spec, ctx.scaling, train, ctx.nodes, problem.free & ~problem.known)
    stats = {
        "method": cfg.solver.method, "substeps": loop.substeps, "nfe": ctx.counter.nfe,
        "rollbacks": loop.rollbacks, "epochs_run": loop.epoch,
        "time_s": time.perf_counter() - ctx.started, "warm_start": ctx.warm_info,
        "windows": int(make_windows(train.lengths, horizon, stride).count),
        "initial_metric": loop.initial_metric, "shooting": ctx.plan.to_dict(),
    }
    if stopped == StopReason.DIVERGED:
        warnings.warn(f"fit stopped early: {message} The best model so far is returned.",
                      FitWarning, stacklevel=3)
    notes = _estimate_notes(estimate, route, has_network_weights(ctx.work), stopped)
    plan_text = ctx.plan.describe() if route != "direct" else ""
    message = "; ".join(m for m in (message, plan_text, *notes) if m)
    # provenance travels with the model into model files (JSON only)
    ctx.work.metadata = {**ctx.work.metadata, "fit": {
        "config": cfg.to_dict(), "stopped_reason": stopped.value, "best_epoch": loop.best_epoch,
        "epochs_run": loop.epoch, "runs": list(train.run_ids), "shooting": ctx.plan.method}}
    extra = _estimate_fields(estimate)
    stats["route"] = route
    return FitResult(model=ctx.work, history=history, parameters=params, solver_stats=stats,
                     config=cfg, stopped_reason=stopped, message=message,
                     best_epoch=loop.best_epoch, latent_initial=latent, initial_states=initial,
                     **extra)


def _estimate_notes(estimate: Any, route: str, networks: bool, stopped: StopReason) -> list[str]:
    """Lines for the result's message, and the FitWarnings of the refinement."""
    if estimate is None:
        return []
    conv = estimate.convergence
    notes = []
    if route == "direct":
        notes.append(f"least squares from the model's start (no network weights, no first-order "
                     f"stage): {conv.reason.value} after {conv.iterations} iterations")
    elif conv.reason == StopReason.SKIPPED:
        notes.append(f"joint least-squares refinement skipped: {conv.message}")
    else:
        notes.append(f"joint least-squares refinement: {conv.reason.value} after "
                     f"{conv.iterations} iterations")
    if conv.reason not in (StopReason.CONVERGED, StopReason.SKIPPED) and stopped != StopReason.INTERRUPTED:
        text = (f"the least-squares refinement did not converge ({conv.reason.value}: "
                f"{conv.message}; a Gauss-Newton step would still lower the cost by "
                f"{conv.predicted_decrease:.2g} of it)")
        warnings.warn(text, FitWarning, stacklevel=4)
        notes.append(text)
    if networks and estimate.refined:
        notes.append("network weights (and output-equation parameters) were held fixed in the "
                     "refinement: the standard errors and intervals do not include their uncertainty")
    for w in estimate.warnings:
        warnings.warn(w, FitWarning, stacklevel=4)
    notes += estimate.warnings
    return notes


def _estimate_fields(estimate: Any) -> dict[str, Any]:
    """The FitResult fields that come from the refinement."""
    if estimate is None:
        return {}
    unc = estimate.uncertainty
    return {"error_model": estimate.error_model, "sigma": estimate.sigma,
            "loglik": estimate.loglik, "aic": estimate.aic, "bic": estimate.bic,
            "covariance": unc.covariance if unc is not None else pd.DataFrame(),
            "correlation": unc.correlation if unc is not None else pd.DataFrame(),
            "convergence": estimate.convergence}


def _warm_start(ctx: _Context) -> dict[str, Any]:
    ws, spec, train = ctx.cfg.warm_start, ctx.spec, ctx.train
    if not ws.enabled or ws.epochs == 0:
        return {"skipped": "disabled"}
    missing = [n for i, n in enumerate(spec.states)
               if i in spec.latent_idx and i not in spec.velocity_of]
    if missing:
        return {"skipped": f"latent states {missing} have no derivative estimate"}
    ok = torch.isfinite(train.smooth).all(-1) & torch.isfinite(train.deriv).all(-1)
    ok &= torch.arange(train.t.shape[1])[None, :] < train.lengths[:, None]
    if int(ok.sum()) < 3:
        return {"skipped": "too few samples with smoothed derivatives"}
    params = [p for p in ctx.work.parameters() if p.requires_grad]
    if not params:
        return {"skipped": "no free parameters"}
    n_par = sum(p.numel() for p in params)
    method = ws.method
    # the plateau stop is for networks only: the warm start is the direct estimate of physics
    # parameters (a hybrid's drift slowly from a poor start and need all its steps)
    plateau = 0.0 if physics_raw(ctx.work) else ws.plateau
    try:
        return {"method": method, **regress_derivatives(
            ctx.rhs, train.t[ok], train.smooth[ok], train.u[ok] if train.u is not None else None,
            train.deriv[ok], epochs=ws.epochs, lr=ws.lr, parameters=params,
            use_lbfgs=n_par <= 64, penalty=ctx.problem.penalty if ctx.problem.hybrids else None,
            method=method, plateau=plateau)}
    except SolverError as exc:  # a field that fails on the data is left as it was
        return {"skipped": f"field evaluation failed: {exc}"}


def _lr(cfg: FitConfig, loop: _Loop, total: int) -> float:
    o = cfg.optimizer
    if o.schedule == "cosine":
        frac = loop.epoch / max(total - 1, 1)
        sched = o.min_lr_factor + (1 - o.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * frac))
    else:
        sched = 1.0
    return o.lr * loop.lr_factor * sched


def _shoot_latent(ctx: _Context) -> None:
    """Start every window's unmeasured states where one simulation of each whole run puts them.

    Their guess is a constant (the model's ``latent_initial``); an epidemic's S starting every
    window at N pulled beta towards zero before the nodes could move. Latent velocities keep their
    smoothed-derivative start. A simulation that fails leaves the guesses as they are.
    """
    spec, train, nodes = ctx.spec, ctx.train, ctx.nodes
    latent = [i for i in spec.latent_idx if i not in spec.velocity_of]
    n = int(train.lengths.max())
    if not latent or n < 2:
        return
    windows = make_windows(train.lengths, n, stride=n - 1)  # one window per run, from sample 0
    with torch.no_grad():
        try:
            pred = ctx.problem.predict(nodes, windows, ctx.problem.inputs_for(windows))
        except SolverError:
            return
        vals = pred[..., latent]
        ok = windows.valid & torch.isfinite(vals).all(-1)
        runs = windows.run[:, None].expand_as(windows.idx)[ok]
        idx = windows.idx[ok]
        for k, s in enumerate(latent):
            nodes[runs, idx, s] = vals[..., k][ok].to(nodes.dtype)


class _Progress:
    """Progress of the epochs: a tqdm bar on a terminal, else one line on stderr about every
    ``_LOG_INTERVAL_S`` seconds (a log file or a CI console gets a readable record, not bar
    redraws). ``progress=False`` or ``TQDM_DISABLE=1`` silence both."""

    def __init__(self, cfg: FitConfig, total: int, initial: int, started: float) -> None:
        self.total, self.started = total, started
        self.bar = None
        self.lines = False
        self.last = time.perf_counter()
        silent = not cfg.progress or os.environ.get("TQDM_DISABLE", "").strip().lower() in (
            "1", "true", "yes", "on")
        if silent:
            return
        stream = sys.stderr
        if getattr(stream, "isatty", lambda: False)():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="fit", unit="epoch", leave=False)
        else:
            self.lines = True

    def update(self, epoch: int, loss: float, val: float, nfe: int) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3g}", val=f"{val:.3g}", nfe=nfe, refresh=False)
            return
        now = time.perf_counter()
        if not self.lines or (now - self.last < _LOG_INTERVAL_S and epoch < self.total):
            return
        self.last = now
        elapsed = now - self.started
        remaining = elapsed / max(epoch, 1) * (self.total - epoch)
        val_text = f", validation NRMSE {val:.4g}" if math.isfinite(val) else ""
        print(f"fit: epoch {epoch}/{self.total}, loss {loss:.4g}{val_text}, elapsed {elapsed:.0f} s, "
              f"about {remaining:.0f} s left", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _select(ctx: _Context) -> tuple[float, float]:
    """(validation NRMSE, loss on the final stage's windows): the first when there is validation
    data, else the second picks the best model (comparable across curriculum stages)."""
    if ctx.val is not None:
        if ctx.held_out is None:  # windows, observations and spreads made once per fit
            ctx.held_out = HeldOut(ctx.rhs, ctx.val, ctx.spec, ctx.cfg, ctx.counter)
        return ctx.held_out.nrmse(ctx.loop.substeps), math.nan
    ws, inp = ctx.windows_for(*ctx.plan.final)
    ctx.problem.substeps = ctx.loop.substeps
    with torch.no_grad():
        try:
            value = float(ctx.problem.loss(ctx.nodes, ws, inp))
        except SolverError:
            value = math.inf
    return math.nan, value if math.isfinite(value) else math.inf


def _train(ctx: _Context) -> tuple[StopReason, str]:
    """Run the epochs of every stage; returns why and how it stopped."""
    cfg, loop, plan = ctx.cfg, ctx.loop, ctx.plan
    stage_of = [i for i, (_, n, _) in enumerate(plan.stages) for _ in range(n)]
    total = len(stage_of)
    progress = _Progress(cfg, total, loop.epoch, ctx.started)
    stopped, message = StopReason.COMPLETED, ""  # SIGTERM acts as Ctrl-C: fit() set it up
    good = previous = None
    try:
        if loop.epoch == 0 and loop.best_key[0] == math.inf:  # the start (after the warm start)
            v0, f0 = _select(ctx)
            loop.initial_metric = v0 if ctx.val is not None else f0
            _track_best(ctx, loop.initial_metric)
        good = previous = _Snapshot.take(ctx)
        while loop.epoch < total:
            if cfg.max_time is not None and time.perf_counter() - ctx.started > cfg.max_time:
                stopped, message = StopReason.MAX_TIME, f"the time budget of {cfg.max_time} s was spent"
                break
            stage = stage_of[loop.epoch]
            if loop.epoch > 0 and stage_of[loop.epoch - 1] != stage:
                loop.stage_best = math.inf
                loop.plateau_best, loop.plateau_wait = math.inf, 0
                loop.patience_wait = 0
            lr = _lr(cfg, loop, total)
            try:
                epoch_loss = _epoch(ctx, stage, lr)
            except _StepFailure as exc:
                if exc.first:  # the last saved state is the bad one: go one further back
                    good = previous
                outcome = _rollback(ctx, good, exc, stage, lr)
                if outcome is not None:
                    stopped, message = outcome
                    break
                continue
            outcome = _after_epoch(ctx, stage, lr, epoch_loss, total, progress)
            previous, good = good, _Snapshot.take(ctx)
            if cfg.checkpoint.path and (loop.epoch % cfg.checkpoint.every == 0
                                        or loop.epoch == total):
                _write(ctx)
            if outcome is not None:
                stopped, message = outcome
                break
    except KeyboardInterrupt:
        stopped, message = StopReason.INTERRUPTED, f"interrupted after {loop.epoch} epochs"
        # back to the end of the last complete epoch, so a resume repeats the partial one
        if good is not None:
            good.restore(ctx, everything=True)
            if cfg.checkpoint.path:
                _write(ctx)
    except time_budget.BudgetExceeded:  # max_time ran out inside a solve of the epoch
        stopped, message = StopReason.MAX_TIME, f"the time budget of {cfg.max_time} s was spent"
        if good is not None:
            good.restore(ctx, everything=True)
    finally:
        progress.close()
    return stopped, message


def _rollback(ctx: _Context, good: _Snapshot, exc: _StepFailure, stage: int,
              lr: float) -> tuple[StopReason, str] | None:
    """Undo a failed step: back to ``good``, half the learning rate, more substeps after a solver
    failure. Returns the stop (diverged) once ``max_rollbacks`` is exceeded."""
    cfg, loop = ctx.cfg, ctx.loop
    loop.rollbacks += 1
    good.restore(ctx)
    loop.lr_factor *= 0.5
    if exc.solver and not cfg.solver.adaptive:
        loop.substeps = min(loop.substeps * 2, cfg.solver.substeps * 8)
    loop.history.append(_row(ctx, stage, math.nan, math.nan, math.nan, lr,
                             f"rollback {loop.rollbacks}: {exc}"))
    if loop.rollbacks > cfg.optimizer.max_rollbacks:
        return StopReason.DIVERGED, (
            f"{loop.rollbacks} failed steps (last at epoch {loop.epoch + 1}: {exc}); lower lr "
            f"(it was {cfg.optimizer.lr}) or use more substeps.")
    return None


def _after_epoch(ctx: _Context, stage: int, lr: float, epoch_loss: float, total: int,
                 progress: _Progress) -> tuple[StopReason, str] | None:
    """Bookkeeping of a completed epoch: validation, best model, schedule, history, progress;
    returns a stop (target reached, early stopping) or None."""
    cfg, loop, val = ctx.cfg, ctx.loop, ctx.val
    loop.epoch += 1
    loop.stage_best = min(loop.stage_best, epoch_loss)
    val_metric = full_loss = math.nan
    if loop.epoch % cfg.validation.every == 0 or loop.epoch == total:
        val_metric, full_loss = _select(ctx)
        _track_best(ctx, val_metric if val is not None else full_loss)
    _plateau(cfg, loop, epoch_loss if val is None or math.isnan(val_metric) else val_metric,
             val is None or not math.isnan(val_metric))
    loop.history.append(_row(ctx, stage, epoch_loss, full_loss, val_metric, lr, ""))
    progress.update(loop.epoch, epoch_loss, val_metric, ctx.counter.nfe)
    v = cfg.validation
    if v.target is not None and not math.isnan(val_metric) and val_metric <= v.target:
        return StopReason.TARGET_REACHED, f"validation NRMSE {val_metric:.4g} <= {v.target}"
    if (v.patience is not None and not math.isnan(val_metric)
            and stage == len(ctx.plan.stages) - 1 and loop.patience_wait >= v.patience):
        return StopReason.EARLY_STOPPING, f"no validation improvement in {v.patience} checks"
    return None


def _epoch(ctx: _Context, stage: int, lr: float) -> float:
    """One pass over the windows of ``stage`` (one optimiser step per batch); the mean loss."""
    cfg, problem, opt = ctx.cfg, ctx.problem, ctx.opt
    horizon, _, stride = ctx.plan.stages[stage]
    windows, inputs = ctx.windows_for(horizon, stride)
    for g in opt.param_groups:
        g["lr"] = lr
    problem.substeps = ctx.loop.substeps
    W = windows.count
    size = cfg.optimizer.batch_windows
    if size is None or size >= W:
        batches = [(windows, inputs)]
    else:
        perm = torch.randperm(W, generator=ctx.gen)
        batches = []
        for i in range(0, W, size):
            sub = windows.subset(perm[i:i + size])
            batches.append((sub, problem.inputs_for(sub)))
    total = 0.0
    params = [p for g in opt.param_groups for p in g["params"]]
    clip = cfg.optimizer.grad_clip if cfg.optimizer.grad_clip else math.inf
    stage_best = ctx.loop.stage_best
    for k, (ws, inp) in enumerate(batches):
        opt.zero_grad(set_to_none=True)
        try:
            loss = problem.loss(ctx.nodes, ws, inp)
        except SolverError as exc:
            raise _StepFailure(str(exc), first=k == 0, solver=True) from None
        value = float(loss.detach())
        if not math.isfinite(value):
            raise _StepFailure(f"the loss became {value}", first=k == 0)
        if stage_best < math.inf and value > _BLOWUP * max(stage_best, 1e-12):
            raise _StepFailure(f"the loss jumped to {value:.3g} (best of this stage "
                               f"{stage_best:.3g})", first=k == 0)
        try:  # the adjoint integrates again backwards: its failures are step failures too
            loss.backward()
        except SolverError as exc:
            raise _StepFailure(f"in the backward pass: {exc}", first=False, solver=True) from None
        except AssertionError as exc:  # torchdiffeq's bare assertions (dt underflow) backwards
            raise _StepFailure(f"the backward (adjoint) solve failed ({exc})", first=False,
                               solver=True) from None
        norm = torch.nn.utils.clip_grad_norm_(params, clip)
        if not bool(torch.isfinite(norm)):
            raise _StepFailure("the gradient became non-finite", first=False)
        opt.step()
        total += value * ws.count / W
    return total


def _plateau(cfg: FitConfig, loop: _Loop, metric: float, measured: bool) -> None:
    if not measured:
        return
    if metric < loop.val_best - 1e-12 and not math.isnan(metric):
        loop.val_best = metric
        loop.patience_wait = 0
    else:
        loop.patience_wait += 1
    if cfg.optimizer.schedule != "plateau":
        return
    if metric < loop.plateau_best * (1 - 1e-4):
        loop.plateau_best, loop.plateau_wait = metric, 0
    else:
        loop.plateau_wait += 1
        if loop.plateau_wait >= cfg.optimizer.plateau_patience:
            loop.lr_factor *= 0.5
            loop.plateau_wait = 0


def _track_best(ctx: _Context, metric: float) -> None:
    loop = ctx.loop
    if math.isnan(metric) or not metric < loop.best_key[0] or not _finite(ctx.work):
        return
    loop.best_key = [metric, 0.0]
    loop.best_epoch = loop.epoch
    loop.best_model = _clone_state(ctx.work)
    loop.best_nodes = ctx.nodes.detach().clone()


def _row(ctx: _Context, stage: int, loss: float, full: float, val: float, lr: float,
         event: str) -> dict[str, Any]:
    loop = ctx.loop
    return {"epoch": loop.epoch, "stage": stage, "horizon": ctx.plan.stages[stage][0],
            "loss": loss, "full_loss": full, "val_nrmse": val, "lr": lr, "nfe": ctx.counter.nfe,
            "time_s": time.perf_counter() - ctx.started, "event": event}


def _write(ctx: _Context) -> None:
    save_checkpoint(ctx.cfg.checkpoint.path, {
        "config": ctx.cfg.to_dict(), "model": _clone_state(ctx.work),
        "nodes": ctx.nodes.detach().clone(), "optimizer": ctx.opt.state_dict(),
        "rng": ctx.gen.get_state(), "loop": ctx.loop.to_dict(), "nfe": ctx.counter.nfe,
        "warm_start": {k: (v if isinstance(v, (str, int, float)) else str(v))
                       for k, v in ctx.warm_info.items()},
        "data": _fingerprint(ctx),
    })


def _fingerprint(ctx: _Context) -> str:
    train = ctx.train
    return data_fingerprint(train.run_ids, train.t, train.y, train.mask, train.u)


