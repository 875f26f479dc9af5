"""fit_many on the local pool, on a Dask LocalCluster and serially: same results bit for bit,
failures per task (a raised error, a killed worker), Ctrl-C keeping what finished."""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest
import torch

import sysid
import sysid.models
from parallel_helpers import decay, decay_data, decay_or_die
from sysid.errors import ConfigError
from sysid.models import Parameter
from sysid.parallel import FitTask, Interrupted, LocalPool, SerialExecutor, TaskFailure, fit_many
from sysid.training import FitConfig, FitResult

CFG = FitConfig(epochs=12, dtype="float64", shooting={"horizons": (4,)}, warm_start={"epochs": 20},
                progress=False)


def _model(fn=decay, k=0.3):
    return sysid.models.physics(fn, {"k": Parameter(k, bounds=(0, 5), units="1/s")}, ["x"],
                                dtype=torch.float64)


def _tasks():
    data = decay_data()
    # different settings per task, so a mix-up of results between tasks would show
    return [(_model(), data, CFG), (_model(k=1.5), data, CFG),
            FitTask(model=_model(), data=data, config=FitConfig(
                epochs=8, optimizer={"lr": 0.05}, dtype="float64", shooting={"horizons": (4,)},
                progress=False), label="lr 0.05")]


def _same(a: FitResult, b: FitResult) -> None:
    """Bit for bit: the histories' losses, the parameters and every weight."""
    assert a.history["loss"].to_numpy().tobytes() == b.history["loss"].to_numpy().tobytes()
    assert a.parameters["value"].to_numpy().tobytes() == b.parameters["value"].to_numpy().tobytes()
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.fixture(scope="module")
def pool():
    with LocalPool(2) as p:
        yield p


@pytest.fixture(scope="module")
def serial_results():
    return [sysid.fit(t.model, t.data, t.config) if isinstance(t, FitTask) else sysid.fit(*t)
            for t in _tasks()]


def test_process_pool_gives_the_serial_results_bit_for_bit(pool, serial_results):
    results = fit_many(_tasks(), pool, progress=False)
    assert [type(r) for r in results] == [FitResult] * 3
    for a, b in zip(serial_results, results):
        _same(a, b)
    # the default executor (a pool opened and closed by the call) and the serial one agree too
    _same(fit_many(_tasks()[:1], progress=False)[0], serial_results[0])
    _same(fit_many(_tasks()[2:], SerialExecutor(), progress=False)[0], serial_results[2])


def test_a_failing_task_is_reported_and_the_others_finish(pool, serial_results):
    data = decay_data()
    wrong = sysid.models.neural(["y"], width=4, depth=1)  # the data has no state y
    results = fit_many([(_model(), data, CFG), (wrong, data, CFG)], pool, progress=False)
    _same(results[0], serial_results[0])
    failure = results[1]
    assert isinstance(failure, TaskFailure) and failure.index == 1
    assert failure.error_type in ("DataError", "ConfigError")
    assert "y" in failure.message and "Traceback" in failure.traceback
    assert failure.worker.startswith("pid ")


def test_a_killed_worker_is_reported_for_its_task_only(pool, serial_results):
    data = decay_data()
    tasks = [(_model(), data, CFG), (_model(decay_or_die), data, CFG), (_model(k=1.5), data, CFG),
             (_model(), data, CFG)]
    results = fit_many(tasks, pool, progress=False)
    assert isinstance(results[1], TaskFailure) and results[1].error_type == "WorkerDied"
    assert "died while running this task" in results[1].message
    for i, ref in ((0, serial_results[0]), (2, serial_results[1]), (3, serial_results[0])):
        _same(results[i], ref)
    assert pool.workers == 2  # the dead worker was replaced
    _same(fit_many(tasks[:1], pool, progress=False)[0], serial_results[0])


def test_a_task_that_cannot_be_sent_is_a_failure_with_a_hint(pool):
    model = sysid.models.physics(lambda t, x, u, p, xp: xp.stack([-p["k"] * x[..., 0]]),
                                 {"k": 0.5}, ["x"])
    results = fit_many([(model, decay_data(), CFG)], pool, progress=False)
    assert isinstance(results[0], TaskFailure)
    assert "module level" in results[0].message


