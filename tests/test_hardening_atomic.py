"""sysid.atomic: files and folders appear whole or not at all, and an old folder survives any failure."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import pytest

from sysid import atomic


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_bytes_gives_ordinary_permissions_and_leaves_no_temp(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what the process's umask gives any new file
    target = atomic.write_bytes(tmp_path / "a.json", b"{}")
    assert target.read_bytes() == b"{}"
    assert _mode(target) == _mode(plain)
    atomic.write_text(target, "{\"b\": 1}")
    assert target.read_text() == "{\"b\": 1}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "plain.txt"]
    with pytest.raises(FileExistsError):
        atomic.write_bytes(target, b"new", overwrite=False)
    assert target.read_text() == "{\"b\": 1}"


def test_importing_sysid_leaves_the_umask_alone():
    import importlib

    import sysid.reporting

    before = os.umask(0o027)
    try:
        importlib.reload(sysid.reporting)
        assert os.umask(0o027) == 0o027  # nothing set it back to 0o022 behind our back
    finally:
        os.umask(before)


def test_writing_removes_the_temp_on_failure(tmp_path):
    target = tmp_path / "x.csv"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.writing(target) as tmp:
            assert tmp.suffix == ".csv" and tmp.parent == tmp_path and not tmp.exists()
            tmp.write_text("half")
            raise KeyboardInterrupt
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.csv"]
    with pytest.raises(FileNotFoundError, match="produced no file"):
        with atomic.writing(target):
            pass
    assert target.read_text() == "old"


def _old_folder(root: Path) -> Path:
    old = root / "out"
    (old / "model").mkdir(parents=True)
    (old / "model" / "model.json").write_text("old model")
    (old / "report.html").write_text("old report")
    return old


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-step"])
def test_folder_build_replaces_an_old_folder_only_when_committed(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    old = _old_folder(tmp_path)
    build = atomic.FolderBuild(old, overwrite=True)
    (build.path / "new.txt").write_text("new")
    assert _tree(old) == {"model/model.json": "old model", "report.html": "old report"}
    build.commit()
    assert _tree(old) == {"new.txt": "new"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old folder was removed last


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_failed_swap_leaves_the_old_folder_as_it_was(tmp_path, monkeypatch, fail_at):
    """Injected failure at the first rename (old aside) or the second (new in)."""
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    old = _old_folder(tmp_path)
    before = _tree(old)
    calls = []
    real = atomic._rename

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == fail_at:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(atomic, "_rename", flaky)
    build = atomic.FolderBuild(old, overwrite=True)
    (build.path / "new.txt").write_text("new")
    with pytest.raises(OSError, match="No space left"):
        build.commit()
    assert _tree(old) == before
    build.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failure_while_building_leaves_nothing(tmp_path):
    target = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError):
        with atomic.FolderBuild(target) as build:
            (build.path / "half.txt").write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []  # the parents it created are gone too


def test_set_aside_keeps_an_incomplete_result_beside_the_old_one(tmp_path):
    old = _old_folder(tmp_path)
    build = atomic.FolderBuild(old, overwrite=True)
    (build.path / "model.json").write_text("new model")
    kept = build.set_aside()
    assert kept == tmp_path / "out.incomplete" and (kept / "model.json").read_text() == "new model"
    assert _tree(old)["model/model.json"] == "old model"
    second = atomic.FolderBuild(old, overwrite=True)
    assert second.set_aside().name == "out.incomplete-2"


def test_signals_are_held_back_until_the_block_ends(python_sigint):
    seen = []
    with pytest.raises(KeyboardInterrupt):
        with atomic.signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            seen.append("block finished")
    assert seen == ["block finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
