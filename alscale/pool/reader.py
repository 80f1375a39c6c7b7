"""Stream one shard's rows as (ids, features) record batches, row group by row group."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from alscale.exceptions import PoolSchemaError, ShardError
from alscale.pool.features import FeatureSpec, decode_features
from alscale.pool.files import filesystem_for, open_parquet
from alscale.pool.shards import Shard

__all__ = ["RowBatch", "ids_to_numpy", "iter_shard"]


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


def ids_to_numpy(column: pa.Array, id_column: str) -> np.ndarray:
    """An id column as numpy: int64 for integer ids, str (unicode) for string ids."""
    if column.null_count:
        raise PoolSchemaError(f"The id column {id_column!r} holds {column.null_count} null(s); every row needs an id.")
    typ = column.type
    if pa.types.is_integer(typ):
        return column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
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

    Memory is bounded by one row group (decoded once, then sliced without copies).  Read or decode errors
    raise :class:`ShardError` naming the file and row group.
    """
    fs = filesystem_for(filesystem_uri)
    columns = [id_column, *spec.columns]
    open_files: dict[str, object] = {}
    for path, group, _rows in shard.pieces:
        pf = open_files.get(path) or open_parquet(fs, path)
        open_files = {path: pf}  # keep only the current file open
        try:
            # one decode call per row group (Parquet buffers the whole column chunk anyway),
            # then zero-copy slices: memory is bounded by the row group, calls stay few
            table = pf.read_row_group(group, columns=columns, use_threads=False)
            for batch in table.to_batches(max_chunksize=batch_size):
                ids = ids_to_numpy(batch.column(id_column), id_column)
                yield RowBatch(ids=ids, features=decode_features(batch, spec), path=path, row_group=group)
        except (PoolSchemaError, ShardError):
            raise
        except (OSError, pa.ArrowException, ValueError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ShardError(f"Cannot read {path!r} row group {group}: {detail}") from None
