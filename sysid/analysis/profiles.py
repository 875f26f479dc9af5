"""Profile likelihood, re-exported from :mod:`sysid.estimation.profile` as
:func:`sysid.analysis.profile` (the module is ``profiles``, not ``profile``, so that importing it
never shadows the function in the package namespace)."""

from __future__ import annotations

from sysid.estimation.profile import IdentifiabilityWarning, ProfileResult, profile

__all__ = ["profile", "ProfileResult", "IdentifiabilityWarning"]
