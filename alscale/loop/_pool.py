"""Small Parquet-pool readers for the loop: ids, labels, features of chosen rows.

The loop reads a pool a column at a time (the id column to reserve the evaluation set, a
label or group column for composition, the features of a few thousand labeled rows to train),
never the whole table, so these readers project columns and filter rows with
:mod:`pyarrow.dataset`.

A pool is a Parquet file, a directory of Parquet files, or a glob.  Features are a
``fixed_size_list<float32>`` column, a ``fixed_size_binary`` column of float32 rows, a plain
list column, or several numeric columns.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator, Sequence, ValuesView
from collections.abc import Set as AbstractSet

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from alscale.exceptions import ConfigError, PoolError, PoolSchemaError
from alscale.pool.files import folder_files, glob_files
from alscale.pool.idfiles import integer_id

__all__ = ["as_ids", "feature_columns", "pool_dataset", "read_columns", "read_features"]


def check_pool_spec(pool) -> list:
    """A pool spec (a path, or a non-empty list of paths) as a list; ConfigError for anything else."""
    specs = [pool] if isinstance(pool, (str, os.PathLike)) else pool
    if not isinstance(specs, (list, tuple)) or not specs or not all(isinstance(p, (str, os.PathLike)) for p in specs):
        raise ConfigError(f"The 'pool' parameter must be a path or a list of paths. Got {pool!r} instead.")
    return list(specs)


def pool_files(pool: str | os.PathLike | Sequence) -> list[str]:
    """Expand a pool spec (file, directory, glob, or a list of them) to Parquet file paths."""
    specs = check_pool_spec(pool)
    files: list[str] = []
    for spec in specs:
        spec = str(spec)
        p = pathlib.Path(spec)
        if p.is_dir():
            files += folder_files(p)  # as the engine lists a folder
        elif p.is_file():
            files.append(spec)
        else:  # a glob (as the engine reads one: '.'/'_' names skipped), or a path that is not there
            files += glob_files(spec)
    if not files:
        raise PoolError(f"Expected Parquet files at pool {pool!s}. Got none.")
    return files


def pool_dataset(pool) -> ds.Dataset:
    """A :class:`pyarrow.dataset.Dataset` over the pool's files."""
    try:
        return ds.dataset(pool_files(pool), format="parquet")
    except (pa.ArrowInvalid, OSError) as exc:
        raise PoolSchemaError(f"Cannot read the pool {pool!s}: {exc}") from None


def _check_columns(dataset: ds.Dataset, columns: Sequence[str], pool) -> None:
    names = set(dataset.schema.names)
    missing = [c for c in columns if c not in names]
    if missing:
        raise PoolSchemaError(f"Expected columns {missing} in pool {pool!s}. Got columns {sorted(names)}.")


def read_columns(pool, columns: Sequence[str], *, id_column: str = "id", ids=None) -> pa.Table:
    """Read ``columns`` of the pool, optionally only the rows whose id is in ``ids``.

    Parameters
    ----------
    pool : str or path or list
    columns : sequence of str
        Columns to read (the id column is added first if absent).
    id_column : str
    ids : array-like of shape (m,), optional
        Keep only these rows; the result follows the pool's order, not ``ids``'s.

    Returns
    -------
    pyarrow.Table
    """
    dataset = pool_dataset(pool)
    cols = [id_column] + [c for c in columns if c != id_column]
    _check_columns(dataset, cols, pool)
    flt = None
    if ids is not None:
        id_type = dataset.schema.field(id_column).type
        flt = pc.field(id_column).isin(pa.array(as_ids(ids, id_type)))
    return dataset.to_table(columns=cols, filter=flt)


