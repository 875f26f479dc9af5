"""distill over several members (inclusion frequencies, coefficient intervals) and SymPy output.

As in test_analysis_distill.py, the "networks" are known torch functions in the hybrid's neural
slot, standing in for trained members: the members differ as trained networks would (coefficients a
few per cent apart, one member with a spurious term), and the expected frequencies and intervals
are exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sysid.analysis.distill import distill
from sysid.errors import ConfigError
from sysid.models import PhysicsField, from_toml
from sysid.parallel import Ensemble, TaskFailure
from test_analysis_distill import LV, _lv_data

PATH = np.geomspace(1e-4, 1.0, 12)  # a shorter threshold path than the default 40: a faster test
MEMBERS = [(-0.48, 0.30, 0.0), (-0.50, 0.29, 0.0), (-0.52, 0.31, 0.0), (-0.50, 0.30, 0.05)]


def _member(b: float, d: float, spurious: float):
    m = from_toml({"model": LV}, dtype=torch.float64)

    def net(t, x, u, p, xp):
        xy = x[..., 0] * x[..., 1]
        return xp.stack([b * xy + spurious * x[..., 0] ** 2, d * xy])

    m.field.neural = PhysicsField(net, {}, ["x", "y"], outputs=["x", "y"], dtype=torch.float64)
    return m


def test_inclusion_frequencies_and_coefficient_intervals():
    data = _lv_data(noise=0.0, n=41)
    models = [_member(*c) for c in MEMBERS]
    failed = TaskFailure(index=4, label="member 4", error_type="FitError", message="x")
    ens = Ensemble(kind="seeds", resample="none", members=(*models, failed),
                   member_data=(), base=None, data=data, seed=0)
    d = distill(ens, data, on="data", threshold=PATH)
    assert d.n_members == 4  # the failed member is left out
    inc = d.inclusion.set_index(["state", "term"])
    assert inc.loc[("x", "x*y"), "frequency"] == 1.0 and inc.loc[("x", "x*y"), "selected"]
    # one member in four picked up x**2: below the majority, so not in the equations
    assert inc.loc[("x", "x**2"), "frequency"] == 0.25 and not inc.loc[("x", "x**2"), "selected"]
    assert inc.loc[("x", "x**2"), "coefficient"] == 0.0
    assert inc.loc[("x", "x**2"), "median"] == pytest.approx(0.05, rel=1e-8)  # exact stand-in
    assert [t for t, _ in d.equations["x"]] == ["x*y"] and [t for t, _ in d.equations["y"]] == ["x*y"]
    # the interval over members is the quantiles of the members' own coefficients (exact here)
    q = np.quantile([-0.48, -0.50, -0.52, -0.50], [0.05, 0.95])
    assert (inc.loc[("x", "x*y"), "low"], inc.loc[("x", "x*y"), "high"]) == pytest.approx(tuple(q), rel=1e-8)
    qy = np.quantile([0.30, 0.29, 0.31, 0.30], [0.05, 0.95])
    assert (inc.loc[("y", "x*y"), "low"], inc.loc[("y", "x*y"), "high"]) == pytest.approx(tuple(qy), rel=1e-8)
    # the consensus coefficient is the pooled least-squares fit: inside the members' range
    (_, cy), = d.equations["y"]
    assert 0.29 <= cy <= 0.31
    assert set(d.path["member"]) == {0, 1, 2, 3}
    # the equations file keeps the model's structure (the first member's)
    assert d.to_dict()["model"]["equations"] == {"dx": "a*x + (c_x_1*x*y)", "dy": "-c*y + (c_y_1*x*y)"}
    # a list of models is the same as an ensemble of them
    again = distill(models, data, on="data", threshold=PATH)
    assert again.equations == d.equations
    # with min_frequency 0.25 the spurious term comes in
    loose = distill(models, data, on="data", min_frequency=0.25, threshold=PATH)
    assert [t for t, _ in loose.equations["x"]] == ["x**2", "x*y"]


def test_member_errors():
    data = _lv_data(noise=0.0, n=41)
    with pytest.raises(ConfigError, match=r"min_frequency must lie in \(0, 1\]"):
        distill([_member(*MEMBERS[0])], data, min_frequency=0)
    with pytest.raises(ConfigError, match="the members are not the same model"):
        other = from_toml({"model": {**LV, "equations": {"dx": "a*x + nn(x, y)", "dy": "-c*y"}}},
                          dtype=torch.float64)
        distill([_member(*MEMBERS[0]), other], data, on="data")


# ---------------------------------------------------------------------------------------------
# SymPy

def test_sympy_expressions_built_without_parsing_text(monkeypatch):
    sp = pytest.importorskip("sympy")
    import sympy.parsing.sympy_parser as parser

    def refuse(*a, **k):
        raise AssertionError("parse_expr was called: text must never be parsed by SymPy")

    monkeypatch.setattr(parser, "parse_expr", refuse)
    data = _lv_data(noise=0.0, n=41)
    d = distill(_member(-0.5, 0.3, 0.0), data, on="data", threshold=PATH)
    exprs = d.sympy()
    x, y = sp.Symbol("x", real=True), sp.Symbol("y", real=True)
    assert set(exprs) == {"x", "y"}
    # exact stand-ins: the coefficients to rounding (1e-8 relative, least squares in float64)
    px, py = sp.Poly(exprs["x"], x, y), sp.Poly(exprs["y"], x, y)
    assert px.monoms() == [(1, 1)] and float(px.coeffs()[0]) == pytest.approx(-0.5, rel=1e-8)
    assert py.monoms() == [(1, 1)] and float(py.coeffs()[0]) == pytest.approx(0.3, rel=1e-8)
    # user terms with functions and a rational term keep their structure
    f = distill(_member(-0.5, 0.3, 0.0), data, term="field", on="data",
                library=["x", "y", "x*y", "x/(1 + x)", "sin(y)", "clip(x, 0, 1)"])
    ex = f.sympy()["x"]
    assert ex.free_symbols == {x, y}
    val = float(ex.subs({x: 2.0, y: 3.0}))
    # dx/dt = a x - 0.5 x y with a = 1 (the LV model's start value)
    assert val == pytest.approx(1.0 * 2.0 - 0.5 * 6.0, rel=1e-6)
    from sysid.analysis.distill import _sympy_of

    syms = {"x": x, "y": y}
    assert _sympy_of("x/(1 + x)", ["x", "y"], syms, sp) == x / (1 + x)
    assert _sympy_of("where(x > 1, sin(y), -y**2)", ["x", "y"], syms, sp) == \
        sp.Piecewise((sp.sin(y), x > 1), (-y**2, True))
    assert _sympy_of("sigmoid(x)", ["x", "y"], syms, sp) == 1 / (1 + sp.exp(-x))


def test_sympy_missing_is_a_clear_import_error(monkeypatch):
    import sys

    d = distill(_member(-0.5, 0.3, 0.0), _lv_data(noise=0.0, n=41), on="data", threshold=PATH)
    monkeypatch.setitem(sys.modules, "sympy", None)  # as if not installed
    with pytest.raises(ImportError, match=r"needs SymPy, which is not installed; install it with pip install sympy"):
        d.sympy()
    assert d.text().startswith("nn_x = ")  # text output needs nothing
