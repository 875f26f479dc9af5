"""Multi-start: starting points within bounds, distinct optima, the global optimum of a problem
with two known local optima, executors, and bad options."""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest
import torch

import sysid
from sysid.errors import ConfigError, ParameterError
from sysid.estimation import distinct_optima, draw_starts, multistart, with_parameters
from sysid.models import Parameter

W_TRUE = 2.0
T = np.linspace(0.0, 6.0, 13)


def oscillator(t, x, u, p, xp):
    """x'' = -w^2 x as (x, v)."""
    return xp.stack([x[..., 1], -p["w"] ** 2 * x[..., 0]])


def _frequency_data():
    rng = np.random.default_rng(0)
    x = np.cos(W_TRUE * T) + 0.05 * rng.standard_normal(T.size)
    v = -W_TRUE * np.sin(W_TRUE * T) + 0.05 * rng.standard_normal(T.size)
    return sysid.from_arrays([T], {"x": [x], "v": [v]}, states=["x", "v"]), x, v


def _sse_of_frequency(w: float, x: np.ndarray, v: np.ndarray) -> float:
    """Least squares over the initial state for a given frequency (the model is linear in it):
    x = x0 cos(wt) + v0/w sin(wt), v = -x0 w sin(wt) + v0 cos(wt)."""
    c, s = np.cos(w * T), np.sin(w * T)
    design = np.block([[c[:, None], (s / w)[:, None]], [(-w * s)[:, None], c[:, None]]])
    y = np.concatenate([x, v])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    r = y - design @ coef
    return float(r @ r)


def _local_minima(x, v, lo=0.5, hi=3.0):
    from scipy.optimize import minimize_scalar

    grid = np.linspace(lo, hi, 501)
    sse = np.array([_sse_of_frequency(w, x, v) for w in grid])
    idx = [i for i in range(1, grid.size - 1) if sse[i] < sse[i - 1] and sse[i] < sse[i + 1]]
    out = []
    for i in idx:
        res = minimize_scalar(_sse_of_frequency, bracket=(grid[i - 1], grid[i], grid[i + 1]),
                              args=(x, v), tol=1e-12)
        out.append((float(res.x), float(res.fun)))
    return sorted(out, key=lambda m: m[1])


def _model(w0: float):
    return sysid.models.physics(oscillator, {"w": Parameter(w0, bounds=(0.5, 3.0))},
                                states=["x", "v"])


def _config(**kw):
    # a planned first-order stage of single shooting without the derivative warm start, then the
    # least-squares refinement: a local optimiser on a landscape with two optima (the default
    # route falls back to multiple shooting and the warm start, which find the global one alone)
    return sysid.FitConfig(loss="sse", initial_states="free", shooting="single", epochs=5,
                           warm_start=False, dtype="float64", progress=False, **kw)


@pytest.fixture(scope="module")
def frequency_minima():
    _, x, v = _frequency_data()
    return _local_minima(x, v)


def test_the_frequency_problem_has_two_known_local_optima(frequency_minima):
    minima = frequency_minima
    assert len(minima) == 2
    assert minima[0][0] == pytest.approx(W_TRUE, abs=0.02)
    assert minima[1][0] < 1.0 and minima[1][1] > 10 * minima[0][1]


def test_start_0_stays_in_the_local_optimum_and_multistart_finds_the_global_one(frequency_minima):
    ds, _, _ = _frequency_data()
    (w_glob, sse_glob), (w_loc, sse_loc) = frequency_minima
    n = 2 * T.size
    # the premise: of the 5 starts of seed 0, one is drawn in the global optimum's basin
    draws = draw_starts(_model(0.8), 5, seed=0)["w"]
    assert draws[0] == pytest.approx(0.8) and (draws > 1.5).sum() == 1
    best = sysid.fit(_model(0.8), ds, _config(starts=5))
    table = best.starts
    assert list(table["start"]) == list(range(5))
    # start 0, the user's, converges to the optimum of its basin (1e-3: the refinement's RK4
    # step is refined to 1e-2 of the noise level)
    assert table.loc[0, "w"] == pytest.approx(w_loc, rel=1e-3)
    w = float(best.parameters.set_index("name").loc["w", "value"])
    assert w == pytest.approx(w_glob, rel=1e-4)
    assert set(table["optimum"]) == {0, 1}
    assert table.loc[table["optimum"] == 0, "w"].to_numpy() == pytest.approx(w_glob, rel=1e-4)
    # losses are -2 log L of the sse model, n log(SSR / n) + n (1 + log 2 pi): the two optima
    # reproduce the closed-form least-squares values
    by_opt = table.groupby("optimum")["loss"].min()
    const = n * (1 + math.log(2 * math.pi))
    assert by_opt[0] == pytest.approx(n * math.log(sse_glob / n) + const, abs=1e-3)
    assert by_opt[1] == pytest.approx(n * math.log(sse_loc / n) + const, abs=1e-3)
    assert "2 distinct optima" in best.message
    assert best.config.starts == 5


