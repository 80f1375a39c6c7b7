"""Find a pool's Parquet files and read their footers (never their rows).

A pool is a Parquet file, a directory of them (searched recursively for ``*.parquet``) or a
glob, on any filesystem pyarrow opens (local paths, ``file://``, ``s3://``, ``gs://``, ...).
A glob reads the same files on every filesystem (:func:`glob_files`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from alscale.exceptions import PoolError, PoolSchemaError, first_line

__all__ = ["OpenPoolFile", "PoolFile", "PoolFiles", "filesystem_for", "folder_files", "glob_files", "open_parquet", "open_pool_file", "reads_path", "resolve_pool"]


@dataclass(frozen=True)
class PoolFile:
    """One Parquet file of the pool: its path, size, rows and rows per row group, and when it was last written."""

    path: str
    size: int
    rows: int
    row_groups: tuple[int, ...]
    mtime_ns: int | None = None  # None where the filesystem does not say


@dataclass(frozen=True)
class PoolFiles:
    """The resolved pool.

    Attributes
    ----------
    spec : str
        What the user gave (path, directory, glob or URI).
    filesystem_uri : str or None
        A URI pyarrow can rebuild the filesystem from in another process (None = local).
    files : tuple of PoolFile
    schema : pyarrow.Schema
    """

    spec: str
    filesystem_uri: str | None
    files: tuple[PoolFile, ...]
    schema: pa.Schema

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    def filesystem(self) -> pafs.FileSystem:
        return filesystem_for(self.filesystem_uri)

    def fingerprint(self) -> dict:
        """Files, sizes, row counts and modification times, plus a sha256 over them: what identifies this pool.

        The modification time tells a file rewritten in place (new features, the same size)
        from the one a checkpoint or a cached clustering was made from.
        """
        files = [{"path": f.path, "size": f.size, "rows": f.rows, "mtime_ns": f.mtime_ns} for f in self.files]
        digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        return {"files": files, "rows": self.rows, "sha256": digest}


def filesystem_for(uri: str | None) -> pafs.FileSystem:
    """The filesystem for a URI prefix (None or a plain path = local)."""
    if uri is None:
        return pafs.LocalFileSystem()
    fs, _ = pafs.FileSystem.from_uri(uri)
    return fs


def open_parquet(filesystem: pafs.FileSystem, path: str) -> pq.ParquetFile:
    """Open one Parquet file, turning I/O and format errors into :class:`PoolSchemaError`."""
    return open_pool_file(filesystem, path).parquet


@dataclass
class OpenPoolFile:
    """One open pool file; local files are memory-mapped, and open for plain reads too.

    Column chunks of a mapped file are decoded straight from the page cache, without first
    being copied into a read buffer.  :meth:`release` lets the pages of a finished row group go,
    so a reader's resident memory stays bounded by about one row group however large the file.
    ``file`` reads byte ranges (feature pages that need no decoding) without mapping them.
    """

    path: str
    parquet: pq.ParquetFile
    mapping: mmap.mmap | None = None
    file: io.FileIO | None = None

    def close(self) -> None:
        """Close ``file`` (the mapping goes when the last array viewing it does)."""
        if self.file is not None:
            self.file.close()

    def release(self, group: int) -> None:
        """Drop this process's mappings of row group ``group``'s pages (they stay in the page cache)."""
        if self.mapping is None:
            return
        meta = self.parquet.metadata.row_group(group)
        starts, ends = [], []
        for i in range(meta.num_columns):
            col = meta.column(i)
            start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            starts.append(start)
            ends.append(start + col.total_compressed_size)
        first = min(starts) // mmap.PAGESIZE * mmap.PAGESIZE
        last = min(max(ends), len(self.mapping))
        if last > first:
            self.mapping.madvise(mmap.MADV_DONTNEED, first, last - first)


def open_pool_file(filesystem: pafs.FileSystem, path: str, memory_map: bool = False) -> OpenPoolFile:
    """Open one pool file (memory-mapped if local and ``memory_map``); errors as :func:`open_parquet`."""
    try:
        if memory_map and isinstance(filesystem, pafs.LocalFileSystem):
            file = open(path, "rb", buffering=0)  # noqa: SIM115  (closed by OpenPoolFile.close)
            try:
                mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
                return OpenPoolFile(path, pq.ParquetFile(pa.BufferReader(pa.py_buffer(mapping))), mapping, file)
            except BaseException:
                file.close()
                raise
        return OpenPoolFile(path, pq.ParquetFile(filesystem.open_input_file(path)))
    except FileNotFoundError:
        raise PoolError(f"Pool file {path!r} does not exist.") from None
    except (OSError, ValueError, pa.ArrowException) as exc:  # ValueError: mmap of an empty file
        raise PoolSchemaError(f"Pool file {path!r} is not readable Parquet: {first_line(exc)}") from None


def _is_pool_file(path: str, root: str) -> bool:
    """A ``.parquet`` file of folder ``root``, none of whose names below ``root`` starts with "." or "_".

    Hidden and underscore names are a writer's work in progress (Spark's ``_temporary/``) or its
    metadata (``_SUCCESS``, ``_metadata``): pyarrow's datasets skip them too, so the engine and
    the loop read the same files.
    """
    relative = path[len(root.rstrip("/")) + 1:] if path.startswith(root.rstrip("/") + "/") else os.path.basename(path)
    return path.endswith(".parquet") and not any(part.startswith((".", "_")) for part in relative.split("/"))


def _list_files(spec: str) -> tuple[str | None, list[str]]:
    """The pool's filesystem URI (None: local) and its Parquet files, sorted."""
    if "://" in spec:
        address, query = spec.split("?", 1) if "?" in spec else (spec, None)  # in a URI, "?" starts the query
        wild = min((address.find(ch) for ch in "*[" if ch in address[address.index("://") + 3:]), default=-1)
        pattern = None
        if wild >= 0:  # pyarrow cannot parse "[" in a URI: open the folder before the glob, match the rest here
            cut = address.rindex("/", 0, wild)
            pattern = address[cut + 1:].split("/")
            address = address[:cut] if address[cut - 1] != "/" else address[: cut + 1]
        fs, root = pafs.FileSystem.from_uri(address + (f"?{query}" if query is not None else ""))
        scheme_root = spec[: spec.index("://") + 3]
        uri = scheme_root + (root.split("/")[0] if not isinstance(fs, pafs.LocalFileSystem) else "")
        if isinstance(fs, pafs.LocalFileSystem):  # file://: read as the same path is (linked folders followed once)
            return None, _list_files("/".join([root.rstrip("/"), *pattern]) if pattern is not None else root)[1]
        if pattern is not None:
            infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
            return uri, sorted(i.path for i in infos if i.is_file and _glob_match(pattern, _below(i.path, root)))
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.Directory:
            infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
            return uri, sorted(i.path for i in infos if i.is_file and _is_pool_file(i.path, root))
        if info.type == pafs.FileType.File:
            return uri, [root]
        return uri, []
    # a path that exists is read as it is, even where it holds a glob's characters ("run[1]/", "what?.parquet");
    # only one that does not is a glob
    if os.path.isdir(spec):
        return None, folder_files(spec)
    if os.path.isfile(spec):
        return None, [spec]
    if _is_glob(spec):
        return None, glob_files(spec)
    return None, []


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _glob_base(pattern: str) -> tuple[str, list[str]]:
    """``("a/b", ["*", "x.parquet"])`` for ``"a/b/*/x.parquet"``: the folder before the first wildcard, and the rest's parts."""
    parts = pattern.split("/")
    first = next(i for i, part in enumerate(parts) if _is_glob(part))
    base = "/".join(parts[:first])
    return (base or ("/" if pattern.startswith("/") else "")), parts[first:]


