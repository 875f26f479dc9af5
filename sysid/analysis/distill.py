"""Distillation: readable equations out of a network term (or a whole learned field).

:func:`distill` samples what a model learned where the data says something - the training samples,
jittered copies of them that stay inside the :class:`~sysid.analysis.fields.DataSupport`, and the
model's own fitted trajectories (simulated from each run's first sample) - and fits a sparse linear
combination of candidate terms to it with PySINDy's sequentially thresholded least squares
(:class:`pysindy.STLSQ`) over a path of thresholds. Each equation's sparsity pattern is chosen by an
information criterion (AIC or BIC) over the distinct patterns on the path, and its coefficients are
refitted by ordinary least squares on that pattern.

The result, a :class:`Distillation`, prints as plain text or LaTeX, gives SymPy expressions
(:meth:`Distillation.sympy`, built from the terms' syntax trees, SymPy optional), compares itself with a
reference expression (which terms match, coefficient errors), writes an equations file that
:func:`sysid.models.from_toml` loads (the network term becomes explicit terms with fitted
parameters next to the model's own equations), and refits that symbolic model end to end with
:func:`sysid.fit` (:meth:`Distillation.refit`).

The criterion counts ``n`` as the number of evaluation points. The targets are a deterministic
function (a network), not noisy data, so the criterion's noise model is a convention; the RSS is
floored at ``1e-10`` of the target's sum of squares so an exactly representable term does not win
by rounding error alone, and of two patterns that both reach the floor the smaller one wins.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import numpy as np
import pandas as pd
import xarray as xr

from sysid.errors import ConfigError, DataError, SysidError

__all__ = ["distill", "Distillation", "Refit", "LIBRARIES"]

LIBRARIES = ("polynomial", "polynomial+trig")
TERMS = ("neural", "field")
CRITERIA = ("bic", "aic")
ON = ("support", "data")
_FLOOR = 1e-10


# --------------------------------------------------------------------------------------------- #
# what to sample
# --------------------------------------------------------------------------------------------- #
def _model_of(obj: Any) -> tuple[Any, float]:
    """The Model and (for a FitResult) its final training loss."""
    from sysid.models import Model

    if isinstance(obj, Model):
        return obj, math.nan
    model = getattr(obj, "model", None)
    if isinstance(model, Model):
        hist = getattr(obj, "history", None)
        loss = float(hist["loss"].iloc[-1]) if hist is not None and len(hist) else math.nan
        return model, loss
    raise ConfigError(f"distill: expected a sysid Model or FitResult; got {type(obj).__name__}.")


def _target(model: Any, term: str) -> tuple[Any, tuple[str, ...], Any]:
    """``(f(t, X, U) -> (M, K), target names, hybrid or None)`` for the chosen term."""
    from sysid.analysis.dynamics import as_dynamics
    from sysid.models import HybridField

    fld = model.field
    if term == "field":
        dyn = as_dynamics(model)
        return (lambda t, x, u: dyn.fn(t, x, u)), tuple(dyn.states), None
    if not isinstance(fld, HybridField):
        raise ConfigError(
            f"distill(term='neural'): the model's field is a {type(fld).__name__}, not a HybridField "
            "(physics + network); use term='field' to distil the whole learned field.")
    if isinstance(fld.physics, HybridField):
        raise ConfigError(
            "distill(term='neural'): the model has more than one network term (nested HybridFields, "
            "one per distinct nn(...) argument list); distil it with term='field' instead.")
    f = fld.neural.numpy_function()
    cols = [fld.input_names.index(n) for n in fld.neural.input_names]

    def fn(t: np.ndarray, x: np.ndarray, u: np.ndarray | None) -> np.ndarray:
        tt = float(t[0]) if np.ptp(t) == 0 else t
        sub = u[:, cols] if cols and u is not None else None
        return np.asarray(f(tt, x, sub), dtype=float).reshape(len(x), -1)

    return fn, tuple(fld.neural_states), fld


def _rows(ds: xr.Dataset, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(t, values) of every sample where all ``names`` are finite."""
    t = np.broadcast_to(ds["time"].values, ds[names[0]].shape).ravel() if names else np.zeros(0)
    v = np.stack([np.asarray(ds[n].values, float).ravel() for n in names], axis=-1)
    ok = np.all(np.isfinite(v), axis=1) & np.isfinite(t)
    return np.asarray(t[ok], float), v[ok]


