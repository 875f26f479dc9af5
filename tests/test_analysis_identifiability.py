"""sysid.analysis.identifiability: the sensitivity spectrum and the network-absorption check."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import sysid
import sysid.models
from sysid.analysis import IdentifiabilityWarning
from sysid.analysis.identifiability import Identifiability, identifiability
from sysid.data.schema import from_arrays
from sysid.errors import ConfigError
from sysid.models import Parameter, PhysicsField, from_toml


def _decay_data(k: float = 0.6, c: float = 0.5, noise: float = 0.0):
    """x' = -k x + c, two runs (so k and c are both visible)."""
    rng = np.random.default_rng(0)
    ts, xs = [], []
    for x0 in (3.0, 0.2):
        t = np.linspace(0, 6, 31)
        x = c / k + (x0 - c / k) * np.exp(-k * t)
        ts.append(t)
        xs.append(x + noise * rng.standard_normal(t.size))
    return from_arrays(ts, {"x": xs}, states=["x"])


def _product_model():
    # k = a * b: only the product is visible in the data
    m = from_toml({"model": {"states": {"x": ""},
                             "parameters": {"a": {"value": 2.0, "bounds": [0, 10]},
                                            "b": {"value": 0.3, "bounds": [0, 10]},
                                            "c": {"value": 0.5, "bounds": [0, 10]}},
                             "equations": {"dx": "-a*b*x + c"}}}, dtype=torch.float64)
    return m


def test_two_parameters_only_as_a_product_one_zero_eigenvalue_naming_both():
    data = _decay_data()
    with pytest.warns(IdentifiabilityWarning, match=r"do not determine \+0\.71 log\(a\) -0\.71 log\(b\).*\['a', 'b'\]"):
        ident = identifiability(_product_model(), data)
    assert isinstance(ident, Identifiability) and ident.parameters == ("a", "b", "c")
    sp = ident.spectrum
    assert list(sp["determined"]) == [True, True, False]
    # the null direction is log a - log b exactly (the product's level sets), to rounding
    null = sp.iloc[2][["a", "b", "c"]].to_numpy(float)
    np.testing.assert_allclose(null, [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0], atol=1e-8)
    # rounding level (1e-16 of the largest): an infinite standard error
    assert sp.iloc[2]["relative"] < 1e-12 and math.isinf(sp.iloc[2]["sd"])
    # the determined directions hold log a + log b (the product) and log c, mixed
    det = sp.iloc[:2][["a", "b"]].to_numpy(float)
    np.testing.assert_allclose(det[:, 0], det[:, 1], atol=1e-8)
    assert ident.undetermined() == ["+0.71 log(a) -0.71 log(b)"]
    assert ident.absorption.empty  # no network
    assert ident.to_dict()["parameters"] == ["a", "b", "c"]


def test_fitted_identifiable_model_has_a_clean_spectrum():
    data = _decay_data(noise=0.01)
    m = sysid.models.physics(lambda t, x, u, p, xp: xp.stack([-p["k"] * x[..., 0] + p["c"]]),
                             {"k": Parameter(0.3, bounds=(0, 5)), "c": Parameter(0.2, bounds=(0, 5))},
                             ["x"], dtype=torch.float64)
    cfg = sysid.FitConfig(epochs=20, dtype="float64", progress=False, loss="gaussian")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sysid.fit(m, data, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        ident = identifiability(res, data)
    assert ident.spectrum["determined"].all() and not ident.warnings
    # one noise level per state ("gaussian"): sd is the standard error of each combination
    assert (ident.spectrum["sd"] < 0.1).all()
    sp = ident.spectrum
    # Cov(log p) = V diag(sd^2) V^T; the fit's covariance scales the same J^T J by n / (n - P)
    n = ident.n_residuals
    for name in ("k", "c"):
        se_log = math.sqrt(float(np.sum(sp[name] ** 2 * sp["sd"] ** 2)) * n / (n - 2))
        se_fit = float(res.parameters.set_index("name").loc[name, "stderr"]) / ident.values[name]
        assert se_log == pytest.approx(se_fit, rel=1e-6)  # the same Jacobian: agree to rounding


def _hybrid(net):
    m = from_toml({"model": {"states": {"x": ""},
                             "parameters": {"k": {"value": 0.3, "bounds": [0, 10]},
                                            "c": {"value": 0.5, "bounds": [0, 10]}},
                             "equations": {"dx": "-k*x + c + nn(x)"}}}, dtype=torch.float64)
    m.field.neural = PhysicsField(net, {}, ["x"], outputs=["x"], dtype=torch.float64)
    return m


def test_network_that_duplicates_a_physics_term_is_named():
    data = _decay_data()
    # the network took half of the decay term: -0.3 x of the true -0.6 x
    dup = _hybrid(lambda t, x, u, p, xp: xp.stack([-0.3 * x[..., 0]]))
    with pytest.warns(IdentifiabilityWarning, match=r"network term on 'x' correlates \+1\.000 with parameter 'k'"):
        ident = identifiability(dup, data)
    ab = ident.absorption.set_index("parameter")
    # k's term is -k x = -0.3 x: the network's -0.3 x is the same term, slope 1 (acts like k + 100 %)
    assert ab.loc["k", "correlation"] == pytest.approx(1.0, abs=1e-9)
    assert ab.loc["k", "beta"] == pytest.approx(1.0, rel=1e-6)
    assert ab.loc["k", "absorbed"] and not ab.loc["c", "absorbed"]  # c's term is a constant
    # a network on something the physics does not have: no warning
    other = _hybrid(lambda t, x, u, p, xp: xp.stack([0.05 * xp.sin(3.0 * x[..., 0])]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        clean = identifiability(other, data)
    assert not clean.absorption["absorbed"].any()
    assert abs(clean.absorption.set_index("parameter").loc["k", "correlation"]) < 0.9


def test_errors():
    data = _decay_data()
    with pytest.raises(ConfigError, match="no free physical parameter"):
        identifiability(sysid.models.neural(["x"], width=4, depth=1), data)
    with pytest.raises(ConfigError, match=r"tol must lie in \(0, 1\)"):
        identifiability(_product_model(), data, tol=0)
    with pytest.raises(ConfigError, match="expected a FitResult or a sysid Model"):
        identifiability("model", data)


def test_hybrid_with_every_parameter_fixed_gets_the_absorption_check_alone():
    m = from_toml({"model": {"states": {"x": ""},
                             "parameters": {"k": {"value": 0.3, "fixed": True}},
                             "equations": {"dx": "-k*x + nn(x)"}}}, dtype=torch.float64)
    m.field.neural = PhysicsField(lambda t, x, u, p, xp: xp.stack([-0.3 * x[..., 0]]), {}, ["x"],
                                  outputs=["x"], dtype=torch.float64)
    with pytest.warns(IdentifiabilityWarning, match="value of k is not what the data say"):
        ident = identifiability(m, _decay_data())
    assert ident.spectrum.empty and ident.parameters == ()
    assert bool(ident.absorption.set_index("parameter").loc["k", "absorbed"])
