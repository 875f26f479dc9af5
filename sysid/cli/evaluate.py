"""Metrics of a fit run directory, ``sysid compare`` and ``sysid report``.

A run directory written by ``sysid fit`` holds everything needed to judge and report the fit
again without the original files: ``model/``, ``data.nc`` (the data as read), ``history.csv``,
``parameters.csv``, ``metrics.json``, ``config.toml`` and ``manifest.json``.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sysid import atomic
from sysid.cli._pipeline import (
    data_source_files,
    filter_samples,
    find_model_dir,
    read_data,
    write_json,
)
from sysid.cli._support import (
    atomic_dir,
    check_new_output,
    check_output_apart,
    console,
    parse_assignments,
    parse_float,
)
from sysid.errors import ConfigError, DataError, ModelFileError, SolverError

__all__ = ["FitRun", "fit_metrics", "load_run", "run_files", "check_run", "write_report", "compare_cmd", "report_cmd"]

DATA_COPY = "data.nc"


def fit_metrics(model: Any, ds: Any, *, held_out: list[str]) -> dict[str, Any]:
    """Free-run metrics of ``model`` on every run of ``ds`` (training and held-out marked).

    Each run is a free run of :func:`sysid.analysis.predict` (that is :func:`sysid.simulate` with
    the analysis' solver default) with its own inputs, from the initial states of the one rule
    (for a FitResult, the states the fit estimated for that training run, as the report does); a
    simulation that fails is reported in the result (``"error"``) instead of aborting, so the fit's
    outputs are kept.

    When the default explicit solver's steps collapse (stiff dynamics, seen early by
    :class:`sysid.budget.Pace`), the runs are simulated again with SciPy's LSODA, which switches
    to an implicit method where the dynamics are stiff; ``"solver"`` in the result says so.
    """
    import dataclasses

    import sysid.analysis
    from sysid.solvers import default_solver

    extra: dict[str, Any] = {}
    try:
        try:
            predicted = sysid.analysis.predict(model, ds)
        except SolverError as exc:
            if "steps collapsed" not in str(exc):
                raise
            stiff = dataclasses.replace(default_solver("analysis"), method="LSODA")
            console.info(f"the default solver's steps collapsed (stiff dynamics); computing the "
                         f"metrics with {stiff.method}")
            predicted = sysid.analysis.predict(model, ds, settings=stiff)
            extra["solver"] = (f"{stiff.method} (the default {default_solver('analysis').method}'s "
                               f"steps collapsed: stiff dynamics)")
    except SolverError as exc:
        warnings.warn(f"the fitted model could not be simulated over the data: {exc}",
                      stacklevel=2)
        return {"trajectory": [], "error": str(exc)}
    metrics = sysid.analysis.trajectory_metrics(ds, predicted, held_out=held_out)
    table = sysid.analysis.metrics_table(metrics).reset_index()
    return {"trajectory": sysid.analysis.jsonable(table), "normalise": metrics.attrs["normalise"],
            **extra}


@dataclass(frozen=True, kw_only=True)
class FitRun:
    """What a ``sysid fit`` output directory holds, loaded.

    Attributes
    ----------
    dir : Path
        The directory.
    model : sysid.models.Model
        The trained model.
    data : xarray.Dataset or None
        The data as the fit read it (``data.nc``; None for a bare model folder).
    history, parameters : pandas.DataFrame or None
        Training history and parameter table.
    metrics, manifest : dict
        ``metrics.json`` and ``manifest.json`` (empty when absent).
    """

    dir: Path
    model: Any
    data: Any
    history: Any
    parameters: Any
    metrics: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def held_out(self) -> list[str]:
        """Runs of ``data`` the fit did not train on."""
        return list(self.manifest.get("data", {}).get("held_out", []))


#: Files of a run directory that no later command reads (rewritten by ``sysid report``).
_UNLISTED = ("manifest.json", "report.html", "report.md", "report.json")


def run_files(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file of a run directory that a later command reads."""
    import sysid.io

    return sysid.io.file_entries(run_dir, skip=lambda rel: rel in _UNLISTED
                                 or rel.startswith("figures/"))


