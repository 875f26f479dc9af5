"""The safe expression parser: what it accepts, what it refuses (and that refused text never runs)."""

from __future__ import annotations

import builtins
import math

import numpy as np
import pytest
import torch

from sysid.backend import NUMPY, TORCH
from sysid.errors import ConfigError
from sysid.expressions import MAX_DEPTH, MAX_LENGTH, ExpressionError, parse

NAMES = ["x", "y", "k", "u"]


@pytest.mark.parametrize("text, expected", [
    ("-k*sqrt(x) + u", -0.5 * 2.0 + 3.0),
    ("x**2 / y - 1", 4.0**2 / 0.5 - 1),
    ("exp(log(x)) + sin(0) + cos(0) + tanh(0)", 4.0 + 1.0),
    ("abs(-x) + min(x, y) + max(x, y)", 4.0 + 0.5 + 4.0),
    ("clip(x, 0, 1) + clip(-x, 0, 1)", 1.0),
    ("where(x > y, 1, 2) + where(x <= y, 10, 20)", 21.0),
    ("sigmoid(0) + softplus(0)", 0.5 + math.log(2.0)),
    ("+x - -y", 4.5),
    ("2**3**2", 2.0 ** 9),  # right-associative, as in Python
    ("where(0 < y < 1, 1, 0)", 1.0),  # chained comparison
    ("where(x > 1 and not y > 1, 1, 0)", 1.0),
])
def test_values_match_python_arithmetic(text, expected):
    env = {"x": 4.0, "y": 0.5, "k": 0.5, "u": 3.0}
    e = parse(text, names=NAMES)
    assert float(e.evaluate(env, NUMPY)) == pytest.approx(expected, rel=1e-12)
    t_env = {k: torch.tensor(v, dtype=torch.float64) for k, v in env.items()}
    assert float(e.evaluate(t_env, TORCH)) == pytest.approx(expected, rel=1e-12)


def test_numpy_and_torch_agree_on_arrays_and_gradients_flow():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 2.0, 50)
    e = parse("-k*sqrt(x) + where(x > 1, softplus(x), sigmoid(x)) * clip(x, 0.2, 1.5)", names=NAMES)
    ref = e.evaluate({"x": x, "k": 0.7}, NUMPY)
    xt = torch.tensor(x, requires_grad=True)
    kt = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    out = e.evaluate({"x": xt, "k": kt}, TORCH)
    # same float64 formulas in both backends: agreement to rounding
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-13, atol=1e-15)
    out.sum().backward()
    assert float(kt.grad) == pytest.approx(-np.sqrt(x).sum(), rel=1e-12)


def test_names_are_reported_in_order_and_constants_are_folded():
    e = parse("k*x + 2*3 - y", names=NAMES)
    assert e.names == ("k", "x", "y")
    assert float(e.evaluate({"k": 1.0, "x": 1.0, "y": 0.0})) == 7.0
    # 1/0 and an overflowing power are folded with NumPy and refused as not finite
    with pytest.raises(ExpressionError, match="not finite"):
        parse("x + 1/0", names=NAMES)
    with pytest.raises(ExpressionError, match="not finite"):
        parse("9**9**9**9", names=NAMES)


def test_sqrt_has_a_finite_gradient_at_zero_so_a_clamped_level_trains():
    h = torch.tensor([-0.5, 0.0, 0.25], dtype=torch.float64, requires_grad=True)
    out = parse("sqrt(max(x, 0))", names=NAMES).evaluate({"x": h}, TORCH)
    out.sum().backward()
    # d/dh sqrt(max(h, 0)): 0 below the outlet, 0 (not inf * 0 = NaN) at it, 1/(2 sqrt h) above
    np.testing.assert_allclose(h.grad.numpy(), [0.0, 0.0, 1.0], rtol=1e-12)
    assert torch.isnan(parse("sqrt(x)", names=NAMES).evaluate({"x": torch.tensor(-1.0)}, TORCH))


def test_division_by_a_zero_parameter_gives_inf_in_numpy_not_an_exception():
    e = parse("k / x", names=NAMES)
    with np.errstate(divide="ignore"):
        assert np.isinf(e.evaluate({"k": 1.0, "x": 0.0}, NUMPY))


