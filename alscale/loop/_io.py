"""Atomic file writes and a cross-process lock for the workspace.

Every file of a workspace is written to a temporary name in the same directory, flushed and
fsynced, then moved over the target with :func:`os.replace` (atomic on POSIX), and the directory
is fsynced so the rename itself survives a crash.  A reader therefore sees the old file or the
new one, never half of either.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from alscale._atomic import atomic_write_bytes, file_lock, temp_beside

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_parquet", "file_lock", "read_json"]


def atomic_write_json(path: str | os.PathLike, obj: Any) -> pathlib.Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write_bytes(path, text.encode())


def atomic_write_parquet(path: str | os.PathLike, table: pa.Table) -> pathlib.Path:
    """Write ``table`` to the Parquet file ``path`` atomically."""
    path = pathlib.Path(path)
    with temp_beside(path) as tmp:
        pq.write_table(table, tmp)
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pathlib.PurePath):
        return str(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
