"""Trajectory data: loaders, the schema, validation, splits, scaling and the crossing into torch."""

from sysid.data.schema import (
    OBS,
    TIME,
    TRAJ,
    from_arrays,
    get_run,
    input_names,
    run_ids,
    run_length,
    state_names,
)

__all__ = [
    "OBS",
    "TIME",
    "TRAJ",
    "from_arrays",
    "get_run",
    "input_names",
    "run_ids",
    "run_length",
    "state_names",
]
