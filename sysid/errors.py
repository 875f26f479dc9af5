"""Exception types of sysid.

Every exception sysid raises for a user's mistake subclasses both :class:`SysidError` and the
matching builtin, so ``except ValueError`` keeps working and the CLI can tell a user error (exit 2)
from an internal one (exit 1).
"""

from __future__ import annotations


class SysidError(Exception):
    """Base class of every error sysid raises on purpose."""


class DataError(SysidError, ValueError):
    """Bad input data: a file, column, run or row that does not fit the trajectory schema."""


class ParameterError(SysidError, ValueError):
    """A parameter value, bound or name that is not valid."""


class ConfigError(SysidError, ValueError):
    """An option or configuration value that is not valid (unknown key, wrong type, out of range)."""


class ModelFileError(SysidError, ValueError):
    """A model file that is missing, tampered with, foreign or of an unsupported version."""


class SolverError(SysidError, RuntimeError):
    """An ODE integration that failed.

    Attributes
    ----------
    t_reached : float or None
        The last time the solver reached before failing, in the user's time units.
    """

    def __init__(self, message: str, *, t_reached: float | None = None) -> None:
        super().__init__(message)
        self.t_reached = t_reached


class FitError(SysidError, RuntimeError):
    """Training that could not continue (after rollbacks were exhausted)."""


__all__ = [
    "SysidError",
    "DataError",
    "ParameterError",
    "ConfigError",
    "ModelFileError",
    "SolverError",
    "FitError",
]
