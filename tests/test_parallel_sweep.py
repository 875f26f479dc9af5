"""Sweeps: trials from a grid or random draws, scored on held-out data, best config."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import sysid
import sysid.models
from parallel_helpers import decay, decay_data
from sysid.errors import ConfigError
from sysid.models import Parameter
from sysid.parallel import Holdout, SerialExecutor, SweepResult
from sysid.parallel.sweeps import apply_settings, held_out_error, split_holdout, trials
from sysid.training import FitConfig

SERIAL = SerialExecutor()
BASE = FitConfig(epochs=10, dtype="float64", shooting={"horizons": (4,)}, warm_start={"epochs": 10},
                 progress=False)


def _physics(k=0.3):
    return sysid.models.physics(decay, {"k": Parameter(k, bounds=(0, 5))}, ["x"],
                                dtype=torch.float64)


def test_grid_trials_are_every_combination_in_order():
    t = trials({"lr": [0.1, 0.2], "model.width": [4, 8, 16]}, None, None, 0)
    assert len(t) == 6 and t[0] == {"lr": 0.1, "model.width": 4} and t[-1]["model.width"] == 16


def test_random_trials_are_seeded_and_inside_their_ranges():
    spec = {"lr": {"log_uniform": [1e-4, 1e-1]}, "epochs": {"int_uniform": [5, 9]},
            "solver": ["rk4", "euler"]}
    a = trials(None, spec, 20, seed=3)
    assert a == trials(None, spec, 20, seed=3) and a != trials(None, spec, 20, seed=4)
    assert all(1e-4 <= s["lr"] <= 1e-1 and 5 <= s["epochs"] <= 9 for s in a)
    assert {s["solver"] for s in a} == {"rk4", "euler"}
    both = trials({"stride": [1, 2]}, {"lr": {"uniform": [0.1, 0.2]}}, 3, 0)
    assert len(both) == 6 and [s["stride"] for s in both] == [1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("grid, random, samples, match", [
    (None, None, None, r"give grid= .* or random="),
    ({"lr": []}, None, None, r"grid key 'lr' must list at least one value"),
    (None, {"lr": {"normal": [0, 1]}}, 2, r"random key 'lr' must be a list of choices or one of"),
    (None, {"lr": {"log_uniform": [0, 1]}}, 2, r"log_uniform needs 0 < low < high"),
    (None, {"lr": [0.1]}, None, r"a random search needs samples="),
    ({"lr": [0.1]}, None, 3, r"samples= sets the number of random draws; it needs random="),
    ({"lr": [0.1]}, {"lr": [0.2]}, 1, r"keys \['lr'\] are in both grid and random"),
])
def test_trials_refuse_bad_specs(grid, random, samples, match):
    with pytest.raises(ConfigError, match=match):
        trials(grid, random, samples, 0)


def test_apply_settings_changes_fit_keys_and_names_bad_ones():
    cfg = apply_settings(BASE, {"fit.optimizer.lr": 0.5, "epochs": 3, "model.width": 8})
    assert cfg.optimizer.lr == 0.5 and cfg.epochs == 3 and cfg.shooting.horizons == (4,)
    with pytest.raises(ConfigError, match=r"sweep: key 'epochs.x': 'epochs' is not a part"):
        apply_settings(BASE, {"epochs.x": 1})
    with pytest.raises(ConfigError, match=r"sweep: trial .*'lrr'"):
        apply_settings(BASE, {"lrr": 0.1})


def test_holdout_settings_and_splits():
    with pytest.raises(ConfigError, match=r"exactly one of runs= .* and time="):
        Holdout()
    with pytest.raises(ConfigError, match=r"time must be a fraction in \(0, 1\); got 1.5"):
        Holdout(time=1.5)
    data = decay_data(runs=4, n=10)
    train, ev, scoring = split_holdout(data, Holdout(time=0.25))
    assert ev is data and int(train.sizes["obs"]) < 10
    assert scoring["after"]["r0"] == pytest.approx(3.0 - 0.25 * 3.0)
    train, ev, scoring = split_holdout(data, Holdout(runs=("r1",)))
    assert sysid.data.run_ids(ev) == ["r1"] and scoring["after"] is None
    assert Holdout(runs=0.25).describe() == "the last 25% of the runs"


def test_held_out_error_is_zero_for_the_true_model_on_clean_data():
    t = np.linspace(0, 3, 10)
    data = sysid.data.from_arrays([t], {"x": [np.exp(-0.3 * t)]}, states=["x"], runs=["a"])
    result = sysid.fit(_physics(0.3), data, FitConfig(
        epochs=1, optimizer={"lr": 1e-12}, warm_start=False, refine=False, dtype="float64",
        progress=False))
    err = held_out_error(result, data, {"after": {"a": 2.0}}, {"x": 1.0})
    # the model is the true system (lr 1e-12: unchanged); RK45 at rtol 1e-6
    assert err["score"] < 1e-5 and set(err) == {"error_x", "score"}


def test_sweep_over_a_model_factory_ranks_trials_by_held_out_error():
    data = decay_data(runs=4, n=12)

    def factory(k0=0.3):
        return _physics(k0)

    frozen = FitConfig(epochs=2, dtype="float64", shooting={"horizons": (4,)}, warm_start=False,
                       refine=False, progress=False)
    res = sysid.sweep(factory, data, frozen, grid={"model.k0": [0.05, 0.7],
                                                   "optimizer.lr": [1e-6]},
                      executor=SERIAL, validation=Holdout(runs=("r3",)), progress=False)
    assert isinstance(res, SweepResult) and len(res.table) == 2
    assert res.holdout == "runs ['r3']"
    scores = res.table["score"].to_numpy()
    assert np.all(np.diff(scores) >= 0)
    # no warm start, no refinement and lr 1e-6 leave k at its start: the true 0.7 must win
    assert res.best_settings == {"model.k0": 0.7, "optimizer.lr": 1e-6}
    assert res.best_config.optimizer.lr == 1e-6
    assert float(res.best_result.parameters["value"].iloc[0]) == pytest.approx(0.7, abs=1e-3)


def test_sweep_default_holdout_and_errors():
    data = decay_data(runs=2, n=12)
    res = sysid.sweep(_physics(), data, BASE, grid={"epochs": [2]}, executor=SERIAL,
                      progress=False)
    assert res.holdout == "the last 20% of every run's time span"
    assert math.isfinite(res.table["score"].iloc[0])
    with pytest.raises(ConfigError, match=r"keys \['model.width'\] change the model; pass a factory"):
        sysid.sweep(_physics(), data, BASE, grid={"model.width": [2]}, executor=SERIAL)
    with pytest.raises(ConfigError, match=r"model must be a sysid.models.Model or a factory"):
        sysid.sweep(3, data, BASE, grid={"lr": [0.1]}, executor=SERIAL)