def as_ids(ids, id_type: pa.DataType | str) -> np.ndarray:
    """Convert ids to the pool's id type: int64 ndarray or an object ndarray of str.

    Parameters
    ----------
    ids : array-like of shape (m,), set or iterator
        The ids (a pyarrow array or a list, not one id).
    id_type : pyarrow.DataType or {"int64", "string"}

    Returns
    -------
    ndarray of shape (m,)

    Raises
    ------
    PoolSchemaError
        ``ids`` is not a flat list (None, one id, a nested list), or holds a value that is not
        an integer where the pool's ids are integers.
    """
    kind = id_type if isinstance(id_type, str) else ("int64" if pa.types.is_integer(id_type) else "string")
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):
        ids = ids.to_numpy(zero_copy_only=False)
    elif isinstance(ids, (AbstractSet, Iterator, ValuesView)):  # numpy would make one object of them
        ids = list(ids)
    try:
        arr = np.asarray(ids)
    except ValueError:  # ragged nested lists
        arr = None
    if arr is None or arr.ndim != 1:  # None, one id, a nested list: a list of ids was meant
        shown = repr(ids) if len(repr(ids)) <= 80 and "\n" not in repr(ids) else f"a {type(ids).__name__}"
        raise PoolSchemaError(f"Expected a list of ids. Got {shown} instead.")
    if kind == "int64":
        if arr.dtype.kind in "iu":
            return arr.astype(np.int64, copy=False)
        values = arr.tolist()
        try:
            out = np.array([integer_id(v) for v in values], dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            at, why = next((i, w) for i, w in ((i, int64_id_problem(v)) for i, v in enumerate(values)) if w is not None)
            where = f" (id {at + 1} of {len(values):,})" if len(values) > 1 else ""
            raise PoolSchemaError(f"Expected integer ids (int64). Got {values[at]!r}{where}: {why}.") from None
        return out
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in arr.tolist()], dtype=object)


def int64_id_problem(value) -> str | None:
    """Why ``value`` is not an int64 id (None: it is one), in words for an error message."""
    try:
        number = integer_id(value)
    except (TypeError, ValueError):
        text = str(value)
        if isinstance(value, str) and any(c in text for c in "eE") and any(c.isdigit() for c in text):
            return "scientific notation is not read as an id (a spreadsheet wrote it so: format the column as whole numbers)"
        return "not a whole number"
    if not -(2**63) <= number < 2**63:
        return "outside the int64 range (-2**63 to 2**63-1)"
    return None


def feature_columns(schema: pa.Schema, *, id_column: str, exclude: Sequence[str] = ()) -> list[str]:
    """Guess the feature columns: the one vector column, else every numeric non-id column."""
    skip = {id_column, *exclude}
    vectors = [f.name for f in schema if f.name not in skip and (
        pa.types.is_fixed_size_list(f.type) or pa.types.is_list(f.type) or pa.types.is_fixed_size_binary(f.type))]
    if vectors:
        return vectors[:1]
    numeric = [f.name for f in schema if f.name not in skip and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))]
    if not numeric:
        raise PoolSchemaError(f"Expected a vector column or numeric feature columns. Got columns {schema.names}.")
    return numeric


def features_from_table(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """Turn feature columns of ``table`` into a float32 matrix of shape (n, d)."""
    if len(columns) == 1:
        col = table.column(columns[0]).combine_chunks()
        typ = col.type
        if pa.types.is_fixed_size_list(typ):
            flat = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
            return flat.reshape(len(col), typ.list_size)
        if pa.types.is_list(typ) or pa.types.is_large_list(typ):
            return np.asarray(col.to_pylist(), dtype=np.float32)
        if pa.types.is_fixed_size_binary(typ):
            buf = b"".join(v for v in col.to_pylist())
            return np.frombuffer(buf, dtype=np.float32).reshape(len(col), typ.byte_width // 4).copy()
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False).astype(np.float32) for c in columns])


def read_features(pool, ids, *, id_column: str = "id", features: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features of the rows with the given ids, in the order of ``ids``.

    Parameters
    ----------
    pool : str or path or list
    ids : array-like of shape (m,)
    id_column : str
    features : sequence of str, optional
        Feature columns; guessed with :func:`feature_columns` when omitted.

    Returns
    -------
    ids : ndarray of shape (m,)
    X : ndarray of shape (m, d), float32

    Raises
    ------
    PoolError
        If some ids are not in the pool.
    """
    dataset = pool_dataset(pool)
    cols = list(features) if features else feature_columns(dataset.schema, id_column=id_column)
    id_type = dataset.schema.field(id_column).type
    want = as_ids(ids, id_type)
    table = read_columns(pool, cols, id_column=id_column, ids=want)
    got = as_ids(table.column(id_column), id_type)
    X = features_from_table(table, cols)
    index = {v: i for i, v in enumerate(got.tolist())}
    try:
        order = np.array([index[v] for v in want.tolist()], dtype=np.int64)
    except KeyError as exc:
        raise PoolError(f"Expected every requested id in the pool. Got id {exc.args[0]!r}, which is not there.") from None
    return want, X[order] if len(order) else X[:0]
