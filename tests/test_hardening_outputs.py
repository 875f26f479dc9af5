"""Inputs are sacred, and a trained model is never lost (issue 17, items 1 and 2).

Every case checks the input files' sha256 afterwards. The fits run in process through
``sysid.cli.main`` (two epochs of a one-parameter logistic model on 20 rows), so a failure can be
injected at a chosen step with ``monkeypatch``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

import sysid
from sysid import atomic
from sysid.cli import main

ROWS = 20
FIT = ["--time", "t", "--states", "N", "--model", "physics:logistic", "--free", "r",
       "--params", "K=10", "--epochs", "2", "--set", "refine.stderr=false"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _sha(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A logistic-growth CSV in a project folder; the working folder is tmp_path."""
    t = np.linspace(0.0, 10.0, ROWS)
    n = 10.0 / (1.0 + 9.0 * np.exp(-0.8 * t))
    proj = tmp_path / "proj"
    proj.mkdir()
    f = proj / "in.csv"
    f.write_text("t,N\n" + "".join(f"{a:.6g},{b:.6g}\n" for a, b in zip(t, n)))
    monkeypatch.chdir(tmp_path)
    return f


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _no_training(monkeypatch):
    import sysid.training

    def fail(*args, **kwargs):
        raise AssertionError("training started although the command should have been refused")

    monkeypatch.setattr(sysid.training, "fit", fail)


# ---------------------------------------------------------------------------------------------
# outputs that are, hold or sit inside an input


@pytest.mark.parametrize("out, cwd, message", [
    ("proj/in.csv", ".", r"--out 'proj/in\.csv' is the input DATA 'proj/in\.csv'; sysid never writes over"),
    ("proj", ".", r"--out 'proj' contains the input DATA 'proj/in\.csv'; replacing it would delete"),
    (".", "proj", r"--out '\.' is the current folder; .* Name a new folder"),
    ("proj/in.csv/fit", ".", r"--out 'proj/in\.csv/fit' lies inside the input DATA"),
])
def test_an_output_over_an_input_is_refused_before_anything_runs(data, monkeypatch, capsys, out,
                                                                  cwd, message):
    before = _tree(data.parent.parent)
    monkeypatch.chdir(cwd)
    _no_training(monkeypatch)
    arg = "in.csv" if cwd == "proj" else "proj/in.csv"
    assert main(["--quiet", "fit", arg, *FIT, "--out", out, "--force"]) == 2
    assert re.search(message, _one_line(capsys.readouterr().err))
    assert _tree(data.parent.parent) == before  # the input's sha256 and nothing written


def test_simulate_and_compare_refuse_outputs_inside_their_inputs(data, capsys):
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "fit"]) == 0
    before = _tree(Path("fit"))
    assert main(["simulate", "fit", "--y0", "N=1", "--t-end", "5", "--out", "fit/model/model.json.csv",
                 "--force"]) == 2
    assert "lies inside the input MODEL_DIR 'fit'" in capsys.readouterr().err
    assert main(["compare", "fit", "--reference", "logistic", "--data", "proj/in.csv",
                 "--out", "proj", "--force"]) == 2
    assert "contains the input --data" in capsys.readouterr().err
    assert _tree(Path("fit")) == before and _sha(data) == _sha(data)


# ---------------------------------------------------------------------------------------------
# --force: the old folder goes only after the new one is complete and in place


def _old(path: Path) -> dict[str, str]:
    (path / "model").mkdir(parents=True)
    (path / "model" / "model.json").write_text("the previous model")
    (path / "report.html").write_text("the previous report")
    return _tree(path)


def test_force_with_incomplete_results_keeps_the_old_folder_and_the_new_model(data, monkeypatch,
                                                                              capsys):
    import sysid.cli.evaluate

    old = _old(Path("fit"))
    sha_in = _sha(data)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sysid.cli.evaluate, "write_report", full_disk)
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "fit", "--force"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert re.search(r"the report could not be written \(OSError: .*No space left on device\); the "
                     r"model and metrics were saved\. 'fit' was left as it was; the new results are "
                     r"in 'fit\.incomplete'", line)
    assert _tree(Path("fit")) == old
    assert sysid.load_model("fit.incomplete/model").observed == ("N",)
    assert _sha(data) == sha_in


@pytest.mark.parametrize("fail_at", [1, 2], ids=["moving the old aside", "moving the new in"])
def test_force_swap_failure_leaves_the_old_folder(data, monkeypatch, capsys, fail_at):
    old = _old(Path("fit"))
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # the two-step move
    real = atomic._rename
    calls = []

    def flaky(src, dst):
        if Path(dst).name == "fit" or Path(src).name == "fit":
            calls.append(1)
            if len(calls) == fail_at:
                raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(atomic, "_rename", flaky)
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "fit", "--force"]) == 2
    line = _one_line(capsys.readouterr().err)
    kept = re.search(r"could not be moved to 'fit' \(No space left on device\); they are kept in "
                     r"'(.*)'\.", line)
    assert kept, line
    assert _tree(Path("fit")) == old
    assert sysid.load_model(Path(kept.group(1)) / "model").observed == ("N",)


def test_force_replaces_the_old_folder_once_complete(data, capsys):
    _old(Path("fit"))
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "fit", "--force"]) == 0
    assert sysid.load_model("fit/model").observed == ("N",)
    assert sorted(p.name for p in Path(".").iterdir()) == ["fit", "proj"]


# ---------------------------------------------------------------------------------------------
# the destination is checked before training


