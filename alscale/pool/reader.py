"""Stream one shard's rows as (ids, features) record batches, row group by row group."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from alscale.exceptions import PoolSchemaError, ShardError
from alscale.pool.features import FeatureSpec, decode_features
from alscale.pool.files import OpenPoolFile, filesystem_for, open_pool_file
from alscale.pool.shards import Shard

__all__ = ["RowBatch", "ids_to_numpy", "iter_ids", "iter_shard"]


@dataclass
class RowBatch:
    """One record batch of a shard.

    Attributes
    ----------
    ids : ndarray of shape (n,)
        int64 or str ids.
    features : ndarray of shape (n, d), float32
    path : str
    row_group : int
    """

    ids: np.ndarray
    features: np.ndarray
    path: str
    row_group: int


_INT64 = pa.int64()


def ids_to_numpy(column: pa.Array, id_column: str) -> np.ndarray:
    """An id column as numpy: int64 for integer ids, str (unicode) for string ids."""
    if column.null_count:
        raise PoolSchemaError(f"The id column {id_column!r} holds {column.null_count} null(s); every row needs an id.")
    typ = column.type
    if typ == _INT64 and isinstance(column, pa.Array):  # the common case, zero-copy
        return np.frombuffer(column.buffers()[1], dtype=np.int64, count=len(column), offset=column.offset * 8)
    if pa.types.is_integer(typ):
        values = column.to_numpy(zero_copy_only=False)
        if typ == pa.uint64() and values.size and values.max() > np.iinfo(np.int64).max:
            raise PoolSchemaError(f"The id column {id_column!r} holds {int(values.max())}, which does not fit an int64 id.")
        return values.astype(np.int64, copy=False)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=str)
    raise PoolSchemaError(f"The id column {id_column!r} must be int64 or string. Got {typ}.")


def iter_shard(
    filesystem_uri: str | None,
    shard: Shard,
    spec: FeatureSpec,
    id_column: str,
    batch_size: int,
) -> Iterator[RowBatch]:
    """Yield a shard's rows in record batches of at most ``batch_size`` rows.

    Local files are memory-mapped and each row group is decoded one record batch at a time, so
    memory is bounded by one batch and the decoded rows are still in the CPU cache when the model
    reads them (about 2x less memory traffic than decoding whole row groups, which matters when
    several actors share a machine).  Read or decode errors raise :class:`ShardError` naming the
    file and row group.
    """
    for path, group, batch in _record_batches(filesystem_uri, shard, [id_column, *spec.columns], batch_size):
        try:
            ids = ids_to_numpy(batch.column(id_column), id_column)
            features = decode_features(batch, spec)
        except (PoolSchemaError, ShardError):
            raise
        except (pa.ArrowException, ValueError) as exc:
            raise _shard_error(path, group, exc) from None
        yield RowBatch(ids=ids, features=features, path=path, row_group=group)


def iter_ids(filesystem_uri: str | None, shard: Shard, id_column: str, batch_size: int = 65_536) -> Iterator[RowBatch]:
    """Yield a shard's ids only (``features`` is an empty (n, 0) array), for id checks."""
    for path, group, batch in _record_batches(filesystem_uri, shard, [id_column], batch_size):
        ids = ids_to_numpy(batch.column(id_column), id_column)
        yield RowBatch(ids=ids, features=np.empty((ids.shape[0], 0), dtype=np.float32), path=path, row_group=group)


def _record_batches(filesystem_uri: str | None, shard: Shard, columns: list[str], batch_size: int) -> Iterator[tuple[str, int, pa.RecordBatch]]:
    """``(path, row_group, record_batch)`` over a shard, with errors naming the file and row group."""
    fs = filesystem_for(filesystem_uri)
    current: OpenPoolFile | None = None
    for path, group, _rows in shard.pieces:
        if current is None or current.path != path:
            current = open_pool_file(fs, path, memory_map=True)  # only the current file stays open
        try:
            for batch in current.parquet.iter_batches(batch_size=batch_size, row_groups=[group], columns=columns, use_threads=False):
                yield path, group, batch
        except (PoolSchemaError, ShardError):
            raise
        except (OSError, pa.ArrowException, ValueError) as exc:
            raise _shard_error(path, group, exc) from None
        current.release(group)


def _shard_error(path: str, group: int, exc: Exception) -> ShardError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ShardError(f"Cannot read {path!r} row group {group}: {detail}")
