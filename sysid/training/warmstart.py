"""Derivative-based warm start: smoothed finite differences, then regression of the vector field.

Before any trajectory is integrated, each measured state is smoothed by local polynomial fits
(:mod:`sysid.data.smoothing`), which gives the state, its first and its second time derivative
at every sample. The vector field is then fitted to
``f(t, x, u) ~ dx/dt`` by least squares over all samples: cheap (one field evaluation per sample
and step, no solver) and, for physics and hybrid models, a direct least-squares estimate of the
parameters that lands the trajectory fit close to its optimum. Adam (then L-BFGS for fields of
few parameters), or full-batch L-BFGS, stopped when the objective levels off
(``WarmStart.plateau``). Every evaluation runs over pieces of :data:`CHUNK_ROWS` rows with
``max_time``, Ctrl-C and SIGTERM checked between them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import final

import torch
from torch import nn
from torch.optim.adam import adam as adam_update

from sysid import budget as time_budget
from sysid.data.smoothing import local_polynomial, smooth_runs
from sysid.training.eager import eager

__all__ = ["local_polynomial", "smooth_runs", "regress_derivatives"]  # the first two re-exported

#: Rows per piece of one objective evaluation (the budget is checked between pieces; at 5 million
#: rows one full evaluation of the default network took ~10 s, a piece ~0.15 s).
CHUNK_ROWS = 65_536
#: L-BFGS iterations per round of the "lbfgs" warm start (``WarmStart.plateau`` is checked after
#: each round).
LBFGS_ROUND = 10
#: Adam steps between two plateau checks of the warm start (``WarmStart.plateau``).
ADAM_ROUND = 25


def regress_derivatives(rhs: nn.Module, t: torch.Tensor, z: torch.Tensor, u: torch.Tensor | None,
                        dz: torch.Tensor, *, epochs: int, lr: float,
                        parameters: list[nn.Parameter], use_lbfgs: bool,
                        penalty: Callable[[], torch.Tensor] | None = None,
                        method: str = "adam", plateau: float = 0.0,
                        chunk_rows: int | None = None) -> dict[str, float]:
    """Fit the scaled field ``rhs(t, z, u)`` to scaled derivatives ``dz`` by least squares.

    Parameters
    ----------
    rhs : nn.Module
        The field in scaled coordinates (see :class:`~sysid.training.loss.ScaledRhs`).
    t : Tensor (M,); z : Tensor (M, S); u : Tensor (M, I) or None
        Samples (smoothed states) where every state is known.
    dz : Tensor (M, S)
        Smoothed derivatives of the scaled states (per time unit).
    epochs, lr : int, float
        ``method="adam"``: Adam steps and learning rate. ``method="lbfgs"``: the most
        objective-and-gradient evaluations (``lr`` unused).
    parameters : list of nn.Parameter
        What to fit (the field's trainable tensors).
    use_lbfgs : bool
        ``method="adam"``: finish with L-BFGS (few parameters: physics and small hybrid models).
    penalty : callable, optional
        An extra term added to the objective (the hybrid models' neural penalty).
    method : {"adam", "lbfgs"}
        "lbfgs": full-batch L-BFGS with a strong Wolfe line search from the start, in rounds of
        :data:`LBFGS_ROUND` iterations (it reaches the default network's 300-Adam-step
        objective in ~50 evaluations).
    plateau : float
        Stop when :data:`ADAM_ROUND` Adam steps (or one L-BFGS round) lower the best objective
        by less than this share of it (0: never).
    chunk_rows : int, optional
        Rows per piece of one evaluation (default :data:`CHUNK_ROWS`): the gradient is
        accumulated piece by piece (the same full-batch objective), and ``max_time``, Ctrl-C and
        SIGTERM are checked between pieces, so a budget holds inside one evaluation over
        millions of rows.

    Returns
    -------
    dict
        ``{"loss_before", "loss_after", "samples", "evaluations"}`` (plus ``"note"`` when the
        time budget ended it); the parameters are left at the best state found (never worse than
        the start). A spent ``max_time`` keeps that best state; Ctrl-C propagates (the caller
        restores the model as given).
    """
    obj = _Objective(rhs, t, z, u, dz, penalty, parameters,
                     CHUNK_ROWS if chunk_rows is None else chunk_rows)
    try:
        start = obj.value()
    except time_budget.BudgetExceeded:
        return {"loss_before": math.nan, "loss_after": math.nan, "samples": float(len(t)),
                "evaluations": 0.0, "note": "max_time spent in the warm start"}
    info = {"loss_before": start, "loss_after": start, "samples": float(len(t))}
    if not math.isfinite(start):
        return {**info, "evaluations": 0.0}
    obj.best, obj.best_state = start, _snapshot(parameters)
    try:
        if method == "lbfgs":
            _lbfgs_rounds(obj, epochs, plateau)
        else:
            _adam(obj, epochs, lr, plateau)
            last = obj.value()  # after the last step
            if math.isfinite(last) and last < obj.best:
                obj.best, obj.best_state = last, _snapshot(parameters, obj.best_state)
            _restore(parameters, obj.best_state)
            if use_lbfgs:
                _lbfgs(obj, max_iter=100)
    except time_budget.BudgetExceeded:  # max_time: the best state so far is the result
        info["note"] = "max_time spent in the warm start"
    _restore(parameters, obj.best_state)
    return {**info, "loss_after": obj.best, "evaluations": float(obj.evaluations)}


@final
class _Objective:
    """The weighted least-squares objective, evaluated over pieces of ``chunk_rows`` rows with a
    budget check before each; remembers the best parameters it has seen."""

    def __init__(self, rhs: nn.Module, t: torch.Tensor, z: torch.Tensor, u: torch.Tensor | None,
                 dz: torch.Tensor, penalty: Callable[[], torch.Tensor] | None,
                 parameters: list[nn.Parameter], chunk_rows: int) -> None:
        self.rhs, self.penalty, self.parameters = rhs, penalty, parameters
        self.weight = 1.0 / dz.pow(2).mean(dim=0).clamp(min=1e-12)
        m = len(t)
        self.count = m * dz.shape[-1]  # the mean is over rows and states
        step = max(int(chunk_rows), 1)
        self.pieces = [(t[i:i + step], z[i:i + step], None if u is None else u[i:i + step],
                        dz[i:i + step]) for i in range(0, m, step)]
        self.evaluations = 0
        self.best = math.inf
        self.best_state: list[torch.Tensor] = []
        self.written = _WrittenBackward.of(rhs, self.pieces, self.weight / self.count, parameters,
                                           penalty)

    def _piece(self, t, z, u, dz) -> torch.Tensor:
        folded = getattr(self.rhs, "folded", None)  # a ScaledRhs: its networks evaluated on z
        with folded() if folded is not None else contextlib.nullcontext():
            err = self.rhs(t, z, u) - dz
        if len(self.pieces) == 1:
            return (err.pow(2) * self.weight).mean()
        return (err.pow(2) * self.weight).sum() / self.count

    def value(self) -> float:
        """The objective at the current parameters, without gradients."""
        total = 0.0
        with torch.no_grad():
            for piece in self.pieces:
                time_budget.check("warm start")
                total += float(self._piece(*piece))
            if self.penalty is not None:
                total += float(self.penalty())
        return total

    def gradient(self) -> float:
        """The objective, its gradient accumulated into the parameters' ``.grad`` (set to zero
        first); a finite value below the best seen is remembered with its parameters."""
        for p in self.parameters:
            p.grad = None
        if self.written is not None:
            total = self.written.gradient()
        else:
            total = 0.0
            for piece in self.pieces:
                time_budget.check("warm start")
                value = self._piece(*piece)
                value.backward()
                total += float(value.detach())
            if self.penalty is not None:
                value = self.penalty()
                value.backward()
                total += float(value.detach())
        self.evaluations += 1
        if math.isfinite(total) and total < self.best:
            self.best, self.best_state = total, _snapshot(self.parameters, self.best_state)
        return total


@final
class _WrittenBackward:
    """The objective and its gradient for a network evaluated on the scaled states directly
    (:meth:`~sysid.training.loss.ScaledRhs.direct_network`), without autograd: the network's
    backward pass and the transpose of its layers' folding written out
    (``NeuralField._squared_error_gradient``, ``NeuralField._layers_transpose``). Every
    warm-start step of a network is one forward and backward pass over all samples, and most
    of its time was the dispatch of ~90 small operations and their autograd records, not
    arithmetic. The same objective and gradient to rounding (``tests/test_training_warmstart.py``).
    """

    def __init__(self, network: nn.Module, unit: torch.Tensor, args: list[torch.Tensor],
                 targets: list[torch.Tensor], coef: torch.Tensor,
                 parameters: list[nn.Parameter]) -> None:
        self.network, self.unit, self.args, self.targets, self.coef = (
            network, unit, args, targets, coef)
        with torch.no_grad():
            self.factors = network._fold_factors(unit)  # the scalings do not change meanwhile
        # the gradient of _layers' [w0, b0, w1, ...] goes to the parameters fitted
        order = [p for layer in network.layers for p in (layer.weight, layer.bias)]
        fitted = {id(p) for p in parameters}
        self.into = [(i, p) for i, p in enumerate(order) if id(p) in fitted]

    @classmethod
    def of(cls, rhs: nn.Module, pieces: list, coef: torch.Tensor, parameters: list[nn.Parameter],
           penalty: Callable[[], torch.Tensor] | None) -> _WrittenBackward | None:
        """The written-out gradient where it applies (a network of the supported activations
        whose layers hold every fitted parameter, no penalty); else None (autograd)."""
        direct = getattr(rhs, "direct_network", None)
        network = direct() if direct is not None and penalty is None else None
        if network is None or not network._written_backward:
            return None
        own = {id(p) for p in network.layers.parameters()}
        if not all(id(p) in own for p in parameters):
            return None
        with torch.no_grad():
            args = [network._arguments(t, z, u) for t, z, u, _ in pieces]
        return cls(network, rhs.scale, args, [dz for *_, dz in pieces], coef, parameters)

    def gradient(self) -> float:
        """The objective; its gradient written into the fitted parameters' ``.grad``."""
        net = self.network
        total, grads = 0.0, None
        with torch.no_grad():
            layers = net._layers(self.unit, self.factors)
            for args, target in zip(self.args, self.targets):
                time_budget.check("warm start")
                value, piece = net._squared_error_gradient(layers, args, target, self.coef)
                total += float(value)
                grads = piece if grads is None else [g.add_(p) for g, p in zip(grads, piece)]
            grads = net._layers_transpose(grads, self.factors)
        for i, p in self.into:
            p.grad = grads[i]
        return total


def _snapshot(parameters: list[nn.Parameter],
              into: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """A copy of the parameters (into ``into`` when given: one multi-tensor copy, no new tensors)."""
    if not into:
        return [p.detach().clone() for p in parameters]
    with torch.no_grad():
        torch._foreach_copy_(into, [p.detach() for p in parameters])
    return into


def _restore(parameters: list[nn.Parameter], state: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for p, s in zip(parameters, state):
            p.copy_(s)


def _adam(obj: _Objective, epochs: int, lr: float, plateau: float) -> None:
    """Adam with cosine decay to a tenth (the best state is kept by ``obj``); stops at a
    non-finite objective, or when :data:`ADAM_ROUND` steps lowered the best objective by less
    than ``plateau`` of it."""
    # torch.optim.Adam's own update (its defaults), fused: one kernel for all tensors (~3x
    # cheaper than the multi-tensor "foreach" update on a CPU for the default network), called
    # through torch's functional ``adam`` with the state kept here: ``Adam.step`` around the
    # same call took 56 against 30 us for the default network (timed in a loop of calls)
    params = obj.parameters
    with torch.no_grad():
        avg = [torch.zeros_like(p) for p in params]
        avg_sq = [torch.zeros_like(p) for p in params]
        steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in params]
    mark, rate = obj.best, lr
    for step in range(epochs):
        value = obj.gradient()
        if not math.isfinite(value):
            _restore(params, obj.best_state)
            break
        if plateau > 0 and step > 0 and step % ADAM_ROUND == 0:
            if mark - obj.best < plateau * abs(mark):
                break
            mark = obj.best
        live = [i for i, p in enumerate(params) if p.grad is not None]
        with torch.no_grad():
            adam_update([params[i] for i in live], [params[i].grad for i in live],
                        [avg[i] for i in live], [avg_sq[i] for i in live], [],
                        [steps[i] for i in live], fused=True, amsgrad=False, beta1=0.9,
                        beta2=0.999, lr=rate, weight_decay=0.0, eps=1e-8, maximize=False)
        rate = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step + 1) / epochs)))


