"""What runs inside a worker process (local pool or Dask worker): one task, its failure as a value.

Kept small and importable on its own: the local pool's fork server preloads it (with torch), so a
new worker starts in milliseconds. Functions here must be importable by name (Dask and the spawn
and forkserver start methods pickle functions by reference).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Any, final

__all__ = ["TaskFailure", "run_task", "init_worker", "worker_pid"]

# True while this process runs a task: SIGTERM then stops the task (a fit keeps its best model and
# returns "interrupted"); an idle worker that gets SIGTERM simply exits.
_BUSY = False


@final
@dataclass(frozen=True, kw_only=True)
class TaskFailure:
    """A task that did not produce a result; it stands in that task's place in the result list.

    Attributes
    ----------
    index : int
        Position of the task (0-based, in the order given).
    label : str
        The task's name (e.g. ``"member 3"``, ``"run B"``).
    error_type : str
        The exception's class name (``"ConfigError"``, ``"SolverError"``, ``"WorkerDied"``,
        ``"KilledWorker"``, ``"Interrupted"``, ...).
    message : str
        The exception's message.
    traceback : str
        The formatted traceback from the worker ("" when the worker died without one).
    worker : str
        Where it ran (process id or Dask worker address; "" if unknown).
    """

    index: int
    label: str
    error_type: str
    message: str
    traceback: str = ""
    worker: str = ""

    def __str__(self) -> str:
        where = f" on {self.worker}" if self.worker else ""
        name = f"task {self.index}"
        if self.label and self.label != name:
            name += f" ({self.label})"
        return f"{name} failed{where}: {self.error_type}: {self.message}"


def worker_pid() -> int:
    """This process's id (asked once by the local pool for each new worker)."""
    return os.getpid()


def _on_sigterm(signum: int, frame: Any) -> None:
    if _BUSY:
        raise KeyboardInterrupt
    os._exit(128 + signum)


def init_worker(threads: int) -> None:
    """Local-pool worker set-up: ``threads`` torch threads, no progress bars, signals.

    SIGINT (Ctrl-C reaches the whole process group) is ignored: the parent decides, and sends
    SIGTERM to the workers that run a task, which stops that fit cleanly.
    """
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    import torch

    torch.set_num_threads(threads)


def run_task(fn: Any, payload: Any, index: int, label: str, *, worker: bool = True) -> Any:
    """Call ``fn(payload)``; an exception comes back as a :class:`TaskFailure`, never raised.

    The failure is built here, in the worker, so an exception that cannot be pickled (or whose
    class the parent cannot import) is still reported with its type, message and traceback.
    ``worker=True`` (a worker process): one torch thread and no progress bars; ``False`` (the
    caller's own process, :class:`~sysid.parallel.SerialExecutor`): nothing is changed.
    """
    global _BUSY
    if worker:
        os.environ["TQDM_DISABLE"] = "1"
        import torch

        if "distributed" in sys.modules and torch.get_num_threads() != 1:
            torch.set_num_threads(1)  # a Dask worker: one torch thread per task thread
    where = _where()
    _BUSY = True
    try:
        return fn(payload)
    except KeyboardInterrupt:
        return TaskFailure(index=index, label=label, error_type="Interrupted",
                           message="stopped before it finished (Ctrl-C or SIGTERM)", worker=where)
    except Exception as exc:  # noqa: BLE001 - every failure becomes a value for its task
        return TaskFailure(index=index, label=label, error_type=type(exc).__name__,
                           message=str(exc), traceback=traceback.format_exc(), worker=where)
    finally:
        _BUSY = False


def _where() -> str:
    if "distributed" in sys.modules:  # inside a Dask worker (never imported by the local pool)
        try:
            from distributed import get_worker

            return str(get_worker().address)
        except ValueError:  # not in a Dask worker after all
            pass
    return f"pid {os.getpid()}"
