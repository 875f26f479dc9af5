"""Safe arithmetic expressions: a whitelist over Python's :mod:`ast`, compiled to closures.

Equations files (``dh1 = "-k1*sqrt(h1) + k2*u"``), measurement equations (``y = "clip(h2, 0,
0.5)"``) and row filters (``--where "condition == 'mixture'"``) are written as text. This module
turns such text into a function of named arrays without ever executing it as Python code: the
text is parsed with :func:`ast.parse` (which builds a syntax tree and runs nothing), every node of
the tree is checked against a short whitelist, and the accepted tree is translated into nested
closures over the :data:`sysid.backend.NUMPY` or :data:`sysid.backend.TORCH` array functions. No
``eval``, ``exec``, ``compile`` to code objects or ``sympify`` is involved anywhere.

Accepted:

- numbers (``2``, ``0.5``, ``1e-3``; held as floats, so ``9**9**9`` cannot start an endless
  integer computation), names (states, inputs, parameters, ``t``; or data columns for filters);
- ``+ - * / **``, unary ``-`` and ``+``, comparisons ``< <= > >= == !=`` (chains such as
  ``0 < h < 1`` too), ``and``, ``or``, ``not``;
- calls of the functions in :data:`FUNCTIONS` (positional arguments only), and ``nn(a, b, ...)``
  where the caller allows a neural term;
- string constants only where the caller allows them (row filters: ``condition == 'mixture'``).

Everything else - attribute access, subscripts, calls of any other name, lambdas, f-strings,
comprehensions, keyword arguments, names with double underscores - is a
:class:`ExpressionError` (a :class:`~sysid.errors.ConfigError`) quoting the expression with a
caret under the offending column. Text longer than :data:`MAX_LENGTH` characters is refused before
it is parsed, and syntax trees deeper than :data:`MAX_DEPTH` levels after.

Examples
--------
>>> from sysid.backend import NUMPY
>>> e = parse("-k*sqrt(h) + u", names=["h", "u", "k"])
>>> e.names
('k', 'h', 'u')
>>> float(e.evaluate({"h": 4.0, "u": 1.0, "k": 0.5}, NUMPY))
0.0
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, final

import numpy as np

from sysid.backend import NUMPY, ArrayNamespace
from sysid.errors import ConfigError

__all__ = [
    "FUNCTIONS",
    "MAX_LENGTH",
    "MAX_DEPTH",
    "NEURAL",
    "Expression",
    "ExpressionError",
    "NeuralTerm",
    "parse",
]

# name -> (fewest arguments, most arguments, what it does)
FUNCTIONS: dict[str, tuple[int, int, str]] = {
    "sqrt": (1, 1, "square root (its derivative at 0 is taken as 0)"),
    "exp": (1, 1, "exponential"),
    "log": (1, 1, "natural logarithm"),
    "sin": (1, 1, "sine (radians)"),
    "cos": (1, 1, "cosine (radians)"),
    "tanh": (1, 1, "hyperbolic tangent"),
    "abs": (1, 1, "absolute value"),
    "min": (2, 2, "elementwise minimum of two values"),
    "max": (2, 2, "elementwise maximum of two values"),
    "clip": (3, 3, "clip(x, lo, hi): x limited to [lo, hi]"),
    "where": (3, 3, "where(condition, a, b): a where the condition holds, else b"),
    "sigmoid": (1, 1, "logistic function 1/(1+exp(-x))"),
    "softplus": (1, 1, "log(1 + exp(x))"),
}
NEURAL = "nn"
MAX_LENGTH = 10_000
MAX_DEPTH = 100

_BINOPS: dict[type, tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", operator.add),
    ast.Sub: ("-", operator.sub),
    ast.Mult: ("*", operator.mul),
    ast.Div: ("/", operator.truediv),
    ast.Pow: ("**", operator.pow),
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
# what the refused nodes are called in messages
_REFUSED: dict[type, str] = {
    ast.Attribute: "attribute access ('.')",
    ast.Subscript: "indexing ('[...]')",
    ast.Lambda: "a lambda",
    ast.JoinedStr: "an f-string",
    ast.FormattedValue: "an f-string",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Set: "a set",
    ast.Dict: "a dict",
    ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a generator expression",
    ast.IfExp: "'... if ... else ...' (use where(condition, a, b))",
    ast.NamedExpr: "an assignment (':=')",
    ast.Starred: "'*' unpacking",
    ast.Await: "'await'",
    ast.Yield: "'yield'",
    ast.YieldFrom: "'yield'",
    ast.Slice: "a slice",
}
_ALLOWED_TEXT = ("numbers, names, + - * / **, unary -, comparisons, and, or, not and the "
                 "functions " + ", ".join(FUNCTIONS))


class ExpressionError(ConfigError):
    """An expression the whitelist refuses, or one that cannot be parsed.

    Attributes
    ----------
    expression : str
        The text as given (possibly shortened for very long text).
    column : int or None
        0-based character column of the offending part in its line, when known.
    line : int
        1-based line of the offending part (expressions are usually one line).
    """

    def __init__(self, message: str, *, expression: str, column: int | None = None,
                 line: int = 1) -> None:
        self.expression = expression
        self.column = column
        self.line = line
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        lines = self.expression.splitlines() or [""]
        shown = lines[min(max(self.line, 1), len(lines)) - 1]
        if self.column is None:
            return f"{self.reason}:\n    {shown}"
        col = min(self.column, len(shown))
        where = f"line {self.line}, column {col + 1}" if len(lines) > 1 else f"column {col + 1}"
        return f"{self.reason} ({where}):\n    {shown}\n    {' ' * col}^"


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


@dataclass(frozen=True)
class NeuralTerm:
    """A call ``nn(a, b, ...)`` found in an expression.

    Attributes
    ----------
    arguments : tuple of str
        The names the network reads, in the order written.
    sign : float
        +1 for ``... + nn(...)``, -1 for ``... - nn(...)``.
    column : int
        0-based column of the call (for messages).
    """

    arguments: tuple[str, ...]
    sign: float
    column: int


# A compiled node: env -> value. The backend is bound when the closure is built.
_Fn = Callable[[Mapping[str, Any]], Any]


@final
class Expression:
    """A parsed, checked expression; evaluate it with :meth:`evaluate` or :meth:`compile`.

    Build it with :func:`parse`, never directly.

    Attributes
    ----------
    text : str
        The expression as written.
    names : tuple of str
        The names it reads, in order of first appearance (function names excluded).
    neural : tuple of NeuralTerm
        Its ``nn(...)`` terms (empty unless the caller allowed them). Evaluation leaves them out:
        the physics part of ``"-c*v + nn(theta, v)"`` is ``-c*v``.
    """

    def __init__(self, text: str, tree: ast.expr, names: tuple[str, ...],
                 neural: tuple[NeuralTerm, ...], where: str) -> None:
        self.text = text
        self.names = names
        self.neural = neural
        self._tree = tree
        self._where = where
        self._compiled: dict[str, _Fn] = {}

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def compile(self, xp: ArrayNamespace) -> _Fn:
        """``f(env) -> value`` for the backend ``xp`` (:data:`~sysid.backend.NUMPY` or
        :data:`~sysid.backend.TORCH`); ``env`` maps every name in :attr:`names` to a value."""
        fn = self._compiled.get(xp.name)
        if fn is None:
            fn = _Compiler(xp, self.text).build(self._tree)
            self._compiled[xp.name] = fn
        return fn

    def evaluate(self, env: Mapping[str, Any], xp: ArrayNamespace = NUMPY) -> Any:
        """The value for the names in ``env`` (arrays broadcast against each other)."""
        missing = [n for n in self.names if n not in env]
        if missing:
            raise ConfigError(f"{self._where}: no value for {missing} in {self.text!r}.")
        return self.compile(xp)(env)


def parse(text: str, *, names: Iterable[str] | None = None, where: str = "expression",
          allow_nn: bool = False, strings: bool = False) -> Expression:
    """Parse and check an expression against the whitelist.

    Parameters
    ----------
    text : str
        The expression, e.g. ``"-w2*sin(theta) - c*v + u"``.
    names : iterable of str, optional
        The names it may read (states, inputs, parameters, ``t``; or columns). None accepts any
        name that is not a function name and has no double underscore.
    where : str
        What the expression is, for messages (``"equation 'dv' in pend.toml"``).
    allow_nn : bool
        Accept ``nn(a, b, ...)`` as a term added to the whole expression (a neural correction).
    strings : bool
        Accept string constants (row filters compare columns with text).

    Returns
    -------
    Expression

    Raises
    ------
    ExpressionError
        Quoting the expression with a caret under the offending column: syntax errors, anything
        outside the whitelist, unknown names (with a "did you mean"), wrong argument counts,
        text longer than :data:`MAX_LENGTH` characters, nesting deeper than :data:`MAX_DEPTH`.
    """
    if not isinstance(text, str):
        raise ConfigError(f"{where}: an expression must be text (a string); got "
                          f"{type(text).__name__} {_shorten(repr(text))}.")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"{where}: the expression is {len(text):,} characters long; at most {MAX_LENGTH:,} "
            "are accepted. Split it with parameters or shorter equations",
            expression=_shorten(text))
    if "\x00" in text:
        raise ExpressionError(f"{where}: the expression contains a NUL character",
                              expression=text.replace("\x00", "\\x00"),
                              column=text.index("\x00"))
    stripped = text.strip()
    if not stripped:
        raise ExpressionError(f"{where}: the expression is empty; write a formula such as "
                              "'-k*x'", expression=text)
    allowed = None if names is None else tuple(dict.fromkeys(str(n) for n in names))
    try:
        module = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        msg = str(exc.msg)
        if "too many nested" in msg or "too complex" in msg:
            raise ExpressionError(f"{where}: the expression is nested too deeply (at most "
                                  f"{MAX_DEPTH} levels)", expression=_shorten(stripped)) from None
        col = _char_col(stripped, exc.lineno or 1, (exc.offset or 1) - 1, byte=False)
        raise ExpressionError(f"{where}: not a valid formula ({msg}); allowed are "
                              f"{_ALLOWED_TEXT}", expression=stripped, column=col,
                              line=exc.lineno or 1) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        raise ExpressionError(f"{where}: the expression cannot be parsed ({type(exc).__name__}): "
                              f"it is nested too deeply or chains too many operators (at most "
                              f"{MAX_DEPTH} levels)",
                              expression=_shorten(stripped)) from None
    checker = _Checker(stripped, where, allowed, allow_nn, strings)
    checker.check_depth(module.body)
    tree = checker.visit(module.body)
    return Expression(stripped, tree, tuple(dict.fromkeys(checker.names)),
                      tuple(checker.neural), where)


def _char_col(text: str, line: int, col: int, *, byte: bool = True) -> int:
    """Character column from an ast offset (ast reports UTF-8 byte offsets)."""
    lines = text.splitlines() or [""]
    src = lines[min(max(line, 1), len(lines)) - 1]
    if not byte:
        return max(col, 0)
    return len(src.encode("utf-8")[:max(col, 0)].decode("utf-8", errors="ignore"))


class _Checker:
    """Walks the tree once: refuses anything outside the whitelist, folds constants, records
    names and ``nn`` terms, and returns the tree with ``nn`` terms removed."""

    def __init__(self, text: str, where: str, allowed: tuple[str, ...] | None, allow_nn: bool,
                 strings: bool) -> None:
        self.text = text
        self.where = where
        self.allowed = allowed
        self.allow_nn = allow_nn
        self.strings = strings
        self.names: list[str] = []
        self.neural: list[NeuralTerm] = []

    # -- errors ---------------------------------------------------------------------------------
    def fail(self, node: ast.AST, message: str, *, col: int | None = None) -> ExpressionError:
        line = getattr(node, "lineno", 1)
        raw = getattr(node, "col_offset", 0) if col is None else col
        return ExpressionError(f"{self.where}: {message}", expression=self.text,
                               column=_char_col(self.text, line, raw), line=line)

    def check_depth(self, root: ast.AST) -> None:
        """Refuse trees deeper than MAX_DEPTH (iteratively: no recursion on hostile input)."""
        stack = [(root, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise self.fail(node, f"the expression is nested too deeply (more than "
                                      f"{MAX_DEPTH} levels); split it into shorter terms")
            stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))

    # -- the walk -------------------------------------------------------------------------------
    def visit(self, node: ast.expr, *, top: bool = True) -> ast.expr:
        if isinstance(node, ast.BinOp):
            return self._binop(node, top)
        if isinstance(node, ast.Call) and self._is_nn(node):
            if top:
                self._neural(node, 1.0)
                return ast.Constant(value=0.0)
            raise self.fail(node, "nn(...) must be a term added to the whole equation, as in "
                                  "'-c*v + nn(theta, v)'; it cannot be multiplied, divided or "
                                  "nested in a function")
        return self._node(node)

    def _is_nn(self, node: ast.Call) -> bool:
        return isinstance(node.func, ast.Name) and node.func.id == NEURAL

    def _binop(self, node: ast.BinOp, top: bool) -> ast.expr:
        kind = type(node.op)
        if kind not in _BINOPS:
            sym = {ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.BitAnd: "&",
                   ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>"}.get(kind, "?")
            raise self.fail(node, f"the operator '{sym}' is not allowed; allowed are "
                                  f"{_ALLOWED_TEXT}", col=node.left.end_col_offset)
        additive = top and kind in (ast.Add, ast.Sub)
        left = self.visit(node.left, top=additive)
        right_node = node.right
        if additive and isinstance(right_node, ast.Call) and self._is_nn(right_node):
            self._neural(right_node, 1.0 if kind is ast.Add else -1.0)
            return left
        right = self.visit(right_node, top=False)
        return self._fold(ast.BinOp(left=left, op=node.op, right=right), node)

    def _neural(self, node: ast.Call, sign: float) -> None:
        if not self.allow_nn:
            raise self.fail(node, "nn(...) (a neural term) is not allowed here; it may only be "
                                  "added to a right-hand side of an equations model")
        if node.keywords or not node.args:
            raise self.fail(node, "nn(...) takes the names the network reads, as in "
                                  "nn(theta, v); no keywords")
        args = []
        for a in node.args:
            if not isinstance(a, ast.Name):
                raise self.fail(a, "the arguments of nn(...) must be names of states, inputs or "
                                   "t, as in nn(theta, v)")
            self._name(a)
            if a.id in args:
                raise self.fail(a, f"nn(...) names {a.id!r} twice")
            args.append(a.id)
        if self.neural:
            raise self.fail(node, "an equation may hold one nn(...) term")
        col = _char_col(self.text, node.lineno, node.col_offset)
        self.neural.append(NeuralTerm(arguments=tuple(args), sign=sign, column=col))

    def _node(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            self._name(node)
            return node
        if isinstance(node, ast.BinOp):
            return self._binop(node, False)
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
                raise self.fail(node, f"the operator '~' is not allowed; allowed are {_ALLOWED_TEXT}")
            operand = self.visit(node.operand, top=False)
            return self._fold(ast.UnaryOp(op=node.op, operand=operand), node)
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARE:
                    word = {ast.In: "in", ast.NotIn: "not in", ast.Is: "is",
                            ast.IsNot: "is not"}.get(type(op), "?")
                    raise self.fail(node, f"the comparison '{word}' is not allowed; use == or != "
                                          "(joined with 'or')")
            left = self.visit(node.left, top=False)
            comps = [self.visit(c, top=False) for c in node.comparators]
            return self._fold(ast.Compare(left=left, ops=node.ops, comparators=comps), node)
        if isinstance(node, ast.BoolOp):
            values = [self.visit(v, top=False) for v in node.values]
            return self._fold(ast.BoolOp(op=node.op, values=values), node)
        if isinstance(node, ast.Call):
            return self._call(node)
        label = _REFUSED.get(type(node), type(node).__name__)
        col = None
        if isinstance(node, ast.Attribute):
            col = node.value.end_col_offset
            label = f"attribute access ('.{node.attr}')"
        raise self.fail(node, f"{label} is not allowed; allowed are {_ALLOWED_TEXT}", col=col)

    def _constant(self, node: ast.Constant) -> ast.expr:
        value = node.value
        if isinstance(value, bool) or value is None or value is Ellipsis:
            raise self.fail(node, f"the constant {value!r} is not allowed; use numbers")
        if isinstance(value, (int, float)):
            # numbers are floats: an integer power tower such as 9**9**9 cannot start a
            # never-ending big-integer computation
            try:
                f = float(value)
            except OverflowError:
                raise self.fail(node, f"the number {_shorten(str(value), 30)} is too large") from None
            if not math.isfinite(f):
                raise self.fail(node, f"the number {value!r} is not finite")
            return ast.Constant(value=f)
        if isinstance(value, str):
            if not self.strings:
                raise self.fail(node, "text constants are not allowed in a formula; use numbers")
            return ast.Constant(value=value)
        raise self.fail(node, f"the constant {value!r} ({type(value).__name__}) is not allowed; "
                              "use real numbers")

    def _name(self, node: ast.Name) -> None:
        name = node.id
        if "__" in name:
            raise self.fail(node, f"the name {name!r} is not allowed (no double underscores)")
        if name in FUNCTIONS or name == NEURAL:
            raise self.fail(node, f"{name!r} is a function; call it, as in {name}(x)")
        if self.allowed is not None and name not in self.allowed:
            close = difflib.get_close_matches(name, self.allowed, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(node, f"unknown name {name!r}; the known names are "
                                  f"{list(self.allowed)}{hint}")
        self.names.append(name)

    def _call(self, node: ast.Call) -> ast.expr:
        func = node.func
        if not isinstance(func, ast.Name):
            if isinstance(func, ast.Attribute):
                raise self.fail(func, f"attribute access ('.{func.attr}') is not allowed; "
                                      f"allowed are {_ALLOWED_TEXT}", col=func.value.end_col_offset)
            raise self.fail(node, f"only the functions {', '.join(FUNCTIONS)} may be called")
        name = func.id
        if name == NEURAL:
            return self.visit(node, top=False)  # raises: nn(...) not at the top
        if name not in FUNCTIONS:
            close = difflib.get_close_matches(name, FUNCTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(node, f"unknown function {name!r}; the functions are "
                                  f"{', '.join(FUNCTIONS)}{hint}")
        if node.keywords:
            raise self.fail(node.keywords[0].value if node.keywords[0].arg is None
                            else node.keywords[0], f"{name}() takes positional arguments only")
        lo, hi, what = FUNCTIONS[name]
        if not lo <= len(node.args) <= hi:
            count = str(lo) if lo == hi else f"{lo} to {hi}"
            raise self.fail(node, f"{name}() takes {count} argument{'s' if hi > 1 else ''} "
                                  f"({what}); got {len(node.args)}")
        args = [self.visit(a, top=False) for a in node.args]
        return self._fold(ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=args,
                                   keywords=[]), node)

    def _fold(self, new: ast.expr, original: ast.expr) -> ast.expr:
        """Evaluate a subtree of numbers now (with NumPy: an overflow gives inf, not an error)."""
        ast.copy_location(new, original)
        children = [c for c in ast.iter_child_nodes(new) if isinstance(c, ast.expr)]
        if isinstance(new, ast.Call):
            children = list(new.args)
        if not children or not all(isinstance(c, ast.Constant) for c in children):
            return new
        if any(isinstance(c.value, str) for c in children):
            return new
        try:
            with np.errstate(all="ignore"):
                value = _Compiler(NUMPY, self.text).build(new)({})
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise self.fail(original, f"this part of the formula cannot be evaluated "
                                      f"({type(exc).__name__}: {exc})") from None
        value = np.asarray(value)
        if value.dtype == bool:
            return new  # keep comparisons of numbers as they are (rare; no folding needed)
        f = float(value)
        if not math.isfinite(f):
            raise self.fail(original, "this part of the formula evaluates to a number that is "
                                      f"not finite ({f})")
        return ast.copy_location(ast.Constant(value=f), original)


# ------------------------------------------------------------------------------------------------
# translation into closures


_SQRT: Any = None


def _torch_sqrt() -> Any:
    """``torch.sqrt`` whose derivative at 0 is 0 instead of infinity.

    A level below a tank's outlet is written ``sqrt(max(h, 0))``; when ``max`` returns exactly 0
    the chain rule multiplies the derivative of ``max`` (0) by that of ``sqrt`` (infinite) and
    every gradient of the fit becomes NaN. At 0 any finite value is a valid choice (the
    one-sided derivative is +inf); 0 is the one that keeps such a clamp working. Values, and
    derivatives at every positive argument, are torch's.
    """
    global _SQRT
    if _SQRT is None:
        import torch

        class SafeSqrt(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any) -> Any:
                y = torch.sqrt(x)
                ctx.save_for_backward(y)
                return y

            @staticmethod
            def backward(ctx: Any, grad: Any) -> Any:
                (y,) = ctx.saved_tensors
                return torch.where(y > 0, grad / (2 * torch.where(y > 0, y, torch.ones_like(y))),
                                   torch.zeros_like(grad))

        _SQRT = SafeSqrt.apply
    return _SQRT


def _torch_fns() -> dict[str, Callable[..., Any]]:
    import torch
    from torch.nn import functional as F

    sqrt = _torch_sqrt()

    def t(v: Any, ref: Any = None) -> Any:
        if isinstance(v, torch.Tensor):
            return v
        dtype = ref.dtype if isinstance(ref, torch.Tensor) else torch.get_default_dtype()
        return torch.as_tensor(v, dtype=dtype)

    def pair(a: Any, b: Any) -> tuple[Any, Any]:
        ref = a if isinstance(a, torch.Tensor) else b
        return t(a, ref), t(b, ref)

    def where(c: Any, a: Any, b: Any) -> Any:
        ref = a if isinstance(a, torch.Tensor) else b
        a, b = t(a, ref), t(b, ref)
        return torch.where(t(c).to(torch.bool), a, b)

    def clip(x: Any, lo: Any, hi: Any) -> Any:
        ref = x if isinstance(x, torch.Tensor) else (lo if isinstance(lo, torch.Tensor) else hi)
        return torch.minimum(torch.maximum(t(x, ref), t(lo, ref)), t(hi, ref))

    return {
        "sqrt": lambda x: sqrt(t(x)),
        "exp": lambda x: torch.exp(t(x)),
        "log": lambda x: torch.log(t(x)),
        "sin": lambda x: torch.sin(t(x)),
        "cos": lambda x: torch.cos(t(x)),
        "tanh": lambda x: torch.tanh(t(x)),
        "abs": lambda x: torch.abs(t(x)),
        "min": lambda a, b: torch.minimum(*pair(a, b)),
        "max": lambda a, b: torch.maximum(*pair(a, b)),
        "clip": clip,
        "where": where,
        "sigmoid": lambda x: torch.sigmoid(t(x)),
        "softplus": lambda x: F.softplus(t(x)),
        "and": lambda a, b: torch.logical_and(t(a), t(b)),
        "or": lambda a, b: torch.logical_or(t(a), t(b)),
        "not": lambda a: torch.logical_not(t(a)),
    }


def _numpy_fns() -> dict[str, Callable[..., Any]]:
    def sigmoid(x: Any) -> Any:
        return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=float)))

    return {
        "sqrt": np.sqrt, "exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos,
        "tanh": np.tanh, "abs": np.abs, "min": np.minimum, "max": np.maximum,
        "clip": lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
        "where": lambda c, a, b: np.where(c, a, b),
        "sigmoid": sigmoid,
        "softplus": lambda x: np.logaddexp(0.0, x),
        "and": np.logical_and, "or": np.logical_or, "not": np.logical_not,
    }


class _Compiler:
    """Checked tree -> nested closures ``f(env)`` over one backend's functions."""

    def __init__(self, xp: ArrayNamespace, text: str) -> None:
        self.numpy = xp is NUMPY or xp.name == "numpy"
        self.binops = {k: v[1] for k, v in _BINOPS.items()}
        if xp.name == "torch":
            self.fns = _torch_fns()
        elif self.numpy:
            self.fns = _numpy_fns()
            # ufuncs: parameters arrive as Python floats, and k / c with c = 0 must give inf
            # (as an array would), not ZeroDivisionError
            self.binops = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply,
                           ast.Div: np.divide, ast.Pow: np.power}
        else:
            raise ConfigError(f"expressions: unknown backend {xp.name!r}; use sysid.backend.NUMPY "
                              "or TORCH.")
        self.text = text

    def build(self, node: ast.expr) -> _Fn:
        if isinstance(node, ast.Constant):
            value = node.value
            if self.numpy and isinstance(value, float):
                value = np.float64(value)  # 1/0 and 9.0**999 give inf, never an exception
            return lambda env: value
        if isinstance(node, ast.Name):
            name = node.id
            return lambda env: env[name]
        if isinstance(node, ast.BinOp):
            op = self.binops[type(node.op)]
            a, b = self.build(node.left), self.build(node.right)
            return lambda env: op(a(env), b(env))
        if isinstance(node, ast.UnaryOp):
            f = self.build(node.operand)
            if isinstance(node.op, ast.USub):
                return lambda env: -f(env)
            if isinstance(node.op, ast.UAdd):
                return f
            neg = self.fns["not"]
            return lambda env: neg(f(env))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.BoolOp):
            fn = self.fns["and" if isinstance(node.op, ast.And) else "or"]
            parts = [self.build(v) for v in node.values]

            def boolop(env: Mapping[str, Any]) -> Any:
                out = parts[0](env)
                for p in parts[1:]:
                    out = fn(out, p(env))
                return out

            return boolop
        if isinstance(node, ast.Call):
            fn = self.fns[node.func.id]  # type: ignore[attr-defined]
            args = [self.build(a) for a in node.args]
            if len(args) == 1:
                a0 = args[0]
                return lambda env: fn(a0(env))
            return lambda env: fn(*(a(env) for a in args))
        raise ConfigError(f"expressions: internal error, unchecked node {type(node).__name__} in "
                          f"{self.text!r}.")  # the checker lets no other node through

    def _compare(self, node: ast.Compare) -> _Fn:
        first = self.build(node.left)
        rest = [(_COMPARE[type(op)], self.build(c)) for op, c in zip(node.ops, node.comparators)]
        both = self.fns["and"]

        def compare(env: Mapping[str, Any]) -> Any:
            left = first(env)
            out = None
            for op, f in rest:
                right = f(env)
                part = op(left, right)
                out = part if out is None else both(out, part)
                left = right
            return out

        return compare
