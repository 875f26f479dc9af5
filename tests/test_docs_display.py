"""FitResult shows itself briefly: a one-line repr, a documented summary(), and HTML for Jupyter."""

from __future__ import annotations

import base64
import re

import pytest

import sysid
import sysid.systems as systems


@pytest.fixture(scope="module")
def result():
    """A 20-epoch Lotka-Volterra fit (about 3 s)."""
    lv = systems.get("lotka_volterra")
    data = systems.make_dataset(lv, n_runs=2, n_obs=40, noise=0.02, seed=0)
    model = sysid.models.physics(lv, values={"a": 0.5, "b": 0.03, "c": 0.9, "d": 0.02})
    return sysid.fit(model, data, sysid.FitConfig(epochs=20, progress=False, seed=0))


def test_repr_is_one_line_without_the_history(result):
    text = repr(result)
    assert "\n" not in text and str(result) == text
    assert text.startswith("FitResult(stopped='completed', epochs=20, best_epoch=")
    assert re.search(r"parameters=\{a=0\.\d+±[\d.e-]+, b=", text)
    assert text.endswith("model=PhysicsField['prey', 'predator'])")
    assert len(text) < 300  # the old dataclass repr printed every history row and the config


def test_summary_names_the_stop_the_quality_and_intervals(result):
    lines = result.summary().splitlines()
    assert lines[0].startswith("stopped: completed")  # + the message (e.g. the shooting method)
    assert lines[1].startswith("epochs: 20 (model from epoch ")
    assert lines[2].startswith("final training loss: ")
    assert "parameters:" in lines
    header = lines[lines.index("parameters:") + 1].split()
    assert header == ["name", "value", "stderr", "ci95_low", "ci95_high", "units", "vary"]
    rows = result._parameter_rows()
    # the fit's own 95 % interval: value ± q stderr, q Student's t quantile with n - P degrees of
    # freedom (the noise level is estimated), a little above the normal 1.96 for these data
    a = rows.set_index("name").loc["a"]
    q = (a["ci95_high"] - a["value"]) / a["stderr"]
    assert a["value"] - a["ci95_low"] == pytest.approx(q * a["stderr"], rel=1e-9)
    assert 1.959963984540054 < q < 2.1


def test_html_for_notebooks_has_facts_parameters_and_a_figure(result):
    page = result._repr_html_()
    assert "<th style='text-align:left'>stopped</th><td style='text-align:left'>completed" in page
    assert "ci95_low" in page and "1/year" in page
    png = re.search(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")
