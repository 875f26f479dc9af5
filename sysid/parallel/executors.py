"""Where many independent tasks run: a local process pool, any ``concurrent.futures`` executor,
or Dask.

Every engine is used through the :class:`concurrent.futures.Executor` interface, so the same call
runs on a laptop or a cluster and only the executor changes:

- ``None`` (default): a :class:`LocalPool` with one worker process per core (one torch thread
  each), closed when the call returns;
- any :class:`concurrent.futures.Executor` (a :class:`LocalPool` kept open across calls,
  :class:`SerialExecutor` for debugging, a ``ThreadPoolExecutor``, ...);
- a Dask ``distributed.Client`` (through ``client.get_executor()``), or a scheduler address
  ``"tcp://host:8786"`` (a client is opened and closed around the call). Dask is the optional
  extra ``pip install 'sysid[parallel]'``.

Why :class:`LocalPool` and not :class:`concurrent.futures.ProcessPoolExecutor` directly: when one
worker of the standard pool dies (killed, out of memory, a crash in native code) the pool is
"broken" and every pending task fails with it. :class:`LocalPool` keeps one single-worker
standard pool per worker ("lane"), so a death is charged to exactly the task that lane ran; the
lane is replaced and the other tasks go on.

Results come back in task order; a task that fails leaves a :class:`TaskFailure` in its place
(one bad task never loses the others). Ctrl-C cancels the tasks not started, asks the running
fits to stop (SIGTERM: a fit keeps its best model and returns "interrupted"), and raises
:class:`Interrupted`, which carries every result that came back.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any, final

from sysid.errors import ConfigError, SysidError
from sysid.parallel._worker import TaskFailure, init_worker, run_task, worker_pid

__all__ = ["LocalPool", "SerialExecutor", "WorkerDied", "Interrupted", "TaskFailure",
           "run_tasks", "default_workers", "PARALLEL_EXTRA_HINT"]

PARALLEL_EXTRA_HINT = "install the optional extra: pip install 'sysid[parallel]'"
# seconds the running fits get to stop after Ctrl-C before their workers are killed
_GRACE_S = 30.0
_PRELOAD = ["sysid.parallel._worker", "torch", "sysid.training"]


class WorkerDied(SysidError, RuntimeError):
    """The worker process running a task died (killed by a signal, out of memory, a crash)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a batch of tasks.

    Attributes
    ----------
    results : list
        One entry per task, in task order: the result of every task that came back (fits that
        were running when Ctrl-C came stop early and come back with ``stopped_reason ==
        "interrupted"``), a :class:`TaskFailure` with ``error_type == "Interrupted"`` for the rest.
    partial : object or None
        What the interrupted call builds from those results (an :class:`~sysid.parallel.Ensemble`
        or :class:`~sysid.parallel.SweepResult` of the finished fits), when it has one.
    """

    def __init__(self, results: list[Any], partial: Any = None) -> None:
        super().__init__(f"interrupted; {sum(not isinstance(r, TaskFailure) for r in results)} of "
                         f"{len(results)} tasks came back")
        self.results = results
        self.partial = partial


def default_workers() -> int:
    """The number of cores this process may use (``os.sched_getaffinity`` where it exists)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


@final
class SerialExecutor(cf.Executor):
    """Runs each call in the calling process, at once, when it is submitted.

    The reference for "same seeds, same results as serial" and a way to debug a task with
    breakpoints. Ctrl-C stops the batch after the running fit has stopped.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Run ``fn(*args, **kwargs)`` now; the returned future is already done."""
        future: cf.Future = cf.Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - delivered through the future, as any executor does
            future.set_exception(exc)
        return future


class _Lane:
    """One worker process: a single-worker standard process pool and the call it runs."""

    def __init__(self, ctx: Any, threads: int) -> None:
        self.pool = cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=init_worker,
                                           initargs=(threads,))
        self.pid: int | None = None
        self.current: cf.Future | None = None

        def remember(f: cf.Future) -> None:
            if not f.cancelled() and f.exception() is None:
                self.pid = int(f.result())

        self.pool.submit(worker_pid).add_done_callback(remember)


