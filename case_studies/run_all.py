"""Run every case study (full mode by default) and collect their checks in one table.

Each script ``case_studies/NAME.py`` (every ``.py`` here except this one and files starting with
``_``) runs in its own process, one after another (the machine is shared; fits are single-
threaded), as ``python NAME.py --out OUT [--fast]``. Each writes ``OUT/<study>/`` (figures, tables,
``summary.json``); this script then writes ``OUT/summary.md`` and ``OUT/summary.csv`` with every
check of every study (study, quantity, value, reference, tolerance, passed) and the wall time of
each script, and exits with status 1 when a script failed or a check missed its tolerance.

Run ``python case_studies/run_all.py [--out DIR] [--fast] [--only NAME ...]`` (``make
case-studies`` runs the full mode into ``results/case_studies``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    """The case-study scripts, sorted by name."""
    return sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py")


def _summaries(out: Path, since: float) -> list[dict]:
    found = []
    for path in sorted(out.glob("*/summary.json")):
        if path.stat().st_mtime >= since:
            found.append(json.loads(path.read_text(encoding="utf-8")))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scripts; return the exit status (0 when every script and check passed)."""
    parser = argparse.ArgumentParser(description="Run every sysid case study and collect the checks.")
    parser.add_argument("--out", default="results/case_studies", help="output folder")
    parser.add_argument("--fast", action="store_true", help="fast mode (as the test suite runs them)")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only these scripts (names without .py)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    import pandas as pd

    available = {p.stem: p for p in scripts()}
    chosen = list(available) if not args.only else args.only
    unknown = [n for n in chosen if n not in available]
    if unknown:
        parser.error(f"unknown case studies {unknown}; available: {sorted(available)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name in chosen:
        cmd = [sys.executable, str(available[name]), "--out", str(out)] + (["--fast"] if args.fast else [])
        print(f"--- {name}: {' '.join(cmd)}", flush=True)
        started = time.time()
        code = subprocess.call(cmd)
        runs.append({"script": name, "exit status": code, "seconds": round(time.time() - started, 1),
                     "started": started})
    rows = []
    since = min(r["started"] for r in runs) if runs else time.time()
    for summary in _summaries(out, since - 1.0):
        for check in summary.get("checks", []):
            rows.append({"study": summary.get("study", "?"), "mode": summary.get("mode", "?"), **check})
    checks = pd.DataFrame(rows)
    scripts_tab = pd.DataFrame(runs).drop(columns="started")
    checks.to_csv(out / "summary.csv", index=False)
    from sysid.analysis import markdown_table

    text = ["# Case studies: checks against published references", "",
            f"Command: `python case_studies/run_all.py --out {out}{' --fast' if args.fast else ''}`", "",
            "## Scripts", "", markdown_table(scripts_tab, index=False), "",
            "## Checks", "", markdown_table(checks, index=False) if len(checks) else "(none)", ""]
    (out / "summary.md").write_text("\n".join(text), encoding="utf-8")
    failed_scripts = [r["script"] for r in runs if r["exit status"] != 0]
    failed_checks = int((~checks["passed"].astype(bool)).sum()) if len(checks) else 0
    print(scripts_tab.to_string(index=False))
    print(f"{len(checks)} checks, {failed_checks} outside tolerance; "
          f"scripts failing: {failed_scripts or 'none'}")
    print(f"summary: {out / 'summary.md'}")
    return 0 if not failed_scripts and failed_checks == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