def check_run(run_dir: Path) -> dict[str, Any]:
    """Read a run directory's ``manifest.json`` and check the files it lists (sizes first, then
    sha256) before any of them is read; return the manifest (empty when there is none).

    Raises
    ------
    ModelFileError
        A damaged manifest, or a listed file that is missing, linked, resized or changed.
    """
    import sysid.io

    where = f"MODEL_DIR '{run_dir}'"
    if not os.path.lexists(run_dir / "manifest.json"):
        return {}
    manifest = sysid.io.read_json(run_dir / "manifest.json", where=where)
    if not isinstance(manifest, dict):
        raise ModelFileError(f"{where}: manifest.json must hold a JSON object.")
    if "files" in manifest:
        sysid.io.verify_files(run_dir, manifest["files"], where=where)
    return manifest


def load_run(run_dir: Path) -> FitRun:
    """Load a fit output directory (or a bare model folder written by ``sysid.save_model``).

    The sizes and sha256 that ``manifest.json`` lists are checked before any file is read;
    every JSON, TOML and CSV file is parsed with a size limit, and a damaged one is a
    :class:`~sysid.errors.ModelFileError` naming it.
    """
    import sysid
    import sysid.budget
    import sysid.data
    import sysid.io

    run_dir, model_path = find_model_dir(run_dir)
    where = f"MODEL_DIR '{run_dir}'"
    manifest = check_run(run_dir) if model_path != run_dir else {}

    def table(name: str) -> Any:
        f = run_dir / f"{name}.csv"
        return sysid.io.read_table(f, where=where) if f.exists() else None

    def document(name: str) -> dict[str, Any]:
        f = run_dir / f"{name}.json"
        doc = sysid.io.read_json(f, where=where) if f.exists() else {}
        if not isinstance(doc, dict):
            raise ModelFileError(f"{where}: {f.name} must hold a JSON object.")
        return doc

    data = run_dir / DATA_COPY
    if data.exists():
        sysid.io.check_file(data, limit=sysid.budget.current_limits().memory_bytes, where=where)
    return FitRun(dir=run_dir, model=sysid.load_model(model_path),
                  data=sysid.data.load_netcdf(data) if data.exists() else None,
                  history=table("history"), parameters=table("parameters"),
                  metrics=document("metrics"), manifest=manifest)


def write_report(run_dir: Path, out: Path, *, result: Any = None, reference: str | None = None,
                 params: dict[str, float] | None = None, band: Any = None) -> list[Path]:
    """Write ``report.html``, ``report.md``, ``report.json`` and ``figures/`` of a fit run into ``out``.

    Parameters
    ----------
    run_dir : Path
        The fit run directory (model, data copy, history, parameters, metrics, manifest).
    out : Path
        Where the report files go (``run_dir`` itself, or a scratch directory).
    result : FitResult, optional
        The fit just run (``sysid fit``); its stop reason and solver statistics enter the report.
    reference, params : optional
        A reference system (and its parameter values) to compare with. None (default): no
        comparison - a physics or hybrid fit is not compared with its system's catalogue values
        unless they are asked for (``--reference``), since those are not the user's truth.
    band : xarray.Dataset, optional
        An ensemble's quantile band over the data (``sysid fit --ensemble``), drawn in its own
        section.

    Returns
    -------
    list of Path
        The files written.
    """
    import sysid.reporting
    import sysid.systems

    run = load_run(run_dir)
    manifest = run.manifest
    if run.data is None:
        raise DataError(f"'{run.dir}' has no copy of its data ({DATA_COPY}); the report needs it.")
    return sysid.reporting.report(
        result if result is not None else run.model, run.data, out=out,
        reference=sysid.systems.get(reference) if reference else None, params=params or None,
        held_out=run.held_out,
        history=run.history if result is None else None,
        parameters=run.parameters if result is None else None,
        metrics=run.metrics, overwrite=True, band=band,
        title=f"sysid fit of {manifest.get('data', {}).get('source', run.dir.name)} "
              f"({manifest.get('model', 'neural')} model)",
    )


# ----------------------------------------------------------------------------------------------
# sysid compare

_COMPARE_EPILOG = """\b
Examples:
  # hare and lynx pelts fitted under the Lotka-Volterra state names, then the textbook system
  sysid fit dataset:hare_lynx --rename hare=prey,lynx=predator --out hl_fit
  sysid compare hl_fit --reference lotka_volterra --params a=0.55,b=0.028 --out hl_cmp
\b
  # on other runs (their first samples and inputs drive both systems)
  sysid compare rig_fit --reference mass_spring_damper --data rig_test.csv --out rig_cmp

Writes DIR/metrics.json (trajectory metrics, valid prediction time, vector-field error, fixed
points), DIR/comparison.md, DIR/figures/ (trajectories, phase portraits, field error map),
DIR/predicted.nc and DIR/reference.nc.
"""


