"""Stream one shard's rows as (ids, features) record batches, row group by row group."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from alscale.exceptions import PoolSchemaError, ShardError, first_line
from alscale.pool.features import FeatureSpec, decode_features
from alscale.pool.files import OpenPoolFile, filesystem_for, open_pool_file
from alscale.pool.pages import Page, feature_column, feature_pages, read_rows
from alscale.pool.shards import Piece, Shard

__all__ = ["RowBatch", "id_at", "ids_to_numpy", "iter_ids", "iter_shard"]


@dataclass
class RowBatch:
    """One record batch of a shard.

    Attributes
    ----------
    ids : ndarray of shape (n,)
        int64 ids, or an object array of str ids (:func:`ids_to_numpy`).
    features : ndarray of shape (n, d), float32 (float64 where ``iter_shard`` was asked for it)
    path : str
    row_group : int
    """

    ids: np.ndarray
    features: np.ndarray
    path: str
    row_group: int


_INT64 = pa.int64()


def ids_to_numpy(column: pa.Array, id_column: str) -> np.ndarray:
    """An id column as numpy: int64 for integer ids, an object array of ``str`` for string ids.

    Not a fixed-width ``str`` array: that pads every id to the longest, so one 200,000-character
    id among 4,096 short ones costs 3 GiB.  Objects cost the bytes present (plus about 50 per id)
    and sort in the same order (code points).
    """
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
        return column.to_numpy(zero_copy_only=False)  # object array of str
    raise PoolSchemaError(f"The id column {id_column!r} must be int64 or string. Got {typ}.")


def id_at(ids: np.ndarray, row: int) -> int | str:
    """Row ``row``'s id as a Python int or str (for messages), from an int64 or object id array."""
    return ids[row : row + 1].tolist()[0]


def iter_shard(
    filesystem_uri: str | None,
    shard: Shard,
    spec: FeatureSpec,
    id_column: str,
    batch_size: int,
    *,
    read_pages: bool = True,
    reuse_buffer: bool = False,
    dtype: npt.DTypeLike = np.float32,
) -> Iterator[RowBatch]:
    """Yield a shard's rows in record batches of at most ``batch_size`` rows.

    Local files are memory-mapped and each row group is decoded one record batch at a time, so
    memory is bounded by one batch and the decoded rows are still in the CPU cache when the model
    reads them (about 2x less memory traffic than decoding whole row groups, which matters when
    several actors share a machine).  An uncompressed ``fixed_size_binary`` feature column is not
    decoded at all: its rows are read from their pages into each batch (:mod:`alscale.pool.pages`);
    ``read_pages=False`` has Arrow decode it anyway (to compare the two).  Read or decode errors
    raise :class:`ShardError` naming the file and row group.

    ``reuse_buffer=True`` reads the rows of every batch that comes from pages into one buffer,
    so each batch's ``features`` are overwritten by the next batch: for a caller that is done
    with a batch before asking for the next (the scan).  The buffer stays in the CPU cache,
    where a new array per batch costs the writes to memory that the cache does not hold.

    ``dtype`` is what numeric and list columns decode to (:func:`alscale.pool.features.feature_dtype`,
    decided once per shard: float64 for a double-input model); a ``fixed_size_binary`` column
    is float32 rows whatever it is.
    """
    buffer = None
    for current, piece in _open_pieces(filesystem_uri, shard):
        group = piece.row_group
        pages = _plain_feature_pages(current, group, spec) if read_pages else None
        with _naming(current.path, group):
            if pages is not None:
                if reuse_buffer and buffer is None:
                    buffer = np.empty((batch_size, spec.width), dtype=np.float32)
                yield from _page_batches(current, piece, pages, spec.width, id_column, batch_size, buffer)
                continue
            for batch in _row_group_batches(current, piece, [id_column, *spec.columns], batch_size):
                ids = ids_to_numpy(batch.column(id_column), id_column)
                yield RowBatch(ids=ids, features=decode_features(batch, spec, ids, dtype), path=current.path, row_group=group)


