"""FitConfig: validation, TOML-style dicts, the curriculum, checkpoints files."""

from __future__ import annotations

import os
import tomllib
from fractions import Fraction

import pytest
import torch

from sysid.errors import ConfigError
from sysid.training import FitConfig
from sysid.training.checkpoint import load_checkpoint, save_checkpoint


def test_defaults_round_trip_through_dict_and_toml():
    cfg = FitConfig(epochs=12, horizons=(4, 8), weights={"x": 2.0}, checkpoint="ck.pt")
    again = FitConfig.from_dict(cfg.to_dict())
    assert again == cfg
    # the CLI reads configs from TOML: lists become tuples, numbers stay numbers
    text = 'epochs = 40\nlr = 1e-3\nhorizons = [5, 10]\nsolver = "dopri5"\n'
    cfg = FitConfig.from_dict(tomllib.loads(text))
    assert cfg.horizons == (5, 10) and cfg.lr == 1e-3 and cfg.adaptive


def test_unknown_key_names_it_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown option 'horizon'.*Did you mean 'horizons'"):
        FitConfig.from_dict({"horizon": 10})
    with pytest.raises(TypeError, match="learning_rate"):
        FitConfig(learning_rate=0.1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, r"epochs must be an integer >= 1; got 0"),
        ({"lr": -1.0}, r"lr must be a finite number > 0; got -1.0"),
        ({"solver": "rk45"}, r"solver must be one of .*got 'rk45'"),
        ({"loss": "mae"}, r"loss must be one of 'mse', 'log', 'relative'; got 'mae'"),
        ({"horizons": (1, 5)}, r"horizons must be .* >= 2 samples"),
        ({"stage_epochs": (3,), "horizons": (4, 8)}, r"one positive epoch count per horizon"),
        ({"stage_epochs": (3, 3), "horizons": (4, 8), "epochs": 10}, r"add up to 6 but epochs is 10"),
        ({"adjoint": True}, r"adjoint=True needs an adaptive solver"),
        ({"smoothing_points": 6}, r"smoothing_points must be odd .* Use 7"),
        ({"weights": {"x": -1.0}}, r"weight of 'x' must be a finite number >= 0"),
        ({"optimizer": "sgd"}, r"optimizer must be one of"),
        ({"validation_fraction": 1.0}, r"validation_fraction must lie in \[0, 1\)"),
    ],
)
def test_invalid_values_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        FitConfig(**options)


def test_stages_split_epochs_over_horizons():
    assert FitConfig(epochs=10, horizons=(4, 8, 16)).stages() == [(4, 3), (8, 3), (16, 4)]
    assert FitConfig(epochs=10, horizons=(4, 8), stage_epochs=(2, 8)).stages() == [(4, 2), (8, 8)]
    # fewer epochs than stages: the longest horizons are kept, one epoch each
    assert FitConfig(epochs=1, horizons=(4, 8, 16)).stages() == [(16, 1)]


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