def _points(model: Any, data: xr.Dataset, on: str, jitter: int, seed: int,
            threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, int]]:
    """Evaluation points ``(t, X, U)`` and how many came from each source."""
    from sysid.analysis.fields import DataSupport
    from sysid.simulation import simulate

    states, inputs = tuple(model.state_names), tuple(model.input_names)
    measured = [s for s in states if s in data.data_vars]
    if len(measured) != len(states):
        raise DataError(f"distill: the data must measure every state {list(states)} to sample the "
                        f"model on its support; it has {list(data.data_vars)}.")
    missing = [n for n in inputs if n not in data.data_vars]
    if missing:
        raise DataError(f"distill: the data has no inputs {missing} that the model reads.")
    names = [*states, *inputs]
    t, v = _rows(data, names)
    if len(t) == 0:
        raise DataError(f"distill: no sample of the data has every state and input {names} finite.")
    counts = {"data": len(t)}
    ts, vs = [t], [v]
    if on == "support":
        support = DataSupport.from_data(data, states=states, threshold=threshold, seed=seed)
        rng = np.random.default_rng(seed)
        rep = np.repeat(v, jitter, axis=0)
        noise = rng.normal(0.0, threshold / 2, size=(len(rep), len(states))) * support.scale
        rep[:, :len(states)] += noise
        keep = support.inside(rep[:, :len(states)])
        ts.append(np.repeat(t, jitter)[keep])
        vs.append(rep[keep])
        counts["jitter"] = int(keep.sum())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sim = simulate(model, data)
        st, sv = _rows(sim, names)
        ts.append(st)
        vs.append(sv)
        counts["trajectories"] = len(st)
    tt, vv = np.concatenate(ts), np.concatenate(vs)
    u = vv[:, len(states):] if inputs else None
    return tt, vv[:, :len(states)], u, counts


# --------------------------------------------------------------------------------------------- #
# candidate library
# --------------------------------------------------------------------------------------------- #
def _poly_name(name: str) -> str:
    """PySINDy's ``'x^2 y'`` as the equations syntax ``'x**2*y'``."""
    return "*".join(f.replace("^", "**") for f in name.split(" "))