def iter_ids(filesystem_uri: str | None, shard: Shard, id_column: str, batch_size: int = 65_536) -> Iterator[RowBatch]:
    """Yield a shard's ids only (``features`` is an empty (n, 0) array), for id checks."""
    for current, piece in _open_pieces(filesystem_uri, shard):
        with _naming(current.path, piece.row_group):
            for batch in _row_group_batches(current, piece, [id_column], batch_size):
                ids = ids_to_numpy(batch.column(id_column), id_column)
                yield RowBatch(ids=ids, features=np.empty((ids.shape[0], 0), dtype=np.float32), path=current.path, row_group=piece.row_group)


def _open_pieces(filesystem_uri: str | None, shard: Shard) -> Iterator[tuple[OpenPoolFile, Piece]]:
    """``(open file, piece)`` over a shard; only the current file stays open, read row groups are released."""
    fs = filesystem_for(filesystem_uri)
    current: OpenPoolFile | None = None
    try:
        for piece in shard.pieces:
            if current is None or current.path != piece.path:
                if current is not None:
                    current.close()
                current = open_pool_file(fs, piece.path, memory_map=True)
            _check_rows(current, piece)
            yield current, piece
            current.release(piece.row_group)
    finally:
        if current is not None:
            current.close()


def _check_rows(current: OpenPoolFile, piece: Piece) -> None:
    """A file rewritten since the plan was made may hold fewer rows than the piece: a ShardError, not a short read."""
    metadata = current.parquet.metadata
    rows = metadata.row_group(piece.row_group).num_rows if piece.row_group < metadata.num_row_groups else 0
    if rows < piece.stop:
        raise ShardError(f"Cannot read {current.path!r} row group {piece.row_group}: it has {rows} rows, the plan expected {piece.stop}.")


def _row_group_batches(current: OpenPoolFile, piece: Piece, columns: list[str], batch_size: int) -> Iterator[pa.RecordBatch]:
    """A piece's rows through Arrow, in batches of at most ``batch_size``.

    Arrow reads a row group from its start: the rows before ``piece.first`` are decoded and
    dropped (zero-copy slices), and reading stops after ``piece.stop``.
    """
    batches = current.parquet.iter_batches(batch_size=batch_size, row_groups=[piece.row_group], columns=columns, use_threads=False)
    at = 0  # row group row of the next batch's first row
    for batch in batches:
        lo, hi = max(piece.first - at, 0), min(piece.stop - at, batch.num_rows)
        at += batch.num_rows
        if hi > lo:
            yield batch.slice(lo, hi - lo)
        if at >= piece.stop:
            return


def _plain_feature_pages(current: OpenPoolFile, group: int, spec: FeatureSpec) -> list[Page] | None:
    """The row group's feature pages, where its features can be read without Arrow (:mod:`alscale.pool.pages`)."""
    if spec.kind != "binary" or current.mapping is None or current.file is None:
        return None
    metadata = current.parquet.metadata
    column = feature_column(metadata, spec.columns[0], spec.width * 4)
    return None if column is None else feature_pages(current.mapping, metadata, group, column)


def _page_batches(
    current: OpenPoolFile, piece: Piece, pages: list[Page], width: int, id_column: str, batch_size: int, buffer: np.ndarray | None
) -> Iterator[RowBatch]:
    """A piece's rows in batches: ids read with Arrow, features read from their pages (into ``buffer`` if given)."""
    column = current.parquet.read_row_group(piece.row_group, columns=[id_column], use_threads=False).column(0)
    ids = ids_to_numpy(column.chunk(0) if column.num_chunks == 1 else column.combine_chunks(), id_column)
    for start in range(piece.first, piece.stop, batch_size):
        stop = min(start + batch_size, piece.stop)
        yield RowBatch(ids[start:stop], read_rows(current.file, pages, start, stop, width, buffer), current.path, piece.row_group)


@contextmanager
def _naming(path: str, group: int) -> Iterator[None]:
    """Read and decode errors inside the block become a :class:`ShardError` naming the file and row group."""
    try:
        yield
    except (PoolSchemaError, ShardError):
        raise
    except (OSError, pa.ArrowException, ValueError) as exc:
        detail = first_line(exc)
        raise ShardError(f"Cannot read {path!r} row group {group}: {detail}") from None
