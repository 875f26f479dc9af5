"""The ensemble-band case study (hare-lynx forecast band and its coverage) in fast mode.

Fast mode fits 6 bootstrap members: too few to judge the coverage (each held-out value is 10 %),
so the test checks what the study measures and writes, and the relations that hold for any
ensemble, not the coverage itself (the full-mode numbers are in case_studies/README.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from case_study_support import load as _load


@pytest.mark.slow
def test_ensemble_band_fast(tmp_path):
    study = _load("ensemble_band").main(["--fast", "--out", str(tmp_path), "--workers", "2"])
    cov = study.tables["coverage"]
    assert list(cov.index) == ["trajectory band", "observation band"]
    for col in ("held-out coverage 1916-20", "coverage 1900-20"):
        assert ((cov[col] >= 0) & (cov[col] <= 1)).all()
    # measurement noise only widens the band: the observation band covers at least as much
    assert (cov.loc["observation band", "coverage 1900-20"]
            >= cov.loc["trajectory band", "coverage 1900-20"])
    assert (cov.loc["observation band", "hare q95/q05 1916-20"]
            > cov.loc["trajectory band", "hare q95/q05 1916-20"] > 1.0)
    held = study.tables["held_out_values"]
    assert len(held) == 10  # 1916-1920, hare and lynx
    assert (held["q05"] <= held["median"]).all() and (held["median"] <= held["q95"]).all()
    inside = held["inside"].to_numpy(bool)
    assert cov.loc["observation band", "held-out coverage 1916-20"] == pytest.approx(inside.mean())
    params = study.tables["parameters_90pct_interval"]
    assert list(params.index) == ["a", "b", "c", "d"]
    assert (params["low"] <= params["high"]).all() and np.isfinite(params["estimate"]).all()
    out = tmp_path / "ensemble_band"
    assert (out / "band_hare_lynx.png").is_file() and (out / "summary.json").is_file()