def test_an_unwritable_destination_is_refused_before_training(data, monkeypatch, capsys):
    def read_only(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(atomic, "_mkdir", read_only)
    _no_training(monkeypatch)
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "ro/fit"]) == 2
    assert re.search(r"--out 'ro/fit': cannot create the output folder in '.*ro' \(Permission "
                     r"denied\); choose a folder you can write to", _one_line(capsys.readouterr().err))
    assert sorted(p.name for p in Path(".").iterdir()) == ["proj"]


def test_too_little_free_space_is_refused_before_training(data, monkeypatch, capsys):
    monkeypatch.setattr(atomic, "free_bytes", lambda path: 2000)
    _no_training(monkeypatch)
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "fit"]) == 2
    assert re.search(r"--out 'fit': only 1.95 KB free on its file system; the results need about "
                     r"\d.* MB", _one_line(capsys.readouterr().err))
    assert sorted(p.name for p in Path(".").iterdir()) == ["proj"]


def test_a_name_that_cannot_be_saved_is_refused_at_load(data, monkeypatch, capsys):
    data.write_text(data.read_text().replace("t,N", "t,x/y"))
    _no_training(monkeypatch)
    with pytest.raises(sysid.errors.DataError,
                       match=r"column 'x/y': a variable name may not contain '/' .* e\.g\. 'x_y'"):
        sysid.load_csv(data, time="t", states=["x/y"])
    assert main(["--quiet", "fit", "proj/in.csv", "--time", "t", "--states", "x/y", "--out", "fit"]) == 2
    assert "may not contain '/'" in _one_line(capsys.readouterr().err)
    data.write_text(data.read_text().replace("t,x/y", "t,x"))
    for rename, message in (("x=a/b", r"--rename 'x=a/b': a variable name may not contain '/'"),
                            ("x=time", r"--rename: 'x=time': the name 'time' is reserved")):
        assert main(["--quiet", "fit", "proj/in.csv", "--time", "t", "--states", "x", "--rename", rename,
                     "--out", "fit"]) == 2
        assert re.search(message, _one_line(capsys.readouterr().err))
    assert sorted(p.name for p in Path(".").iterdir()) == ["proj"]


# ---------------------------------------------------------------------------------------------
# the model is written first and kept whatever fails after it


def test_a_failure_after_the_model_keeps_what_was_written(data, monkeypatch, capsys):
    import sysid.cli.fit_cmd

    def full_disk(path, obj):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sysid.cli.fit_cmd, "write_json", full_disk)
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "fit"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert re.search(r"could not write tables and metrics, report, manifest\.json \(OSError: .*No "
                     r"space left on device\); the model was saved to fit/model", line)
    assert sysid.load_model("fit/model").observed == ("N",)
    assert (Path("fit") / "history.csv").is_file() and not (Path("fit") / "metrics.json").exists()


def test_ctrl_c_while_the_model_is_written_finishes_it_first(data, monkeypatch, capsys, python_sigint):
    import sysid.io

    real = sysid.io.st_save

    def interrupted_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the model is being written
        return real(*args, **kwargs)

    monkeypatch.setattr(sysid.io, "st_save", interrupted_save)
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "fit"]) == 130
    line = _one_line(capsys.readouterr().err)
    assert re.search(r"interrupted after training; the model was saved to fit/model without "
                     r"metrics or a report", line)
    assert sysid.load_model("fit/model").observed == ("N",)


def test_ctrl_c_during_the_metrics_keeps_the_model(data, monkeypatch, capsys):
    import sysid.cli.evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sysid.cli.evaluate, "fit_metrics", interrupted)
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "fit"]) == 130
    assert "without metrics or a report" in _one_line(capsys.readouterr().err)
    assert sysid.load_model("fit/model").observed == ("N",)
    metrics = json.loads((Path("fit") / "metrics.json").read_text())
    assert metrics["error"] == "interrupted before the metrics were computed"


def test_run_ids_cannot_inject_spreadsheet_formulas(tmp_path):
    rid = "=cmd|' /C calc'!A0"
    ds = sysid.from_arrays([np.array([0.0, 1.0])], {"x": [np.array([1.0, 2.0])]}, states=["x"],
                           runs=[rid])
    path = sysid.data.to_csv(ds, tmp_path / "runs.csv")
    assert path.read_text().splitlines()[1].startswith("'=cmd|")  # shown as text, never run
    back = sysid.load_csv(path, time="time", states=["x"], trajectory="trajectory")
    assert sysid.data.run_ids(back) == [rid]  # and it reads back as written


def test_a_second_ctrl_c_while_the_outputs_are_written_keeps_the_model(data, monkeypatch, capsys):
    import sysid.cli.evaluate
    import sysid.cli.fit_cmd

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sysid.cli.evaluate, "fit_metrics", interrupted)  # the first Ctrl-C
    monkeypatch.setattr(sysid.cli.fit_cmd, "_write_manifest", interrupted)  # and a second one
    sha_in = _sha(data)
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "fit"]) == 130
    assert "interrupted after training; the model was saved to fit/model" in \
        _one_line(capsys.readouterr().err)
    assert sysid.load_model("fit/model").observed == ("N",)
    assert _sha(data) == sha_in


def test_sigterm_after_training_acts_as_ctrl_c_and_keeps_the_model(data, monkeypatch, capsys):
    import time

    import sysid.cli.evaluate

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # `kill PID` while the metrics are computed
        time.sleep(10)  # the handler raises in here
        raise AssertionError("SIGTERM did not stop the metrics")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(sysid.cli.evaluate, "fit_metrics", terminated)
    assert main(["--quiet", "fit", "proj/in.csv", *FIT, "--out", "fit"]) == 130
    assert "without metrics or a report" in _one_line(capsys.readouterr().err)
    assert sysid.load_model("fit/model").observed == ("N",)
    assert signal.getsignal(signal.SIGTERM) is before  # the command restores the handler
