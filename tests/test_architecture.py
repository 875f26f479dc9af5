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


# --------------------------------------------------------------------------------------------- #
# one solver layer: torchdiffeq and SciPy's solve_ivp are used only in sysid/solvers/
# --------------------------------------------------------------------------------------------- #
def _imports_module(node: ast.AST, module: str) -> bool:
    """``import module[.x]`` or ``from module[.x] import ...``."""
    if isinstance(node, ast.Import):
        return any(a.name == module or a.name.startswith(module + ".") for a in node.names)
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return node.module == module or node.module.startswith(module + ".")
    return False


def _uses_name(node: ast.AST, name: str) -> bool:
    """``from ... import name``, a bare ``name`` or an attribute ``x.name`` (whatever ``x`` is, so
    ``from scipy import integrate as i; i.solve_ivp`` counts too)."""
    if isinstance(node, ast.ImportFrom):
        return any(a.name == name for a in node.names)
    if isinstance(node, ast.Name):
        return node.id == name
    if isinstance(node, ast.Attribute):
        return node.attr == name
    return False


SOLVER_RULES = {
    "torchdiffeq": lambda n: _imports_module(n, "torchdiffeq"),
    "solve_ivp": lambda n: _uses_name(n, "solve_ivp"),
}


def _solver_offenders(used) -> list[str]:
    found = []
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if rel.startswith("sysid/solvers/"):
            continue
        found += [f"{rel}:{n.lineno}" for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                  if used(n)]
    return found


def test_integration_happens_only_in_the_solver_layer():
    # one solver layer (issue 10): a second integrator elsewhere would bring its own error
    # handling, budget and defaults back; call sysid.solvers.solve / solve_windows / solve_scipy
    for what, used in SOLVER_RULES.items():
        assert _solver_offenders(used) == [], f"{what} is used outside sysid/solvers/"


def test_the_solver_rules_see_what_they_look_for():
    code = ast.parse(
        "import torchdiffeq\nfrom torchdiffeq import odeint\nfrom scipy.integrate import solve_ivp\n"
        "from scipy import integrate as si\nsi.solve_ivp(f, (0, 1), y0)\n"
    )
    nodes = list(ast.walk(code))
    assert sum(SOLVER_RULES["torchdiffeq"](n) for n in nodes) == 2
    assert sum(SOLVER_RULES["solve_ivp"](n) for n in nodes) == 2
    # words in docstrings and comments are not uses
    quiet = ast.parse('"""Integrates with torchdiffeq and solve_ivp."""\nx = 1  # solve_ivp\n')
    assert not any(rule(n) for rule in SOLVER_RULES.values() for n in ast.walk(quiet))


def _builtin_calls(tree: ast.AST, names: set[str]) -> list[int]:
    return sorted(node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
                  and isinstance(node.func, ast.Name) and node.func.id in names)


def test_no_file_is_read_with_code_execution():
    # a shared model, config or data file must never run code: no eval/exec/compile anywhere,
    # torch.load only with weights_only=True (sysid/training/checkpoint.py), and no pickle (or
    # marshal, shelve, dill, cloudpickle) anywhere in sysid/: the tasks sent to worker processes
    # travel by the executor's own transport (concurrent.futures, Dask), never through a file
    found = []
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found += [f"{rel}:{n}" for n in _builtin_calls(tree, {"eval", "exec", "compile"})]
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "torch"
                    and not any(k.arg == "weights_only" and getattr(k.value, "value", None) is True
                                for k in node.keywords)):
                found.append(f"{rel}:{node.lineno} torch.load without weights_only=True")
    assert found == []
    for module in ("pickle", "marshal", "shelve", "dill", "cloudpickle"):
        names = {"load", "loads", "Unpickler", "open", "dumps", "dump", "Pickler"}
        assert _offenders(module, names, set()) == [], module
        imports = [f"{p.relative_to(PACKAGE.parent).as_posix()}:{n.lineno}" for p in _modules()
                   for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                   if (isinstance(n, ast.Import) and any(a.name == module for a in n.names))
                   or (isinstance(n, ast.ImportFrom) and n.module == module)]
        assert imports == [], f"{module} is imported in {imports}"
    # the rules see what they look for
    assert _builtin_calls(ast.parse("x = eval('1')\nexec('y = 2')\n"), {"eval", "exec"}) == [1, 2]
    assert _uses(ast.parse("import pickle as p\np.loads(b'')\n"), "pickle", {"loads"}) == [2]


# --- no function over ~80 lines without a reason at its top (issue #10) ---------------------------
LONG_BODY = 80  # lines of a function's body, its docstring not counted
LONG_MARK = "# long:"


def _long_functions(source: str) -> list[tuple[str, int, int]]:
    """(name, line, body length) of each function whose body is over LONG_BODY lines and whose top
    (the lines between its signature and its first statement after the docstring) has no
    ``# long:`` comment giving the reason."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        body = node.body
        first = body[0]
        if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str) and len(body) > 1):
            first = body[1]
        length = node.end_lineno - first.lineno + 1
        if length <= LONG_BODY:
            continue
        top = lines[node.lineno - 1:first.lineno]
        if not any(line.strip().startswith(LONG_MARK) for line in top):
            found.append((node.name, node.lineno, length))
    return found


def test_no_long_function_without_a_reason_at_its_top():
    offenders = []
    for path in _modules():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        offenders += [f"{rel}:{line} {name} ({n} lines)"
                      for name, line, n in _long_functions(path.read_text(encoding="utf-8"))]
    assert not offenders, (f"functions with over {LONG_BODY} lines of body and no '{LONG_MARK} why' "
                           f"comment at their top: {offenders}")


def test_the_length_rule_counts_the_body_and_reads_the_reason():
    body = "".join(f"    x{i} = {i}\n" for i in range(LONG_BODY + 1))
    plain = f'def f():\n    """Doc\n\n    more.\n    """\n{body}'
    assert _long_functions(plain) == [("f", 1, LONG_BODY + 1)]
    assert _long_functions(f"def f():\n    {LONG_MARK} a table of cases, one per line\n{body}") == []
    # the docstring does not count: exactly LONG_BODY lines of code pass
    short = "".join(f"    x{i} = {i}\n" for i in range(LONG_BODY))
    assert _long_functions(f'def f():\n    """{"Doc. " * 3}\n\n    more\n    """\n{short}') == []
