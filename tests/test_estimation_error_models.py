"""Error models against closed forms and SciPy's distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from sysid.errors import ConfigError, DataError
from sysid.estimation import (
    KINDS,
    Gaussian,
    information_criteria,
    make_error_model,
)

RNG = np.random.default_rng(3)
# two runs x 6 samples x 2 states, one entry missing
PRED = torch.tensor(RNG.uniform(2.0, 9.0, size=(2, 6, 2)))
OBS = PRED * torch.tensor(np.exp(RNG.normal(0.0, 0.1, size=(2, 6, 2))))
MASK = torch.ones(2, 6, 2, dtype=torch.bool)
MASK[1, 3, 0] = False
SPREAD = torch.tensor([1.5, 2.5], dtype=torch.float64)


def _np(x, state=None):
    m = MASK.numpy()
    if state is None:
        return x.numpy()[m]
    return x.numpy()[..., state][m[..., state]]


def test_sse_loglik_is_gaussian_with_the_ml_sigma():
    em = make_error_model("sse", ["a", "b"])
    y, yhat = _np(OBS), _np(PRED)
    sigma = math.sqrt(np.mean((y - yhat) ** 2))  # ML: SSE / n
    assert em.loglik(PRED, OBS, MASK, SPREAD) == pytest.approx(stats.norm.logpdf(y, yhat, sigma).sum(), rel=1e-12)
    s = em.sigma(PRED, OBS, MASK, SPREAD)
    assert s.tolist() == pytest.approx([sigma, sigma], rel=1e-12)
    # with a given sigma
    given = torch.tensor([0.7, 0.7], dtype=torch.float64)
    assert em.loglik(PRED, OBS, MASK, SPREAD, given) == pytest.approx(
        stats.norm.logpdf(y, yhat, 0.7).sum(), rel=1e-12)
    # the residuals are y - yhat; their sum of squares / 2 + constants = -loglik at sigma = 1
    r = em.residuals(PRED, OBS, MASK, SPREAD)
    assert float((r * r).sum()) == pytest.approx(np.sum((y - yhat) ** 2), rel=1e-12)
    assert float(r[1, 3, 0]) == 0.0  # missing entry


def test_gaussian_estimates_one_sigma_per_state():
    em = make_error_model("gaussian", ["a", "b"])
    total = 0.0
    sig = []
    for s in range(2):
        y, yhat = _np(OBS, s), _np(PRED, s)
        sd = math.sqrt(np.mean((y - yhat) ** 2))
        sig.append(sd)
        total += stats.norm.logpdf(y, yhat, sd).sum()
    assert em.loglik(PRED, OBS, MASK, SPREAD) == pytest.approx(total, rel=1e-12)
    assert em.sigma(PRED, OBS, MASK, SPREAD).tolist() == pytest.approx(sig, rel=1e-12)
    assert em.n_sigma(MASK) == 2
    # concentrated likelihood: -loglik = sum_s n_s/2 (log(2 pi SSE_s/n_s) + 1)
    n = [int(MASK[..., s].sum()) for s in range(2)]
    closed = sum(n_s / 2 * (math.log(2 * math.pi * s_s**2) + 1) for n_s, s_s in zip(n, sig))
    assert -em.loglik(PRED, OBS, MASK, SPREAD) == pytest.approx(closed, rel=1e-12)
    # residuals standardised by sigma: sum of squares = n
    r = em.residuals(PRED, OBS, MASK, SPREAD, em.sigma(PRED, OBS, MASK, SPREAD))
    assert float((r * r).sum()) == pytest.approx(sum(n), rel=1e-12)


def test_wls_uses_the_known_sigmas():
    em = make_error_model("wls", ["a", "b"], sigma={"a": 0.3, "b": 0.9})
    total = sum(stats.norm.logpdf(_np(OBS, s), _np(PRED, s), sd).sum() for s, sd in enumerate((0.3, 0.9)))
    assert em.loglik(PRED, OBS, MASK, SPREAD) == pytest.approx(total, rel=1e-12)
    assert em.n_sigma(MASK) == 0
    assert em.sigma(PRED, OBS, MASK, SPREAD).tolist() == [0.3, 0.9]
    r = em.residuals(PRED, OBS, MASK, SPREAD)
    assert float(r[0, 0, 1]) == pytest.approx(float(OBS[0, 0, 1] - PRED[0, 0, 1]) / 0.9)


def test_lognormal_matches_scipy_lognorm():
    em = make_error_model("log", ["a", "b"])
    assert em.kind == "lognormal"
    y, yhat = _np(OBS), _np(PRED)
    sigma = math.sqrt(np.mean(np.log(y / yhat) ** 2))
    ref = stats.lognorm.logpdf(y, s=sigma, scale=yhat).sum()
    assert em.loglik(PRED, OBS, MASK, SPREAD) == pytest.approx(ref, rel=1e-10)
    r = em.residuals(PRED, OBS, MASK, SPREAD)
    assert float(r[0, 2, 1]) == pytest.approx(math.log(float(OBS[0, 2, 1] / PRED[0, 2, 1])), rel=1e-9)


def test_nmse_and_relative_are_gaussian_with_known_shape():
    y, yhat = _np(OBS), _np(PRED)
    sp = np.broadcast_to(SPREAD.numpy(), OBS.shape)[MASK.numpy()]
    em = make_error_model("nmse", ["a", "b"])
    c = math.sqrt(np.mean(((y - yhat) / sp) ** 2))
    assert em.loglik(PRED, OBS, MASK, SPREAD) == pytest.approx(stats.norm.logpdf(y, yhat, c * sp).sum(), rel=1e-12)
    assert em.sigma(PRED, OBS, MASK, SPREAD).tolist() == pytest.approx([c, c])
    rel = make_error_model("relative", ["a", "b"])
    a = np.abs(y) + 1e-3 * sp
    c = math.sqrt(np.mean(((y - yhat) / a) ** 2))
    assert rel.loglik(PRED, OBS, MASK, SPREAD) == pytest.approx(stats.norm.logpdf(y, yhat, c * a).sum(), rel=1e-12)


def test_poisson_deviance_residuals_and_loglik():
    counts = torch.tensor(RNG.poisson(lam=PRED.numpy()), dtype=torch.float64)
    counts[0, 0, 0] = 0.0  # a zero count
    pred = PRED.clone()
    counts[0, 1, 0] = 4.0
    pred[0, 1, 0] = 4.0  # y == mu exactly (the residual's smooth branch)
    em = make_error_model("poisson", ["a", "b"])
    y, mu = _np(counts), _np(pred)
    assert em.loglik(pred, counts, MASK, SPREAD) == pytest.approx(stats.poisson.logpmf(y, mu).sum(), rel=1e-9)
    r = em.residuals(pred, counts, MASK, SPREAD).numpy()[MASK.numpy()]
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = 2 * (np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu))
    assert r == pytest.approx(np.sign(y - mu) * np.sqrt(dev), abs=1e-7)
    # the deviance is 2 (saturated loglik - loglik)
    sat = stats.poisson.logpmf(y, y).sum()
    assert float((r**2).sum()) == pytest.approx(2 * (sat - stats.poisson.logpmf(y, mu).sum()), rel=1e-9)
    # differentiable where y = mu (no NaN gradient)
    p = pred.clone().requires_grad_(True)
    em.residuals(p, counts, MASK, SPREAD).pow(2).sum().backward()
    assert torch.isfinite(p.grad).all()
    assert em.n_sigma(MASK) == 0


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "wls"])
def test_objective_has_the_minimiser_of_the_likelihood(kind):
    """Along a line of predictions, the training objective and the NLL have the same minimum."""
    em = make_error_model(kind, ["a", "b"])
    obs = OBS.round() if kind == "poisson" else OBS
    best_obj = best_nll = None
    for f in np.linspace(0.8, 1.2, 41):
        pred = PRED * f
        o = float(em.objective(pred, obs, MASK, SPREAD))
        n = float(em.nll(pred, obs, MASK, SPREAD))
        assert o > 0 and math.isfinite(n)
        best_obj = (o, f) if best_obj is None or o < best_obj[0] else best_obj
        best_nll = (n, f) if best_nll is None or n < best_nll[0] else best_nll
    assert best_obj[1] == best_nll[1]


def test_objective_is_scale_free_for_gaussian():
    em = Gaussian(states=("a", "b"))
    one = float(em.objective(PRED, OBS, MASK, SPREAD))
    k = torch.tensor([10.0, 1e-4], dtype=torch.float64)
    assert float(em.objective(PRED * k, OBS * k, MASK, SPREAD * k)) == pytest.approx(one, rel=1e-9)


def test_weights_drop_states_and_count():
    em = make_error_model("gaussian", ["a", "b"], weights={"b": 0.0})
    assert em.count(MASK) == int(MASK[..., 0].sum())
    assert em.n_sigma(MASK) == 1
    assert math.isnan(float(em.sigma(PRED, OBS, MASK, SPREAD)[1]))
    y, yhat = _np(OBS, 0), _np(PRED, 0)
    ref = stats.norm.logpdf(y, yhat, math.sqrt(np.mean((y - yhat) ** 2))).sum()
    assert em.loglik(PRED, OBS, MASK, SPREAD) == pytest.approx(ref, rel=1e-12)


def test_information_criteria():
    aic, bic = information_criteria(-10.0, 3, 20)
    assert aic == pytest.approx(26.0)
    assert bic == pytest.approx(3 * math.log(20) + 20.0)


def test_bad_options_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown error model 'mse2'"):
        make_error_model("mse2", ["a"])
    with pytest.raises(ConfigError, match="'wls' needs a known sigma for every measured state"):
        make_error_model("wls", ["a", "b"], sigma={"a": 1.0})
    with pytest.raises(ConfigError, match="one positive, finite noise level"):
        make_error_model("wls", ["a"], sigma={"a": -1.0})
    with pytest.raises(ConfigError, match="sigma is only used by loss='wls'"):
        make_error_model("sse", ["a"], sigma={"a": 1.0})
    with pytest.raises(ConfigError, match=r"weights name \['c'\]"):
        make_error_model("sse", ["a"], weights={"c": 1.0})
    em = make_error_model("lognormal", ["a", "b"])
    bad = OBS.clone()
    bad[1, 2, 1] = -1.0
    with pytest.raises(DataError, match="needs positive measurements, but state 'b' of run 'r2' at sample 3"):
        em.check(bad, MASK, runs=["r1", "r2"])
    with pytest.raises(DataError, match=r"non-negative \(counts\)"):
        make_error_model("poisson", ["a", "b"]).check(bad, MASK, runs=["r1", "r2"])
