"""The documentation site's sources hold together (the build itself is ``make docs``, a step of
``.ci/run`` with warnings as errors; these checks are the cheap part that needs no Sphinx)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
GALLERY = REPO / "examples" / "gallery"


def _toctree_entries(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"\.\. toctree::\n((?:[ \t]+.*\n|\n)+)", text):
        out += [ln.strip() for ln in block.splitlines() if ln.strip() and not ln.strip().startswith(":")]
    return out


def test_every_page_is_reachable_from_the_index():
    top = _toctree_entries(DOCS / "index.rst")
    assert top == ["getting_started", "user_guide/index", "auto_examples/index", "case_studies",
                   "api/index", "changelog", "design"]
    guide = _toctree_entries(DOCS / "user_guide" / "index.rst")
    pages = sorted(p.stem for p in (DOCS / "user_guide").glob("*.rst") if p.stem != "index")
    assert sorted(guide) == pages
    # the user guide covers what the issue lists
    for topic in ("data", "models", "equations", "training", "solvers", "analysis", "cli", "many_fits"):
        assert topic in guide


def test_gallery_examples_are_small_titled_scripts():
    scripts = sorted(GALLERY.glob("plot_*.py"))
    assert len(scripts) >= 5
    for path in scripts:
        source = path.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source))
        assert doc, f"{path.name}: sphinx-gallery takes the title from the module docstring"
        title, underline = doc.splitlines()[:2]
        assert set(underline) == {"="} and len(underline) >= len(title), path.name
        assert "progress=False" in source or "sysid.fit(" not in source, path.name  # quiet logs


def test_build_settings_fail_on_warnings_and_example_errors():
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert '"abort_on_example_error": True' in conf
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^docs: .*\n(?:\t.*\n)*\t.*-m sphinx -W ", makefile, re.M)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"]
    names = {re.split(r"[<>=]", d)[0] for d in extras["docs"]}
    assert {"sphinx", "sphinx-gallery", "numpydoc"} <= names
    assert "make docs" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_api_pages_list_the_modules_conf_indexes():
    """conf.API_MODULES (which decides where a re-exported name is indexed) and the API page's
    list are the same modules in the same order."""
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    listed = re.search(r"API_MODULES = \[(.*?)\]", conf, re.S).group(1)
    in_conf = re.findall(r'"(sysid[\w.]*)"', listed)
    page = (DOCS / "api" / "index.rst").read_text(encoding="utf-8")
    in_page = re.findall(r"^   (sysid[\w.]*)$", page, re.M)
    assert in_conf == in_page
