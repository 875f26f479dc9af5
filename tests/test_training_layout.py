"""Layout rules of sysid/training: short functions, and the one place the refinement happens."""

from __future__ import annotations

import ast
from pathlib import Path

TRAINING = Path(__file__).resolve().parents[1] / "sysid" / "training"
LIMIT = 80  # lines of a function, decorators and docstring included


def _long_functions(source: str) -> list[tuple[str, int]]:
    """Functions over ``LIMIT`` lines whose docstring does not start with a reason ("Long: ...")."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            doc = ast.get_docstring(node) or ""
            if length > LIMIT and not doc.startswith("Long:"):
                found.append((node.name, length))
    return found


def test_no_function_in_training_is_over_80_lines_without_a_reason():
    long = {path.name: _long_functions(path.read_text(encoding="utf-8"))
            for path in sorted(TRAINING.glob("*.py"))}
    assert {k: v for k, v in long.items() if v} == {}


def test_the_rule_finds_long_functions_and_accepts_a_reason():
    body = "\n".join(f"    x = {i}" for i in range(LIMIT))
    assert _long_functions(f"def f():\n{body}\n") == [("f", LIMIT + 1)]
    assert _long_functions(f'def f():\n    """Long: a table of cases."""\n{body}\n') == []


def test_the_joint_refinement_is_called_from_one_place_in_the_engine():
    # sysid.estimation's refinement runs from _least_squares only (instead of the first-order
    # stage for a model without network weights, or after it)
    tree = ast.parse((TRAINING / "engine.py").read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "refine_model"]
    assert len(calls) == 1
    hook = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "_least_squares")
    assert any(c is call for c in ast.walk(hook) for call in calls)
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "polish"]
