"""Atomic file writes: a temporary file beside the target, fsync, rename, fsync the directory.

A reader of a file written here sees the old content or the new, never half of either, and a
crash leaves at most a hidden ``.NAME.*.tmp`` file that the next write does not trip over.
New files get the usual permissions (0o666 less the umask), not :func:`tempfile.mkstemp`'s 0o600.
Beside them: :func:`file_lock` (an ``flock`` across processes) and :func:`creation_problem`
(can a path be created here?).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_write_bytes", "creation_problem", "file_lock", "fsync_dir", "fsync_file", "temp_beside"]

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once, at import, while no other thread can race on it


def fsync_dir(directory: str | os.PathLike) -> None:
    """fsync a directory so a rename in it survives a crash (a no-op where that is impossible)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """fsync a file written by another library (pyarrow), so that its bytes are on disk before a rename."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


@contextlib.contextmanager
def temp_beside(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yield a temporary path next to ``path``; on success fsync it and move it over ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        yield tmp_path
        fsync_file(tmp_path)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    path = pathlib.Path(path)
    with temp_beside(path) as tmp:
        tmp.write_bytes(data)
    return path


def creation_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` could not be created, with the folders above it made as needed; None when it can.

    The nearest folder above ``path`` that exists decides: a file there, or one this process may
    not write in, is the problem (said as the end of a sentence, e.g. "'/data' is a file, not a
    directory").
    """
    parent = pathlib.Path(path).absolute().parent
    while not parent.exists():  # the folders a write would create
        parent = parent.parent
    if not parent.is_dir():
        return f"{str(parent)!r} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"no permission to write in {str(parent)!r}"
    return None


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, shared: bool = False, *, wait: bool = True) -> Iterator[None]:
    """Hold an ``fcntl.flock`` on ``path`` (created if missing) for the block.

    Exclusive for writers, ``shared=True`` for readers (many at once, never during a write).
    Works across processes (a webhook receiver and a CLI) and across threads of one process,
    since every entry opens its own file descriptor.

    Raises
    ------
    BlockingIOError
        With ``wait=False``, when another holder has the lock.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