def _below(path: str, base: str) -> list[str]:
    """The parts of ``path`` below the folder ``base``."""
    if not base:
        return path.split("/")
    return path[len(base.rstrip("/")) + 1:].split("/")


def _glob_match(pattern: list[str], parts: list[str]) -> bool:
    """Whether path ``parts`` match glob ``pattern`` parts, as Python's ``glob(recursive=True)`` matches them.

    ``*``, ``?`` and ``[...]`` stay within one name; a ``**`` part matches zero or more folders.
    A name starting with "." or "_" is matched only by a pattern part that starts with the same
    character (never by ``**``): a glob skips what a folder skips (:func:`_is_pool_file`),
    unless it names it.  Case-sensitive on every filesystem.
    """
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        if _glob_match(rest, parts):
            return True
        return bool(parts) and not parts[0].startswith((".", "_")) and _glob_match(pattern, parts[1:])
    if not parts:
        return False
    name = parts[0]
    if name.startswith((".", "_")) and not head.startswith(name[0]):
        return False
    return fnmatch.fnmatchcase(name, head) and _glob_match(rest, parts[1:])


def glob_files(pattern: str) -> list[str]:
    """The local files matching glob ``pattern``, sorted: what a pool glob reads, on every filesystem.

    Python's ``glob(recursive=True)`` semantics (``*`` does not cross "/", ``**`` matches zero
    or more folders), except that names starting with "." or "_" are skipped as a folder skips
    them, unless the glob names them (``pool/_temporary/*.parquet``): :func:`_glob_match`.

    Raises
    ------
    OSError
        A folder in it cannot be read.
    """
    if not _is_glob(pattern):  # a plain path: itself, if it is a file
        return [pattern] if os.path.isfile(pattern) else []
    base, parts = _glob_base(pattern)
    top = base or "."
    if not os.path.isdir(top):
        return []
    deep = "**" in parts
    found = []
    for root, dirs, names in _walk(top):
        below = [] if root == top else os.path.relpath(root, top).split(os.sep)
        if not deep and len(below) >= len(parts) - 1:
            dirs[:] = []  # no deeper folder can match a glob without **
        for name in names:
            if _glob_match(parts, [*below, name]):
                found.append(os.path.join(root, name) if base else os.path.normpath(os.path.join(root, name)))
    return sorted(found)


