"""``sysid datasets`` and ``sysid systems``: browse the shipped data and the reference ODEs."""

from __future__ import annotations

import math
from pathlib import Path

import click

from sysid.cli._support import atomic_file, console

__all__ = ["datasets_group", "systems_group"]

_EXPORT_SUFFIXES = (".csv", ".nc", ".zarr")


def _table(rows: list[list[str]], header: list[str]) -> str:
    """A plain-text table with columns padded to their widest cell."""
    cells = [header, *rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(x: float) -> str:
    if isinstance(x, float) and math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:g}" if isinstance(x, float) else str(x)


# ----------------------------------------------------------------------------------------------
# datasets


@click.group("datasets", invoke_without_command=True, epilog="""\b
Examples:
  sysid datasets                      # list the shipped datasets
  sysid datasets show hare_lynx       # source, citation, variables and units
  sysid datasets export hare_lynx hl.csv
  sysid fit hl.csv --time year --states hare,lynx --out hl_fit
""")
@click.pass_context
def datasets_group(ctx: click.Context) -> None:
    """Real measured datasets shipped with sysid (list, show, export)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(datasets_list)


def _dataset_summary(name: str) -> tuple[str, str, str, str]:
    import sysid.data
    import sysid.datasets

    ds = sysid.datasets.load(name)
    states = ",".join(sysid.data.state_names(ds))
    inputs = ",".join(sysid.data.input_names(ds))
    runs = len(sysid.data.run_ids(ds))
    title = str(ds.attrs.get("title", ""))
    return states, inputs, str(runs), title


@datasets_group.command("list", epilog="""\b
Example:
  sysid datasets list
  sysid datasets show influenza_england_1978
""")
def datasets_list() -> None:
    """List the shipped datasets with their states, inputs and number of runs."""
    import sysid.datasets

    rows = []
    for name in sysid.datasets.list():
        states, inputs, runs, title = _dataset_summary(name)
        rows.append([name, states, inputs or "-", runs, title])
    console.result(_table(rows, ["name", "states", "inputs", "runs", "title"]))


@datasets_group.command("show", epilog="""\b
Example:
  sysid datasets show hare_lynx
""")
@click.argument("name")
def datasets_show(name: str) -> None:
    """Show a dataset's source, citation, variables (with units) and sampling."""
    import numpy as np

    import sysid.data
    import sysid.datasets

    ds = sysid.datasets.load(name)
    info = sysid.datasets.info(name)
    out = [f"{name}: {ds.attrs.get('title', '')}".rstrip(": ")]
    for key, value in _info_items(info):
        out.append(f"  {key}: {value}")
    runs = sysid.data.run_ids(ds)
    time = ds["time"]
    out.append(f"  runs: {len(runs)} ({', '.join(runs[:8])}{', ...' if len(runs) > 8 else ''})")
    t = np.asarray(time.values, dtype=float)
    n = int(np.isfinite(t).sum())
    out.append(f"  samples: {n}; time from {np.nanmin(t):g} to {np.nanmax(t):g} "
               f"{time.attrs.get('units', '')}".rstrip())
    rows = []
    for var in [*sysid.data.state_names(ds), *sysid.data.input_names(ds)]:
        da = ds[var]
        values = np.asarray(da.values, dtype=float)
        missing = int(np.isnan(values).sum() - np.isnan(t).sum())
        rows.append([var, str(da.attrs.get("role", "")), str(da.attrs.get("units", "")) or "-",
                     f"{np.nanmin(values):g}", f"{np.nanmax(values):g}", str(max(missing, 0)),
                     str(da.attrs.get("long_name", ""))])
    out.append("")
    out.append(_table(rows, ["variable", "role", "units", "min", "max", "missing", "long name"]))
    states = ",".join(sysid.data.state_names(ds))
    inputs = ",".join(sysid.data.input_names(ds))
    out.append("")
    out.append(f"Fit it:  sysid fit dataset:{name} --out {name}_fit")
    out.append(f"or from the CSV:  sysid datasets export {name} {name}.csv && sysid fit {name}.csv "
               f"--time time --states {states}{' --inputs ' + inputs if inputs else ''}"
               f"{' --run trajectory' if len(runs) > 1 else ''} --out {name}_fit")
    console.result("\n".join(out))


