"""Where the engine keeps files of its own: checkpoints and shard states, in a local folder or at a URI.

A local folder gets :mod:`alscale._atomic`'s write (temporary file, fsync, rename, fsync of the
folder); another filesystem (``s3://``, ``gs://``, ...) gets a temporary name and a move, which
on object stores is a copy that appears whole.  Either way a failed write leaves no temporary file.
"""

from __future__ import annotations

import os
import uuid

import pyarrow.fs as pafs

from alscale._atomic import atomic_write_bytes

__all__ = ["read_file", "split_location", "write_file_atomic"]


def split_location(location: str) -> tuple[pafs.FileSystem, str]:
    """A folder given as a local path or a filesystem URI, as (filesystem, path without a trailing /)."""
    if "://" in location:
        filesystem, path = pafs.FileSystem.from_uri(location)
        return filesystem, path.rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(location)


def write_file_atomic(directory: str, name: str, data: bytes) -> str:
    """Write ``directory/name`` whole or not at all, creating the folder if needed.

    Parameters
    ----------
    directory : str
        A local folder or a filesystem URI.
    name : str
    data : bytes

    Returns
    -------
    str
        The file's path on its filesystem.
    """
    filesystem, path = split_location(directory)
    final = f"{path}/{name}"
    if isinstance(filesystem, pafs.LocalFileSystem):
        atomic_write_bytes(final, data)
        return final
    filesystem.create_dir(path, recursive=True)
    temp = f"{path}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with filesystem.open_output_stream(temp) as stream:
            stream.write(data)
        filesystem.move(temp, final)
    except BaseException:
        try:
            filesystem.delete_file(temp)
        except OSError:  # never written, or already moved
            pass
        raise
    return final


def read_file(directory: str, name: str) -> bytes:
    """The bytes of ``directory/name`` (a local folder or a filesystem URI)."""
    filesystem, path = split_location(directory)
    with filesystem.open_input_stream(f"{path}/{name}") as stream:
        return stream.read()
