"""``fit``: multiple-shooting training of a model on trajectory data.

The loop, in order: copy the model (the caller's is never changed); scale states from the data;
smooth the measurements and (optionally) warm-start the vector field on their derivatives; then,
for each horizon of the curriculum, integrate all windows of all runs in one batched solve per
optimiser step. Each good epoch is remembered; a non-finite loss or a failed solve rolls back to
it, halves the learning rate (and, for fixed-step solvers, doubles the substeps) and goes on;
after ``max_rollbacks`` failures the fit stops with a warning and the best model. Ctrl-C (and
SIGTERM) stop cleanly with the best model. Checkpoints are atomic and resuming from one gives the
same result as an uninterrupted run with the same seed.
"""

from __future__ import annotations

import copy
import math
import signal
import threading
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from sysid.errors import ConfigError, SolverError
from sysid.training.checkpoint import load_checkpoint, save_checkpoint
from sysid.training.config import FitConfig
from sysid.training.loss import ScaledRhs
from sysid.training.problem import (
    ModelSpec,
    Prepared,
    WindowProblem,
    check_positive,
    compute_scales,
    prepare,
)
from sysid.training.result import FitResult
from sysid.training.solvers import StepCounter
from sysid.training.stats import (
    initial_table,
    latent_table,
    parameter_table,
    physics_raw,
    polish,
    validation_nrmse,
)
from sysid.training.warmstart import regress_derivatives
from sysid.training.windows import make_windows

__all__ = ["fit", "FitWarning"]

# a loss this many times above the best of the current stage counts as a blow-up
_BLOWUP = 100.0
# keys that may differ between a checkpointed run and its resumption
_RESUME_FREE = ("progress", "checkpoint", "checkpoint_every", "max_time")


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
    field = model.field
    states = tuple(field.state_names)
    velocity_of: dict[int, int] = {}
    if isinstance(field, SecondOrderField):
        for q, v in zip(field.positions, field.velocities):
            if v not in model.observed and q in model.observed:
                velocity_of[states.index(v)] = states.index(q)
    guess = {states.index(n): float(v) for n, v in model.latent_initial.items()
             if states.index(n) not in velocity_of}
    return ModelSpec(states=states, observed=tuple(model.observed), inputs=tuple(field.input_names),
                     interpolation=model.input_interpolation, velocity_of=velocity_of,
                     latent_guess=guess)


def _set_scaling(model: Any, spec: ModelSpec, scales: Any) -> None:
    from sysid.data import Scaling

    names = spec.states + spec.inputs
    mean = list(scales.mean)
    scale = list(scales.scale)
    if spec.inputs:
        mean += list(scales.input_mean)
        scale += list(scales.input_scale)
    model.set_scaling(Scaling(names=tuple(names), mean=np.asarray(mean, float),
                              scale=np.asarray(scale, float), time_scale=float(scales.time_scale)))


def _physics_raw(model: Any) -> list[torch.nn.Parameter]:
    return [raw for _, raw in physics_raw(model)]


def _param_groups(model: Any, nodes: torch.nn.Parameter, cfg: FitConfig) -> list[dict]:
    phys = _physics_raw(model)
    phys_ids = {id(p) for p in phys}
    neural = [p for p in model.parameters() if p.requires_grad and id(p) not in phys_ids]
    groups = []
    if neural:
        groups.append({"params": neural, "weight_decay": cfg.weight_decay})
    if phys:
        groups.append({"params": phys, "weight_decay": 0.0})
    groups.append({"params": [nodes], "weight_decay": 0.0})
    return groups