@final
class LocalPool(cf.Executor):
    """A process pool on this machine that survives the death of a worker.

    Parameters
    ----------
    workers : int, optional
        Worker processes (default: the cores this process may use).
    threads_per_worker : int
        torch threads in each worker (default 1: fits of small models do not gain from more, and
        one thread per process never stalls on a shared machine).
    start_method : {"forkserver", "spawn"}, optional
        How workers start (default "forkserver" where the platform has it, else "spawn"; never
        "fork", which is unsafe with threads). The fork server imports torch and sysid once, so a
        new worker starts in milliseconds.

    Notes
    -----
    Tasks and their results travel between processes with :mod:`pickle` (functions by their
    importable name, as with Dask): define physics functions at module level in an importable
    module (with "spawn", a script's functions too, under ``if __name__ == "__main__":``).
    """

    def __init__(self, workers: int | None = None, *, threads_per_worker: int = 1,
                 start_method: str | None = None) -> None:
        workers = default_workers() if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"LocalPool: workers must be an integer >= 1; got {workers!r}.")
        if (isinstance(threads_per_worker, bool) or not isinstance(threads_per_worker, int)
                or threads_per_worker < 1):
            raise ConfigError(f"LocalPool: threads_per_worker must be an integer >= 1; got "
                              f"{threads_per_worker!r}.")
        methods = multiprocessing.get_all_start_methods()
        if start_method is None:
            start_method = "forkserver" if "forkserver" in methods else "spawn"
        if start_method not in ("forkserver", "spawn") or start_method not in methods:
            raise ConfigError(f"LocalPool: start_method must be one of "
                              f"{[m for m in ('forkserver', 'spawn') if m in methods]} on this "
                              f"platform; got {start_method!r} ('fork' is unsafe with threads).")
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(_PRELOAD)
        self._threads = threads_per_worker
        self._lock = threading.RLock()
        self._queue: collections.deque = collections.deque()
        self._lanes = [_Lane(self._ctx, threads_per_worker) for _ in range(workers)]
        self._closed = False

    @property
    def workers(self) -> int:
        """The number of worker processes."""
        return len(self._lanes)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Queue ``fn(*args, **kwargs)``; it runs in the first free worker."""
        with self._lock:
            if self._closed:
                raise RuntimeError("LocalPool: cannot submit after shutdown().")
            future: cf.Future = cf.Future()
            self._queue.append((future, fn, args, kwargs))
            self._dispatch()
        return future

    def _dispatch(self) -> None:
        with self._lock:
            for lane in self._lanes:
                if lane.current is not None:
                    continue
                while self._queue:
                    future, fn, args, kwargs = self._queue.popleft()
                    if not future.set_running_or_notify_cancel():
                        continue  # cancelled while queued
                    lane.current = future
                    inner = lane.pool.submit(fn, *args, **kwargs)
                    inner.add_done_callback(lambda f, lane=lane, outer=future:
                                            self._finished(lane, outer, f))
                    break

    def _finished(self, lane: _Lane, outer: cf.Future, inner: cf.Future) -> None:
        exc = inner.exception() if not inner.cancelled() else cf.CancelledError()
        with self._lock:
            if isinstance(exc, BrokenProcessPool):
                if lane.pid is None:  # it never started: usually a script without a main guard
                    exc = WorkerDied(
                        "the worker process could not start (see the error it printed above). A "
                        "script that uses worker processes must run its code under "
                        "'if __name__ == \"__main__\":', because each worker imports the script.")
                else:
                    exc = WorkerDied(f"the worker process (pid {lane.pid}) died while running this "
                                     f"task (killed by a signal, out of memory, a crash in "
                                     f"native code, or a function of the task that cannot be "
                                     f"imported there).")
                lane.pool.shutdown(wait=False)
                if not self._closed:
                    self._lanes[self._lanes.index(lane)] = _Lane(self._ctx, self._threads)
            lane.current = None
            if exc is not None:
                outer.set_exception(exc)
            else:
                outer.set_result(inner.result())
            if not self._closed:
                self._dispatch()

    def interrupt(self) -> None:
        """Cancel the queued calls and send SIGTERM to the workers running one (a fit then stops
        at its next step, keeps its best model and returns)."""
        with self._lock:
            while self._queue:
                self._queue.popleft()[0].cancel()
            for lane in self._lanes:
                if lane.current is not None and lane.pid is not None:
                    _signal(lane.pid, signal.SIGTERM)

    def kill(self) -> None:
        """Kill the workers still running a call (their calls fail with :class:`WorkerDied`)."""
        with self._lock:
            for lane in self._lanes:
                if lane.current is not None and lane.pid is not None:
                    _signal(lane.pid, signal.SIGKILL)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls and end the workers (see :meth:`concurrent.futures.Executor`)."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                while self._queue:
                    self._queue.popleft()[0].cancel()
            lanes = list(self._lanes)
        if wait:
            while True:
                with self._lock:
                    busy = [lane.current for lane in self._lanes if lane.current is not None]
                    queued = [item[0] for item in self._queue]
                if not busy and not queued:
                    break
                cf.wait(busy + queued, return_when=cf.FIRST_COMPLETED)
                with self._lock:
                    self._closed = False  # let queued calls reach the freed workers
                    self._dispatch()
                    self._closed = True
        for lane in lanes:
            lane.pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ----------------------------------------------------------------------------------------------
# running a batch


def _run_in_worker(fn: Callable, payload: Any, index: int, label: str) -> Any:
    """Worker side of :func:`run_tasks` (a module-level function, so the executor can send it)."""
    return run_task(fn, payload, index, label, worker=True)


def _is_dask_client(obj: Any) -> bool:
    if "distributed" not in sys.modules:
        return False
    from distributed import Client

    return isinstance(obj, Client)


def _connect(address: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(f"a Dask scheduler address ({address!r}) needs Dask's 'distributed' "
                          f"package, which is not installed; {PARALLEL_EXTRA_HINT}.") from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {address!r} ({exc}); start one "
                          f"with 'dask scheduler' and workers with 'dask worker {address}', or "
                          f"leave the scheduler out to use local processes.") from None


def _dask_slots(client: Any) -> Callable[[], int]:
    """Tasks in flight on a Dask cluster: one per worker thread (at least one). A task handed to
    a worker that is busy would be charged with that worker's death too (Dask counts every task
    a dead worker held), so no more are submitted than can run."""
    return lambda: max(1, sum(client.nthreads().values()))


def resolve_executor(executor: Any, n_tasks: int) -> tuple[cf.Executor, Callable[[], None],
                                                            Callable[[], int]]:
    """The executor to use, how to release it (closes only what this call opened), and how many
    tasks to keep in flight."""
    everything = lambda: n_tasks  # noqa: E731 - the executor queues them itself
    if executor is None:
        pool = LocalPool(max(1, min(default_workers(), n_tasks)))
        return pool, lambda: pool.shutdown(wait=True, cancel_futures=True), everything
    if isinstance(executor, str):
        client = _connect(executor)
        return client.get_executor(pure=False), client.close, _dask_slots(client)
    if _is_dask_client(executor):
        return executor.get_executor(pure=False), lambda: None, _dask_slots(executor)
    if isinstance(executor, SerialExecutor):
        return executor, lambda: None, lambda: 1
    if isinstance(executor, cf.Executor):
        return executor, lambda: None, everything
    raise ConfigError(
        f"executor must be None (local processes), a concurrent.futures.Executor (e.g. "
        f"sysid.parallel.LocalPool(4)), a dask distributed.Client or a scheduler address such "
        f"as 'tcp://host:8786'; got {type(executor).__name__}.")


def _failure_from(exc: BaseException, index: int, label: str) -> TaskFailure:
    if isinstance(exc, cf.CancelledError):
        return TaskFailure(index=index, label=label, error_type="Interrupted",
                           message="cancelled before it started")
    if isinstance(exc, BrokenProcessPool):
        return TaskFailure(index=index, label=label, error_type="BrokenProcessPool",
                           message=f"{exc} A worker of the standard process pool died, which "
                                   f"stops that whole pool; sysid.parallel.LocalPool loses only "
                                   f"the task whose worker died.")
    message = str(exc)
    if "pickle" in message.lower():  # the executor could not send the task to a worker
        message = (f"the task cannot be sent to a worker process: {message}. Define physics "
                   f"functions at module level in an importable module (not a lambda, a nested "
                   f"function or an interactive session's __main__).")
    return TaskFailure(index=index, label=label, error_type=type(exc).__name__, message=message)


def _interrupted(result: Any) -> bool:
    if isinstance(result, TaskFailure):
        return result.error_type == "Interrupted"
    return str(getattr(result, "stopped_reason", "")) == "interrupted"


def run_tasks(fn: Callable[[Any], Any], payloads: Sequence[Any], *, executor: Any = None,
              labels: Sequence[str] | None = None, progress: bool = True,
              callback: Callable[[int, Any], None] | None = None, desc: str = "tasks") -> list[Any]:
    """Run ``fn(payload)`` for every payload; results (or :class:`TaskFailure`) in payload order.

    Parameters
    ----------
    fn : callable
        An importable module-level function of one argument.
    payloads : sequence
        One argument per task (picklable).
    executor
        See the module docstring.
    labels : sequence of str, optional
        A name per task for messages (default "task 0", "task 1", ...).
    progress : bool
        A progress bar over tasks (tqdm; off when not a terminal or with ``TQDM_DISABLE=1``).
    callback : callable, optional
        ``callback(index, result)`` in this process as each task comes back (e.g. to save it).
    desc : str
        The progress bar's label.

    Raises
    ------
    Interrupted
        On Ctrl-C; ``.results`` holds what came back.
    """
    from tqdm.auto import tqdm

    n = len(payloads)
    labels = [f"task {i}" for i in range(n)] if labels is None else [str(s) for s in labels]
    results: list[Any] = [None] * n
    if n == 0:
        return results
    ex, release, slots = resolve_executor(executor, n)
    serial = isinstance(ex, SerialExecutor)
    pending: dict[cf.Future, int] = {}
    started = 0
    bar = tqdm(total=n, desc=desc, unit="task", disable=None if progress else True, leave=False)
    try:
        while started < n or pending:
            capacity = slots()
            while started < n and len(pending) < capacity:
                future = _submit(ex, fn, payloads[started], started, labels[started], serial)
                pending[future] = started
                started += 1
            done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for future in done:
                i = pending.pop(future)
                results[i] = _outcome(future, i, labels[i])
                bar.update(1)
                if callback is not None:
                    callback(i, results[i])
                if serial and _interrupted(results[i]):
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        _stop(ex, pending, results, labels, callback)
        for i in range(n):
            if results[i] is None:
                results[i] = TaskFailure(index=i, label=labels[i], error_type="Interrupted",
                                         message="not started: interrupted")
        raise Interrupted(results) from None
    finally:
        bar.close()
        release()
    return results


def _submit(ex: cf.Executor, fn: Callable, payload: Any, index: int, label: str,
            serial: bool) -> cf.Future:
    if serial:  # same process: no pickling, the caller's threads and progress settings
        return ex.submit(run_task, fn, payload, index, label, worker=False)
    return ex.submit(_run_in_worker, fn, payload, index, label)


def _outcome(future: cf.Future, index: int, label: str) -> Any:
    if future.cancelled():
        return _failure_from(cf.CancelledError(), index, label)
    exc = future.exception()
    if exc is not None:
        return _failure_from(exc, index, label)
    return future.result()


def _stop(ex: cf.Executor, pending: dict[cf.Future, int], results: list[Any],
          labels: Sequence[str], callback: Callable | None) -> None:
    """After Ctrl-C: cancel what has not started, let running fits stop, collect them."""
    for future in pending:
        future.cancel()
    if isinstance(ex, LocalPool):
        ex.interrupt()
    running = [f for f in pending if not f.cancelled()]
    deadline = time.monotonic() + _GRACE_S
    try:
        while running and time.monotonic() < deadline:
            done, _ = cf.wait(running, timeout=max(0.0, deadline - time.monotonic()),
                              return_when=cf.FIRST_COMPLETED)
            for future in done:
                running.remove(future)
                i = pending[future]
                results[i] = _outcome(future, i, labels[i])
                if callback is not None and not isinstance(results[i], TaskFailure):
                    callback(i, results[i])
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
        pass
    if isinstance(ex, LocalPool):
        ex.kill()
    for future in pending:
        i = pending[future]
        if results[i] is None or (isinstance(results[i], TaskFailure)
                                  and results[i].error_type in ("WorkerDied", "CancelledError")):
            results[i] = TaskFailure(index=i, label=labels[i], error_type="Interrupted",
                                     message="stopped by Ctrl-C before it finished")