@pytest.mark.parametrize("text, match, column", [
    ("__import__('os').system('echo hacked')", r"attribute access \('\.system'\)", 17),
    ("().__class__", r"attribute access \('\.__class__'\)", 3),
    ("x.real", r"attribute access \('\.real'\)", 2),
    ("open('f')", "unknown function 'open'", 1),
    ("eval('1')", "unknown function 'eval'", 1),
    ("sn(x)", "did you mean 'sin'", 1),
    ("x[0]", r"indexing", 1),
    ("lambda: 1", "a lambda", 1),
    ("f'{x}'", "an f-string", 1),
    ("[i for i in x]", "comprehension", 1),
    ("x if y else k", r"where\(condition, a, b\)", 1),
    ("x % 2", "operator '%'", 2),
    ("x @ y", "operator '@'", 2),
    ("~x", "operator '~'", 1),
    ("z + 1", "unknown name 'z'", 1),
    ("__builtins__", "double underscores", 1),
    ("sin", "is a function; call it", 1),
    ("sin(x, y)", r"sin\(\) takes 1 argument", 1),
    ("clip(x, 0)", r"clip\(\) takes 3 arguments", 1),
    ("max(x, y=1)", "positional arguments only", 8),
    ("'text'", "text constants are not allowed", 1),
    ("True", "constant True", 1),
    ("1j", "complex", 1),
    ("x in y", "comparison 'in'", 1),
    ("(x := 1)", "assignment", 2),
    ("sin(x", "not a valid formula", 4),
    ("x; y", "not a valid formula", 2),
    ("nn(x)", "neural term", 1),
])
def test_refused_with_a_caret_under_the_column(text, match, column):
    with pytest.raises(ExpressionError, match=match) as info:
        parse(text, names=NAMES, where="equation dv")
    err = info.value
    assert isinstance(err, ConfigError)
    assert err.column is not None and err.column + 1 == column
    lines = str(err).splitlines()
    assert lines[0].startswith("equation dv: ")
    assert lines[1].strip() == text
    caret = lines[2]
    assert caret.strip() == "^" and caret.index("^") - 4 == err.column  # under the column


def test_malicious_expressions_never_run(monkeypatch):
    """Refused text is only parsed; nothing in it is called (no import, no attribute lookup)."""
    calls = []
    real_import = builtins.__import__

    def spy(name, *args, **kwargs):
        if name == "os":
            calls.append(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", spy)
    for text in ("__import__('os').system('touch /tmp/sysid_pwned')",
                 "().__class__.__bases__[0].__subclasses__()",
                 "exec('import os')", "(lambda: __import__('os'))()"):
        with pytest.raises(ExpressionError):
            parse(text, names=NAMES)
    assert calls == []


def test_too_long_and_too_deep_expressions_are_refused_before_evaluation():
    with pytest.raises(ExpressionError, match=r"1,000,000 characters long; at most 10,000"):
        parse("x" * 1_000_000, names=NAMES)
    assert len("x" * MAX_LENGTH) == MAX_LENGTH
    parse("+".join(["x"] * 40), names=NAMES)  # a sum of 40 terms is fine
    for deep in ("-" * 3000 + "x",                       # parser recursion
                 "(" * 300 + "x" + ")" * 300,            # tokenizer nesting limit
                 "sin(" * 150 + "x" + ")" * 150,         # a tree deeper than MAX_DEPTH
                 "+".join(["x"] * 2000)):                # a long operator chain
        with pytest.raises(ExpressionError, match="nested too deeply"):
            parse(deep, names=NAMES)
    assert MAX_DEPTH == 100


@pytest.mark.parametrize("bad, match", [
    (b"x", "must be text"),
    ("", "empty"),
    ("   ", "empty"),
    ("x\x00", "NUL character"),
])
def test_degenerate_inputs(bad, match):
    with pytest.raises(ConfigError, match=match):
        parse(bad, names=NAMES)


def test_neural_terms_only_added_to_the_whole_expression():
    e = parse("-k*x + nn(x, u)", names=NAMES, allow_nn=True)
    assert [t.arguments for t in e.neural] == [("x", "u")] and e.neural[0].sign == 1.0
    assert float(e.evaluate({"k": 2.0, "x": 1.0, "u": 5.0})) == -2.0  # the network is not part of the physics
    assert parse("nn(x) - y", names=NAMES, allow_nn=True).neural[0].sign == 1.0
    assert parse("y - nn(x)", names=NAMES, allow_nn=True).neural[0].sign == -1.0
    for text, match in (("k*nn(x)", "added to the whole equation"),
                        ("sin(nn(x))", "added to the whole equation"),
                        ("y - (x + nn(x))", "added to the whole equation"),
                        ("nn(x) + nn(y)", "one nn"),
                        ("nn(2*x)", "must be names"),
                        ("nn(x, x)", "twice"),
                        ("nn(q)", "unknown name 'q'")):
        with pytest.raises(ExpressionError, match=match):
            parse(text, names=NAMES, allow_nn=True)


def test_row_filters_compare_text_columns():
    e = parse("condition == 'mixture' and dose > 1", strings=True)
    cond = np.array(["mixture", "pure", "mixture"], dtype=object)
    dose = np.array([2.0, 5.0, 0.5])
    np.testing.assert_array_equal(e.evaluate({"condition": cond, "dose": dose}), [True, False, False])
    assert e.names == ("condition", "dose")


def test_multiline_expression_points_at_the_line():
    with pytest.raises(ExpressionError, match="line 2, column 6") as info:
        parse("(x +\n    y.imag)", names=NAMES)
    assert str(info.value).splitlines()[1].strip() == "y.imag)"
