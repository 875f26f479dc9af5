"""The hare-lynx science case study (distillation, derived quantities, identifiability) in fast mode.

Fast mode trains 2 UDE members for 20 epochs: too short for the study's findings about the
network (those are full-mode numbers in case_studies/README.md), so this test checks the reference
comparisons (which need no training) and that every step runs and writes what it says.
"""

from __future__ import annotations

import numpy as np
import pytest
from case_study_support import check, load as _load


@pytest.mark.slow
def test_hare_lynx_science_fast(tmp_path):
    study = _load("hare_lynx_science").main(["--fast", "--out", str(tmp_path)])
    # the Lotka-Volterra reference under its covariance: coexistence (c/d, a/b) within 10 % of the
    # Stan means and the period within 5 % of the data's (least squares, no training involved)
    assert study.passed, study.checks_frame()
    assert check(study, "reference cycle period [yr]").value == pytest.approx(10.29, rel=0.05)
    ref = study.tables["reference_derived"]
    assert (ref["low"] <= ref["estimate"]).all() and (ref["estimate"] <= ref["high"]).all()
    assert ref.loc["period", "n_members"] == 21  # the centre and 20 draws
    # identifiability of a, b, c, d: four determined directions, sd in log units
    spec = study.tables["lv_identifiability"]
    assert len(spec) == 4 and spec["determined"].all() and (spec["sd"] < 1).all()
    inc = study.tables["distilled_inclusion"]
    assert ((inc["frequency"] > 0) & (inc["frequency"] <= 1)).all() and set(inc["n_members"]) == {2}
    ude = study.tables["ude_derived"]
    assert {"kind", "low", "high", "distance_to_data", "extrapolation"} <= set(ude.columns)
    assert (ude.loc["field error at data", "n_members"] == 2
            and ude.loc["field error outside support", "extrapolation"])
    both = study.tables["ude_vs_reference"]
    assert "reference" in both.columns and np.isfinite(both["estimate"]).all()
    ab = study.tables["free_ude_absorption"]
    assert set(ab["parameter"]) == {"a", "c"} and ab["correlation"].abs().le(1).all()
    out = tmp_path / "hare_lynx_science"
    assert "## Derived quantities" in (out / "ude_report" / "report.md").read_text()
    assert (out / "summary.json").is_file()
