"""Shared machinery of the command line: error reporting, atomic outputs and option parsing.

Nothing here knows about fitting; the command modules use it so that every command reports errors,
writes files and reads ``k=v`` lists the same way.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from sysid import atomic
from sysid.errors import ConfigError, DataError, SysidError

__all__ = [
    "UserError",
    "Console",
    "console",
    "atomic_dir",
    "atomic_file",
    "check_new_output",
    "check_output_apart",
    "start_output_dir",
    "parse_names",
    "parse_assignments",
    "parse_float",
    "parse_holdout",
    "parse_outputs",
    "parse_settings",
    "parse_renames",
    "one_line",
    "existing_file",
    "fail_internal",
    "print_error",
]


DIRECTORY_STORES = (".zarr",)  # outputs that are directories on disk
RESERVED_NAMES = ("time", "trajectory", "obs")  # coordinates and dimensions of the data schema


class UserError(SysidError, ValueError):
    """A mistake on the command line that is not about data, parameters or configuration.

    Examples: an output directory that already exists, a missing input file.
    """


@dataclass
class Console:
    """Where the command line writes messages: stdout for results, stderr for notes and errors.

    Attributes
    ----------
    verbose : bool
        Show tracebacks and extra notes.
    quiet : bool
        Print nothing but errors (for scripts).
    """

    verbose: bool = False
    quiet: bool = False

    def info(self, message: str) -> None:
        """Print a progress note to stderr unless ``--quiet``."""
        if not self.quiet:
            click.echo(message, err=True)

    def detail(self, message: str) -> None:
        """Print a note to stderr only with ``--verbose``."""
        if self.verbose and not self.quiet:
            click.echo(message, err=True)

    def result(self, message: str) -> None:
        """Print a result to stdout (a listing, a table); shown even with ``--quiet``."""
        click.echo(message)


console = Console()


def one_line(message: object) -> str:
    """Collapse a (possibly multi-line) message into one line for stderr."""
    text = str(message).strip()
    if isinstance(message, KeyError) and len(message.args) == 1 and isinstance(message.args[0], str):
        # str(KeyError('x')) is "'x'" with quotes; show the message as written.
        text = message.args[0]
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


# ----------------------------------------------------------------------------------------------
# Outputs written atomically


def check_new_output(path: Path, *, force: bool, option: str = "--out") -> None:
    """Refuse an output path that exists unless ``force``.

    Called before any work starts, so a refused command spends no time and writes nothing.

    Raises
    ------
    UserError
        When ``path`` exists and ``force`` is false, or when it is a file where a directory is
        expected (or the other way round).
    """
    if path.exists() or path.is_symlink():
        if not force:
            kind = "directory" if path.is_dir() else "file"
            raise UserError(
                f"output {kind} '{path}' ({option}) already exists; sysid never overwrites results. "
                f"Pass --force to replace it, or choose another {option}."
            )


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(os.path.abspath(path)))


def check_output_apart(out: Path, inputs: Iterable[tuple[str, str | os.PathLike[str]]], *,
                       option: str = "--out") -> None:
    """Refuse an output path that is, contains or lies inside an input (or the working folder).

    Called before any work: with ``--force`` such an output would replace the data it is made
    from (``--out in.csv``, ``--out proj`` for ``proj/in.csv``, ``--out .``).

    Parameters
    ----------
    out : Path
        The output path.
    inputs : iterable of (label, path)
        What the command reads, with the option that names it (``"DATA"``, ``"--config"``).

    Raises
    ------
    UserError
        Naming the input and how the paths overlap.
    """
    o = _real(out)
    cwd = _real(os.getcwd())
    home = _real(Path.home())
    if o == cwd or o in cwd.parents or o == Path(o.anchor) or o == home:
        what = ("the current folder" if o == cwd else "your home folder" if o == home
                else "the file system root" if o == Path(o.anchor) else "a folder holding the current folder")
        raise UserError(f"{option} '{out}' is {what}; sysid writes a new folder there and, with "
                        f"--force, would replace it. Name a new folder, e.g. {option} "
                        f"'{Path(out) / 'results'}'.")
    for label, path in inputs:
        r = _real(path)
        if r == o:
            raise UserError(f"{option} '{out}' is the input {label} '{path}'; sysid never writes over "
                            f"its inputs. Choose another {option}.")
        if o in r.parents:
            raise UserError(f"{option} '{out}' contains the input {label} '{path}'; replacing it "
                            f"would delete the input, and sysid never writes over its inputs. Choose "
                            f"another {option}.")
        if r in o.parents:
            raise UserError(f"{option} '{out}' lies inside the input {label} '{path}'; sysid never "
                            f"writes into its inputs. Choose an {option} outside '{path}'.")


def start_output_dir(out: Path, *, force: bool, need_bytes: float) -> atomic.FolderBuild:
    """Create the temporary folder a command's results are built in, before the work starts.

    Creating it proves that ``out``'s folder is writable; the free space there must hold
    ``need_bytes`` (the estimated size of the results) with a margin.

    Raises
    ------
    UserError
        When the folder cannot be created (read-only, a file in the way, no permission) or the
        file system has too little free space; nothing is left behind.
    """
    from sysid.budget import format_bytes

    check_new_output(out, force=force)
    try:
        build = atomic.FolderBuild(out, overwrite=force)
    except OSError as exc:
        where = Path(os.path.abspath(out)).parent
        raise UserError(f"--out '{out}': cannot create the output folder in '{where}' "
                        f"({exc.strerror or one_line(exc)}); choose a folder you can write to.") from None
    free = atomic.free_bytes(build.path)
    required = 1.5 * need_bytes + 1_000_000
    if free < required:
        build.discard()
        raise UserError(f"--out '{out}': only {format_bytes(free)} free on its file system; the "
                        f"results need about {format_bytes(need_bytes)} and sysid asks for "
                        f"{format_bytes(required)} with a margin. Free some space or choose "
                        f"another --out.")
    return build


@contextlib.contextmanager
def atomic_dir(target: Path, *, force: bool) -> Iterator[Path]:
    """Build an output directory in a temporary sibling and move it into place at the end.

    On any exception (KeyboardInterrupt included) the temporary directory is removed and the
    target is left as it was: a crash never leaves a half-written result. The folder machinery
    is :class:`sysid.atomic.FolderBuild`.

    Parameters
    ----------
    target : Path
        The directory the user asked for.
    force : bool
        Replace ``target`` when it exists (it is replaced only after the new one is complete,
        and the old one is removed last).

    Yields
    ------
    Path
        The temporary directory to write into.
    """
    target = Path(target)
    check_new_output(target, force=force)
    build = atomic.FolderBuild(target, overwrite=force)
    try:
        yield build.path
        check_new_output(target, force=force)
        build.commit()
    except BaseException:
        build.discard()
        raise


@contextlib.contextmanager
def atomic_file(target: Path, *, force: bool, option: str = "--out") -> Iterator[Path]:
    """Write a file under a temporary name in the same directory, then move it into place.

    The temporary name keeps the target's suffix, so writers that choose a format by suffix
    (``.csv``, ``.nc``) behave as for the target (see :func:`sysid.atomic.writing`).

    Yields
    ------
    Path
        The temporary path to write to.
    """
    target = Path(target)
    if target.is_dir() and target.suffix.lower() not in DIRECTORY_STORES:
        raise UserError(f"output '{target}' ({option}) is a directory; give a file name such as "
                        f"'{target / 'out.csv'}'.")
    check_new_output(target, force=force, option=option)
    created = atomic.make_parents(target.parent)
    try:
        with atomic.writing(target, overwrite=force) as tmp:
            yield tmp
            check_new_output(target, force=force, option=option)
    except BaseException:
        atomic.remove_created(created)
        raise


# ----------------------------------------------------------------------------------------------
# Parsing option values (never eval)


def parse_names(text: str | None, *, option: str) -> tuple[str, ...]:
    """Split a comma-separated list of names: ``"x, v"`` -> ``("x", "v")``.

    Raises
    ------
    ConfigError
        On an empty item (``"x,,v"``) or a name given twice.
    """
    if text is None:
        return ()
    if isinstance(text, (list, tuple)):
        items = [str(t).strip() for t in text]
    else:
        items = [t.strip() for t in str(text).split(",")]
    if items == [""]:
        return ()
    if any(not t for t in items):
        raise ConfigError(f"{option}: expected comma-separated names such as 'x,v'; got "
                          f"'{text}' with an empty name. Remove the extra comma.")
    seen: set[str] = set()
    for t in items:
        if t in seen:
            raise ConfigError(f"{option}: name '{t}' is given twice in '{text}'; list each once.")
        seen.add(t)
    return tuple(items)


def parse_float(text: str, *, what: str) -> float:
    """Parse a finite decimal number (``1``, ``-2.5``, ``1e-3``); never evaluates expressions.

    Raises
    ------
    ConfigError
        When ``text`` is not a number or not finite.
    """
    s = str(text).strip()
    try:
        value = float(s)
    except ValueError:
        raise ConfigError(f"{what}: expected a number such as 0.5 or 1e-3, got '{text}'.") from None
    if not math.isfinite(value):
        raise ConfigError(f"{what}: expected a finite number, got '{text}'.")
    return value


def parse_assignments(text: str | dict | None, *, option: str) -> dict[str, float]:
    """Parse ``"k=1.5,c=0.1"`` into ``{"k": 1.5, "c": 0.1}``.

    A dict (from a TOML config) is checked the same way.

    Raises
    ------
    ConfigError
        On an item without ``=``, an empty name, a value that is not a finite number, or a
        name given twice; the message quotes the offending item.
    """
    if text is None:
        return {}
    if isinstance(text, dict):
        out: dict[str, float] = {}
        for key, value in text.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ConfigError(f"{option}: value of '{key}' must be a number, got {value!r}.")
            out[str(key)] = parse_float(str(value), what=f"{option} '{key}'")
        return out
    s = str(text).strip()
    if not s:
        return {}
    out = {}
    for item in s.split(","):
        item = item.strip()
        if "=" not in item:
            raise ConfigError(
                f"{option}: expected name=value pairs separated by commas, such as 'k=1.5,c=0.1'; "
                f"the item '{item}' has no '='."
            )
        name, _, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not name:
            raise ConfigError(f"{option}: the item '{item}' has no name before '='.")
        if not name.isidentifier():
            raise ConfigError(f"{option}: '{name}' in '{item}' is not a valid name (letters, digits, "
                              f"underscores).")
        if name in out:
            raise ConfigError(f"{option}: '{name}' is given twice; give each name once.")
        out[name] = parse_float(value, what=f"{option} '{name}'")
    return out


def parse_renames(text: str | dict | None, *, option: str = "--rename") -> dict[str, str]:
    """Parse ``"population=N,year=t"`` (old name = new name) into a dict.

    Raises
    ------
    ConfigError
        On an item without ``=``, an empty name, or an old or new name given twice.
    """
    if text is None:
        return {}
    if isinstance(text, dict):
        items = [(str(k), v) for k, v in text.items()]
        for k, v in items:
            if not isinstance(v, str):
                raise ConfigError(f"{option}: the new name of '{k}' must be a string, got {v!r}.")
    else:
        items = []
        for item in str(text).split(","):
            if not item.strip():
                continue
            if "=" not in item:
                raise ConfigError(f"{option}: expected old=new pairs such as 'population=N'; the "
                                  f"item '{item.strip()}' has no '='.")
            old, _, new = item.partition("=")
            items.append((old.strip(), new.strip()))
    from sysid.data.columns import check_variable_name

    out: dict[str, str] = {}
    for old, new in items:
        if not old or not new:
            raise ConfigError(f"{option}: '{old}={new}' needs a name on both sides of '='.")
        if new in RESERVED_NAMES:
            raise ConfigError(f"{option}: '{old}={new}': the name '{new}' is reserved for the "
                              f"data's layout ({', '.join(RESERVED_NAMES)}); choose another.")
        try:
            check_variable_name(new, context=f"{option} '{old}={new}'")
        except DataError as exc:
            raise ConfigError(str(exc).replace("rename the column", "choose another name")) from None
        if old in out:
            raise ConfigError(f"{option}: '{old}' is renamed twice.")
        if new in out.values():
            raise ConfigError(f"{option}: two variables would be called '{new}'.")
        out[old] = new
    return out


def parse_outputs(items: tuple[str, ...] | list[str] | dict | None, *,
                  option: str = "--output") -> dict[str, object]:
    """Measurement equations from repeated ``--output 'NAME=EXPRESSION'`` (or a TOML table
    ``{NAME = "expression"}`` / ``{NAME = {equation = "...", units = "..."}}``).

    The expressions are kept as text here and parsed by :mod:`sysid.expressions` when the model
    is built (never evaluated as Python).

    Raises
    ------
    ConfigError
        On an item without ``=``, a name that is not an identifier, or a name given twice.
    """
    if items is None:
        return {}
    if isinstance(items, dict):
        out: dict[str, object] = {}
        for name, value in items.items():
            ok = isinstance(value, str) or (isinstance(value, dict) and isinstance(value.get("equation"), str)
                                            and set(value) <= {"equation", "units", "description"})
            if not str(name).isidentifier() or not ok:
                raise ConfigError(f"{option}: expected NAME = \"expression\" or NAME = {{ equation = "
                                  f"\"...\", units = \"...\" }}; got {name} = {value!r}.")
            out[str(name)] = value
        return out
    out = {}
    for item in items:
        name, sep, expression = str(item).partition("=")
        name, expression = name.strip(), expression.strip()
        if not sep or not name.isidentifier() or not expression:
            raise ConfigError(f"{option}: expected NAME=EXPRESSION, as in --output "
                              f"'y=clip(h2, 0, 0.5)'; got '{item}'.")
        if name in out:
            raise ConfigError(f"{option}: output '{name}' is given twice.")
        out[name] = expression
    return out


def parse_settings(items: tuple[str, ...] | list[str], *, option: str = "--set") -> dict[str, object]:
    """Parse repeated ``--set key=value``; values in TOML syntax (``0.01``, ``true``, ``[4, 8]``),
    anything else is taken as a string (``dopri5``). Never evaluated as code.

    Raises
    ------
    ConfigError
        On an item without ``=``, an empty key, or a key given twice.
    """
    import tomllib

    out: dict[str, object] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key, text = key.strip(), text.strip()
        if not sep or not key:
            raise ConfigError(f"{option}: expected KEY=VALUE such as 'optimizer.lr=0.005', got "
                              f"'{item}'.")
        if key in out:
            raise ConfigError(f"{option}: '{key}' is given twice.")
        try:
            out[key] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = text
    return out


def parse_holdout(value: object, *, option: str = "--holdout") -> float | tuple[str, ...] | None:
    """Interpret ``--holdout``: a fraction in (0, 1) of the runs, or comma-separated run ids.

    Raises
    ------
    ConfigError
        On a number outside (0, 1) that is not meant as a run id, or an empty list.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{option}: expected a fraction like 0.25 or run ids like 'B,C', got {value}.")
    if isinstance(value, (int, float)):
        frac = float(value)
    elif isinstance(value, (list, tuple)):
        return parse_names(list(value), option=option) or None
    else:
        s = str(value).strip()
        if not s:
            return None
        try:
            frac = float(s)
        except ValueError:
            return parse_names(s, option=option)
        if "," in s or not ("." in s or "e" in s.lower()):
            # "2" or "1,3": run ids that look like numbers
            return parse_names(s, option=option)
    if not (0.0 < frac < 1.0):
        raise ConfigError(f"{option}: a fraction of runs must lie strictly between 0 and 1, got "
                          f"{value}. To hold out runs by id, list them: --holdout B,C.")
    return frac


