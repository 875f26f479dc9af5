"""The physics case studies (pendulum, EMPS), the seed-claims study and the SINDy benchmark's helpers.

The case studies run in fast mode through ``main(["--fast", "--out", tmp, ...])`` and return their
checks (the fast-mode tolerances are explained next to them in each script); the tests assert
them and a few numbers directly with their own tolerances. The pendulum and EMPS data are
SHARED-ONLY files read from ``../shared/datasets/physics/``: those tests skip when the folder is
missing. Together about 3 minutes of one core. The benchmark needs PySINDy, which the test suite
does not: only its PySINDy-free helpers are tested here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from case_study_support import assert_outputs as _assert_outputs
from case_study_support import check as _check
from case_study_support import REPO
from case_study_support import load as _load





@pytest.mark.slow
def test_pendulum_fast(tmp_path, shared_datasets):
    data = shared_datasets / "physics" / "multiarm_pendulum_single_freeswing.csv"
    study = _load("pendulum").main(["--fast", "--out", str(tmp_path), "--data", str(data)])
    failed = [c.row() for c in study.checks if not c.passed]
    assert not failed, failed
    # w2 = m a g / J from the paper's identified values: 1 % (the fast fit, on 2 runs at 50 Hz,
    # measured 0.4 %); the small-amplitude period 2 pi / sqrt(w2) = 0.784 s then within 0.5 %
    w2 = _check(study, "w2 [1/s^2]").value
    assert abs(2 * math.pi / math.sqrt(w2) - 0.784) < 0.005 * 0.784
    # the published-parameter simulation reproduces the stated 0.003-0.026 rad on the val runs
    published = _check(study, "max val theta RMSE, first 2 s, published parameters [rad]").value
    assert 0.003 <= published <= 0.026
    table = study.tables["theta_rmse_rad"]
    assert set(table.index.get_level_values("model")) == {"published", "physics", "hybrid"}
    assert len(table) == 3 * 6  # three models, six runs
    _assert_outputs(study, figures=1)


@pytest.mark.slow
def test_emps_fast(tmp_path, shared_datasets):
    data = shared_datasets / "physics" / "emps_estimation_raw.csv"
    study = _load("emps").main(["--fast", "--out", str(tmp_path), "--data", str(data)])
    failed = [c.row() for c in study.checks if not c.passed]
    assert not failed, failed
    params = study.tables["parameters"]
    # the mass is the best-determined parameter: within 10 % of 95.1089 kg in fast mode
    assert abs(params.loc["M", "fitted"] / 95.1089 - 1) < 0.10
    # every friction force positive (bounded by construction) and the offset negative as published
    assert params.loc["Fv", "fitted"] > 0 and params.loc["Fc", "fitted"] > 0
    assert params.loc["offset", "fitted"] < 0
    pred = study.tables["heldout_1s_ahead_position_rmse_mm"]
    assert len(pred) == 8  # eight whole seconds after t = 16.5 s in a 24.84 s record
    # a 1-s prediction that drifts off would reach centimetres; both stay at millimetres
    assert pred.to_numpy().max() < 10.0
    _assert_outputs(study, figures=1)


def test_missing_data_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.csv"
    for name in ("pendulum", "emps"):
        module = _load(name)
        with pytest.raises(FileNotFoundError, match="nowhere.csv.*--data PATH"):
            module.load(missing)


@pytest.mark.slow
def test_resnet_vs_ode_fast(tmp_path):
    study = _load("resnet_vs_ode").main(["--fast", "--out", str(tmp_path)])
    failed = [c.row() for c in study.checks if not c.passed]
    assert not failed, failed
    memory = study.tables["peak_memory_growth_mb"]
    # direct backprop stores every step: growing the horizon 30x (10 -> 300 steps) must grow its
    # memory by well over 10 MB, while the adjoint's stays within a few MB (allocator noise)
    assert memory.loc[300, "direct"] - memory.loc[10, "direct"] > 10.0
    assert memory.loc[300, "adjoint"] < 5.0
    acc = study.tables["accuracy"]
    assert set(acc["model"]) == {"ode", "resnet", "resnet_dt"}
    # the ResNet with the step as input has exactly `width` more weights than the ODE
    irr = acc[acc["data"] == "irregular"].set_index("model")
    assert irr.loc["resnet_dt", "params"] - irr.loc["ode", "params"] == irr.loc["ode", "width"]
    _assert_outputs(study, figures=1)


def test_resnet_rollout_is_euler_of_the_ode():
    """The seed observation itself: one ResNet step with g = dt f is one Euler step of the ODE."""
    import torch

    mod = _load("resnet_vs_ode")
    mlp = mod.MLP(2, 2, 8, seed=0).double()
    z0 = torch.tensor([[0.3, -0.2], [1.0, 0.5]], dtype=torch.float64)
    dt = 0.01
    t = torch.tensor([[0.0, dt]] * 2, dtype=torch.float64)

    class Scaled(torch.nn.Module):  # g(z) = dt * f(z): the residual map of an Euler step
        def forward(self, z):
            return dt * mlp(z)

    with torch.no_grad():
        res = mod.rollout("resnet", Scaled(), z0, t, dt_scale=1.0)
        euler = z0 + dt * mlp(z0)
        ode = mod.rollout("ode", mlp, z0, t, dt_scale=1.0)
    torch.testing.assert_close(res[:, 1], euler, rtol=0, atol=1e-15)
    # RK4 on the same field agrees with Euler to O(dt^2) over one step
    assert float((ode[:, 1] - euler).abs().max()) < 10 * dt**2


def test_bench_helpers_without_pysindy():
    bench = _load("bench_vs_sindy", REPO / "benchmarks")
    # characteristic time of x = A sin(w t): std(x) / rms(x') = 1 / w exactly (whole periods)
    import xarray as xr  # noqa: F401

    from sysid.data import from_arrays

    w = 3.0
    t = np.linspace(0.0, 2 * math.pi / w * 5, 2001)
    ds = from_arrays([t], {"x": [2.0 * np.sin(w * t)], "v": [2.0 * w * np.cos(w * t)]},
                     states=["x", "v"])
    assert bench.characteristic_time(ds, ["x", "v"]) == pytest.approx(1.0 / w, rel=1e-4)
    # coefficient error: the largest relative error over the system's parameters
    ref = {"a": 0.55, "b": 0.028, "c": 0.80, "d": 0.024}
    assert bench.coef_error(dict(ref, b=0.028 * 1.1), "lotka_volterra") == pytest.approx(0.1)
    assert math.isnan(bench.coef_error({"a": 0.55}, "lotka_volterra"))
    # the exact right-hand side has zero free-run error on the noise-free held-out runs
    train, test = bench.datasets("lotka_volterra", 0.05, "sparse")
    from sysid.systems import get

    lv = get("lotka_volterra")
    err = bench.trajectory_error(lv.numpy_rhs(), test, lv.states)
    assert err < 1e-4  # LSODA at rtol 1e-6 against make_dataset's rtol 1e-8 reference
    # a blow-up is reported as inf, not as an exception
    assert bench.trajectory_error(lambda t, y: y**2, test, lv.states) == math.inf
    assert len(bench.run_ids(train)) == bench.N_TRAIN