def folder_files(folder: str | os.PathLike) -> list[str]:
    """A local folder's pool files, sorted: ``.parquet`` files at any depth, none of whose names
    below the folder starts with "." or "_" (:func:`_is_pool_file`); what the engine, the loop and
    the queues read of a folder.

    Raises
    ------
    OSError
        A folder in it cannot be read (an error, not a smaller pool).
    """
    folder = os.fspath(folder)
    found = []
    for root, _dirs, names in _walk(folder):
        found += [path for path in (os.path.join(root, n) for n in names) if _is_pool_file(path, folder)]
    return sorted(found)


def _walk(top: str) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top)`` into linked folders too, as Python's glob goes, each real folder once (a link back up is not a loop).

    The caller may prune the ``dirs`` it is given, as with ``os.walk``.
    """
    seen = set()
    for root, dirs, names in os.walk(top, onerror=_raise, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        yield root, dirs, names


def _raise(exc: OSError) -> None:
    raise exc


def reads_path(spec: str, path: str | os.PathLike) -> bool:
    """Whether pool ``spec`` would read the local file ``path``, were it there (an output's ``batch.parquet``).

    A folder reads its pool files at any depth (:func:`_is_pool_file`), a glob what it matches
    (:func:`_glob_match`), a file itself; a URI of another filesystem than the local one, nothing.
    """
    spec = str(spec)
    if "://" in spec:
        if not spec.startswith("file://"):
            return False
        spec = spec[len("file://"):].split("?", 1)[0]
    path = os.path.abspath(os.fspath(path))
    if _is_glob(spec):
        base, parts = _glob_base(spec)
        base = os.path.abspath(base or ".")
        return path.startswith(base.rstrip("/") + "/") and _glob_match(parts, _below(path, base))
    spec = os.path.abspath(spec)
    if os.path.isdir(spec):
        return path.startswith(spec.rstrip("/") + "/") and _is_pool_file(path, spec)
    return path == spec


def _same_columns(a: pa.Schema, b: pa.Schema) -> bool:
    """Same column names and types; nullability and metadata may differ (writers set them differently)."""
    return a.names == b.names and all(x.type.equals(y.type) for x, y in zip(a, b))


def _schema_difference(got: pa.Schema, expected: pa.Schema) -> str:
    """What differs, e.g. "id: uint64 where the first file has int64"."""
    if got.names != expected.names:
        return f"columns {got.names} where the first file has {expected.names}"
    diffs = [f"{f.name}: {f.type} where the first file has {e.type}" for f, e in zip(got, expected) if not f.type.equals(e.type)]
    return "; ".join(diffs) or "different column metadata"


def resolve_pool(spec: str) -> PoolFiles:
    """Resolve a pool spec and read every file's footer.

    Raises
    ------
    PoolError
        Nothing matches ``spec``, or the files hold no rows.
    PoolSchemaError
        A file is not Parquet, or the files' schemas differ.
    """
    spec = str(spec)
    try:
        fs_uri, paths = _list_files(spec)
    except (OSError, pa.ArrowException) as exc:
        raise PoolError(f"Cannot open pool {spec!r}: {first_line(exc)}") from None
    if not paths:
        raise PoolError(f"Pool {spec!r} does not exist or holds no Parquet files.")
    fs = filesystem_for(fs_uri)
    files, schema = [], None
    for path in paths:
        pf = open_parquet(fs, path)
        meta = pf.metadata
        file_schema = pf.schema_arrow
        if schema is None:
            schema = file_schema
        elif not _same_columns(file_schema, schema):
            raise PoolSchemaError(f"Pool files disagree on their schema: {path!r} has {_schema_difference(file_schema, schema)}.")
        info = fs.get_file_info(path)
        groups = tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
        files.append(PoolFile(path=path, size=int(info.size or 0), rows=int(meta.num_rows), row_groups=groups, mtime_ns=info.mtime_ns))
    pool = PoolFiles(spec=spec, filesystem_uri=fs_uri, files=tuple(files), schema=schema)
    if pool.rows == 0:
        raise PoolError(f"Pool {spec!r} is empty: 0 rows in {len(files)} file(s).")
    return pool