def _library(library: Any, degree: int, variables: Sequence[str],
             z: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Candidate term texts (equations syntax) and their values ``(M, F)`` at ``z`` (M, V)."""
    import pysindy as ps

    from sysid.backend import NUMPY
    from sysid.expressions import parse

    texts: list[str] = []
    cols: list[np.ndarray] = []
    if isinstance(library, str):
        if library not in LIBRARIES:
            raise ConfigError(f"distill: library must be one of {list(LIBRARIES)}, a pysindy feature "
                              f"library or a list of terms in the equations syntax; got {library!r}.")
        lib = ps.PolynomialLibrary(degree=degree, include_bias=True)
        lib.fit(z)
        texts = [_poly_name(n) for n in lib.get_feature_names(input_features=list(variables))]
        cols = [np.asarray(lib.transform(z), float)]
        if library == "polynomial+trig":
            library = [f"{fn}({v})" for v in variables for fn in ("sin", "cos")]
        else:
            library = []
    elif hasattr(library, "fit") and hasattr(library, "transform"):
        library.fit(z)
        names = library.get_feature_names(input_features=list(variables))
        bad = [n for n in names if not _is_expression(n, variables)]
        if bad:
            raise ConfigError(f"distill: the feature library's terms {bad[:3]} are not expressions in "
                              "the equations syntax; pass the terms as strings instead.")
        texts = [_poly_name(n) for n in names]
        cols = [np.asarray(library.transform(z), float)]
        library = []
    if isinstance(library, str) or not isinstance(library, Sequence):
        raise ConfigError(f"distill: library must be a name, a pysindy library or a list of term "
                          f"strings; got {type(library).__name__}.")
    env = {v: z[:, i] for i, v in enumerate(variables)}
    for text in library:
        e = parse(str(text), names=variables, where="distill library term")
        val = np.asarray(e.compile(NUMPY)(env), float)
        cols.append(np.broadcast_to(val, (len(z),)).reshape(-1, 1))
        texts.append(e.text)
    theta = np.concatenate(cols, axis=1)
    if len(set(texts)) != len(texts):
        raise ConfigError(f"distill: the library repeats terms: {sorted({s for s in texts if texts.count(s) > 1})}.")
    return texts, theta


def _is_expression(text: str, variables: Sequence[str]) -> bool:
    from sysid.expressions import ExpressionError, parse

    try:
        parse(_poly_name(text), names=variables)
    except (ExpressionError, SyntaxError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------------------------- #
# sparse regression over a threshold path
# --------------------------------------------------------------------------------------------- #
def _criterion(rss: float, n: int, k: int, tss: float, kind: str) -> float:
    rss = max(rss, _FLOOR * tss, np.finfo(float).tiny)
    penalty = 2 * k if kind == "aic" else k * math.log(n)
    return n * math.log(rss / n) + penalty


def _path(theta: np.ndarray, y: np.ndarray, thresholds: np.ndarray | None,
          criterion: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Coefficients of the selected pattern and the path table for one target ``y``.

    Columns and target are scaled to unit root-mean-square, so the thresholds are relative
    coefficient sizes (a term whose share of the target is below the threshold is dropped).
    """
    import pysindy as ps

    n, nf = theta.shape
    cnorm = np.sqrt(np.mean(theta**2, axis=0))
    cnorm = np.where(cnorm > 0, cnorm, 1.0)
    ynorm = float(np.sqrt(np.mean(y**2))) or 1.0
    a, b = theta / cnorm, y / ynorm
    full = np.linalg.lstsq(a, b, rcond=None)[0]
    if thresholds is None:
        top = float(np.max(np.abs(full))) if nf else 1.0
        thresholds = np.geomspace(1e-4, max(top, 2e-4), 40)
    patterns: dict[tuple[bool, ...], float] = {}
    for lam in np.asarray(thresholds, float):
        opt = ps.STLSQ(threshold=float(lam), alpha=1e-10, max_iter=50)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt.fit(a, b.reshape(-1, 1))
        key = tuple(bool(c) for c in np.abs(np.asarray(opt.coef_).ravel()) > 0)
        patterns.setdefault(key, float(lam))
    patterns.setdefault(tuple([False] * nf), math.inf)
    tss = float(np.sum(b**2))
    rows, best, best_coef = [], None, np.zeros(nf)
    for key, lam in patterns.items():
        mask = np.array(key, bool)
        coef = np.zeros(nf)
        if mask.any():
            coef[mask] = np.linalg.lstsq(a[:, mask], b, rcond=None)[0]
        rss = float(np.sum((b - a @ coef) ** 2))
        k = int(mask.sum())
        row = {"threshold": lam, "n_terms": k, "rss": rss * ynorm**2,
               "aic": _criterion(rss, n, k, tss, "aic"), "bic": _criterion(rss, n, k, tss, "bic")}
        rows.append(row)
        score = (row[criterion], k)
        if best is None or score < best:
            best, best_coef = score, coef
    table = pd.DataFrame(rows).sort_values("n_terms", kind="stable").reset_index(drop=True)
    table["selected"] = [(r[criterion], r["n_terms"]) == best for _, r in table.iterrows()]
    return best_coef * ynorm / cnorm, table


# --------------------------------------------------------------------------------------------- #
# result
# --------------------------------------------------------------------------------------------- #
def _fmt(c: float) -> str:
    return f"{c:.6g}"


def _latex_term(text: str) -> str:
    def name(m: re.Match[str]) -> str:
        s = m.group(0)
        if s in ("sin", "cos", "tan", "exp", "log", "sqrt"):
            return "\\" + s
        return s if len(s) == 1 else "\\mathrm{" + s.replace("_", "\\_") + "}"

    out = re.sub(r"[A-Za-z_][A-Za-z0-9_]*", name, text)
    out = re.sub(r"\*\*(\d+)", r"^{\1}", out)
    return out.replace("*", " ")


def _sum(terms: Sequence[tuple[str, float]], latex: bool = False) -> str:
    if not terms:
        return "0"
    parts = []
    for i, (t, c) in enumerate(terms):
        sign = "-" if c < 0 else "+"
        body = _fmt(abs(c)) if t == "1" else (
            f"{_fmt(abs(c))}{' ' if latex else '*'}{_latex_term(t) if latex else t}")
        parts.append((("-" if sign == "-" else "") if i == 0 else f" {sign} ") + body)
    return "".join(parts)


@final
@dataclass(frozen=True, kw_only=True)
class Distillation:
    """What :func:`distill` returns.

    Attributes
    ----------
    term : {"neural", "field"}
        What was distilled.
    targets : tuple of str
        The states whose equations (or network corrections) were distilled.
    variables : tuple of str
        The states and inputs the candidate terms are written in.
    equations : dict
        ``{state: ((term, coefficient), ...)}``, the selected terms in library order.
    path : pandas.DataFrame
        The sparsity path per state: ``state, threshold, n_terms, rss, aic, bic, selected``.
    r2 : dict
        Share of the target's sum of squares each selected equation explains, per state.
    n_points : dict
        Evaluation points by source (``data``, ``jitter``, ``trajectories``).
    criterion : {"bic", "aic"}
    library : tuple of str
        Every candidate term.
    inclusion : pandas.DataFrame or None
        Distilled over several members (an ensemble, or a list of fits): one row per (state, term)
        that some member selected: ``state, term, frequency`` (share of members that selected
        it), ``selected`` (frequency >= ``min_frequency``: the term is in :attr:`equations`),
        ``coefficient`` (its coefficient in :attr:`equations`, 0 when not selected),
        ``median, low, high`` (over the members that selected it, central ``level`` interval)
        and ``n_members``. None for a single model.
    n_members : int
        Members distilled (1 for a single model).
    """

    term: str
    targets: tuple[str, ...]
    variables: tuple[str, ...]
    equations: dict[str, tuple[tuple[str, float], ...]]
    path: pd.DataFrame
    r2: dict[str, float]
    n_points: dict[str, int]
    criterion: str
    library: tuple[str, ...]
    model: Any = field(repr=False)
    original_loss: float = math.nan
    inclusion: pd.DataFrame | None = field(default=None, repr=False)
    n_members: int = 1
    _theta: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    _z: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))

    def _label(self, s: str, latex: bool = False) -> str:
        if self.term == "field":
            return f"\\dot{{{_latex_term(s)}}}" if latex else f"d{s}/dt"
        return f"\\mathrm{{nn}}_{{{_latex_term(s)}}}" if latex else f"nn_{s}"

    def text(self) -> str:
        """One line per state: ``d{s}/dt = ...`` (whole field) or ``nn_{s} = ...`` (network term)."""
        return "\n".join(f"{self._label(s)} = {_sum(self.equations[s])}" for s in self.targets)

    def latex(self) -> str:
        """The equations as a LaTeX ``aligned`` block."""
        rows = [f"{self._label(s, True)} &= {_sum(self.equations[s], latex=True)}" for s in self.targets]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def __str__(self) -> str:
        return self.text()

    def sympy(self) -> dict[str, Any]:
        """The equations as SymPy expressions, one per distilled state.

        Built node by node from the coefficients and the library terms' syntax trees (each term was
        checked by :func:`sysid.expressions.parse`); no text is ever handed to ``sympify``. The
        variables are real SymPy symbols named as the states and inputs; coefficients are SymPy
        floats. The left-hand side is ``nn_<state>`` (``term="neural"``) or ``d<state>/dt``.

        Returns
        -------
        dict
            ``{state: sympy.Expr}``.

        Raises
        ------
        ImportError
            When SymPy is not installed (``pip install sympy``, or the ``sympy`` extra).
        """
        sp = _import_sympy()
        symbols = {v: sp.Symbol(v, real=True) for v in self.variables}
        out = {}
        for s in self.targets:
            expr = sp.Integer(0)
            for t, c in self.equations[s]:
                expr += sp.Float(c) * _sympy_of(t, self.variables, symbols, sp)
            out[s] = expr
        return out

    # ------------------------------------------------------------------ comparison
    def compare(self, reference: Mapping[str, str], *, parameters: Mapping[str, float] | None = None,
                rtol: float = 0.05) -> pd.DataFrame:
        """Compare with reference expressions, one per distilled state (equations syntax).

        The reference is evaluated at the same points and projected on the same library (exact when
        it lies in the library's span), so ``"-0.5*x*y"`` and ``"-x*y/2"`` compare alike.

        Returns
        -------
        pandas.DataFrame
            One row per term present in either: ``state, term, distilled, reference,
            relative_error`` (``abs(distilled - reference) / abs(reference)``), ``match`` (the term is in both
            or in neither, and the coefficient is within ``rtol``).
        """
        from sysid.backend import NUMPY
        from sysid.expressions import parse

        extra = [k for k in reference if k not in self.targets]
        if extra:
            raise ConfigError(f"Distillation.compare: reference states {extra} were not distilled; "
                              f"the distilled states are {list(self.targets)}.")
        params = dict(parameters or {})
        env: dict[str, Any] = {v: self._z[:, i] for i, v in enumerate(self.variables)}
        env.update(params)
        rows = []
        for s, text in reference.items():
            e = parse(str(text), names=[*self.variables, *params], where=f"reference for {s}")
            y = np.broadcast_to(np.asarray(e.compile(NUMPY)(env), float), (len(self._z),))
            ref = np.linalg.lstsq(self._theta, y, rcond=None)[0]
            scale = float(np.max(np.abs(ref))) or 1.0
            ref[np.abs(ref) < 1e-9 * scale] = 0.0
            got = dict(self.equations[s])
            for j, term in enumerate(self.library):
                r, d = float(ref[j]), float(got.get(term, 0.0))
                if r == 0 and d == 0:
                    continue
                err = abs(d - r) / abs(r) if r else math.inf
                rows.append({"state": s, "term": term, "distilled": d, "reference": r,
                             "relative_error": err, "match": bool(r and d and err <= rtol)})
        return pd.DataFrame(rows, columns=["state", "term", "distilled", "reference",
                                           "relative_error", "match"])

    # ------------------------------------------------------------------ equations file
    def to_dict(self) -> dict[str, Any]:
        """A ``{"model": ...}`` table that :func:`sysid.models.from_toml` loads.

        With ``term="neural"`` the model's own equations are kept and each ``nn(...)`` becomes the
        distilled terms, each coefficient a free parameter ``c_<state>_<k>``; with
        ``term="field"`` every equation is the distilled sum.
        """
        from sysid.models import HybridField, PhysicsField
        from sysid.models.equations import EquationsRhs

        m = self.model
        fld = m.field
        states = {s: {"units": u} for s, u in zip(m.state_names, m.field.state_units)}
        inputs = {n: {"units": u} for n, u in zip(m.input_names, m.field.input_units)}
        params: dict[str, Any] = {}
        base: dict[str, str] = {s: "0" for s in m.state_names}
        if self.term == "neural":
            phys = fld.physics if isinstance(fld, HybridField) else None
            fn = getattr(phys, "fn", None) if isinstance(phys, PhysicsField) else None
            if not isinstance(fn, EquationsRhs):
                raise ConfigError(
                    "Distillation.to_dict: the physics term is Python code, not text equations; only "
                    "a model built by sysid.models.from_toml (or term='field') can be written as an "
                    "equations file.")
            base = dict(fn.texts)
            with_specs = phys.parameter_specs()
            for name, p in with_specs.items():
                params[name] = {"value": float(p.value), "bounds": [float(b) for b in p.bounds],
                                "fixed": not p.vary}
                if p.units:
                    params[name]["units"] = str(p.units)
        taken = {*m.state_names, *m.input_names, *params}
        eqs = {}
        for s in m.state_names:
            terms = []
            for k, (t, c) in enumerate(self.equations.get(s, ()), start=1):
                name = f"c_{s}_{k}"
                while name in taken:
                    name += "_"
                taken.add(name)
                params[name] = {"value": float(c)}
                terms.append(name if t == "1" else f"{name}*{t}")
            distilled = " + ".join(terms) if terms else "0"
            if self.term == "neural":
                text = re.sub(r"nn\([^()]*\)", f"({distilled})", base[s]) if s in self.targets else base[s]
            else:
                text = distilled
            eqs[f"d{s}"] = text
        table: dict[str, Any] = {"name": f"distilled {getattr(m, 'name', '') or 'model'}".strip(),
                                 "time_units": str(fld.time_units), "states": states,
                                 "parameters": params, "equations": eqs}
        if inputs:
            table["inputs"] = inputs
        return {"model": table}

    def to_toml(self) -> str:
        """The equations file as TOML text (see :meth:`to_dict`)."""
        return _toml(self.to_dict())

    def write(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the equations file (atomically); returns its path."""
        from sysid.atomic import write_text

        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        return write_text(path, self.to_toml())

    def symbolic_model(self) -> Any:
        """The distilled model, built by :func:`sysid.models.from_toml` from :meth:`to_dict`."""
        from sysid.models import from_toml

        return from_toml(self.to_dict())

    # ------------------------------------------------------------------ refit
    def refit(self, data: xr.Dataset, config: Any = None) -> Refit:
        """Fit the symbolic model end to end with :func:`sysid.fit` and compare the two fits.

        Both models are simulated from each run's first sample on the data's grid; ``nrmse`` is the
        root-mean-square error per state divided by the state's standard deviation, averaged over
        the states (the same number for both fits, whatever their training losses were).
        """
        import sysid

        result = sysid.fit(self.symbolic_model(), data, config)
        hist = result.history
        loss = float(hist["loss"].iloc[-1]) if len(hist) else math.nan
        return Refit(result=result, original_loss=self.original_loss, refit_loss=loss,
                     original_nrmse=_nrmse(self.model, data), refit_nrmse=_nrmse(result.model, data))


def _nrmse(model: Any, data: xr.Dataset) -> float:
    from sysid.simulation import simulate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = simulate(model, data)
    vals = []
    for s in model.state_names:
        if s in data.data_vars:
            y, p = np.asarray(data[s].values, float), np.asarray(sim[s].values, float)
            ok = np.isfinite(y) & np.isfinite(p)
            sd = float(np.std(y[ok])) or 1.0
            vals.append(float(np.sqrt(np.mean((y[ok] - p[ok]) ** 2))) / sd)
    return float(np.mean(vals)) if vals else math.nan


@final
@dataclass(frozen=True, kw_only=True)
class Refit:
    """The distilled model refitted end to end (:meth:`Distillation.refit`).

    ``original_loss`` is the given fit's final training loss (NaN when a bare Model was given),
    ``refit_loss`` the refit's; the two ``*_nrmse`` are the same simulation error for both.
    """

    result: Any
    original_loss: float
    refit_loss: float
    original_nrmse: float
    refit_nrmse: float

    def table(self) -> pd.DataFrame:
        """One row per fit: ``fit, training_loss, nrmse``."""
        return pd.DataFrame({"fit": ["original", "distilled"],
                             "training_loss": [self.original_loss, self.refit_loss],
                             "nrmse": [self.original_nrmse, self.refit_nrmse]})


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        v = float(v)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v).__name__)


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else _toml_value(k)


def _toml(d: Mapping[str, Any]) -> str:
    """TOML for ``{"model": {scalars..., subtables of scalars/inline tables}}`` (all we write)."""
    lines: list[str] = []
    for top, table in d.items():
        lines.append(f"[{top}]")
        subs = {k: v for k, v in table.items() if isinstance(v, Mapping)}
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if k not in subs]
        for k, v in subs.items():
            lines += ["", f"[{top}.{_toml_key(k)}]"]
            lines += [f"{_toml_key(a)} = {_toml_value(b)}" for a, b in v.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------- #
# SymPy, built from syntax trees (never sympify / parse_expr: they execute code)
# --------------------------------------------------------------------------------------------- #
class _MissingSymPy(SysidError, ImportError):
    """SymPy, an optional dependency, is not installed."""


def _import_sympy() -> Any:
    try:
        import sympy
    except ImportError:
        raise _MissingSymPy("Distillation.sympy needs SymPy, which is not installed; install it "
                            "with pip install sympy (or the sysid[sympy] extra), or use "
                            ".text() / .latex() instead.") from None
    return sympy


def _sympy_of(text: str, variables: Sequence[str], symbols: Mapping[str, Any], sp: Any) -> Any:
    """SymPy expression of a term in the equations syntax (checked by the whitelist first)."""
    import ast

    from sysid.expressions import parse

    parse(text, names=variables, where="distilled term")  # refuses anything off the whitelist
    return _node(ast.parse(text, mode="eval").body, symbols, sp, text)


def _sympy_functions(sp: Any) -> dict[str, Any]:
    return {"sqrt": sp.sqrt, "exp": sp.exp, "log": sp.log, "sin": sp.sin, "cos": sp.cos,
            "tanh": sp.tanh, "abs": sp.Abs, "min": sp.Min, "max": sp.Max,
            "clip": lambda x, lo, hi: sp.Min(sp.Max(x, lo), hi),
            "where": lambda c, a, b: sp.Piecewise((a, c), (b, True)),
            "sigmoid": lambda x: 1 / (1 + sp.exp(-x)), "softplus": lambda x: sp.log(1 + sp.exp(x))}


def _node(node: Any, symbols: Mapping[str, Any], sp: Any, text: str) -> Any:
    """One whitelisted syntax-tree node as SymPy (the node kinds of :mod:`sysid.expressions`)."""
    import ast
    import operator

    rec = lambda n: _node(n, symbols, sp, text)  # noqa: E731
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool):
        v = node.value
        return sp.Integer(int(v)) if float(v).is_integer() and abs(v) < 2**53 else sp.Float(v)
    if isinstance(node, ast.Name):
        return symbols[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        v = rec(node.operand)
        return -v if isinstance(node.op, ast.USub) else sp.Not(v) if isinstance(node.op, ast.Not) else v
    if isinstance(node, ast.BinOp):
        ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv, ast.Pow: operator.pow}
        fn = ops.get(type(node.op))
        if fn is not None:
            return fn(rec(node.left), rec(node.right))
    if isinstance(node, ast.Compare):
        rel = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge, ast.Eq: sp.Eq,
               ast.NotEq: sp.Ne}
        parts, left = [], rec(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = rec(comp)
            parts.append(rel[type(op)](left, right))
            left = right
        return sp.And(*parts) if len(parts) > 1 else parts[0]
    if isinstance(node, ast.BoolOp):
        return (sp.And if isinstance(node.op, ast.And) else sp.Or)(*[rec(v) for v in node.values])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        fn = _sympy_functions(sp).get(node.func.id)
        if fn is not None:
            return fn(*[rec(a) for a in node.args])
    raise ConfigError(f"Distillation.sympy: the term {text!r} has a {type(node).__name__} that has "
                      "no SymPy form.")


# --------------------------------------------------------------------------------------------- #
# several members: inclusion frequencies
# --------------------------------------------------------------------------------------------- #
def _members_of(obj: Any) -> tuple[list[tuple[Any, float]], Any]:
    """``([(model, final loss), ...], representative model)``: one for a model or fit, the fits
    of an ensemble, or a list. The representative (whose structure the equations file keeps) is
    the bootstrap base fit when there is one (not a member: it is not counted in the
    frequencies), else the first member."""
    from sysid.parallel import Ensemble, TaskFailure

    if isinstance(obj, Ensemble):
        fits = list(obj.fits)
        if not fits:
            raise DataError(f"distill: no member of the ensemble succeeded ({len(obj.failures)} "
                            "failed).")
        out = [_model_of(f) for f in fits]
        base = obj.base if obj.base is not None and not isinstance(obj.base, TaskFailure) else None
        return out, (_model_of(base)[0] if base is not None else out[0][0])
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        items = [m for m in obj if not isinstance(m, TaskFailure)]
        if not items:
            raise DataError("distill: the list of members is empty (or every member failed).")
        out = [_model_of(m) for m in items]
        return out, out[0][0]
    out = [_model_of(obj)]
    return out, out[0][0]


def _sample(model: Any, data: xr.Dataset, term: str, library: Any, degree: int, on: str,
            jitter: int, seed: int, support_threshold: float) -> tuple[Any, ...]:
    """Targets, variables, term texts, library values, network values, point counts and points
    of one model."""
    fn, targets, _ = _target(model, term)
    t, x, u, counts = _points(model, data, on, jitter, seed, support_threshold)
    variables = (*model.state_names, *model.input_names)
    z = x if u is None else np.concatenate([x, u], axis=1)
    y = np.asarray(fn(t, x, u), float)
    ok = np.all(np.isfinite(y), axis=1)
    if not ok.all():
        raise DataError(f"distill: the {term} term is not finite at {int((~ok).sum())} of "
                        f"{len(ok)} sample points; the model diverges on the data's support.")
    texts, theta = _library(library, degree, variables, z)
    return targets, variables, texts, theta, y, counts, z


def _distill_members(members: list[tuple[Any, float]], representative: Any, data: xr.Dataset, *,
                     term: str, library: Any,
                     degree: int, on: str, thresholds: np.ndarray | None, criterion: str,
                     jitter: int, support_threshold: float, seed: int, min_frequency: float,
                     level: float) -> Distillation:
    """Distil every member, select terms by inclusion frequency, refit on the pooled points."""
    thetas, ys, zs, coefs, tables = [], [], [], [], []
    counts: dict[str, int] = {}
    targets = variables = texts = None
    for i, (model, _) in enumerate(members):
        tg, vs, tx, theta, y, cnt, z = _sample(model, data, term, library, degree, on, jitter, seed,
                                               support_threshold)
        if texts is not None and (tx != texts or tg != targets):
            raise ConfigError("distill: the members are not the same model (their targets or library "
                              f"terms differ: member 0 {list(targets)}, member {i} {list(tg)}).")
        targets, variables, texts = tg, vs, tx
        per_state = []
        for j, s in enumerate(tg):
            coef, table = _path(theta, y[:, j], thresholds, criterion)
            per_state.append(coef)
            tables.append(table.assign(state=s, member=i))
        coefs.append(np.asarray(per_state))  # (targets, F)
        thetas.append(theta)
        ys.append(y)
        zs.append(z)
        for k, v in cnt.items():
            counts[k] = counts.get(k, 0) + v
    theta, y, z = np.concatenate(thetas), np.concatenate(ys), np.concatenate(zs)
    c = np.asarray(coefs)  # (members, targets, F)
    freq = np.mean(c != 0, axis=0)
    equations, r2, rows = {}, {}, []
    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    for j, s in enumerate(targets):
        mask = freq[j] >= min_frequency - 1e-12
        coef = np.zeros(len(texts))
        if mask.any():
            coef[mask] = np.linalg.lstsq(theta[:, mask], y[:, j], rcond=None)[0]
        equations[s] = tuple((texts[i], float(coef[i])) for i in np.flatnonzero(mask))
        tss = float(np.sum(y[:, j] ** 2))
        r2[s] = 1.0 - float(np.sum((y[:, j] - theta @ coef) ** 2)) / tss if tss > 0 else 1.0
        for i in np.flatnonzero(freq[j] > 0):
            v = c[:, j, i][c[:, j, i] != 0]
            rows.append({"state": s, "term": texts[i], "frequency": float(freq[j, i]),
                         "selected": bool(mask[i]), "coefficient": float(coef[i]),
                         "median": float(np.median(v)), "low": float(np.quantile(v, lo_q)),
                         "high": float(np.quantile(v, hi_q)), "n_members": len(members)})
    inclusion = pd.DataFrame(rows, columns=["state", "term", "frequency", "selected", "coefficient",
                                            "median", "low", "high", "n_members"])
    path = pd.concat(tables, ignore_index=True)
    path = path[["member", "state", *[k for k in path.columns if k not in ("state", "member")]]]
    losses = [l for _, l in members if math.isfinite(l)]
    return Distillation(term=term, targets=targets, variables=variables, equations=equations,
                        path=path, r2=r2, n_points=counts, criterion=criterion, library=tuple(texts),
                        model=representative,
                        original_loss=float(np.median(losses)) if losses else math.nan,
                        inclusion=inclusion, n_members=len(members), _theta=theta, _z=z)


# --------------------------------------------------------------------------------------------- #
# the verb
# --------------------------------------------------------------------------------------------- #
def distill(
    result_or_model: Any,
    data: xr.Dataset,
    *,
    term: str = "neural",
    library: Any = "polynomial",
    degree: int = 2,
    on: str = "support",
    threshold: Sequence[float] | float | None = None,
    criterion: str = "bic",
    jitter: int = 2,
    support_threshold: float = 0.25,
    seed: int = 0,
    min_frequency: float = 0.5,
    level: float = 0.9,
) -> Distillation:
    """Distil a model's network term (or whole field) into sparse equations.

    Parameters
    ----------
    result_or_model : FitResult, sysid.models.Model, Ensemble or sequence of FitResult/Model
        The trained model, or several (the members of :func:`sysid.ensemble`, bootstrap or seeds;
        a list of fits of the same model). With several, every member is distilled on its own
        (the same library, points from the same data) and a term enters the equations when at
        least ``min_frequency`` of the members select it; its coefficient is then refitted by
        least squares on all members' points together (the consensus of the members' networks),
        and :attr:`Distillation.inclusion` gives each term's inclusion frequency and coefficient
        interval.
    data : xarray.Dataset
        The training data (every state measured): its samples are the support.
    term : {"neural", "field"}
        ``"neural"``: the network term of a hybrid model (on the states it corrects);
        ``"field"``: the whole right-hand side (a black-box model, say).
    library : {"polynomial", "polynomial+trig"}, pysindy feature library or list of str
        Candidate terms: polynomials of the states and inputs to ``degree`` (PySINDy's
        ``PolynomialLibrary``), plus ``sin`` and ``cos`` of each; a PySINDy library whose feature
        names are products and powers; or terms written in the equations syntax
        (``["x*y", "x/(1 + x)"]``).
    degree : int
        Polynomial degree.
    on : {"support", "data"}
        ``"support"``: the data samples, ``jitter`` jittered copies of each inside the support and
        the model's fitted trajectories; ``"data"``: the data samples only.
    threshold : float or sequence of float, optional
        STLSQ thresholds (relative coefficient sizes, see :func:`_path`); default a path of 40 from
        1e-4 to the largest least-squares coefficient. One value fixes the sparsity.
    criterion : {"bic", "aic"}
        How a pattern is chosen among the path's.
    jitter : int
        Jittered copies per sample (standard deviation ``support_threshold / 2`` std units; copies
        outside the support are dropped).
    support_threshold : float
        :class:`~sysid.analysis.fields.DataSupport` threshold (std units).
    seed : int
        Seeds the jitter.
    min_frequency : float
        With several members: the share of members that must select a term for it to enter the
        equations (stability selection; 0.5 = a majority).
    level : float
        With several members: the central interval of each term's coefficient over the members
        that selected it.

    Returns
    -------
    Distillation
    """
    if term not in TERMS:
        raise ConfigError(f"distill: term must be one of {list(TERMS)}; got {term!r}.")
    if on not in ON:
        raise ConfigError(f"distill: on must be one of {list(ON)}; got {on!r}.")
    if criterion not in CRITERIA:
        raise ConfigError(f"distill: criterion must be one of {list(CRITERIA)}; got {criterion!r}.")
    if isinstance(degree, bool) or not isinstance(degree, int) or degree < 1:
        raise ConfigError(f"distill: degree must be a whole number >= 1; got {degree!r}.")
    if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0:
        raise ConfigError(f"distill: jitter must be a whole number >= 0; got {jitter!r}.")
    thresholds = None if threshold is None else np.atleast_1d(np.asarray(threshold, float))
    if thresholds is not None and not (thresholds.size and np.all(thresholds >= 0)):
        raise ConfigError(f"distill: threshold must be >= 0 (one value or a path); got {threshold!r}.")
    if not 0 < min_frequency <= 1:
        raise ConfigError(f"distill: min_frequency must lie in (0, 1]; got {min_frequency!r}.")
    if not 0 < level < 1:
        raise ConfigError(f"distill: level must lie in (0, 1); got {level!r}.")
    members, representative = _members_of(result_or_model)
    if len(members) > 1:
        return _distill_members(members, representative, data, term=term, library=library,
                                degree=degree, on=on, thresholds=thresholds, criterion=criterion, jitter=jitter,
                                support_threshold=support_threshold, seed=seed,
                                min_frequency=min_frequency, level=level)
    model, loss = members[0]
    targets, variables, texts, theta, y, counts, z = _sample(model, data, term, library, degree, on,
                                                             jitter, seed, support_threshold)
    equations, tables, r2 = {}, [], {}
    for j, s in enumerate(targets):
        coef, table = _path(theta, y[:, j], thresholds, criterion)
        equations[s] = tuple((texts[i], float(coef[i])) for i in np.flatnonzero(coef))
        tss = float(np.sum(y[:, j] ** 2))
        r2[s] = 1.0 - float(np.sum((y[:, j] - theta @ coef) ** 2)) / tss if tss > 0 else 1.0
        tables.append(table.assign(state=s))
    path = pd.concat(tables, ignore_index=True)
    path = path[["state", *[c for c in path.columns if c != "state"]]]
    return Distillation(term=term, targets=targets, variables=variables, equations=equations,
                        path=path, r2=r2, n_points=counts, criterion=criterion, library=tuple(texts),
                        model=model, original_loss=loss, _theta=theta, _z=z)
