"""Every result a user looks at in a notebook shows itself briefly: a one-line repr, a text
summary() and HTML with its facts, a table and a figure (ensembles, comparisons, profiles,
bootstrap results; FitResult has its own tests in test_docs_display.py)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

import sysid
from sysid.estimation import bootstrap
from sysid.models import Parameter
from sysid.parallel import SerialExecutor
from test_estimation_bootstrap import N, T, ramp  # the linear problem of the bootstrap tests


@pytest.fixture(scope="module")
def linear():
    rng = np.random.default_rng(3)
    y = 1.0 + 0.8 * T + 0.75 * T**2 + 0.1 * rng.standard_normal(N)
    ds = sysid.from_arrays([T], {"x": [y]}, states=["x"])
    model = sysid.models.physics(ramp, {"a": Parameter(0.3, units="1/s"), "b": Parameter(2.0)},
                                 states=["x"])
    cfg = sysid.FitConfig(loss="sse", initial_states="free", dtype="float64", progress=False)
    return ds, model, cfg, sysid.fit(model, ds, cfg)


def _png(page: str) -> bytes:
    found = re.search(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert found, "no inline PNG figure in the HTML"
    return base64.b64decode(found.group(1))


def test_ensemble_shows_counts_intervals_and_a_figure(linear):
    ds, model, cfg, _ = linear
    ens = sysid.ensemble(model, ds, cfg, members=3, kind="starts", executor=SerialExecutor(),
                         progress=False)
    text = repr(ens)
    assert "\n" not in text and len(text) < 300  # the dataclass repr printed every data set
    assert text.startswith("Ensemble(kind='starts', members=3, succeeded=3, parameters={a=")
    lines = ens.summary().splitlines()
    assert lines[0] == "sysid Ensemble (starts)"
    assert lines[2] == "members: 3: 3 succeeded, 0 failed"
    header = next(l for l in lines if l.split()[:1] == ["name"])
    assert header.split() == ["name", "estimate", "q0.05", "q0.95", "sd", "units", "n_members"]
    page = ens._repr_html_()
    assert "<td style='text-align:left'>3: 3 succeeded, 0 failed</td>" in page
    assert "1/s" in page and "q0.95" in page
    assert _png(page).startswith(b"\x89PNG")


def test_profile_and_bootstrap_show_their_intervals(linear):
    ds, _, _, res = linear
    prof = sysid.analysis.profile(res, ds, "a", points=0)
    lo, hi = prof.interval("a")
    assert repr(prof) == f"ProfileResult(level=0.95, intervals={{a=[{lo:.4g}, {hi:.4g}]}})"
    summary = prof.summary()
    assert "error model: sse" in summary and "wald_lower" in summary
    page = prof._repr_html_()
    assert "lower_status" in page and _png(page).startswith(b"\x89PNG")

    boot = bootstrap(res, ds, n=6, seed=2)
    assert repr(boot).startswith("BootstrapResult(n=6, failed=0, level=0.95, intervals={a=[")
    assert "replicates: 6 requested, 0 failed" in boot.summary()
    page = boot._repr_html_()
    assert "bias" in page and _png(page).startswith(b"\x89PNG")


def test_comparison_shows_metrics_valid_time_and_error_curve(linear):
    ds, _, _, res = linear
    cmp = sysid.compare(res, ds)
    text = repr(cmp)
    nrmse = float(cmp.table().loc[("all", "x"), "nrmse"])  # all samples pooled
    assert text == f"Comparison(runs=1, variables=['x'], worst_nrmse={nrmse:.4g})"
    summary = cmp.summary()
    assert "valid prediction time (error < 0.4): median 100% of a run" in summary
    page = cmp._repr_html_()
    assert "fit_percent" in page and _png(page).startswith(b"\x89PNG")


def test_names_are_escaped_in_html(linear):
    ds, model, cfg, _ = linear
    from sysid._display import facts_html, table_html
    import pandas as pd

    assert "&lt;script&gt;" in facts_html([("run", "<script>")])
    assert "<script>" not in table_html(pd.DataFrame({"name": ["<script>"]}))