def test_ctrl_c_keeps_finished_fits_and_stops_the_running_ones(pool):
    data = decay_data()
    long = FitConfig(epochs=100_000, dtype="float64", shooting={"horizons": (4,)},
                     warm_start=False, progress=False, validation={"every": 1000})
    tasks = [(_model(), data, CFG), (_model(), data, long), (_model(), data, long),
             (_model(), data, long)]

    def stop(index, result):
        if index == 0:
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(Interrupted) as info:
        fit_many(tasks, pool, progress=False, callback=stop)
    # the long fits stop at their next step (SIGTERM), not after 100000 epochs
    assert time.monotonic() - started < 60
    results = info.value.results
    assert isinstance(results[0], FitResult) and results[0].stopped_reason == "completed"
    for r in results[1:]:
        assert (isinstance(r, TaskFailure) and r.error_type == "Interrupted") or \
            r.stopped_reason == "interrupted"
    # the pool is usable afterwards
    assert isinstance(fit_many(tasks[:1], pool, progress=False)[0], FitResult)


def test_ctrl_c_with_the_serial_executor_stops_after_the_running_fit():
    data = decay_data()
    seen = []

    def stop(index, result):
        seen.append(index)
        raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        fit_many([(_model(), data, CFG)] * 3, SerialExecutor(), progress=False, callback=stop)
    assert seen == [0]
    kinds = [type(r).__name__ for r in info.value.results]
    assert kinds == ["FitResult", "TaskFailure", "TaskFailure"]
    assert info.value.results[2].message == "not started: interrupted"


@pytest.mark.parametrize("tasks, match", [
    ("model", r"tasks must be a list"),
    ([(1,)], r"task 0 is a tuple of 1 items"),
    ([("m", "d")], r"task 0: the model must be a sysid.models.Model"),
    ([(None, None, None, None)], r"task 0 is a tuple of 4 items"),
])
def test_bad_tasks_are_refused(tasks, match):
    with pytest.raises(ConfigError, match=match):
        fit_many(tasks, SerialExecutor())


def test_bad_executors_are_refused():
    with pytest.raises(ConfigError, match=r"executor must be None .* got int"):
        fit_many([(_model(), decay_data(), CFG)], 4)
    with pytest.raises(ConfigError, match=r"workers must be an integer >= 1; got 0"):
        LocalPool(0)
    with pytest.raises(ConfigError, match=r"start_method must be one of .* got 'fork'"):
        LocalPool(1, start_method="fork")


def test_a_scheduler_without_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'sysid\[parallel\]'"):
        fit_many([(_model(), decay_data(), CFG)], "tcp://127.0.0.1:1", progress=False)


# ---------------------------------------------------------------------------------------------
# Dask


@pytest.fixture(scope="module")
def cluster():
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    # the test's policy: a task whose worker dies is not retried (Dask's default retries it 3
    # times); fit_many hands a worker only the task it runs, so no other task shares that death
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=":0") as lc:
            with distributed.Client(lc) as client:
                yield client


def test_dask_gives_the_serial_results_and_survives_a_killed_worker(cluster, serial_results):
    results = fit_many(_tasks(), cluster, progress=False)
    for a, b in zip(serial_results, results):
        _same(a, b)
    data = decay_data()
    results = fit_many([(_model(), data, CFG), (_model(decay_or_die), data, CFG),
                        (_model(k=1.5), data, CFG)], cluster, progress=False)
    assert [type(r).__name__ for r in results] == ["FitResult", "TaskFailure", "FitResult"], results
    assert results[1].error_type == "KilledWorker"
    _same(results[0], serial_results[0])
    _same(results[2], serial_results[1])


def test_dask_by_scheduler_address(cluster, serial_results):
    address = cluster.scheduler_info()["address"]
    results = fit_many(_tasks()[:1], address, progress=False)
    _same(results[0], serial_results[0])
    assert math.isfinite(float(results[0].history["loss"].iloc[-1]))
    assert np.isfinite(results[0].parameters["value"]).all()