def _lbfgs(obj: _Objective, *, max_iter: int, max_eval: int | None = None,
           opt: torch.optim.LBFGS | None = None) -> torch.optim.LBFGS:
    """One L-BFGS run of at most ``max_iter`` iterations from the current parameters (continuing
    ``opt``'s history when given); a failure (a non-finite objective in the line search) leaves
    the best state to ``obj``."""
    if opt is None:
        opt = eager(torch.optim.LBFGS)(obj.parameters, lr=1.0, max_iter=max_iter, max_eval=max_eval,
                                line_search_fn="strong_wolfe")
    else:
        for g in opt.param_groups:
            g["max_iter"], g["max_eval"] = max_iter, max_eval or max_iter * 5 // 4

    def closure() -> torch.Tensor:
        value = obj.gradient()
        return torch.tensor(value if math.isfinite(value) else math.inf)

    try:
        opt.step(closure)
    except RuntimeError as exc:
        if isinstance(exc, time_budget.BudgetExceeded):
            raise
        _restore(obj.parameters, obj.best_state)
    return opt


def _lbfgs_rounds(obj: _Objective, evaluations: int, plateau: float) -> None:
    """L-BFGS in rounds of :data:`LBFGS_ROUND` iterations until a round lowers the best
    objective by less than ``plateau`` of it, a round makes no progress, or ``evaluations``
    objective evaluations are spent."""
    opt = None
    while obj.evaluations < evaluations:
        before, used = obj.best, obj.evaluations
        left = evaluations - obj.evaluations
        opt = _lbfgs(obj, max_iter=LBFGS_ROUND, max_eval=min(left, LBFGS_ROUND * 5 // 4), opt=opt)
        if obj.evaluations == used or not math.isfinite(obj.best):
            break
        if before - obj.best < plateau * abs(before):
            break
        # a failed line search leaves non-finite parameters behind: go on from the best state
        if not all(bool(torch.isfinite(p).all()) for p in obj.parameters):
            _restore(obj.parameters, obj.best_state)
            break
