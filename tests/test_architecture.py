"""Architecture rules checked on the source: each concept is used only in the module that owns it.

The checks read the code with :mod:`ast` (no import), so a rule holds for every module whether or
not a test imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sysid"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _uses(tree: ast.AST, module: str, names: set[str]) -> list[int]:
    """Lines that call or import ``module.name`` for a name in ``names`` (any alias of the module)."""
    aliases = {module}
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname or a.name for a in node.names if a.name == module}
        elif isinstance(node, ast.ImportFrom) and node.module == module:
            lines += [node.lineno for a in node.names if a.name in names]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in names
                and isinstance(node.value, ast.Name) and node.value.id in aliases):
            lines.append(node.lineno)
    return sorted(lines)


def _offenders(module: str, names: set[str], owners: set[str]) -> list[str]:
    found = []
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if rel in owners:
            continue
        lines = _uses(ast.parse(path.read_text(encoding="utf-8")), module, names)
        found += [f"{rel}:{n}" for n in lines]
    return found


def test_files_are_moved_into_place_only_by_sysid_atomic():
    # one owner of atomic writes (issue 10): os.replace / os.rename / shutil.move anywhere else
    # would be a second implementation with its own gaps (no fsync, no swap of folders, ...)
    assert _offenders("os", {"replace", "rename", "renames"}, {"sysid/atomic.py"}) == []
    assert _offenders("shutil", {"move"}, {"sysid/atomic.py"}) == []


def test_no_module_changes_the_process_umask():
    # reporting.py used to set and reset the umask at import: a process-wide side effect (and a
    # race with other threads creating files); sysid.atomic creates files with 0o666 instead
    assert _offenders("os", {"umask"}, set()) == []


def test_the_rule_finds_what_it_looks_for():
    tree = ast.parse("import os as o\nfrom shutil import move\no.replace('a', 'b')\n")
    assert _uses(tree, "os", {"replace"}) == [3]
    assert _uses(tree, "shutil", {"move"}) == [2]
