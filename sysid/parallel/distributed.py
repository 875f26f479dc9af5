"""One fit across processes: data-parallel training with ``torch.distributed`` (gloo on CPU).

Start it with ``torchrun`` (``sysid fit ... --nproc N`` does that for you)::

    torchrun --standalone --nproc-per-node 2 my_fit.py         # one machine
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-endpoint HOST:29500 my_fit.py   # two machines

where ``my_fit.py`` calls :func:`fit_distributed` (every process loads the same data and builds the
same model). What is split: every optimiser step integrates the window batch, and the windows are
cut into one contiguous share per process (windows are ordered by run, so each process integrates
a block of runs). Every process holds the whole model and the whole table of window start states;
the predictions are gathered so each process evaluates the same loss on the whole batch, and the
gradients are averaged with ``all_reduce`` before the step, so all processes take the same step
(the same loss curve as one process on the same global batch, up to the order of floating-point
sums). Only the integration, the expensive part, is divided. Process 0 writes the checkpoints and
the progress bar.

How the gradient comes out right: process ``r`` integrates its share ``s_r`` of the windows; the
gathered predictions feed the same loss ``L`` on every process. Backward through the gather hands
each process ``P * dL/d(its share)`` (``P`` processes), so after backward process ``r`` holds
``P g_r + d`` where ``g_r`` is the gradient through its own share and ``d`` the part that does not
go through the integration (the continuity and hybrid penalties, identical on every process).
The average over processes is ``sum_r g_r + d``: the single-process gradient. The average is taken
by a callback queued on torch's autograd engine (as ``DistributedDataParallel`` does), after every
backward pass through the gathered predictions. The joint least-squares refinement after the
first-order stage (:mod:`sysid.estimation`) does not go through the window problem: every process
runs it whole, on the same numbers, and ends at the same point.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, final

import torch
import torch.distributed as dist

from sysid.errors import ConfigError, SolverError

__all__ = ["DataParallel", "fit_distributed", "torchrun_command", "TORCHRUN_ENV"]

# set by `sysid fit --nproc` for the processes it starts (so only those act as ranks)
TORCHRUN_ENV = "SYSID_TORCHRUN"


@final
class DataParallel:
    """Splits each window batch across the processes of the default ``torch.distributed`` group.

    Passed to :func:`sysid.training.fit` as ``data_parallel=``; the fit calls :meth:`attach` on
    its window problem. Every process must run the same fit on the same data and model.
    """

    def __init__(self) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise ConfigError("DataParallel: torch.distributed is not initialised; start the "
                              "processes with torchrun and call sysid.parallel.fit_distributed.")
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self._params: list[torch.Tensor] = []
        self._nodes: torch.Tensor | None = None
        self._queued = False
        self._inputs: dict[int, tuple[Any, Any]] = {}

    def attach(self, problem: Any) -> None:
        """Make ``problem.predict`` integrate this process's share of the windows and gather the
        rest; start every process from process 0's weights."""
        self._params = [p for p in problem.rhs.parameters() if p.requires_grad]
        with torch.no_grad():
            for p in problem.rhs.parameters():
                dist.broadcast(p.data, src=0)
        original = problem.predict

        def predict(nodes: torch.Tensor, windows: Any, inputs: Any = None) -> torch.Tensor:
            return self._predict(original, problem, nodes, windows, inputs)

        problem.predict = predict

    def _share(self, count: int) -> tuple[int, int]:
        return self.rank * count // self.world, (self.rank + 1) * count // self.world

    def _local_inputs(self, problem: Any, windows: Any, sub: Any) -> Any:
        key = id(windows)
        hit = self._inputs.get(key)
        if hit is None or hit[0] is not windows:
            if len(self._inputs) > 8:
                self._inputs.clear()
            hit = (windows, problem.inputs_for(sub))
            self._inputs[key] = hit
        return hit[1]

    def _predict(self, original: Any, problem: Any, nodes: torch.Tensor, windows: Any,
                 inputs: Any) -> torch.Tensor:
        count = windows.count
        if count < self.world:  # too few windows to share: every process integrates all
            return original(nodes, windows, inputs)
        lo, hi = self._share(count)
        sub = windows.subset(torch.arange(lo, hi))
        sub_inputs = self._local_inputs(problem, windows, sub) if inputs is not None else None
        failure: SolverError | None = None
        try:
            local = original(nodes, sub, sub_inputs)
        except SolverError as exc:
            failure, local = exc, None
        flag = torch.tensor([0.0 if failure is None else 1.0 + self.rank])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # every process learns of any failure
        if float(flag) > 0:
            raise failure if failure is not None else SolverError(
                f"the integration failed on process {int(float(flag)) - 1} of {self.world}")
        self._nodes = nodes if nodes.requires_grad else None
        return _Gather.apply(local, self, count, lo, hi)

    def _sync(self) -> None:
        """Average the gradients over processes (runs once at the end of each backward pass)."""
        self._queued = False
        params = list(self._params)
        if self._nodes is not None:
            params.append(self._nodes)
        has = torch.tensor([0.0 if p.grad is None else 1.0 for p in params])
        dist.all_reduce(has, op=dist.ReduceOp.MAX)
        used = [p for p, h in zip(params, has.tolist()) if h > 0]
        if not used:
            return
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in used])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world
        offset = 0
        for p in used:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n


