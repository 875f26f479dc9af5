"""Sphinx configuration of the sysid documentation (``make docs``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TQDM_DISABLE", "1")

import sysid  # noqa: E402

project = "sysid"
author = "the sysid authors"
copyright = "the sysid authors"  # noqa: A001 (Sphinx's name)
release = version = sysid.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip",
                    "**.codeobj.json", "sg_execution_times.rst"]
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns += ["_templates", "_ext"]

# API reference from the NumPy-style docstrings.
autosummary_generate = True
# a package page lists what its __all__ exports (re-exported from its submodules)
autosummary_ignore_module_all = False
autosummary_imported_members = True
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": True}
autodoc_typehints = "none"  # the numpydoc Parameters sections say the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# The packages of the API reference, in the order of docs/api/index.rst. A class or function that
# several of them export (SolverConfig from sysid.models and sysid.simulation) is indexed on the
# first page only; the others show it with :no-index: (the templates in _templates/autosummary).
API_MODULES = ["sysid.data", "sysid.datasets", "sysid.systems", "sysid.models", "sysid.training",
               "sysid.estimation", "sysid.solvers", "sysid.simulation", "sysid.io", "sysid.analysis",
               "sysid.plot", "sysid.reporting", "sysid.parallel", "sysid.errors"]


def _reexports(modules: list[str]) -> list[str]:
    import importlib
    import inspect

    first: dict[int, str] = {}
    again = []
    for modname in modules:
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name, None)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if id(obj) in first:
                again.append(f"{modname}.{name}")
            else:
                first[id(obj)] = modname
    return again


autosummary_context = {"noindex": _reexports(API_MODULES)}

# The gallery: every example runs during the build; one that raises stops it.
sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "examples" / "gallery")],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    # sysid's figures are built without pyplot: a scraper that finds them in the example's globals
    "image_scrapers": ("matplotlib", "sysid_gallery.scrape_figures"),
    "matplotlib_animations": False,
    "show_memory": False,
}

myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # the design notes start at level 2 under the page title

html_theme = "alabaster"
html_static_path: list[str] = []
html_theme_options = {"description": "continuous-time dynamics from measured data",
                      "page_width": "1100px", "sidebar_width": "230px"}
html_title = "sysid"
