"""Derived quantities with a support check: distance_to_data and ExtrapolationWarning.

Selkov's glycolysis model (a = 0.08, b = 0.6) has an unstable focus at (b, b / (a + b^2)) inside a
stable limit cycle: data on the cycle never visit the fixed point, the case of issue 16.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from sysid.analysis import ExtrapolationWarning, find_fixed_points, find_limit_cycle
from sysid.analysis.fields import DataSupport
from sysid.data.schema import from_arrays

A, B = 0.08, 0.6
FP = np.array([B, B / (A + B**2)])


def selkov(t, z):
    x, y = z
    return [-x + A * y + x**2 * y, B - A * y - x**2 * y]


def _data(t0: float = 60.0, t1: float = 120.0, n: int = 300):
    t = np.linspace(t0, t1, n)
    sol = solve_ivp(selkov, (0, t1), [0.5, 0.5], t_eval=t, rtol=1e-10, atol=1e-10)
    return from_arrays([t - t0], {"x": [sol.y[0]], "y": [sol.y[1]]}, states=["x", "y"])


def test_fixed_point_off_the_data_warns_and_reports_its_distance():
    data = _data()
    with pytest.warns(ExtrapolationWarning, match=r"1 fixed point\(s\) lie outside the data's support"):
        fp = find_fixed_points(selkov, states=["x", "y"], data=data)
    assert len(fp) == 1
    np.testing.assert_allclose(fp[["x", "y"]].to_numpy()[0], FP, rtol=1e-8)  # root finder tolerance
    # the distance is DataSupport's: std units to the nearest sample, well beyond the 0.25 threshold
    expected = DataSupport.from_data(data).distance(FP[None])[0]
    assert fp["distance_to_data"].iloc[0] == pytest.approx(expected, rel=1e-6)
    assert expected > 0.25


def test_fixed_point_on_the_data_is_silent_and_no_data_gives_nan():
    # a trajectory spiralling out from near the focus covers it
    t = np.linspace(0, 30, 600)
    sol = solve_ivp(selkov, (0, 30), FP + 0.01, t_eval=t, rtol=1e-10, atol=1e-10)
    data = from_arrays([t], {"x": [sol.y[0]], "y": [sol.y[1]]}, states=["x", "y"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        fp = find_fixed_points(selkov, states=["x", "y"], data=data)
        bare = find_fixed_points(selkov, states=["x", "y"], bounds={"x": (0, 2), "y": (0, 3)})
    assert fp["distance_to_data"].iloc[0] < 0.25
    assert np.isnan(bare["distance_to_data"].iloc[0])


def test_limit_cycle_distance_to_data():
    data = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        lc = find_limit_cycle(selkov, [0.5, 0.5], states=["x", "y"], t_end=120, data=data)
    assert lc.found
    # the data are samples of the same orbit (300 points over ~7 cycles): every orbit point is near one
    assert lc.distance_to_data < 0.25 and lc.to_dict()["distance_to_data"] == lc.distance_to_data
    # data covering only the first 3 time units (a fraction of one cycle): the orbit leaves them
    part = _data(60.0, 63.0, 30)
    with pytest.warns(ExtrapolationWarning, match=r"orbit point\(s\) lie outside the data's support"):
        lc2 = find_limit_cycle(selkov, [0.5, 0.5], states=["x", "y"], t_end=120, data=part)
    assert lc2.distance_to_data > 0.25
    assert np.isnan(find_limit_cycle(selkov, [0.5, 0.5], states=["x", "y"], t_end=120).distance_to_data)