@click.command("compare", epilog=_COMPARE_EPILOG)
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--reference", required=True, metavar="SYSTEM", help="Reference system from "
              "'sysid systems list'.")
@click.option("--params", metavar="k=v,..", help="Parameter values of the reference (default: "
              "the catalogue's).")
@click.option("--data", "data_source", metavar="DATA", help="Runs to compare on (CSV read as in "
              "the fit, .nc, or dataset:NAME); default the fit's data.")
@click.option("--where", metavar="CONDITION", help="Compare on the rows where CONDITION holds "
              "(of --data, or of the fit's data), e.g. \"condition == 'mixture'\".")
@click.option("--threshold", default="0.4", show_default=True, help="Normalised error that ends "
              "the valid prediction time.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output directory.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def compare_cmd(model_dir: Path, reference: str, params: str | None, data_source: str | None,
                threshold: str, out: Path, force: bool, where: str | None = None) -> None:
    """Compare the model fitted in MODEL_DIR with a reference ODE integrated by SciPy."""
    import sysid.analysis
    import sysid.data
    import sysid.systems

    check_new_output(out, force=force)
    check_output_apart(out, [("MODEL_DIR", model_dir),
                             *(("--data", f) for f in (data_source_files(data_source)
                                                       if data_source else ()))])
    system = sysid.systems.get(reference)
    values = parse_assignments(params, option="--params")
    names = [p.name for p in system.parameters]
    unknown = [n for n in values if n not in names]
    if unknown:
        raise ConfigError(f"--params: {unknown} {'is' if len(unknown) == 1 else 'are'} not a "
                          f"parameter of '{system.name}'; its parameters are {names}.")
    thr = parse_float(threshold, what="--threshold")
    if not thr > 0:
        raise ConfigError(f"--threshold must be positive, got {threshold}.")
    run = load_run(model_dir)
    model = run.model
    from sysid.reporting import reference_names

    # a model built from this system under the data's names: the reference takes those names
    names = reference_names(model, system)
    ref = sysid.analysis.as_dynamics(system, params=values or None, states=names)
    missing = [s for s in model.field.state_names if s not in ref.states]
    if missing:
        raise ConfigError(f"--reference {system.name}: the model's states {missing} are not "
                          f"states of '{system.name}' ({list(system.states)}); fit with "
                          f"--rename {missing[0]}={system.states[0]},... so that the names match, "
                          f"or compare with a system over the same states.")
    data, train_only = _comparison_data(run, model_dir, data_source, where)
    held_in_data = [r for r in run.held_out if r in sysid.data.run_ids(data)]
    comparison = sysid.analysis.compare(
        model, ref, data=data, threshold=thr, training_data=train_only, held_out=held_in_data)
    result: dict[str, Any] = {"reference": system.name, "params": {**system.defaults(), **values},
                              "trajectories": comparison.to_dict()}
    markdown = [f"# {model_dir} compared with {system.name} ({system.title})", "",
                comparison.to_markdown()]
    support = train_only if train_only is not None else data
    figures = _field_comparison(model, ref, system, support, comparison, held_in_data, result,
                                markdown)
    with atomic_dir(out, force=force) as tmp:
        write_json(tmp / "metrics.json", result)
        (tmp / "comparison.md").write_text("\n".join(markdown) + "\n", encoding="utf-8")
        sysid.data.save(comparison.predicted, tmp / "predicted.nc")
        sysid.data.save(comparison.reference, tmp / "reference.nc")
        (tmp / "figures").mkdir()
        for name, (fig, _) in figures.items():
            fig.savefig(tmp / "figures" / f"{name}.png", dpi=110)
    console.info(f"wrote {out}/ (metrics.json, comparison.md, figures/, predicted.nc, "
                 f"reference.nc)")
    if not console.quiet:
        console.result(comparison.to_markdown())


