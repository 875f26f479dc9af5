"""The README runs as written: every ``bash`` and ``python`` block, in order, in one scratch folder.

How it runs them (also said in the README's "Testing this README"):
- the scratch folder holds a copy of ``examples/`` and a ``.venv`` link to the environment running
  the tests (in CI that is the checkout's ``.venv``, made by ``make test``), so
  ``. .venv/bin/activate`` and ``sysid`` work as on a fresh clone after ``make``;
- lines starting with ``make`` are left out (they install or run the whole suite; CI runs them);
- the bash blocks behave as typed into one terminal: a block starts with the ``. ...``,
  ``source ...`` and ``export ...`` lines of the blocks before it;
- a block right after the line ``<!-- readme-test: slow -->`` runs only with
  ``SYSID_README_SLOW=1`` (blocks that take minutes);
- the Python block that fits the hare-lynx pelts must give the numbers the README says
  ``make demo`` prints (same settings, same seed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SLOW_MARK = "<!-- readme-test: slow -->"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[str, str, bool]]:
    """(language, code, slow) for every fenced block of the README, in order."""
    text = README.read_text(encoding="utf-8")
    out = []
    for m in BLOCK.finditer(text):
        before = text[: m.start()].rstrip().splitlines()
        slow = bool(before) and before[-1].strip() == SLOW_MARK
        out.append((m.group(1), m.group(2), slow))
    return out


def test_readme_blocks_are_found():
    langs = [lang for lang, _, _ in readme_blocks()]
    assert langs.count("bash") >= 4 and langs.count("python") >= 1


def _demo_numbers() -> dict[str, float]:
    """a, b, c, d as the README says make demo prints them (its sample output table)."""
    text = README.read_text(encoding="utf-8")
    rows = re.findall(r"^\s+([abcd])\s+(-?[\d.]+)\s+[\d.]+\s+[\d.]+\s+-?[\d.]+%$", text, re.M)
    return {name: float(value) for name, value in rows}


def test_readme_runs_as_written(tmp_path):
    prefix = Path(sys.prefix)
    if not (prefix / "bin" / "activate").is_file():
        pytest.skip(f"the tests do not run in a virtual environment ({prefix} has no bin/activate), "
                    f"so '. .venv/bin/activate' cannot be tried")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    (tmp_path / ".venv").symlink_to(prefix)
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1", MPLBACKEND="Agg",
               OMP_NUM_THREADS="1")
    slow_ok = os.environ.get("SYSID_README_SLOW") == "1"
    demo = _demo_numbers()
    assert sorted(demo) == ["a", "b", "c", "d"], "the README's make demo table was not found"
    checked_demo = False
    shell_state: list[str] = []
    for i, (lang, code, slow) in enumerate(readme_blocks()):
        if slow and not slow_ok:
            continue
        if lang == "bash":
            lines = [ln for ln in code.splitlines() if not ln.lstrip().startswith("make ")]
            script = "set -euo pipefail\n" + "\n".join(shell_state + lines) + "\n"
            # as in one terminal: what earlier blocks set up (activation, exports) stays set
            shell_state += [ln for ln in lines if ln.startswith((". ", "source ", "export "))]
            proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=900)
        elif lang == "python":
            check = ""
            if "FitConfig(loss=\"log\"" in code:  # the demo's fit: report its parameter values
                check = ("\nimport json as _j\nprint('README-CHECK', _j.dumps({str(n): float(v) for n, v "
                         "in zip(result.parameters['name'], result.parameters['value'])}))\n")
            proc = subprocess.run([sys.executable, "-c", code + check], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=900)
            if check:
                line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("README-CHECK"))
                got = json.loads(line.split(" ", 1)[1])
                for name, value in demo.items():
                    # the README prints 4 decimals: the fit must round to them
                    assert abs(got[name] - value) <= 0.5e-4 + 1e-12, (name, got[name], value)
                checked_demo = True
        else:
            continue
        assert proc.returncode == 0, f"README block {i} ({lang}) failed:\n{code}\n--- stderr:\n{proc.stderr}"
        assert "Traceback" not in proc.stderr
    assert checked_demo
    # what the CLI block promises
    head = (tmp_path / "sim1" / "simulation.csv").read_text(encoding="utf-8").splitlines()[0]
    assert head == "run,t [s],x [m],v [m/s],u [m/s^2]"
    assert (tmp_path / "fit1" / "report.html").is_file() and (tmp_path / "cmp1" / "metrics.json").is_file()