def _info_items(info: object) -> list[tuple[str, str]]:
    """Key/value pairs of a dataset's catalogue entry (a mapping or a dataclass)."""
    import dataclasses

    if dataclasses.is_dataclass(info) and not isinstance(info, type):
        items = dataclasses.asdict(info).items()
    elif isinstance(info, dict):
        items = info.items()
    else:
        return [("description", str(info))]
    skip = {"name", "title", "states", "inputs", "units", "file", "path", "columns", "time",
            "trajectory"}
    return [(k, " ".join(str(v).split())) for k, v in items if v not in (None, "", (), []) and
            k not in skip]


@datasets_group.command("export")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def datasets_export(name: str, file: Path, force: bool) -> None:
    """Write dataset NAME to FILE (.csv long format with a 'trajectory' column, .nc or .zarr).

    \b
    Example:
      sysid datasets export influenza_england_1978 flu.csv
    """
    import sysid.data
    import sysid.datasets

    from sysid.errors import ConfigError

    if file.suffix.lower() not in _EXPORT_SUFFIXES:
        raise ConfigError(f"datasets export: FILE '{file}' must end in one of "
                          f"{list(_EXPORT_SUFFIXES)}; got '{file.suffix or 'no suffix'}'.")
    ds = sysid.datasets.load(name)
    with atomic_file(file, force=force, option="FILE") as tmp:
        if file.suffix.lower() == ".csv":
            sysid.data.to_csv(ds, tmp)
        else:
            sysid.data.save(ds, tmp)
    console.info(f"wrote dataset '{name}' to {file}")


# ----------------------------------------------------------------------------------------------
# systems


@click.group("systems", invoke_without_command=True, epilog="""\b
Examples:
  sysid systems                       # list the reference ODEs
  sysid systems show lotka_volterra   # equations' parameters, units, literature source
  sysid fit data.csv --time t --states x,y --model hybrid:lotka_volterra --free a,b --out fit
""")
@click.pass_context
def systems_group(ctx: click.Context) -> None:
    """Reference ODE systems from the literature (list, show)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(systems_list)


@systems_group.command("list", epilog="""\b
Example:
  sysid systems list
  sysid systems show pendulum
""")
def systems_list() -> None:
    """List the reference systems with their field, states and inputs."""
    import sysid.systems

    rows = []
    for name in sysid.systems.list():
        s = sysid.systems.get(name)
        rows.append([name, s.field, ",".join(s.states), ",".join(s.inputs) or "-", s.title])
    console.result(_table(rows, ["name", "field", "states", "inputs", "title"]))


@systems_group.command("show", epilog="""\b
Example:
  sysid systems show lotka_volterra
""")
@click.argument("name")
def systems_show(name: str) -> None:
    """Show a system's states, inputs, parameters (defaults, units, bounds) and source."""
    import sysid.systems

    s = sysid.systems.get(name)
    units = dict(zip(s.states, s.state_units, strict=False))
    out = [f"{s.name}: {s.title} ({s.field})"]
    if s.description:
        out.append("  " + " ".join(str(s.description).split()))
    out.append(f"  reference: {' '.join(str(s.reference).split())}")
    out.append("  states: " + ", ".join(f"{n} [{units.get(n, '') or '-'}]" for n in s.states))
    if s.inputs:
        iu = dict(zip(s.inputs, s.input_units, strict=False))
        out.append("  inputs: " + ", ".join(f"{n} [{iu.get(n, '') or '-'}]" for n in s.inputs))
    out.append(f"  time units: {s.time_units or '-'}; typical span {_fmt(float(s.t_span[0]))} to "
               f"{_fmt(float(s.t_span[1]))}; typical y0 "
               + ", ".join(f"{n}={_fmt(float(v))}" for n, v in zip(s.states, s.y0, strict=False)))
    if s.order == 2:
        out.append("  second-order system written as position/velocity pairs")
    rows = [[p.name, _fmt(float(p.default)), p.units or "-",
             f"[{_fmt(float(p.bounds[0]))}, {_fmt(float(p.bounds[1]))}]", p.description]
            for p in s.parameters]
    out.append("")
    out.append(_table(rows, ["parameter", "default", "units", "bounds", "description"]))
    free = ",".join(p.name for p in s.parameters)
    out.append("")
    out.append(f"Fit its parameters:  sysid fit DATA --time t --states {','.join(s.states)}"
               f"{' --inputs ' + ','.join(s.inputs) if s.inputs else ''} "
               f"--model physics:{s.name} --free {free} --out {s.name}_fit")
    console.result("\n".join(out))
