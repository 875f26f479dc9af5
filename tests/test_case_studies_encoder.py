"""The hidden-state encoder case study (two tanks with overflow, EMPS) in fast mode.

Fast mode trains the networks for a few dozen epochs on a fraction of the data: the numbers are
not the study's result (full mode, in case_studies/README.md); the test checks that every model
is fitted and scored on the same held-out samples and what the script writes. The EMPS part needs
the SHARED-ONLY file in ``../shared/datasets/physics/`` (skipped without it). About 1.5 minutes
of one core.
"""

from __future__ import annotations

import numpy as np
import pytest
from case_study_support import assert_outputs
from case_study_support import load as _load


def test_tank_data_overflow_and_hidden_level():
    study = _load("encoder")
    train, test, hidden = study.tanks_data(study.FAST)
    assert train.sizes["trajectory"] == study.FAST.train_runs
    assert test.sizes["trajectory"] == study.FAST.test_runs
    # the upper tank reaches its rim (overflow) in some runs and never goes above it
    assert hidden.max() == pytest.approx(study.H1MAX, abs=1e-3) and (hidden <= study.H1MAX).all()
    # the overflow caps the flow into the lower tank at k1 sqrt(h1max): h2 <= (k1/k2)^2 plus noise
    assert np.nanmax(train["level"].values) < (study.K1 / study.K2) ** 2 + 5 * study.NOISE


@pytest.mark.slow
def test_encoder_study_fast(tmp_path, shared_datasets):
    data = shared_datasets / "physics" / "emps_estimation_raw.csv"
    study = _load("encoder").main(["--fast", "--out", str(tmp_path), "--data", str(data)])
    tanks = study.tables["tanks_heldout_level_rmse_mm"]
    assert {"encoder", "black box, start fitted to 10 samples", "black box, latent_initial",
            "physics (two_tanks.toml), start fitted to 10 samples"} == set(tanks.index)
    assert np.isfinite(tanks.to_numpy()).all() and (tanks.to_numpy() > 0).all()
    emps = study.tables["emps_heldout_1s_position_rmse_mm"]
    assert len(emps.columns) == 8 + 2  # eight 1-s segments, mean and median
    # the published EMPS parameters stay at millimetres on 1-s segments (emps.py: ~1.8 mm)
    assert emps.loc["physics (published), start fitted to 6 samples", "median"] < 3.0
    failed = [c.row() for c in study.checks if not c.passed]
    assert not failed, failed
    assert_outputs(study, figures=2)
