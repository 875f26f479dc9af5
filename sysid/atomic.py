"""Atomic writes: the one module of sysid that moves files into place.

Every file sysid writes goes first to a temporary name in the target's own folder (so the final
move never crosses file systems), is flushed to disk with ``fsync``, and is then moved over the
target with one ``os.replace``: a crash, a full disk or a Ctrl-C leaves either the old file or
the new one under the final name, never a torn one. Folders (a model, a ``sysid fit`` output, a
zarr store) are built aside and swapped in whole; an existing folder is exchanged with the new
one in a single step where the platform allows it (Linux ``renameat2(RENAME_EXCHANGE)``), else
moved aside first and moved back if the new one cannot take its place. The old folder is removed
last, after the new one is in place, so a failure at any point leaves it as it was.

Nothing here changes process-wide state: permissions come from the process umask as the kernel
applies it when a file or folder is created (``os.open(..., 0o666)``, ``os.mkdir(..., 0o777)``),
never by reading or setting the umask. Signals are held back only inside
:func:`signals_deferred`, and only in the main thread.

Functions
---------
write_bytes, write_text
    A whole file at once.
writing
    A context manager yielding a temporary path for writers that create the file themselves
    (netCDF, zarr, ``torch.save``, ``Figure.savefig``).
FolderBuild
    A folder built aside, then committed (swapped in), discarded, or set aside under a visible
    name when it is incomplete but worth keeping.
move
    Move one finished file or folder over a target (the building block of the others).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import final

__all__ = [
    "FolderBuild",
    "write_bytes",
    "write_text",
    "writing",
    "move",
    "remove_tree",
    "make_parents",
    "remove_created",
    "signals_deferred",
    "free_bytes",
    "fsync_tree",
    "temp_name",
]

_DEFERRED_SIGNALS = tuple(s for s in (getattr(signal, "SIGINT", None), getattr(signal, "SIGTERM", None))
                          if s is not None)


# ----------------------------------------------------------------------------------------------
# the primitive moves (module-level functions so that tests can inject failures)


def _rename(src: Path, dst: Path) -> None:
    """``os.replace`` (the only call of it in sysid)."""
    os.replace(src, dst)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc: object | None = None


def _mkdir(path: Path) -> None:
    """``os.mkdir`` with mode 0o777 (the umask applies), where every folder here is created."""
    os.mkdir(path, 0o777)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2``); False where unsupported."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = False
    fn = getattr(_libc, "renameat2", None) if _libc else None
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
        return False  # old kernel or a file system without exchange: use the two-step move
    raise OSError(err, os.strerror(err), str(b))


# ----------------------------------------------------------------------------------------------
# helpers


def temp_name(target: str | os.PathLike[str], kind: str = "partial", *, keep_suffix: bool = True) -> Path:
    """A hidden, unused name beside ``target``: ``.NAME.KIND-xxxxxxxx[.suffix]``.

    The suffix is kept by default so that writers choosing a format by suffix (``.nc``,
    ``.csv``, ``.zarr``) treat the temporary path like the target.
    """
    target = Path(target)
    suffix = target.suffix if keep_suffix else ""
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    while True:
        candidate = target.with_name(f".{stem}.{kind}-{secrets.token_hex(4)}{suffix}")
        if not os.path.lexists(candidate):
            return candidate


def fsync_folder(folder: str | os.PathLike[str]) -> None:
    """Make renames inside ``folder`` durable where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """Flush every file under ``root`` (or the file ``root``) and their folders to disk."""
    root = Path(root)
    if root.is_file():
        _fsync_file(root)
        return
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                _fsync_file(path)
        fsync_folder(dirpath)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Remove a file or folder if it exists (a symlink itself, never what it points to)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return int(shutil.disk_usage(p).free)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back SIGINT and SIGTERM while the block runs; deliver them right after.

    Used around the steps that must finish once begun (the last write of a model file, the swap
    of a folder): a Ctrl-C then stops the program just after, with the file complete. Outside
    the main thread (where signals cannot be handled) the block simply runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous: dict[int, object] = {}
    try:
        for sig in _DEFERRED_SIGNALS:
            previous[sig] = signal.signal(sig, lambda signum, frame: caught.append(signum))
    except (ValueError, OSError):  # pragma: no cover - embedded interpreters without signals
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)  # type: ignore[arg-type]
    for sig in dict.fromkeys(caught):
        signal.raise_signal(sig)


# ----------------------------------------------------------------------------------------------
# moving a finished file or folder into place


