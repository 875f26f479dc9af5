"""Parameter validation and the bound transforms (hypothesis property tests)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sysid.errors import ParameterError
from sysid.models import Parameter, raw_from_value, value_from_raw
from sysid.models.parameters import check_names

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
# widths and offsets relative to max(1, |bound|): an interval narrower than ~1e-7 of its position
# cannot even be written in float64 with a value strictly inside it
width = st.floats(min_value=1e-4, max_value=1e6)
# position inside an interval, kept 1e-6 away from the ends: closer than that, sigmoid's slope
# s(1-s) and the float64 round trip degrade (the value is then a bound in all but name)
frac = st.floats(min_value=1e-6, max_value=1 - 1e-6)
offset = st.floats(min_value=1e-8, max_value=1e6)


def _params() -> st.SearchStrategy[tuple[Parameter, float]]:
    """A parameter of each bound kind and a value strictly inside its bounds."""
    def interval(lo: float, w: float, f: float) -> tuple[Parameter, float]:
        w = w * max(1.0, abs(lo))
        return Parameter(lo + f * w, bounds=(lo, lo + w)), lo + f * w

    def lower(lo: float, d: float) -> tuple[Parameter, float]:
        v = lo + d * max(1.0, abs(lo))
        return Parameter(v, bounds=(lo, math.inf)), v

    def upper(hi: float, d: float) -> tuple[Parameter, float]:
        v = hi - d * max(1.0, abs(hi))
        return Parameter(v, bounds=(-math.inf, hi)), v

    free = st.builds(lambda v: (Parameter(v), v), finite)
    return st.one_of(st.builds(interval, finite, width, frac), st.builds(lower, finite, offset),
                     st.builds(upper, finite, offset), free)


@settings(max_examples=300, deadline=None)
@given(_params())
def test_round_trip(pv):
    p, v = pv
    back = value_from_raw(raw_from_value(v, p), p)
    lo, hi = p.bounds
    # float64 round trip: relative to the value's magnitude, or to the interval width for sigmoid
    ref = (hi - lo) if p.kind == "interval" else max(abs(v), abs(lo) if math.isfinite(lo) else 0.0,
                                                     abs(hi) if math.isfinite(hi) else 0.0, 1e-300)
    assert abs(back - v) <= 1e-9 * ref


@settings(max_examples=300, deadline=None)
@given(_params(), st.floats(min_value=-40, max_value=40))
def test_values_inside_bounds_and_gradient_nonzero(pv, shift):
    p, v = pv
    raw = torch.tensor(raw_from_value(v, p) + (shift if p.kind != "free" else 0.0),
                       dtype=torch.float64, requires_grad=True)
    value = value_from_raw(raw, p)
    lo, hi = p.bounds
    v_out = float(value.detach())
    assert lo <= v_out <= hi
    value.backward()
    if lo < v_out < hi:
        assert float(raw.grad) != 0.0


@settings(max_examples=100, deadline=None)
@given(finite, width, frac)
def test_transform_is_strictly_increasing(lo, w, f):
    w = w * max(1.0, abs(lo))
    p = Parameter(lo + f * w, bounds=(lo, lo + w))
    r = raw_from_value(lo + f * w, p)
    # torch and float paths agree, and a larger raw gives a larger value
    t = value_from_raw(torch.tensor([r - 0.5, r, r + 0.5], dtype=torch.float64), p)
    assert float(t[0]) <= float(t[1]) <= float(t[2])
    assert float(t[1]) == pytest.approx(value_from_raw(r, p), rel=1e-14, abs=1e-300)


@pytest.mark.parametrize("value", [1e-5, 1e3, 3e-12, 7e8])
def test_lower_bound_exp_is_scale_free(value):
    p = Parameter(value, bounds=(0.0, math.inf))
    raw = raw_from_value(value, p)
    assert raw == pytest.approx(math.log(value))
    t = torch.tensor(raw, dtype=torch.float64, requires_grad=True)
    out = value_from_raw(t, p)
    out.backward()
    # d value / d raw = value: a unit raw step is the same relative change at every magnitude
    assert float(t.grad) == pytest.approx(value, rel=1e-12)
    # float32 storage keeps the relative precision (|raw| < 30 -> ~1e-6 relative)
    v32 = float(value_from_raw(torch.tensor(raw, dtype=torch.float32), p))
    assert v32 == pytest.approx(value, rel=5e-6)


def test_unbounded_scale_defaults_and_explicit():
    assert Parameter(-250.0).effective_scale == 250.0
    assert Parameter(0.0).effective_scale == 1.0
    p = Parameter(3.0, scale=0.5)
    assert raw_from_value(3.0, p) == 6.0


def test_upper_bound_mirrors_lower():
    p = Parameter(-3.0, bounds=(-math.inf, 2.0))
    assert raw_from_value(-3.0, p) == pytest.approx(math.log(5.0))
    assert value_from_raw(math.log(5.0), p) == pytest.approx(-3.0)


def test_errors():
    with pytest.raises(ParameterError, match=r"value 3.0 outside bounds \[0.0, 2.0\]"):
        Parameter(3.0, bounds=(0, 2))
    with pytest.raises(ParameterError, match="lower < upper; got \\[2.0, 1.0\\]"):
        Parameter(1.5, bounds=(2, 1))
    with pytest.raises(ParameterError, match="value must be finite; got nan"):
        Parameter(float("nan"))
    with pytest.raises(ParameterError, match="strictly inside its bounds; value 0.0 is on the bound"):
        Parameter(0.0, bounds=(0, 1))
    with pytest.raises(ParameterError, match="scale must be positive and finite; got -1.0"):
        Parameter(1.0, scale=-1)
    with pytest.raises(ParameterError, match="value must be a number"):
        Parameter("abc")
    with pytest.raises(ParameterError, match=r"unknown fields \['valu'\]"):
        Parameter(1.0).replace(valu=2.0)
    with pytest.raises(ParameterError, match=r"missing \['b'\]; unknown \['c'\]"):
        check_names("fn", ["a", "c"], ["a", "b"])
    # a fixed parameter may sit on its bound
    assert Parameter(0.0, bounds=(0, 1), vary=False).value == 0.0


def test_dict_round_trip():
    p = Parameter(0.3, bounds=(0.0, math.inf), units="1/s", description="rate")
    assert Parameter.from_dict(p.to_dict()) == p
    assert p.to_dict()["bounds"] == [0.0, None]
    with pytest.raises(ParameterError, match=r"unknown keys \['bogus'\]"):
        Parameter.from_dict({"value": 1.0, "bogus": 2})
