"""Atomic file writes and a cross-process lock for the workspace.

Every file of a workspace is written to a temporary name in the same directory, flushed and
fsynced, then moved over the target with :func:`os.replace` (atomic on POSIX), and the directory
is fsynced so the rename itself survives a crash.  A reader therefore sees the old file or the
new one, never half of either.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_parquet", "file_lock", "read_json"]


def _fsync_dir(directory: pathlib.Path) -> None:
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


@contextlib.contextmanager
def _temp_beside(path: pathlib.Path) -> Iterator[pathlib.Path]:
    """Yield a temporary path next to ``path``; move it over ``path`` on success."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = pathlib.Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    path = pathlib.Path(path)
    with _temp_beside(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write_bytes(path, text.encode())


def atomic_write_parquet(path: str | os.PathLike, table: pa.Table) -> pathlib.Path:
    """Write ``table`` to the Parquet file ``path`` atomically."""
    path = pathlib.Path(path)
    with _temp_beside(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, shared: bool = False) -> Iterator[None]:
    """Hold an ``fcntl.flock`` on ``path`` (created if missing) for the block.

    Exclusive for writers, ``shared=True`` for readers (many at once, never during a write).
    Works across processes (a webhook receiver and a CLI) and across threads of one process,
    since every entry opens its own file descriptor.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pathlib.PurePath):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