def _comparison_data(run: FitRun, model_dir: Path, data_source: str | None, where: str | None
                     ) -> tuple[Any, Any]:
    """The runs ``sysid compare`` compares on, and the fit's training runs (the field's support)."""
    import sysid.data
    from sysid.cli.simulate_cmd import fit_data_options

    training = run.data
    if data_source is not None:
        opts = fit_data_options(run.dir).merged(where=where)
        data = read_data(data_source, opts, what="--data")
    elif training is not None:
        fitted = fit_data_options(run.dir)
        data = training if where is None else filter_samples(
            training, where, str(run.dir), aliases={fitted.run or "": "trajectory",
                                                    fitted.time or "": "time"})
    else:
        raise DataError(f"MODEL_DIR '{model_dir}' has no copy of its data ({DATA_COPY}); give the "
                        f"runs to compare on with --data.")
    train_only = training
    if training is not None and run.held_out:
        train_only = sysid.data.select_runs(
            training, [r for r in sysid.data.run_ids(training) if r not in run.held_out])
    return data, train_only


def _field_comparison(model: Any, ref: Any, system: Any, support: Any, comparison: Any,
                      held_in_data: list[str], result: dict[str, Any], markdown: list[str]
                      ) -> dict[str, tuple[Any, str]]:
    """Vector-field and fixed-point sections (added to ``result`` and ``markdown``); the figures."""
    import sysid.analysis
    from sysid import plot

    # the vector fields and their fixed points are compared with the inputs held at zero
    u = {n: 0.0 for n in system.inputs} or None
    if u:
        markdown += ["", f"Vector fields and fixed points below are at zero input ({', '.join(u)} = 0)."]
    fields = None
    if len(model.field.state_names) >= 2:
        fields = sysid.analysis.field_error(model, ref, support, u=u)
        result["vector_field"] = fields.to_dict()
        markdown += ["", "### Vector-field error", "",
                     sysid.analysis.markdown_table(fields.summary.to_frame("value"))]
    fixed = sysid.analysis.compare_fixed_points(model, ref, data=support, u=u)
    result["fixed_points"] = sysid.analysis.jsonable(fixed)
    markdown += ["", "### Fixed points", "", sysid.analysis.markdown_table(fixed, index=False)
                 if len(fixed) else "none found in the data's range"]
    figures = {"trajectories": (plot.trajectories(comparison.reference, comparison.predicted,
                                                  held_out=held_in_data, model_label="learned",
                                                  data_label="reference"),
                                "Reference (markers) and learned model (lines) from the same "
                                "initial states")}
    if fields is not None:
        figures["phase_portrait"] = (plot.phase_portrait(model, ref, data=support, u=u),
                                     f"Learned field (left) and {system.name} (right)")
        figures["field_error"] = (plot.field_error_map(fields, data=support).figure,
                                  "Normalised vector-field error; dashed: the data's support")
    markdown += ["", "### Figures", ""]
    markdown += [f"![{caption}](figures/{name}.png)" for name, (_, caption) in figures.items()]
    return figures


# ----------------------------------------------------------------------------------------------
# sysid report

_REPORT_EPILOG = """\b
Example:
  sysid fit data.csv --time t --states x,v --out fit1
  sysid report fit1          # rewrites fit1/report.html, fit1/report.md and fit1/figures/
"""


@click.command("report", epilog=_REPORT_EPILOG)
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--reference", metavar="SYSTEM", help="Also compare with this reference system "
              "(only when asked: a physics/hybrid fit is not compared with catalogue values by "
              "default).")
@click.option("--params", metavar="k=v,..", help="Parameter values of the reference.")
def report_cmd(model_dir: Path, reference: str | None, params: str | None) -> None:
    """Regenerate the report of the fit in MODEL_DIR (report.html, report.md, report.json, figures/).

    The new report is built aside and moved into place at the end, so an interrupted run leaves
    the previous report intact.
    """
    import shutil

    import sysid.systems

    values = parse_assignments(params, option="--params")
    if reference is not None:
        sysid.systems.get(reference)
    elif values:
        raise ConfigError("--params sets the reference's parameters; give --reference SYSTEM too.")
    run_dir, _ = find_model_dir(model_dir)
    scratch = Path(tempfile.mkdtemp(prefix=".report-", dir=run_dir))
    try:
        written = write_report(run_dir, scratch, reference=reference, params=values)
        new_figures = scratch / "figures"
        if new_figures.is_dir():
            atomic.move(new_figures, run_dir / "figures")
        for f in written:
            if Path(f).parent == scratch:
                atomic.move(f, run_dir / Path(f).name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    console.info(f"wrote {run_dir / 'report.html'}, report.md, report.json and figures/")