def _optimizer(groups: list[dict], cfg: FitConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.RMSprop(groups, lr=cfg.lr)


class _Loop:
    """Mutable state of the training loop (everything a checkpoint holds)."""

    def __init__(self, cfg: FitConfig) -> None:
        self.epoch = 0  # epochs completed
        self.lr_factor = 1.0
        self.plateau_best = math.inf
        self.plateau_wait = 0
        self.rollbacks = 0
        self.substeps = cfg.substeps
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


def _clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def fit(model: Any, data: xr.Dataset, config: FitConfig | None = None, *,
        validation: xr.Dataset | None = None, resume_from: str | None = None) -> FitResult:
    """Fit a model to trajectory data.

    Parameters
    ----------
    model : sysid.models.Model
        The model to train; it is copied, never changed.
    data : xarray.Dataset
        Training trajectories (the sysid schema; several runs, irregular grids and missing values
        allowed).
    config : FitConfig, optional
        All settings (defaults: 300 epochs, Adam, rk4 on a (5, 10, 20)-sample horizon curriculum).
    validation : xarray.Dataset, optional
        Held-out runs: each is simulated from its first sample every ``validate_every`` epochs;
        its NRMSE (RMSE / standard deviation per measured state, averaged) picks the best model
        and drives early stopping. Without it, ``config.validation_fraction`` holds out the tail
        of each run's time span.
    resume_from : str, optional
        A checkpoint written with ``FitConfig(checkpoint=...)``: continue that fit (same data and
        settings) and get the same result as if it had never stopped.

    Returns
    -------
    FitResult
        The trained copy, history, parameter table with standard errors, solver statistics.

    Raises
    ------
    ConfigError, DataError
        For invalid settings, a model that does not match the data, or an unusable checkpoint.
    """
    from sysid.data import split_time, validate

    cfg = config if config is not None else FitConfig()
    if not isinstance(cfg, FitConfig):
        raise ConfigError(f"fit: config must be a FitConfig; got {type(cfg).__name__}. "
                          f"Build one with FitConfig(...) or FitConfig.from_dict({{...}}).")
    started = time.perf_counter()
    spec = _model_spec(model)
    validate(data, where="fit data")
    if validation is not None:
        validate(validation, where="fit validation")
    train_ds, val_ds = data, validation
    if val_ds is None and cfg.validation_fraction > 0:
        train_ds, val_ds = split_time(data, cfg.validation_fraction)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    work = copy.deepcopy(model).to(dtype)
    unknown = [n for n in cfg.known_initial if n not in spec.states]
    if unknown:
        raise ConfigError(
            f"fit: known_initial names {unknown} are not states of the model; its states are "
            f"{list(spec.states)}."
        )
    scales = compute_scales(train_ds, spec, cfg.smoothing_points, cfg.time_scale)
    if work.scaling is None:
        _set_scaling(work, spec, scales)
    train = prepare(train_ds, spec, scales, cfg.smoothing_points, dtype)
    val = prepare(val_ds, spec, scales, cfg.smoothing_points, dtype, "fit validation") \
        if val_ds is not None else None
    if cfg.loss == "log":
        check_positive(train, spec, scales)
    weights = torch.ones(len(spec.observed), dtype=dtype)
    if cfg.weights:
        unknown = [n for n in cfg.weights if n not in spec.observed]
        if unknown:
            raise ConfigError(f"fit: weights name {unknown}, which are not measured states of the "
                              f"model; measured states are {list(spec.observed)}.")
        for j, n in enumerate(spec.observed):
            weights[j] = cfg.weights.get(n, 1.0)
    rhs = ScaledRhs(work.field, torch.as_tensor(scales.mean, dtype=dtype),
                    torch.as_tensor(scales.scale, dtype=dtype))
    counter = StepCounter()
    problem = WindowProblem(rhs, train, spec, cfg, weights, counter)
    problem.setup_penalty(work.field, scales)
    nodes = torch.nn.Parameter(train.z_guess.clone())
    gen = torch.Generator().manual_seed(cfg.seed)
    loop = _Loop(cfg)
    interrupted = False
    before_warm = _clone_state(work)
    try:
        warm_info: dict[str, Any] = {"skipped": "resumed"} if resume_from else _warm_start(
            work, rhs, train, spec, cfg, problem)
    except KeyboardInterrupt:  # Ctrl-C during the warm start: keep the model as it was given
        work.load_state_dict(before_warm)
        warm_info, interrupted = {"skipped": "interrupted"}, True
    if resume_from is None and not interrupted:
        _shoot_latent(problem, nodes, train, spec)
    opt = _optimizer(_param_groups(work, nodes, cfg), cfg)
    if resume_from is not None:
        state = load_checkpoint(resume_from)
        _check_resume(state, cfg, resume_from)
        work.load_state_dict(state["model"])
        with torch.no_grad():
            nodes.copy_(state["nodes"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"])
        loop.load(state["loop"])
        counter.nfe = int(state["nfe"])
        warm_info = dict(state.get("warm_start", warm_info))
    if loop.best_model is None:
        loop.best_model, loop.best_nodes = _clone_state(work), nodes.detach().clone()
    if interrupted:
        stopped, message = "interrupted", "interrupted during the warm start"
    else:
        stopped, message = _train(work, problem, nodes, opt, gen, loop, cfg, val, spec, rhs,
                                  counter, started, warm_info)
    work.load_state_dict(loop.best_model)
    with torch.no_grad():
        nodes.copy_(loop.best_nodes)
    problem.substeps = loop.substeps
    horizon = cfg.horizons[-1]
    if cfg.polish and stopped != "interrupted":
        polish(work, problem, nodes, train, horizon, cfg)
    params = parameter_table(work, spec, scales, train, nodes, cfg, horizon, loop.substeps) \
        if cfg.stderr else work.parameter_table().assign(stderr=np.nan)
    history = pd.DataFrame(loop.history, columns=["epoch", "stage", "horizon", "loss", "full_loss",
                                                  "val_nrmse", "lr", "nfe", "time_s", "event"])
    latent = latent_table(spec, scales, train, nodes, problem.known)
    initial = initial_table(spec, scales, train, nodes, problem.free & ~problem.known)
    stats = {
        "method": cfg.solver, "substeps": loop.substeps, "nfe": counter.nfe,
        "rollbacks": loop.rollbacks, "epochs_run": loop.epoch,
        "time_s": time.perf_counter() - started, "warm_start": warm_info,
        "windows": int(make_windows(train.lengths, horizon, cfg.stride_for(horizon)).count),
        "initial_metric": loop.initial_metric,
    }
    if stopped == "diverged":
        warnings.warn(f"fit stopped early: {message} The best model so far is returned.",
                      FitWarning, stacklevel=2)
    # provenance travels with the model into model files (JSON only)
    work.metadata = {**work.metadata, "fit": {
        "config": cfg.to_dict(), "stopped_reason": stopped, "best_epoch": loop.best_epoch,
        "epochs_run": loop.epoch, "runs": list(train.run_ids)}}
    return FitResult(model=work, history=history, parameters=params, solver_stats=stats,
                     config=cfg, stopped_reason=stopped, message=message,
                     best_epoch=loop.best_epoch, latent_initial=latent,
                     initial_states=initial)


def _check_resume(state: dict[str, Any], cfg: FitConfig, path: str) -> None:
    saved = state.get("config", {})
    now = cfg.to_dict()
    diff = sorted(k for k in now if k not in _RESUME_FREE and saved.get(k) != now[k])
    if diff:
        raise ConfigError(
            f"fit: checkpoint {path!r} was written with different settings for {diff} "
            f"(saved {[saved.get(k) for k in diff]}, now {[now[k] for k in diff]}); resume with the "
            f"same FitConfig (only {list(_RESUME_FREE)} may change)."
        )


def _warm_start(work: Any, rhs: ScaledRhs, train: Prepared, spec: ModelSpec,
                cfg: FitConfig, problem: WindowProblem) -> dict[str, Any]:
    if not cfg.warm_start or cfg.warm_start_epochs == 0:
        return {"skipped": "disabled"}
    missing = [n for i, n in enumerate(spec.states)
               if i in spec.latent_idx and i not in spec.velocity_of]
    if missing:
        return {"skipped": f"latent states {missing} have no derivative estimate"}
    ok = torch.isfinite(train.smooth).all(-1) & torch.isfinite(train.deriv).all(-1)
    ok &= torch.arange(train.t.shape[1])[None, :] < train.lengths[:, None]
    if int(ok.sum()) < 3:
        return {"skipped": "too few samples with smoothed derivatives"}
    t = train.t[ok]
    z = train.smooth[ok]
    dz = train.deriv[ok]
    u = train.u[ok] if train.u is not None else None
    params = [p for p in work.parameters() if p.requires_grad]
    if not params:
        return {"skipped": "no free parameters"}
    n_par = sum(p.numel() for p in params)
    try:
        info = regress_derivatives(rhs, t, z, u, dz, epochs=cfg.warm_start_epochs,
                                   lr=cfg.warm_start_lr, parameters=params,
                                   use_lbfgs=n_par <= 64,
                                   penalty=problem.penalty if problem.hybrids else None)
    except SolverError as exc:  # a field that fails on the data is left as it was
        return {"skipped": f"field evaluation failed: {exc}"}
    return info


def _lr(cfg: FitConfig, loop: _Loop, total: int) -> float:
    if cfg.schedule == "cosine":
        frac = loop.epoch / max(total - 1, 1)
        sched = cfg.min_lr_factor + (1 - cfg.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * frac))
    else:
        sched = 1.0
    return cfg.lr * loop.lr_factor * sched


def _shoot_latent(problem: WindowProblem, nodes: torch.nn.Parameter, train: Prepared,
                  spec: ModelSpec) -> None:
    """Start every window's unmeasured states where one simulation of each whole run puts them.

    Their guess is a constant (the model's ``latent_initial``); an epidemic's S starting every
    window at N pulled beta towards zero before the nodes could move. Latent velocities keep their
    smoothed-derivative start. A simulation that fails leaves the guesses as they are.
    """
    latent = [i for i in spec.latent_idx if i not in spec.velocity_of]
    n = int(train.lengths.max())
    if not latent or n < 2:
        return
    windows = make_windows(train.lengths, n, stride=n - 1)  # one window per run, from sample 0
    with torch.no_grad():
        try:
            pred = problem.predict(nodes, windows, problem.inputs_for(windows))
        except SolverError:
            return
        vals = pred[..., latent]
        ok = windows.valid & torch.isfinite(vals).all(-1)
        runs = windows.run[:, None].expand_as(windows.idx)[ok]
        idx = windows.idx[ok]
        for k, s in enumerate(latent):
            nodes[runs, idx, s] = vals[..., k][ok].to(nodes.dtype)


def _train(work: Any, problem: WindowProblem, nodes: torch.nn.Parameter,
           opt: torch.optim.Optimizer, gen: torch.Generator, loop: _Loop, cfg: FitConfig,
           val: Prepared | None, spec: ModelSpec, rhs: ScaledRhs, counter: StepCounter,
           started: float, warm_info: dict[str, Any]) -> tuple[str, str]:
    from tqdm.auto import tqdm

    stages = cfg.stages()
    stage_of = [i for i, (_, n) in enumerate(stages) for _ in range(n)]
    total = len(stage_of)
    cache: dict[int, tuple] = {}

    def windows_for(h: int) -> tuple:
        if h not in cache:
            ws = make_windows(problem.data.lengths, h, cfg.stride_for(h))
            cache[h] = (ws, problem.inputs_for(ws))
        return cache[h]

    def select() -> tuple[float, float]:
        """(validation NRMSE, loss on the longest horizon): the first when there is validation
        data, else the second picks the best model (comparable across curriculum stages)."""
        if val is not None:
            return validation_nrmse(rhs, val, spec, cfg, loop.substeps, counter), math.nan
        ws, inp = windows_for(stages[-1][0])
        problem.substeps = loop.substeps
        with torch.no_grad():
            try:
                value = float(problem.loss(nodes, ws, inp))
            except SolverError:
                value = math.inf
        return math.nan, value if math.isfinite(value) else math.inf

    if loop.epoch == 0 and loop.best_key[0] == math.inf:  # the start (after the warm start)
        v0, f0 = select()
        _track_best(loop, work, nodes, v0 if val is not None else f0)
        loop.initial_metric = v0 if val is not None else f0
    good = _snapshot(work, nodes, opt, gen, loop)
    previous = good
    bar = tqdm(total=total, initial=loop.epoch, disable=None if cfg.progress else True,
               desc="fit", unit="epoch", leave=False)
    old_handler = _install_sigterm()
    stopped, message = "completed", ""
    try:
        while loop.epoch < total:
            if cfg.max_time is not None and time.perf_counter() - started > cfg.max_time:
                stopped, message = "max_time", f"the time budget of {cfg.max_time} s was spent"
                break
            stage = stage_of[loop.epoch]
            if loop.epoch > 0 and stage_of[loop.epoch - 1] != stage:
                loop.stage_best = math.inf
                loop.plateau_best, loop.plateau_wait = math.inf, 0
                loop.patience_wait = 0
            horizon = stages[stage][0]
            windows, inputs = windows_for(horizon)
            lr = _lr(cfg, loop, total)
            for g in opt.param_groups:
                g["lr"] = lr
            problem.substeps = loop.substeps
            try:
                epoch_loss = _epoch(problem, nodes, opt, windows, inputs, gen, cfg, loop)
            except _StepFailure as exc:
                loop.rollbacks += 1
                if exc.first:  # the last saved state is the bad one: go one further back
                    good = previous
                _restore(good, work, nodes, opt)
                loop.lr_factor *= 0.5
                if exc.solver and not cfg.adaptive:
                    loop.substeps = min(loop.substeps * 2, cfg.substeps * 8)
                event = f"rollback {loop.rollbacks}: {exc}"
                loop.history.append(_row(loop, stage, horizon, math.nan, math.nan, math.nan, lr,
                                         counter, started, event))
                if loop.rollbacks > cfg.max_rollbacks:
                    stopped = "diverged"
                    message = (f"{loop.rollbacks} failed steps (last at epoch {loop.epoch + 1}: "
                               f"{exc}); lower lr (it was {cfg.lr}) or use more substeps.")
                    break
                continue
            loop.epoch += 1
            loop.stage_best = min(loop.stage_best, epoch_loss)
            val_metric = full_loss = math.nan
            checked = loop.epoch % cfg.validate_every == 0 or loop.epoch == total
            if checked:
                val_metric, full_loss = select()
                _track_best(loop, work, nodes, val_metric if val is not None else full_loss)
            _plateau(cfg, loop, epoch_loss if val is None or math.isnan(val_metric) else val_metric,
                     val is None or not math.isnan(val_metric))
            loop.history.append(_row(loop, stage, horizon, epoch_loss, full_loss, val_metric, lr,
                                     counter, started, ""))
            bar.update(1)
            bar.set_postfix(loss=f"{epoch_loss:.3g}", val=f"{val_metric:.3g}", nfe=counter.nfe,
                            refresh=False)
            previous, good = good, _snapshot(work, nodes, opt, gen, loop)
            if cfg.checkpoint and (loop.epoch % cfg.checkpoint_every == 0 or loop.epoch == total):
                _write(cfg, work, nodes, opt, gen, loop, counter, warm_info)
            if cfg.target is not None and not math.isnan(val_metric) and val_metric <= cfg.target:
                stopped, message = "target_reached", f"validation NRMSE {val_metric:.4g} <= {cfg.target}"
                break
            if (cfg.patience is not None and not math.isnan(val_metric)
                    and stage == len(stages) - 1 and loop.patience_wait >= cfg.patience):
                stopped, message = "early_stopping", (
                    f"no validation improvement in {cfg.patience} checks")
                break
    except KeyboardInterrupt:
        stopped, message = "interrupted", f"interrupted after {loop.epoch} epochs"
        # back to the end of the last complete epoch, so a resume repeats the partial one
        _restore(good, work, nodes, opt, gen, loop)
        if cfg.checkpoint:
            _write(cfg, work, nodes, opt, gen, loop, counter, warm_info)
    finally:
        bar.close()
        _restore_sigterm(old_handler)
    return stopped, message


def _snapshot(work: Any, nodes: torch.Tensor, opt: torch.optim.Optimizer,
              gen: torch.Generator, loop: _Loop) -> tuple:
    """The state at the end of a complete epoch (loop scalars shallow: tensors are replaced,
    never changed in place; the history by its length)."""
    scalars = {k: v for k, v in vars(loop).items() if k != "history"}
    return (_clone_state(work), nodes.detach().clone(), copy.deepcopy(opt.state_dict()),
            gen.get_state(), scalars, len(loop.history))


def _restore(good: tuple, work: Any, nodes: torch.Tensor, opt: torch.optim.Optimizer,
             gen: torch.Generator | None = None, loop: _Loop | None = None) -> None:
    """Roll back the model and optimiser (and, for an interruption, the RNG and loop state)."""
    work.load_state_dict(good[0])
    with torch.no_grad():
        nodes.copy_(good[1])
    opt.load_state_dict(copy.deepcopy(good[2]))
    if gen is not None:
        gen.set_state(good[3])
    if loop is not None:
        loop.load(dict(good[4]))
        del loop.history[good[5]:]


def _epoch(problem: WindowProblem, nodes: torch.nn.Parameter, opt: torch.optim.Optimizer,
           windows: Any, inputs: Any, gen: torch.Generator, cfg: FitConfig, loop: _Loop) -> float:
    W = windows.count
    if cfg.batch_windows is None or cfg.batch_windows >= W:
        batches = [(None, windows, inputs)]
    else:
        perm = torch.randperm(W, generator=gen)
        batches = []
        for i in range(0, W, cfg.batch_windows):
            sub = windows.subset(perm[i:i + cfg.batch_windows])
            batches.append((sub, sub, problem.inputs_for(sub)))
    total = 0.0
    params = [p for g in opt.param_groups for p in g["params"]]
    for k, (_, ws, inp) in enumerate(batches):
        opt.zero_grad(set_to_none=True)
        try:
            loss = problem.loss(nodes, ws, inp)
        except SolverError as exc:
            raise _StepFailure(str(exc), first=k == 0, solver=True) from None
        value = float(loss.detach())
        if not math.isfinite(value):
            raise _StepFailure(f"the loss became {value}", first=k == 0)
        if loop.stage_best < math.inf and value > _BLOWUP * max(loop.stage_best, 1e-12):
            raise _StepFailure(f"the loss jumped to {value:.3g} (best of this stage "
                               f"{loop.stage_best:.3g})", first=k == 0)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip else math.inf)
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
    if cfg.schedule != "plateau":
        return
    if metric < loop.plateau_best * (1 - 1e-4):
        loop.plateau_best, loop.plateau_wait = metric, 0
    else:
        loop.plateau_wait += 1
        if loop.plateau_wait >= cfg.plateau_patience:
            loop.lr_factor *= 0.5
            loop.plateau_wait = 0


def _track_best(loop: _Loop, work: Any, nodes: torch.Tensor, metric: float) -> None:
    if math.isnan(metric) or not metric < loop.best_key[0]:
        return
    loop.best_key = [metric, 0.0]
    loop.best_epoch = loop.epoch
    loop.best_model = _clone_state(work)
    loop.best_nodes = nodes.detach().clone()


def _row(loop: _Loop, stage: int, horizon: int, loss: float, full: float, val: float, lr: float,
         counter: StepCounter, started: float, event: str) -> dict[str, Any]:
    return {"epoch": loop.epoch, "stage": stage, "horizon": horizon, "loss": loss,
            "full_loss": full, "val_nrmse": val, "lr": lr, "nfe": counter.nfe,
            "time_s": time.perf_counter() - started, "event": event}


def _write(cfg: FitConfig, work: Any, nodes: torch.Tensor, opt: torch.optim.Optimizer,
           gen: torch.Generator, loop: _Loop, counter: StepCounter,
           warm_info: dict[str, Any]) -> None:
    save_checkpoint(cfg.checkpoint, {
        "config": cfg.to_dict(), "model": _clone_state(work), "nodes": nodes.detach().clone(),
        "optimizer": opt.state_dict(), "rng": gen.get_state(), "loop": loop.to_dict(),
        "nfe": counter.nfe, "warm_start": {k: (v if isinstance(v, (str, int, float)) else str(v))
                                           for k, v in warm_info.items()},
    })


def _install_sigterm() -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        return None


def _restore_sigterm(previous: Any) -> None:
    if previous is None or threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, previous)
