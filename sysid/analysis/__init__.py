"""Judge learned dynamics against data and against reference ODEs integrated with SciPy.

Everything here works on any dynamics: a :class:`sysid.models.Model` or trained ``FitResult``, a
reference :class:`sysid.systems.System`, or a plain ``f(t, y)`` (see :func:`as_dynamics`).
Results are xarray Datasets and pandas DataFrames; :func:`markdown_table` renders the latter.
"""

from __future__ import annotations

from sysid.analysis.comparison import Comparison, compare, valid_prediction_time
from sysid.analysis.cycles import LimitCycle, compare_limit_cycles, find_limit_cycle, oscillation_from_samples
from sysid.analysis.derived import DerivedQuantities, derived, sample_parameters
from sysid.analysis.distill import Distillation, Refit, distill
from sysid.analysis.dynamics import Dynamics, Integration, as_dynamics, input_function, integrate
from sysid.analysis.fields import (
    DataSupport,
    ExtrapolationWarning,
    FieldComparison,
    check_support,
    field_error,
    field_error_at,
)
from sysid.analysis.fixed_points import (
    Linearisation,
    classify,
    compare_fixed_points,
    find_fixed_points,
    linearise,
    match_fixed_points,
)
from sysid.analysis.identifiability import Identifiability, identifiability
from sysid.analysis.metrics import fit_percent, metrics_table, nrmse, r2, rmse, trajectory_metrics
from sysid.analysis.parameters import parameter_table
from sysid.analysis.prediction import predict
from sysid.analysis.profiles import IdentifiabilityWarning, ProfileResult, profile
from sysid.analysis.residuals import residual_autocorrelation, whiteness_table
from sysid.analysis.tables import jsonable, markdown_table

__all__ = [
    "derived",
    "DerivedQuantities",
    "sample_parameters",
    "identifiability",
    "Identifiability",
    "distill",
    "Distillation",
    "Refit",
    "Comparison",
    "compare",
    "valid_prediction_time",
    "LimitCycle",
    "find_limit_cycle",
    "compare_limit_cycles",
    "oscillation_from_samples",
    "Dynamics",
    "Integration",
    "as_dynamics",
    "input_function",
    "integrate",
    "DataSupport",
    "ExtrapolationWarning",
    "FieldComparison",
    "check_support",
    "field_error",
    "field_error_at",
    "Linearisation",
    "classify",
    "find_fixed_points",
    "linearise",
    "match_fixed_points",
    "compare_fixed_points",
    "rmse",
    "nrmse",
    "fit_percent",
    "r2",
    "trajectory_metrics",
    "metrics_table",
    "predict",
    "profile",
    "ProfileResult",
    "IdentifiabilityWarning",
    "parameter_table",
    "residual_autocorrelation",
    "whiteness_table",
    "markdown_table",
    "jsonable",
]
