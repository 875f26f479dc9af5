"""Many fits at once, from a laptop to a Dask cluster, and one large fit across processes.

- :func:`fit_many` runs independent fits (results in task order, a :class:`TaskFailure` per failed
  task) on an executor: local processes by default (:class:`LocalPool`), any
  :class:`concurrent.futures.Executor`, or Dask (``distributed.Client`` / a scheduler address;
  optional extra ``sysid[parallel]``).
- :func:`ensemble` (seeds, bootstrap, random starts) -> :class:`Ensemble` with prediction bands
  and ensemble parameter intervals; :func:`sweep` searches config/model settings by held-out
  error; :func:`fit_per_run` fits each run alone with a two-stage population summary.
- :mod:`sysid.parallel.distributed`: data-parallel training of one model over many trajectories
  with ``torch.distributed`` (gloo, started by ``torchrun``).

Submodules are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "fit_many": "sysid.parallel.many",
    "FitTask": "sysid.parallel.many",
    "LocalPool": "sysid.parallel.executors",
    "SerialExecutor": "sysid.parallel.executors",
    "TaskFailure": "sysid.parallel.executors",
    "WorkerDied": "sysid.parallel.executors",
    "Interrupted": "sysid.parallel.executors",
    "ensemble": "sysid.parallel.ensembles",
    "Ensemble": "sysid.parallel.ensembles",
    "sweep": "sysid.parallel.sweeps",
    "SweepResult": "sysid.parallel.sweeps",
    "Holdout": "sysid.parallel.sweeps",
    "fit_per_run": "sysid.parallel.per_run",
    "PerRunFit": "sysid.parallel.per_run",
    "fit_distributed": "sysid.parallel.distributed",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sysid.parallel' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = list(_LAZY)
