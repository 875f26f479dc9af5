"""FitConfig and its parts: validation, short forms, TOML-style dicts, old keys; checkpoint files."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from fractions import Fraction

import pytest
import torch

from sysid.errors import ConfigError
from sysid.training import (
    Checkpoint,
    FitConfig,
    Loss,
    Optimizer,
    Refine,
    Shooting,
    SolverConfig,
    Validation,
    WarmStart,
)
from sysid.training.checkpoint import load_checkpoint, save_checkpoint


def test_defaults_round_trip_through_dict_and_toml():
    cfg = FitConfig(epochs=12, shooting=Shooting(horizons=(4, 8)), loss=Loss(weights={"x": 2.0}),
                    checkpoint="ck.pt", known_initial=("x",), starts=3)
    again = FitConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert cfg.checkpoint == Checkpoint(path="ck.pt")
    # the CLI reads configs from TOML: a [fit] table with one sub-table per part
    text = ('[fit]\nepochs = 40\nsolver = "dopri5"\n[fit.optimizer]\nlr = 1e-3\n'
            '[fit.shooting]\nhorizons = [5, 10]\n[fit.loss]\nkind = "lognormal"\n'
            'sigma = {}\n')
    cfg = FitConfig.from_dict(tomllib.loads(text)["fit"])
    assert cfg.shooting.horizons == (5, 10) and cfg.optimizer.lr == 1e-3
    assert cfg.solver.adaptive and cfg.solver.max_steps == 10_000  # the fit's solver defaults
    assert FitConfig.from_dict(FitConfig().to_dict()) == FitConfig()
    # replace works on the top level and on a part
    assert dataclasses.replace(cfg, seed=4).seed == 4
    assert dataclasses.replace(cfg.optimizer, lr=0.5).lr == 0.5


def test_short_forms_equal_the_parts():
    assert FitConfig(loss="sse").loss == Loss(kind="sse")
    assert FitConfig(shooting="single").shooting == Shooting(method="single")
    assert FitConfig(optimizer="adamw").optimizer == Optimizer(name="adamw")
    assert FitConfig(warm_start=False).warm_start == WarmStart(enabled=False)
    assert FitConfig(refine=True).refine == Refine(enabled=True)
    assert FitConfig(solver="dopri5").solver == SolverConfig(method="dopri5", rtol=1e-4, atol=1e-6,
                                                             max_steps=10_000, substeps=1)
    assert FitConfig(solver="midpoint").solver.method == "midpoint"  # any torch method
    assert FitConfig(solver={"substeps": 4}).solver.substeps == 4
    assert FitConfig(loss="log").loss.kind == "lognormal"  # the alias is stored by its name
    assert FitConfig(validation={"fraction": 0.2}).validation == Validation(fraction=0.2)


def test_unknown_key_names_it_with_suggestion():
    with pytest.raises(ConfigError, match=r"\[fit\]: unknown option 'epoch'.*Did you mean 'epochs'"):
        FitConfig.from_dict({"epoch": 10})
    with pytest.raises(ConfigError, match=r"\[fit.shooting\]: unknown option 'horizon'.*Did you "
                                          r"mean 'horizons'"):
        FitConfig.from_dict({"shooting": {"horizon": 10}})
    with pytest.raises(ConfigError, match=r"\[fit.solver\]: unknown option 'rtl'.*'rtol'"):
        FitConfig.from_dict({"solver": {"rtl": 1e-3}})
    # as a Python keyword too: the documented ConfigError, not dataclass's bare TypeError
    with pytest.raises(ConfigError, match=r"FitConfig: unknown option 'learning_rate'"):
        FitConfig(learning_rate=0.1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("key", "new"),
    [("lr", r"\[fit.optimizer\] lr.*FitConfig\(optimizer=Optimizer\(lr=...\)\)"),
     ("horizons", r"\[fit.shooting\] horizons"),
     ("substeps", r"\[fit.solver\] substeps.*SolverConfig\(substeps="),
     ("polish", r"\[fit.refine\] enabled.*Refine\(enabled="),
     ("stderr", r"\[fit.refine\] stderr"),
     ("validate_every", r"\[fit.validation\] every.*--set validation.every="),
     ("warm_start_epochs", r"\[fit.warm_start\] epochs"),
     ("weights", r"\[fit.loss\] weights")],
)
def test_flat_keys_of_the_old_layout_name_their_new_place(key, new):
    with pytest.raises(ConfigError, match=rf"'{key}' moved to the .* part: {new}"):
        FitConfig.from_dict({key: 1})
    with pytest.raises(ConfigError, match=rf"'{key}' moved"):
        FitConfig(**{key: 1})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, r"FitConfig: epochs must be an integer >= 1; got 0"),
        ({"starts": 0}, r"FitConfig: starts must be an integer >= 1; got 0"),
        ({"progress": "yes"}, r"FitConfig: progress must be True or False"),
        ({"optimizer": Optimizer(lr=1.0), "seed": -1}, r"seed must be an integer >= 0"),
        ({"optimizer": {"lr": -1.0}}, r"Optimizer: lr must be a finite number > 0; got -1.0"),
        ({"optimizer": "sgd"}, r"Optimizer: name must be one of 'adam', 'adamw', 'rmsprop'"),
        ({"optimizer": {"min_lr_factor": 0.0}}, r"min_lr_factor must lie in \(0, 1\]"),
        ({"solver": "rk45"}, r"SolverConfig: unknown method 'rk45'"),
        ({"solver": "RK45"}, r"solver method 'RK45' is a SciPy method, which computes no gradients"),
        ({"solver": {"step": 0.1}}, r"solver step=0.1 is not used by fit.*substeps"),
        ({"solver": {"adjoint": True}}, r"adjoint=True needs an adaptive method"),
        ({"loss": "mae"}, r"Loss: kind must be one of 'nmse', 'sse', .*got 'mae'"),
        ({"loss": "mse"}, r"kind 'mse' was renamed: use 'nmse' .* or 'sse'"),
        ({"loss": "wls"}, r"kind 'wls' .* needs the noise standard deviation"),
        ({"loss": {"kind": "wls", "sigma": {"x": -0.1}}}, r"sigma of 'x' must be a finite number > 0"),
        ({"loss": {"kind": "wls", "sigma": {"x": 0.0}}}, r"sigma of 'x' must be a finite number > 0"),
        ({"loss": {"kind": "sse", "sigma": {"x": 0.1}}}, r"sigma is used by kind='wls' only"),
        ({"loss": {"weights": {"x": -1.0}}}, r"weight of 'x' must be a finite number >= 0"),
        ({"loss": {"weights": [1.0]}}, r"weights must map state names to numbers"),
        ({"shooting": "sideways"}, r"Shooting: method must be one of 'auto', 'single', 'multiple'"),
        ({"shooting": {"horizons": (1, 5)}}, r"horizons must be .* >= 2 samples"),
        ({"shooting": {"horizons": 5}}, r"horizons must be a list of window lengths"),
        ({"shooting": {"stage_epochs": (3,), "horizons": (4, 8)}}, r"one positive epoch count per horizon"),
        ({"shooting": {"stage_epochs": (3, 3), "horizons": (4, 8)}, "epochs": 10},
         r"stage_epochs \(3, 3\) add up to 6 but epochs is 10"),
        ({"shooting": {"method": "single", "horizons": (4,)}},
         r"method='single' .* \['horizons'\] \(settings of multiple shooting\) do not apply"),
        ({"shooting": {"final_stride": 0}}, r"final_stride must be an integer >= 1"),
        ({"warm_start": {"smoothing_points": 6}}, r"smoothing_points must be odd .* Use 7"),
        ({"warm_start": "no"}, r"warm_start must be a WarmStart, a bool or a mapping"),
        ({"warm_start": {"enabled": 1}}, r"WarmStart: enabled must be True or False"),
        ({"validation": {"fraction": 1.0}}, r"Validation: fraction must lie in \[0, 1\)"),
        ({"validation": {"patience": 0}}, r"Validation: patience must be an integer >= 1"),
        ({"checkpoint": {"every": 0}}, r"Checkpoint: every must be an integer >= 1"),
        ({"checkpoint": 5}, r"checkpoint must be a Checkpoint, a str or a mapping"),
        ({"refine": {"max_iterations": 0}}, r"Refine: max_iterations must be an integer >= 1"),
        ({"time_scale": "years"}, r"time_scale must be one of \['characteristic', 'duration'\]"),
    ],
)
def test_invalid_values_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        FitConfig(**options)


def test_parts_reject_bad_tables():
    with pytest.raises(ConfigError, match=r"\[fit.optimizer\]: expected a table of options; got 3"):
        Optimizer.from_dict(3)
    with pytest.raises(ConfigError, match=r"FitConfig.from_dict: expected a mapping; got list"):
        FitConfig.from_dict([1])


def test_checkpoint_is_atomic_and_tensor_only(tmp_path):
    path = tmp_path / "ck.pt"
    state = {"model": {"w": torch.ones(3)}, "epoch": 4, "history": [{"loss": 1.5}]}
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 4 and torch.equal(loaded["model"]["w"], torch.ones(3))
    # no temporary file is left behind in the folder
    assert sorted(os.listdir(tmp_path)) == ["ck.pt"]


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(ConfigError, match="is not a sysid fit checkpoint"):
        load_checkpoint(other)

    # an object whose unpickling would run a constructor: refused by weights_only loading
    evil = tmp_path / "evil.pt"
    torch.save({"format": "sysid-fit-checkpoint", "version": 1, "x": Fraction(1, 3)}, evil)
    with pytest.raises(ConfigError, match="cannot read checkpoint"):
        load_checkpoint(evil)


def test_stop_reasons_are_strings_exported_from_training_and_sysid():
    import json

    import sysid
    from sysid.training import StopReason

    assert sysid.StopReason is StopReason
    assert StopReason.COMPLETED == "completed" and f"{StopReason.MAX_TIME}" == "max_time"
    assert json.dumps(StopReason.DIVERGED) == '"diverged"'
    assert [r.value for r in StopReason] == ["completed", "converged", "iteration_limit",
                                             "target_reached", "early_stopping", "max_time",
                                             "interrupted", "diverged", "skipped"]
