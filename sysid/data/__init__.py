"""Trajectory data: loaders, the schema, validation, splits, scaling and the crossing into torch.

Everything here works on the trajectory schema (see :mod:`sysid.data.schema`): an
``xarray.Dataset`` with dims ``(trajectory, obs)``, a 2-D ``time`` coordinate and one variable
per measured quantity with ``role``, ``units`` and ``long_name`` attributes.
"""

from __future__ import annotations

import importlib
from typing import Any

from sysid.data.arrays import TrajectoryArrays, to_arrays
from sysid.data.files import load_netcdf, load_zarr, safe_cell, save, to_csv
from sysid.data.scaling import Scaling, characteristic_time, compute_scaling
from sysid.data.schema import (
    OBS,
    TIME,
    TRAJ,
    from_arrays,
    get_run,
    input_names,
    run_ids,
    run_length,
    run_values,
    state_names,
)
from sysid.data.splits import select_runs, split_runs, split_time
from sysid.data.tabular import from_dataframe, load_csv
from sysid.data.validate import DataWarning, validate

# torch is imported only when the tensor crossing is used, so loading data stays light.
_TENSORS = ("TrajectoryBatch", "to_tensors", "from_tensors")


def __getattr__(name: str) -> Any:
    if name in _TENSORS:
        return getattr(importlib.import_module("sysid.data.tensors"), name)
    raise AttributeError(f"module 'sysid.data' has no attribute {name!r}")


__all__ = [
    "OBS",
    "TIME",
    "TRAJ",
    "DataWarning",
    "Scaling",
    "TrajectoryArrays",
    "TrajectoryBatch",
    "characteristic_time",
    "compute_scaling",
    "from_arrays",
    "from_dataframe",
    "from_tensors",
    "get_run",
    "input_names",
    "load_csv",
    "load_netcdf",
    "load_zarr",
    "run_ids",
    "run_length",
    "run_values",
    "safe_cell",
    "save",
    "select_runs",
    "split_runs",
    "split_time",
    "state_names",
    "to_arrays",
    "to_csv",
    "to_tensors",
    "validate",
]
