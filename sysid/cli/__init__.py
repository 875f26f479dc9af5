"""The ``sysid`` command line: fit, simulate, compare and report from lab CSV files.

Entry point :func:`main` (``sysid = "sysid.cli:main"``; ``python -m sysid`` does the same).
Exit status: 0 success, 2 a user error (one line on stderr naming the file, column, row or option),
1 an internal error (a bug; ``--verbose`` shows the traceback), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys
import traceback
import warnings
from collections.abc import Sequence

import click

from sysid import __version__, budget
from sysid.cli._support import console, fail_internal, one_line, print_error, solver_remedy
from sysid.errors import SolverError, SysidError

__all__ = ["cli", "main"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USER = 2
EXIT_INTERRUPTED = 130

_EPILOG = """\b
Worked example (census data shipped with sysid; the commands run as written; --rename says that
the data's population is the logistic model's N, and the model keeps the name population):
  sysid datasets show us_population
  sysid fit dataset:us_population --rename population=N --model physics:logistic --out pop_fit
  sysid simulate pop_fit --y0 population=3.929 --t-start 1790 --t-end 2020 --dt 10 --out pop_sim.csv
  sysid compare pop_fit --reference logistic --params r=0.0313395,K=197.27 --out pop_cmp
  sysid report pop_fit

\b
Your own CSV (time column t, measured x and v, input u, one row per sample, a run column):
  sysid fit lab.csv --time t --states x,v --inputs u --run run --holdout 0.25 --out lab_fit

\b
Exit status: 0 success; 2 a mistake in the input (the message names the file, column, row or
option); 1 an internal error (run with --verbose for the traceback); 130 interrupted by Ctrl-C.
"""


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        console.verbose = True
    return value


def _set_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        console.quiet = True
    return value


@click.group(epilog=_EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@click.version_option(version=__version__, prog_name="sysid")
@click.option("-v", "--verbose", is_flag=True, expose_value=False, is_eager=True,
              callback=_set_verbose, help="Show tracebacks and extra detail.")
@click.option("-q", "--quiet", is_flag=True, expose_value=False, is_eager=True,
              callback=_set_quiet, help="Print nothing but errors (for scripts).")
def cli() -> None:
    """Identify continuous-time dynamics (neural, physics and hybrid ODEs) from measured data.

    Give it a CSV with a time column and measured quantities; it fits a model, simulates it,
    compares it with a reference ODE and writes a report.
    """


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    if not console.quiet:
        print_error(f"sysid: warning: {one_line(message)}")


def _error_text(exc: BaseException) -> str:
    """One line; an expression refused by the parser keeps its quoted line and the caret under
    the offending column (two more lines) - the column is the point of that message."""
    expressions = sys.modules.get("sysid.expressions")  # not loaded: not an expression error
    if (expressions is not None and isinstance(exc, expressions.ExpressionError)
            and exc.column is not None):
        head, _, rest = str(exc).partition("\n")
        return f"{one_line(head)}\n{rest}"
    return one_line(exc)


def _command_name(argv: Sequence[str]) -> str:
    """``sysid datasets export`` from the arguments, for error messages."""
    words = ["sysid"]
    group: click.Command = cli
    for arg in argv:
        if not isinstance(group, click.Group):
            break
        if arg in group.commands:
            words.append(arg)
            group = group.commands[arg]
        elif not arg.startswith("-"):
            break
    return " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return (and, as a script, exit with) its status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 success, 1 internal error, 2 user error, 130 interrupted (Ctrl-C or SIGTERM).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]  # plain `sysid` shows the help and the worked example
    console.verbose = False
    console.quiet = False
    name = _command_name(args)
    if argv is None and name == "sysid simulate":
        _without_dask()
    old_showwarning = warnings.showwarning
    warnings.showwarning = _showwarning
    try:
        with budget.sigterm_as_interrupt():  # for the whole command: a killed fit keeps its model
            rv = cli.main(args=args, prog_name="sysid", standalone_mode=False)
        code = rv if isinstance(rv, int) else EXIT_OK
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        if console.verbose:
            traceback.print_exc()
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else name
        print_error(f"{where}: error: {one_line(exc.format_message())} "
                    f"(see '{where} --help')")
        code = EXIT_USER
    except (click.exceptions.Abort, KeyboardInterrupt):
        print_error(f"{name}: interrupted; no output was written.")
        code = EXIT_INTERRUPTED
    except SysidError as exc:
        if console.verbose:
            traceback.print_exc()
        text = _error_text(exc)
        if isinstance(exc, SolverError):  # its remedy as this command takes it, not as Python
            text = solver_remedy(text, name)
        print_error(f"{name}: error: {text}")
        code = EXIT_USER
    except OSError as exc:
        if console.verbose:
            traceback.print_exc()
        target = f" '{exc.filename}'" if exc.filename else ""
        reason = exc.strerror or one_line(exc)
        print_error(f"{name}: error: cannot use{target}: {reason}.")
        code = EXIT_USER
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if console.verbose:
            traceback.print_exc()
        print_error(fail_internal(exc).replace("sysid:", f"{name}:", 1))
        code = EXIT_INTERNAL
    finally:
        warnings.showwarning = old_showwarning
    sys.stdout.flush()
    return code


def _without_dask() -> None:
    """In a process started to run ``sysid simulate`` (a script, not a call of :func:`main`),
    hide Dask: the command never uses it, but xarray imports it (with ``dask.array``: 0.5-0.6 s
    of CPU, a third of the command beyond ``import torch``) the first time it checks whether an
    array is a Dask array. ``sys.modules["dask"] = None`` is how Python spells "not installed"
    (``importlib.util.find_spec`` answers None, ``import dask`` raises ImportError); a process
    that already imported Dask keeps it."""
    if "dask" not in sys.modules:
        sys.modules["dask"] = None  # type: ignore[assignment]


def _register() -> None:
    from sysid.cli.catalog import datasets_group, systems_group
    from sysid.cli.evaluate import compare_cmd, report_cmd
    from sysid.cli.fit_cmd import fit_cmd
    from sysid.cli.parallel_cmd import sweep_cmd
    from sysid.cli.simulate_cmd import simulate_cmd

    for command in (fit_cmd, simulate_cmd, compare_cmd, report_cmd, sweep_cmd, datasets_group,
                    systems_group):
        cli.add_command(command)
    _add_common_options(cli)


def _add_common_options(command: click.Command) -> None:
    """Let ``--verbose``/``--quiet`` follow any command name, not only ``sysid`` itself."""
    if command is not cli:
        command.params.extend([
            click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True,
                         callback=_set_verbose, help="Show tracebacks and extra detail."),
            click.Option(["-q", "--quiet"], is_flag=True, expose_value=False, is_eager=True,
                         callback=_set_quiet, help="Print nothing but errors (for scripts)."),
        ])
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_common_options(sub)


_register()
