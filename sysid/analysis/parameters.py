"""Recovered physical parameters against reference values: units, % error, standard errors.

``percent_error = 100 (value - reference) / |reference|``. When a standard error is known the
table gives the 95 % interval (the fit's own ``ci95_low``/``ci95_high`` when it has them, else the
normal ``value ± 1.96 stderr``) and whether the reference lies in it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from sysid.errors import ConfigError, DataError

Z95 = 1.959963984540054


def _estimates(estimated: Any) -> pd.DataFrame:
    """A DataFrame indexed by parameter name with at least ``value`` (and maybe units, stderr)."""
    if isinstance(estimated, pd.DataFrame):
        df = estimated.copy()
    elif isinstance(estimated, Mapping):
        df = pd.DataFrame({"value": {str(k): float(v) for k, v in estimated.items()}})
    else:
        from sysid.models import Model, VectorField
        from sysid.training import FitResult

        if isinstance(estimated, FitResult):
            df = estimated.parameters.copy()
        elif isinstance(estimated, (Model, VectorField)):
            df = estimated.parameter_table()
        else:
            raise ConfigError(
                "parameter_table: estimated must be a FitResult, a Model, a DataFrame with a "
                f"'value' column or a mapping name -> value; got {type(estimated).__name__}."
            )
    if "name" in df.columns:
        df = df.set_index("name")
    if "value" not in df.columns:
        raise DataError(f"parameter_table: the estimates have no 'value' column; columns are {list(df.columns)}.")
    df.index = df.index.map(str)
    df.index.name = "parameter"
    return df


def _reference(reference: Any) -> tuple[dict[str, float], dict[str, str]]:
    if reference is None:
        return {}, {}
    if isinstance(reference, Mapping):
        return {str(k): float(v) for k, v in reference.items()}, {}
    from sysid.systems import System

    if isinstance(reference, System):
        return reference.defaults(), {p.name: p.units for p in reference.parameters}
    raise ConfigError(
        f"parameter_table: reference must be a sysid System or a mapping name -> value; got "
        f"{type(reference).__name__}."
    )


def parameter_table(
    estimated: Any,
    reference: Any = None,
    *,
    stderr: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Recovered parameters next to reference values.

    Parameters
    ----------
    estimated : FitResult, Model, DataFrame or mapping
        The recovered values (a DataFrame needs ``value``; ``units``, ``stderr``, ``vary``,
        ``lower``/``upper`` are used when present).
    reference : System or mapping, optional
        Reference values (a system's defaults, and its units when the estimate has none).
    stderr : mapping, optional
        Standard errors overriding those in ``estimated``.

    Returns
    -------
    pandas.DataFrame
        Indexed by parameter: ``value``, ``reference``, ``units``, ``error``, ``percent_error``,
        ``stderr``, ``ci95_low``, ``ci95_high``, ``reference_in_ci`` (and ``vary`` when known).

    Examples
    --------
    >>> row = parameter_table({"k": 0.55}, {"k": 0.5}).loc["k"]
    >>> round(float(row["percent_error"]), 6)
    10.0
    """
    est = _estimates(estimated)
    ref, ref_units = _reference(reference)
    unknown = sorted(set(ref) - set(est.index)) if isinstance(reference, Mapping) else []
    if unknown:
        raise DataError(
            f"parameter_table: reference parameters {unknown} are not among the estimates {list(est.index)}."
        )
    out = pd.DataFrame(index=est.index)
    out["value"] = est["value"].astype(float)
    out["reference"] = [ref.get(n, np.nan) for n in out.index]
    units = est["units"] if "units" in est.columns else pd.Series("", index=est.index)
    out["units"] = [str(units[n]) if pd.notna(units[n]) and str(units[n]) else ref_units.get(n, "")
                    for n in out.index]
    out["error"] = out["value"] - out["reference"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["percent_error"] = 100.0 * out["error"] / out["reference"].abs()
    se = est["stderr"].astype(float) if "stderr" in est.columns else pd.Series(np.nan, index=est.index)
    if stderr is not None:
        bad = sorted(set(stderr) - set(out.index))
        if bad:
            raise DataError(f"parameter_table: stderr given for unknown parameters {bad}.")
        se = se.copy()
        for k, v in stderr.items():
            se[k] = float(v)
    out["stderr"] = se
    out["ci95_low"] = out["value"] - Z95 * out["stderr"]
    out["ci95_high"] = out["value"] + Z95 * out["stderr"]
    if stderr is None and {"ci95_low", "ci95_high"} <= set(est.columns):
        # the fit's own intervals (Student t when the noise level was estimated)
        given = est["ci95_low"].notna() & est["ci95_high"].notna()
        out.loc[given, "ci95_low"] = est.loc[given, "ci95_low"].astype(float)
        out.loc[given, "ci95_high"] = est.loc[given, "ci95_high"].astype(float)
    known = out["stderr"].notna() & out["reference"].notna()
    out["reference_in_ci"] = pd.Series(pd.NA, index=out.index, dtype="boolean")
    out.loc[known, "reference_in_ci"] = (
        (out.loc[known, "reference"] >= out.loc[known, "ci95_low"])
        & (out.loc[known, "reference"] <= out.loc[known, "ci95_high"])
    )
    if "vary" in est.columns:
        out["vary"] = est["vary"].astype(bool)
    return out


__all__ = ["parameter_table"]
