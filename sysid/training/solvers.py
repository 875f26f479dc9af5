"""Moved to :mod:`sysid.solvers.windows` (the one solver layer); these names stay importable from here."""

from sysid.solvers.windows import StepCounter, solve_windows

__all__ = ["solve_windows", "StepCounter"]
