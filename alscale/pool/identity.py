"""Which pool a row belongs to, for labeling queues that hold rows of several pools.

A row's id is unique within its pool, not across pools: two pools may both hold id 1000.  A
queue shared by several pools (one Label Studio project) tells their rows apart by the id and
the pool's key together.  The key is a short hash of where the pool lives, so every workspace
and every batch over the same pool gets the same key, and a pool that grows (new files under
its folder) keeps it.  A folder and a glob within it are one location; a single file, or a
list of files, is a location of its own.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

__all__ = ["pool_key", "pool_location"]


def pool_location(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The pool's location(s) in one spelling.

    Local paths (also ``file://`` URIs) are made absolute with links resolved; other URIs are
    kept as given.  A glob counts as the folder it reads from (``pool/*.parquet`` and
    ``pool/**/*.parquet`` are ``pool``), so a folder and a glob within it are one location.

    Parameters
    ----------
    spec : str, path or list of them
        A Parquet file, folder or glob, or a URI (``s3://bucket/pool/``); or a list of them.

    Returns
    -------
    list of str
        Sorted, without duplicates and without a trailing ``/``.
    """
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    out = set()
    for item in specs:
        text = os.fspath(item)
        if text.startswith("file://"):
            text = text[len("file://"):]
        local = "://" not in text
        parts = text.split(os.sep if local else "/")
        magic = [i for i, part in enumerate(parts) if any(ch in part for ch in "*?[")]
        if magic:  # the folder a glob reads from
            parts = parts[: magic[0]]
            text = (os.sep if local else "/").join(parts) or (os.sep if text.startswith(os.sep) else ".")
        if local:
            out.add(os.path.realpath(text).rstrip(os.sep) or os.sep)
        else:
            out.add(text.rstrip("/"))
    return sorted(out)


def pool_key(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> str:
    """A 16-hex-digit key for the pool at ``spec``: the first digits of the sha256 of its location.

    Parameters
    ----------
    spec : str, path or list of them
        As :func:`pool_location` takes it.

    Returns
    -------
    str
        The same key for every spelling of the same location (relative or absolute, through a
        symbolic link, with or without a trailing ``/``, a folder or a glob in it).

    Examples
    --------
    >>> pool_key("s3://bucket/pool/") == pool_key("s3://bucket/pool")
    True
    """
    return hashlib.sha256("\n".join(pool_location(spec)).encode("utf-8")).hexdigest()[:16]
