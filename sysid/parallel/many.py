"""``fit_many``: independent fits at once, results in task order, failures per task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, final

from sysid.errors import ConfigError
from sysid.parallel.executors import TaskFailure, run_tasks

__all__ = ["FitTask", "fit_many", "fit_task"]


@final
@dataclass(frozen=True, kw_only=True)
class FitTask:
    """One fit: the arguments of :func:`sysid.fit` and a name for messages.

    Attributes
    ----------
    model : sysid.models.Model
    data : xarray.Dataset
    config : FitConfig, optional
    validation : xarray.Dataset, optional
    label : str
        Name in progress lines and failures (default "task <index>").
    """

    model: Any
    data: Any
    config: Any = None
    validation: Any = None
    label: str = ""


def own_checkpoint(config: Any, tag: str) -> Any:
    """``config`` with its checkpoint file (if any) renamed for one of many fits: ``fit.pt`` ->
    ``fit.member_003.pt``, so fits that run at once never write the same file."""
    import dataclasses
    from pathlib import Path

    if config is None or config.checkpoint.path is None:
        return config
    path = Path(config.checkpoint.path)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)
    renamed = str(path.with_name(f"{path.stem}.{safe}{path.suffix}"))
    return dataclasses.replace(config, checkpoint=dataclasses.replace(config.checkpoint,
                                                                      path=renamed))


def fit_task(task: FitTask) -> Any:
    """Run one :class:`FitTask` (the worker side of :func:`fit_many`)."""
    from sysid.training import fit

    return fit(task.model, task.data, task.config, validation=task.validation)


def as_tasks(tasks: Sequence[Any], where: str = "fit_many") -> list[FitTask]:
    """Normalise ``(model, data[, config])`` tuples and :class:`FitTask` objects."""
    import xarray as xr

    from sysid.models import Model
    from sysid.training import FitConfig

    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
        raise ConfigError(f"{where}: tasks must be a list of (model, data, config) tuples or "
                          f"FitTask objects; got {type(tasks).__name__}.")
    out = []
    for i, task in enumerate(tasks):
        if isinstance(task, tuple):
            if not 2 <= len(task) <= 3:
                raise ConfigError(f"{where}: task {i} is a tuple of {len(task)} items; give "
                                  f"(model, data) or (model, data, config).")
            task = FitTask(model=task[0], data=task[1], config=task[2] if len(task) == 3 else None)
        if not isinstance(task, FitTask):
            raise ConfigError(f"{where}: task {i} must be a (model, data, config) tuple or a "
                              f"FitTask; got {type(task).__name__}.")
        if not isinstance(task.model, Model):
            raise ConfigError(f"{where}: task {i}: the model must be a sysid.models.Model; got "
                              f"{type(task.model).__name__}.")
        if not isinstance(task.data, xr.Dataset):
            raise ConfigError(f"{where}: task {i}: the data must be an xarray.Dataset in the sysid "
                              f"schema; got {type(task.data).__name__}.")
        if task.config is not None and not isinstance(task.config, FitConfig):
            raise ConfigError(f"{where}: task {i}: the config must be a FitConfig or None; got "
                              f"{type(task.config).__name__}.")
        out.append(task)
    return out


def fit_many(tasks: Sequence[Any], executor: Any = None, *, progress: bool = True,
             callback: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Run independent fits at once; results in task order, a failure never loses the others.

    Parameters
    ----------
    tasks : sequence of (model, data, config) tuples or :class:`FitTask`
        The fits (``config`` may be left out for the defaults).
    executor : optional
        ``None``: local worker processes, one per core, one torch thread each. Or any
        :class:`concurrent.futures.Executor` (:class:`~sysid.parallel.LocalPool`,
        :class:`~sysid.parallel.SerialExecutor`, ...), a Dask ``distributed.Client``, or a Dask
        scheduler address such as ``"tcp://host:8786"`` (optional extra ``sysid[parallel]``).
    progress : bool
        A progress bar over the tasks (off when not a terminal; the fits' own bars are off).
    callback : callable, optional
        ``callback(index, result)`` in this process as each task comes back (save finished fits
        as they arrive, print a line per task).

    Returns
    -------
    list
        One entry per task: its :class:`~sysid.training.FitResult`, or a :class:`TaskFailure`
        (error type, message, worker traceback) when it raised or its worker died.

    Raises
    ------
    sysid.parallel.Interrupted
        On Ctrl-C: tasks not started are cancelled, running fits stop at their next step and
        keep their best model; ``.results`` holds everything that came back.

    Notes
    -----
    The same seeds give the same results as running the fits one after another in one process
    with one torch thread, bit for bit in float64 (each fit is deterministic given its inputs and
    runs alone in its worker).

    Examples
    --------
    >>> import sysid, sysid.models
    >>> from sysid.training import FitConfig
    >>> data = sysid.datasets.load("bod").rename(demand="y")
    >>> model = sysid.models.physics("first_order_kinetics", values={"A": 10.0, "k": 0.2})
    >>> tasks = [(model, data, FitConfig(epochs=5, seed=s, progress=False)) for s in range(2)]
    >>> results = sysid.fit_many(tasks, sysid.parallel.SerialExecutor(), progress=False)
    >>> [r.stopped_reason for r in results]
    ['completed', 'completed']
    """
    items = as_tasks(tasks)
    labels = [t.label or f"task {i}" for i, t in enumerate(items)]
    return run_tasks(fit_task, items, executor=executor, labels=labels, progress=progress,
                     callback=callback, desc="fits")


def failures(results: Sequence[Any]) -> list[TaskFailure]:
    """The :class:`TaskFailure` entries of a result list."""
    return [r for r in results if isinstance(r, TaskFailure)]
