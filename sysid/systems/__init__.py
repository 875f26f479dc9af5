"""The catalogue of reference ODEs across fields, integrated with SciPy.

Each :class:`System` has named states (with units), inputs, parameters (defaults, units, physical
bounds, in the order of its literature source) and one right-hand side ``rhs(t, x, u, p, xp)`` that
runs on NumPy and on torch.

Examples
--------
>>> import sysid.systems as systems
>>> "lotka_volterra" in systems.list()
True
>>> systems.get("lorenz").defaults()["rho"]
28.0
"""

from __future__ import annotations

import builtins

from sysid.systems import biology, chemistry, economics, epidemiology, physics  # registers them
from sysid.systems.base import FIELDS, ParameterSpec, System, UnknownSystemError, get, names, register
from sysid.systems.integrate import METHODS, integrate
from sysid.systems.synthetic import SumOfSines, make_dataset


def list(field: str | None = None) -> builtins.list[str]:  # noqa: A001 - the public verb is list()
    """Sorted names of the catalogue's systems, optionally only those of one ``field``.

    Defined last so that ``list`` means the builtin everywhere else in this package.
    """
    return names(field)


__all__ = [
    "FIELDS",
    "METHODS",
    "ParameterSpec",
    "SumOfSines",
    "System",
    "UnknownSystemError",
    "biology",
    "chemistry",
    "economics",
    "epidemiology",
    "get",
    "integrate",
    "list",
    "make_dataset",
    "physics",
    "register",
]