class _Gather(torch.autograd.Function):
    """All processes' shares -> the whole batch; backward: ``P x`` this process's slice, and the
    gradient average queued for the end of the backward pass."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor, dp: DataParallel, count: int, lo: int,
                hi: int) -> torch.Tensor:
        ctx.dp, ctx.lo, ctx.hi = dp, lo, hi
        sizes = [(r + 1) * count // dp.world - r * count // dp.world for r in range(dp.world)]
        width = max(sizes)
        padded = local.new_zeros((width, *local.shape[1:]))
        padded[: hi - lo] = local
        pieces = [torch.empty_like(padded) for _ in range(dp.world)]
        dist.all_gather(pieces, padded.contiguous())
        return torch.cat([piece[:n] for piece, n in zip(pieces, sizes)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        dp = ctx.dp
        if not dp._queued:
            dp._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(dp._sync)
        return grad[ctx.lo:ctx.hi] * dp.world, None, None, None, None


def _without_checkpoint(config: Any) -> Any:
    """The config for processes other than 0: no checkpoint file, no progress bar."""
    return dataclasses.replace(config, progress=False,
                               checkpoint=dataclasses.replace(config.checkpoint, path=None))


def fit_distributed(model: Any, data: Any, config: Any = None, *, validation: Any = None,
                    resume_from: str | None = None, timeout_s: float = 600.0) -> Any:
    """Fit one model with every process of a ``torchrun`` job sharing each window batch.

    Call it in every process with the same model, data and config (e.g. a script started with
    ``torchrun --standalone --nproc-per-node 2 script.py``). It initialises the gloo process
    group from torchrun's environment if that was not done, and runs :func:`sysid.fit` with the
    batches split across processes (see the module docstring). Outside torchrun (one process)
    it is :func:`sysid.fit`.

    Parameters
    ----------
    model, data, config, validation, resume_from
        As :func:`sysid.fit`. Checkpoints are written by process 0 only.
    timeout_s : float
        How long a process waits for the others at a collective step before giving up (gloo).

    Returns
    -------
    FitResult
        The same on every process (process 0's is the one to save).
    """
    from sysid.training import FitConfig, fit

    config = config if config is not None else FitConfig()
    if not dist.is_initialized():
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return fit(model, data, config, validation=validation, resume_from=resume_from)
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    if dist.get_world_size() == 1:
        return fit(model, data, config, validation=validation, resume_from=resume_from)
    if dist.get_rank() != 0:
        config = _without_checkpoint(config)
    return fit(model, data, config, validation=validation, resume_from=resume_from,
               data_parallel=DataParallel())


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The command that runs ``python -m sysid ARGS`` in ``nproc`` local processes (torchrun,
    standalone rendezvous, with this interpreter)."""
    import sys

    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"--nproc must be an integer >= 1; got {nproc!r}.")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "sysid", *args]
