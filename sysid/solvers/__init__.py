"""The one solver layer: settings, torch integration (single runs and batched windows), SciPy integration.

Every integration in sysid goes through this package; ``torchdiffeq`` and ``scipy.integrate.solve_ivp``
are imported nowhere else.
"""

from sysid.models.solver import SolverConfig

__all__ = ["SolverConfig"]
