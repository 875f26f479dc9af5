"""report.html opened in a real browser (headless Chromium driven by Selenium): every figure
loads, nothing is wider than the window, and the console stays free of errors.

Chromium comes from Debian's ``chromium`` and ``chromium-driver`` packages (browser builds cannot
be downloaded here, so Playwright's own is not an option); ``.ci/run`` installs them with apt-get
when they are missing, so this test runs in CI. Without a browser it is skipped and says why.
"""

from __future__ import annotations

import re
import shutil
import warnings

import pytest

import sysid
import sysid.systems as systems

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTHS = (1280, 700)  # a desktop window and a narrow one (half a laptop screen, a tablet)


def _browser() -> tuple[str, str]:
    binary = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver; .ci/run does this in CI)")
    return binary, driver


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    """The report of a 20-epoch Lotka-Volterra fit with a reference and a held-out run (~15 s)."""
    lv = systems.get("lotka_volterra")
    data = systems.make_dataset(lv, n_runs=3, n_obs=50, noise=0.02, seed=0)
    model = sysid.models.physics(lv, values={"a": 0.5, "b": 0.03, "c": 0.9, "d": 0.02})
    train = sysid.data.select_runs(data, ["run0", "run1"])
    result = sysid.fit(model, train, sysid.FitConfig(epochs=20, progress=False, seed=0))
    out = tmp_path_factory.mktemp("browser") / "rep"
    with warnings.catch_warnings():  # 20 epochs: the held-out run may leave the data's support
        warnings.simplefilter("ignore", sysid.analysis.ExtrapolationWarning)
        sysid.report(result, data, out=out, reference=lv, held_out=["run2"])
    return out / "report.html"


@pytest.fixture(scope="module")
def driver():
    binary, chromedriver = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    yield drv
    drv.quit()


IMAGES = """return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth,
    i.getBoundingClientRect().right]);"""
WIDE = """const w = document.documentElement.clientWidth;
return Array.from(document.querySelectorAll('body *')).filter(e => {
    const r = e.getBoundingClientRect();
    if (r.right <= w + 1) return false;
    for (let p = e.parentElement; p; p = p.parentElement) {
        if (getComputedStyle(p).overflowX === 'auto') return false;  // scrolls in its own box
    }
    return true;
}).map(e => e.tagName + ' ' + (e.className || '') + ' ' + Math.round(e.getBoundingClientRect().right));"""


@pytest.mark.parametrize("width", WIDTHS)
def test_report_renders_in_chromium(report_page, driver, width, tmp_path):
    html = report_page.read_text(encoding="utf-8")
    n_img = len(re.findall(r"<img ", html))
    assert n_img >= 8  # training, trajectories, residuals (2), reference trajectories, fields (2), parameters
    driver.set_window_size(width, 900)
    driver.get_log("browser")  # drop anything from before this page
    driver.get(report_page.as_uri())
    assert driver.title == "sysid fit report"
    images = driver.execute_script(IMAGES)
    assert len(images) == n_img
    client = driver.execute_script("return document.documentElement.clientWidth;")
    for alt, complete, natural, right in images:
        assert complete and natural > 0, f"figure '{alt}' did not load"
        assert right <= client + 1, f"figure '{alt}' sticks out of the window ({right} > {client})"
    # nothing wider than the window (wide tables scroll inside their own box)
    assert driver.execute_script("return document.documentElement.scrollWidth;") <= client + 1
    assert driver.execute_script(WIDE) == []
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], errors
    driver.save_screenshot(str(tmp_path / f"report_{width}.png"))  # for a person, when debugging
