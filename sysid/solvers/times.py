"""Output times: the one check every integration runs on them, and the one error type it raises.

Times that are not finite or not strictly increasing raise :class:`~sysid.errors.DataError`
everywhere (``simulate``, the torch and SciPy solvers, ``sysid.systems.integrate``, the analysis).
They are values the user supplies, like the samples of a data file whose times must increase within
each run (a ``DataError`` in the loaders too), not a setting of the solver: a ``ConfigError`` is kept
for options such as a method name or a tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sysid.errors import DataError

__all__ = ["check_times"]


def check_times(t: Any, where: str, *, minimum: int = 1, name: str = "times") -> np.ndarray:
    """Output times as a 1-D float64 array: at least ``minimum`` values, finite, strictly increasing.

    Parameters
    ----------
    t : array_like
        The times (a sequence, NumPy array or torch tensor).
    where : str
        Prefix of error messages (the function the user called).
    minimum : int
        Fewest times accepted.
    name : str
        What the times are called in messages (the argument's name).

    Raises
    ------
    DataError
        Naming the first offending position and value.

    Examples
    --------
    >>> check_times([0.0, 0.5, 1.0], "simulate").tolist()
    [0.0, 0.5, 1.0]
    """
    detach = getattr(t, "detach", None)
    try:
        arr = np.asarray(detach().cpu().double().numpy() if detach is not None else t, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: {name} must be numbers; got {type(t).__name__} "
                        f"({str(exc).splitlines()[0]}).") from None
    if arr.ndim != 1 or arr.size < minimum:
        count = "1 output time" if minimum <= 1 else f"{minimum} output times"
        raise DataError(f"{where}: {name} must be a 1-D array of at least {count}; got shape {arr.shape}.")
    if np.isfinite(arr).all() and (arr[1:] > arr[:-1]).all():  # the usual case, in 4 operations
        return arr
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise DataError(f"{where}: {name} must be finite; {name}[{bad[0]}] is {arr[bad[0]]}.")
    back = np.flatnonzero(np.diff(arr) <= 0)
    if back.size:
        k = int(back[0])
        raise DataError(
            f"{where}: {name} must be strictly increasing; {name}[{k + 1}] = {arr[k + 1]:g} follows "
            f"{name}[{k}] = {arr[k]:g}. Sort the times and drop duplicates."
        )
    return arr
