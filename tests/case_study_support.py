"""Helpers shared by the case-study tests: import a script, find a check, inspect its outputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
CASE_STUDIES = REPO / "case_studies"


def load(name: str, folder: Path = CASE_STUDIES) -> ModuleType:
    """Import ``<folder>/<name>.py`` under a unique module name (its folder on ``sys.path`` so
    the scripts' own ``_common`` import works)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"study_{folder.name}_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


def check(study, name: str):
    """The study's check called ``name``."""
    found = [c for c in study.checks if c.name == name]
    assert found, f"no check named {name!r}; checks are {[c.name for c in study.checks]}"
    return found[0]


def assert_outputs(study, figures: int) -> dict:
    """A fast-mode study wrote its summary, one CSV row per check and at least ``figures`` PNGs."""
    folder = study.folder
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["mode"] == "fast"
    assert summary["passed"] is True
    assert len(summary["checks"]) == len(study.checks)
    assert (folder / "checks.csv").read_text().count("\n") == len(study.checks) + 1
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) >= figures
    assert all(p.stat().st_size > 5_000 for p in pngs)  # a real drawing, not an empty canvas
    return summary