def decay(t, x, u, p, xp):
    return xp.stack([-p["k"] * x[..., 0]])


def test_an_executor_gives_the_serial_result():
    t = np.linspace(0.0, 4.0, 9)
    y = 3.0 * np.exp(-0.7 * t) + 0.02 * np.sin(7 * t)
    ds = sysid.from_arrays([t], {"x": [y]}, states=["x"])
    model = sysid.models.physics(decay, {"k": Parameter(0.3, bounds=(0.0, math.inf))},
                                 states=["x"])
    cfg = sysid.FitConfig(loss="sse", starts=2, seed=4, progress=False)
    serial = multistart(model, ds, cfg)
    with ProcessPoolExecutor(max_workers=2) as pool:
        pooled = sysid.fit(model, ds, cfg, executor=pool)
    assert serial.starts.equals(pooled.starts)
    assert len(serial.starts) == 2 and set(serial.starts["optimum"]) == {0}


def picky_decay(t, x, u, p, xp):
    """Decay whose function refuses rates above 2 (a start drawn there fails)."""
    if float(torch.as_tensor(p["k"]).detach()) > 2.0:
        raise ValueError("rate above 2")
    return xp.stack([-p["k"] * x[..., 0]])


def test_a_failed_start_is_recorded_and_the_others_kept():
    t = np.linspace(0.0, 4.0, 9)
    ds = sysid.from_arrays([t], {"x": [3.0 * np.exp(-0.7 * t) + 0.02 * np.sin(7 * t)]},
                           states=["x"])
    model = sysid.models.physics(picky_decay, {"k": Parameter(0.3, bounds=(0.01, 10.0))},
                                 states=["x"])
    cfg = sysid.FitConfig(loss="sse", starts=4, seed=2, progress=False)
    assert draw_starts(model, 4, seed=2)["k"].tolist()[2] > 2.0  # start 2 is drawn at 5.2
    res = sysid.fit(model, ds, cfg)
    row = res.starts.loc[2]
    assert row["stopped_reason"].startswith("failed: ConfigError") and "rate above 2" in \
        row["stopped_reason"]
    assert row["loss"] == math.inf and row["optimum"] == -1
    # (a least-squares step beyond 2 fails another start too; start 0 converges)
    failed = res.starts["stopped_reason"].str.startswith("failed")
    assert f"{int(failed.sum())} start(s) failed" in res.message and not failed[0]
    assert res.parameters.set_index("name").loc["k", "value"] == pytest.approx(0.7, rel=0.02)


def test_draw_starts_log_uniform_within_bounds_and_seeded():
    model = sysid.models.physics(
        oscillator, {"w": Parameter(0.8, bounds=(0.5, 3.0))}, states=["x", "v"])
    draws = draw_starts(model, 400, seed=1)
    assert draws.loc[0, "w"] == pytest.approx(0.8)  # start 0: the user's value
    w = draws["w"].to_numpy()[1:]
    assert np.all((w > 0.5) & (w < 3.0))
    # log-uniform on (0.5, 3): the median is the geometric mean sqrt(1.5) = 1.22 (400 draws:
    # the sample median's sd is about 0.06 in log units, so 0.15 is > 2.5 sd)
    assert abs(np.log(np.median(w)) - np.log(math.sqrt(1.5))) < 0.15
    assert draws.equals(draw_starts(model, 400, seed=1))
    assert not draws.equals(draw_starts(model, 400, seed=2))


