"""Moved to :mod:`sysid.solvers` (the one solver layer); these names stay importable from here."""

from sysid.solvers import ADAPTIVE_METHODS, FIXED_METHODS, SolveCounter, SolverConfig, solve

__all__ = ["SolverConfig", "solve", "SolveCounter", "ADAPTIVE_METHODS", "FIXED_METHODS"]