def move(src: str | os.PathLike[str], target: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
    """Move the finished file or folder ``src`` over ``target`` (same folder), atomically.

    A file replaces a file in one ``os.replace``. A folder replaces a folder by exchanging the
    two in one step where supported, else by moving the old one aside, moving the new one in
    (moving the old one back if that fails) and only then removing the old one.

    Raises
    ------
    FileExistsError
        When ``target`` exists and ``overwrite`` is False.
    IsADirectoryError, NotADirectoryError
        When a file would replace a folder or the other way round.
    """
    src, target = Path(src), Path(target)
    exists = os.path.lexists(target)
    if exists and not overwrite:
        raise FileExistsError(errno.EEXIST, "already exists", str(target))
    if exists and target.is_dir() and not target.is_symlink():
        if not src.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a file cannot replace a folder", str(target))
        _swap_folders(src, target)
    else:
        if exists and src.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a folder cannot replace a file", str(target))
        _rename(src, target)
    fsync_folder(target.parent)
    return target


def _swap_folders(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target`` (an existing folder); the old one is removed last."""
    with signals_deferred():
        if _exchange(new, target):
            old = new  # the exchange left the old folder under the temporary name
        else:
            old = temp_name(target, "old", keep_suffix=False)
            _rename(target, old)
            try:
                _rename(new, target)
            except BaseException:
                _rename(old, target)
                raise
    remove_tree(old)


# ----------------------------------------------------------------------------------------------
# files


def write_bytes(target: str | os.PathLike[str], data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``target`` atomically (temporary file beside it, fsync, replace).

    The new file gets the permissions of any new file (``0o666`` less the umask).
    """
    target = Path(target)
    tmp = temp_name(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        move(tmp, target, overwrite=overwrite)
    except BaseException:
        remove_tree(tmp)
        raise
    return target


def write_text(target: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
               overwrite: bool = True) -> Path:
    """Write ``text`` to ``target`` atomically (see :func:`write_bytes`)."""
    return write_bytes(target, text.encode(encoding), overwrite=overwrite)


@contextlib.contextmanager
def writing(target: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` for a writer that creates it; move it in after.

    The path does not exist yet (netCDF refuses to write over an empty file) and keeps the
    target's suffix. When the block ends normally the file (or folder, for zarr) is flushed and
    moved over ``target``; on any exception, Ctrl-C included, it is removed and ``target`` is
    left as it was.

    Raises
    ------
    FileNotFoundError
        When the block wrote nothing to the path.
    """
    target = Path(target)
    tmp = temp_name(target)
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise FileNotFoundError(errno.ENOENT, "the writer produced no file", str(target))
        fsync_tree(tmp)
        move(tmp, target, overwrite=overwrite)
    except BaseException:
        remove_tree(tmp)
        raise


# ----------------------------------------------------------------------------------------------
# folders


def make_parents(folder: str | os.PathLike[str]) -> list[Path]:
    """Create ``folder`` and its missing parents; return those created (outermost first), for
    :func:`remove_created` to take back after a failure."""
    folder = Path(os.path.abspath(folder))
    missing: list[Path] = []
    p = folder
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    created: list[Path] = []
    for q in reversed(missing):
        try:
            _mkdir(q)
        except FileExistsError:
            continue
        created.append(q)
    return created


def remove_created(created: list[Path]) -> None:
    """Remove the folders :func:`make_parents` created, innermost first, if still empty."""
    for p in reversed(created):
        with contextlib.suppress(OSError):
            p.rmdir()


@final
class FolderBuild:
    """A folder built beside its target and swapped in only when complete.

    Parameters
    ----------
    target : path-like
        The folder to produce.
    overwrite : bool
        Whether an existing ``target`` may be replaced by :meth:`commit`.

    Attributes
    ----------
    path : Path
        The temporary folder to write into (hidden, beside ``target``).
    target : Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with FolderBuild(root / "out") as build:
    ...     _ = (build.path / "a.txt").write_text("1")
    >>> (root / "out" / "a.txt").read_text()
    '1'
    """

    def __init__(self, target: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        self.target = Path(target)
        self.overwrite = overwrite
        if os.path.lexists(self.target) and not overwrite:
            raise FileExistsError(errno.EEXIST, "already exists", str(self.target))
        parent = Path(os.path.abspath(self.target)).parent
        self._created = make_parents(parent)
        self.path = temp_name(self.target, "partial", keep_suffix=False)
        try:
            _mkdir(self.path)
        except BaseException:
            self._remove_created()
            raise
        self._state = "open"

    def __enter__(self) -> FolderBuild:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._state != "open":
            return
        if exc_type is None:
            self.commit()
        else:
            self.discard()

    @property
    def state(self) -> str:
        """``"open"``, ``"committed"``, ``"discarded"`` or ``"set aside"``."""
        return self._state

    def commit(self) -> Path:
        """Flush the new folder and put it at ``target`` (replacing an old one, removed last).

        On failure the new folder stays at :attr:`path` (the caller may :meth:`discard` or
        :meth:`set_aside` it) and an old target is left as it was.
        """
        self._check_open()
        fsync_tree(self.path)
        move(self.path, self.target, overwrite=self.overwrite)
        self._state = "committed"
        return self.target

    def discard(self) -> None:
        """Remove the temporary folder (and any parent folders this build created)."""
        if self._state != "open":
            return
        remove_tree(self.path)
        self._remove_created()
        self._state = "discarded"

    def set_aside(self, label: str = "incomplete") -> Path:
        """Keep the temporary folder under a visible name beside the target: ``NAME.LABEL``
        (``NAME.LABEL-2``, ... when taken). For results worth keeping that must not replace
        the target (an incomplete output while an old complete one exists)."""
        self._check_open()
        fsync_tree(self.path)
        for k in range(1, 1000):
            name = f"{self.target.name}.{label}" + ("" if k == 1 else f"-{k}")
            candidate = self.target.with_name(name)
            if not os.path.lexists(candidate):
                _rename(self.path, candidate)
                fsync_folder(candidate.parent)
                self._state = "set aside"
                return candidate
        raise FileExistsError(errno.EEXIST, "no free name beside the target", str(self.target))

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"FolderBuild for {self.target} is already {self._state}")

    def _remove_created(self) -> None:
        remove_created(self._created)