def test_draw_ranges_for_open_bounds():
    def two(t, x, u, p, xp):
        return xp.stack([-p["k"] * x[..., 0] + p["c"]])

    model = sysid.models.physics(two, {"k": Parameter(2.0, bounds=(0.0, math.inf)),
                                       "c": Parameter(-1.0)}, states=["x"])
    draws = draw_starts(model, 500, seed=0)
    k, c = draws["k"].to_numpy()[1:], draws["c"].to_numpy()[1:]
    # positive with only a lower bound: a decade either side of the start, log-uniform
    assert k.min() >= 0.2 and k.max() <= 20.0
    assert np.mean(k < 2.0) == pytest.approx(0.5, abs=0.08)
    # unbounded: uniform over value -/+ 10 * |value|
    assert c.min() >= -11.0 and c.max() <= 9.0
    assert np.mean(c) == pytest.approx(-1.0, abs=0.6)


def test_distinct_optima_groups_by_loss_and_values():
    losses = np.array([5.0, 1.0, 1.05, 1.0, np.inf, 5.0])
    values = np.array([[3.0], [1.0], [1.001], [1.5], [9.0], [3.01]])
    ids = distinct_optima(losses, values)
    # 1 and 2: same loss (within 0.1) and values (within 2 %); 3: same loss, other values
    assert list(ids) == [2, 0, 0, 1, -1, 2]


def test_with_parameters_fixes_and_sets_without_changing_the_model():
    model = _model(0.8)
    fixed = with_parameters(model, {"w": 1.5}, fixed=["w"])
    table = fixed.parameter_table().set_index("name")
    assert table.loc["w", "value"] == pytest.approx(1.5)
    assert not bool(table.loc["w", "vary"])
    assert bool(model.parameter_table().set_index("name").loc["w", "vary"])
    with pytest.raises(ParameterError, match=r"\['omega'\] are not parameters of the model; "
                                             r"its parameters are \['w'\]"):
        with_parameters(model, {"omega": 1.0})


def test_bad_options_are_clear_errors():
    from sysid.training import Loss

    with pytest.raises(ConfigError, match=r"starts must be an integer >= 1; got 0"):
        sysid.FitConfig(starts=0)
    with pytest.raises(ConfigError, match=r"Loss: sigma of 'x' must be a finite number > 0; "
                                          r"got -0\.1"):
        sysid.FitConfig(loss=Loss(kind="wls", sigma={"x": -0.1}))
    ds, _, _ = _frequency_data()
    with pytest.raises(ConfigError, match=r"starts must be an integer >= 1; got -2"):
        multistart(_model(0.8), ds, _config(), starts=-2)
    with pytest.raises(ConfigError, match=r"multi-start: executor must be None \(the tasks one "
                                          r"after another in this process\), a concurrent"):
        sysid.fit(_model(0.8), ds, _config(starts=2), executor="threads")
    with pytest.raises(ConfigError, match=r"resume_from continues one fit"):
        sysid.fit(_model(0.8), ds, _config(starts=2), resume_from="x.pt")
    with pytest.raises(ParameterError, match=r"outside bounds"):
        with_parameters(_model(0.8), {"w": 7.0})


def test_fit_initial_starts_the_estimated_initial_states():
    # a logistic series whose first measurement is below zero (noise): from there the free
    # initial state starts where the logistic cannot be integrated over the run; started at a
    # positive value (e.g. a neighbouring fit's initial states) the fit converges
    t = np.linspace(0.0, 180.0, 12)
    truth = 197.27 / (1 + (197.27 / 3.9 - 1) * np.exp(-0.0313 * t))
    y = truth + np.array([-5.0, 1.0, -1.0, 2.0, -2.0, 1.0, 0.0, -1.0, 2.0, -2.0, 1.0, 0.0])
    ds = sysid.from_arrays([t], {"N": [y]}, states=["N"])
    model = sysid.models.physics("logistic")
    cfg = sysid.FitConfig(loss="sse", initial_states="free", progress=False)
    start = pd.DataFrame({"N": [4.0]}, index=pd.Index(["run0"], name="trajectory"))
    res = sysid.fit(model, ds, cfg, initial=start)
    assert str(res.stopped_reason) == "converged"
    # the least-squares N0 of 12 samples with errors of 2: within 3 of the truth
    assert res.initial_states.loc["run0", "N"] == pytest.approx(3.9, abs=3.0)
    with pytest.raises(ConfigError, match=r"initial has columns \['M'\], which are not states"):
        sysid.fit(model, ds, cfg, initial=pd.DataFrame({"M": [4.0]}, index=["run0"]))
    with pytest.raises(ConfigError, match=r"initial must be a DataFrame of initial states"):
        sysid.fit(model, ds, cfg, initial={"N": 4.0})