def existing_file(path: str | os.PathLike, *, what: str) -> Path:
    """Return ``Path(path)`` if it exists; else raise a :class:`DataError` naming it."""
    p = Path(path)
    if not p.exists():
        hint = ""
        parent = p.parent if str(p.parent) else Path(".")
        if parent.is_dir():
            close = sorted(q.name for q in parent.iterdir() if q.suffix == p.suffix and not
                           q.name.startswith("."))[:5]
            if close:
                hint = f" Files with that suffix in '{parent}': {close}."
        raise DataError(f"{what} '{p}' does not exist.{hint}")
    return p


def fail_internal(exc: BaseException) -> str:
    """The one-line message for an internal error (exit 1)."""
    return (f"sysid: internal error: {type(exc).__name__}: {one_line(exc)} "
            f"(this is a bug in sysid; run with --verbose for the traceback and report it)")


def print_error(message: str) -> None:
    """Write one line to stderr."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


# The remedies in solver messages are phrased for the Python API (SolverConfig(method=...)); on
# the command line they name the command's own option or TOML key instead. Per command: the
# torch solve's hint (sysid.solvers.runs), an implicit method (lead-in "Try " or "use ...: ",
# methods a and b) and "looser tolerances".
_FIT_STEPS = ("smaller steps: a fit integrates with torch methods only (--set solver.method=rk4 "
              "--set solver.substeps=4, or method and substeps in the [fit.solver] table of "
              "--config)")
_SWEEP_STEPS = ("smaller steps: a fit integrates with torch methods only (method = \"rk4\" and "
                "substeps = 4 in the [fit.solver] table of CONFIG)")
_REMEDIES = {
    "sysid simulate": (
        "Try a fixed-step method (--method rk4; a smaller --dt gives smaller steps) or looser "
        "--rtol/--atol.",
        "{lead}--method {a} or {b}", "looser --rtol/--atol"),
    "sysid fit": (
        f"Try {_FIT_STEPS}, looser --set solver.rtol=... and solver.atol=..., or a smaller "
        f"learning rate (--set optimizer.lr=0.001).",
        f"{{verb}} {_FIT_STEPS}; simulate the fitted model with sysid simulate OUT --method {{a}}",
        "looser --set solver.rtol=... and solver.atol=..."),
    "sysid sweep": (
        f"Try {_SWEEP_STEPS}, looser rtol/atol there, or a smaller lr in [fit.optimizer].",
        f"{{verb}} {_SWEEP_STEPS}", "looser tolerances in [fit.solver]"),
}
_NO_SOLVER_OPTION = ("{verb} an implicit method: this command has no solver option, but "
                     "sysid simulate MODEL_DIR --method {a} or {b} has")
_IMPLICIT = (  # the Python phrasings of "use an implicit method" (budget, solvers.config, ivp)
    r"(?P<lead>use an implicit SciPy method: )method='LSODA', 'Radau' or 'BDF' "
    r"\(sysid simulate --method LSODA\)",
    r"(?P<lead>use an implicit method: )SolverConfig\(method=\"(?P<a>\w+)\"\) or "
    r"method=\"(?P<b>\w+)\" \(SciPy\)",
    r"(?P<lead>Try )method='(?P<a>\w+)' or '(?P<b>\w+)'",
)


def solver_remedy(message: str, command: str) -> str:
    """``message`` (a :class:`~sysid.errors.SolverError`'s) with its Python remedies
    (``SolverConfig(method="Radau")``, ``method='BDF'``, ``rtol/atol``) rewritten as ``command``
    takes them: ``--method`` and ``--rtol/--atol`` for ``sysid simulate``, ``--set solver.KEY=``
    or the ``[fit.solver]`` table for ``sysid fit``, and ``sysid simulate --method`` for commands
    without a solver option (``compare``, ``report``).

    Examples
    --------
    >>> solver_remedy("Try method='Radau' or 'BDF' (implicit methods), looser rtol/atol",
    ...               "sysid simulate")
    'Try --method Radau or BDF (implicit methods), looser --rtol/--atol'
    """
    import re

    torch_hint, implicit, looser = _REMEDIES.get(command, ("", _NO_SOLVER_OPTION, "looser tolerances"))
    runs = sys.modules.get("sysid.solvers.runs")  # not loaded: no torch solve ran
    if runs is not None and getattr(runs, "_HINT", ""):
        message = message.replace(runs._HINT, torch_hint)

    def spell(match: re.Match[str]) -> str:
        found = match.groupdict()
        lead = found["lead"]
        return implicit.format(lead=lead, verb="Try" if lead == "Try " else "use",
                               a=found.get("a") or "LSODA, Radau", b=found.get("b") or "BDF")

    for pattern in _IMPLICIT:
        message = re.sub(pattern, spell, message)
    return message.replace("looser rtol/atol", looser).strip()
