"""sysid: identify continuous-time dynamics from measured scientific data.

The verbs are functions at the top level (``load_csv``, ``fit``, ``simulate``, ``compare``,
``report``); everything a user holds is an ``xarray.Dataset``, a ``pandas.DataFrame`` or a NumPy
array. Submodules are imported on first use so ``import sysid`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "load_csv": "sysid.data",
    "load_netcdf": "sysid.data",
    "load_zarr": "sysid.data",
    "from_dataframe": "sysid.data",
    "from_arrays": "sysid.data",
    "save": "sysid.data",
    "validate": "sysid.data",
    "simulate": "sysid.simulation",
    "SolverConfig": "sysid.simulation",
    "save_model": "sysid.io",
    "load_model": "sysid.io",
    "fit": "sysid.training",
    "FitConfig": "sysid.training",
    "FitResult": "sysid.training",
    "StopReason": "sysid.training",
    "compare": "sysid.analysis",
    "report": "sysid.reporting",
    "fit_many": "sysid.parallel",
    "ensemble": "sysid.parallel",
    "sweep": "sysid.parallel",
    "fit_per_run": "sysid.parallel",
}

_SUBMODULES = {"data", "systems", "models", "training", "analysis", "plot", "io", "simulation",
               "datasets", "errors", "backend", "reporting", "cli", "atomic", "budget", "parallel"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"sysid.{name}")
    raise AttributeError(f"module 'sysid' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = ["__version__", *_LAZY]
