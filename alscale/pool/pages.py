"""Feature rows read straight from a Parquet file's data pages, without decoding.

An uncompressed ``fixed_size_binary`` feature column written with PLAIN encoding stores each
page's rows as one run of float32 bytes: the ``(n, d)`` array the model reads is already in the
file.  Arrow's reader copies those bytes value by value into a new buffer (about 35-45 ns a row
for 64 features, over a tenth of a small model's own time).  Here :func:`feature_pages` finds
each page's values in the file, and :func:`read_rows` reads a batch's rows with one plain read
per page into the batch's array (or a buffer the caller reuses).  A read is cheaper than viewing
the memory-mapped pages: no page faults, and the rows are in the CPU cache when the model reads
them.

Only what can be read this way is: the column chunk must be uncompressed, flat (no repetition)
and free of nulls, and each data page PLAIN or dictionary-encoded (those rows are gathered from
the dictionary at once; pyarrow writes a column's first rows so).  Anything else, a page header
it cannot parse included, makes :func:`feature_pages` return None and the caller reads the row
group with Arrow, which also reports any damage in the file.

The page headers are Thrift compact-protocol structs (``parquet.thrift``: ``PageHeader``,
``DataPageHeader``, ``DataPageHeaderV2``, ``DictionaryPageHeader``); only the fields named below
are read, every other field is skipped by its type.
"""

from __future__ import annotations

import bisect
import io
import mmap
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq

__all__ = ["FeatureColumn", "Page", "feature_column", "feature_pages", "read_rows"]

# parquet.thrift enums
_DATA_PAGE, _DICTIONARY_PAGE, _DATA_PAGE_V2 = 0, 2, 3
_PLAIN, _PLAIN_DICTIONARY, _RLE, _RLE_DICTIONARY = 0, 2, 3, 8


class _Unreadable(Exception):
    """A page this module does not read (the row group goes to Arrow instead)."""


class Page(NamedTuple):
    """One data page's rows: where its PLAIN values start in the file, or its decoded rows.

    Attributes
    ----------
    first : int
        The page's first row, counted from the start of its row group.
    rows : int
    offset : int
        File offset of the first row's bytes (-1 for a decoded page).
    values : ndarray of shape (rows, d), float32, or None
        The rows of a dictionary-encoded page (None for a PLAIN one).
    """

    first: int
    rows: int
    offset: int
    values: np.ndarray | None = None


@dataclass(frozen=True)
class FeatureColumn:
    """Where a file keeps its feature column, as Parquet sees it.

    Attributes
    ----------
    index : int
        The column's leaf index in the file's Parquet schema.
    max_definition_level : int
        0 for a required column, 1 for a top-level optional one.
    byte_width : int
        Bytes per row (4 x features).
    """

    index: int
    max_definition_level: int
    byte_width: int


def feature_column(metadata: pq.FileMetaData, name: str, byte_width: int) -> FeatureColumn | None:
    """The leaf column ``name`` if it is a flat fixed-length byte array of ``byte_width`` bytes, else None."""
    schema = metadata.schema
    for i in range(len(schema)):
        column = schema.column(i)
        if column.path != name:
            continue
        if column.physical_type != "FIXED_LEN_BYTE_ARRAY" or column.length != byte_width:
            return None
        if column.max_repetition_level != 0 or column.max_definition_level > 1:
            return None
        return FeatureColumn(i, column.max_definition_level, byte_width)
    return None


def feature_pages(mapping: mmap.mmap, metadata: pq.FileMetaData, group: int, column: FeatureColumn) -> list[Page] | None:
    """Row group ``group``'s feature pages, or None if they cannot be read without Arrow.

    Parameters
    ----------
    mapping : mmap.mmap
        The whole file, mapped read-only (only page headers and dictionaries are read from it).
    metadata : pyarrow.parquet.FileMetaData
    group : int
    column : FeatureColumn

    Returns
    -------
    list of Page, or None
        In file order; their rows add up to the row group's.  O(pages) work: values are not read.
    """
    chunk = metadata.row_group(group).column(column.index)
    if chunk.compression != "UNCOMPRESSED":
        return None
    start = chunk.dictionary_page_offset if chunk.has_dictionary_page and chunk.dictionary_page_offset else chunk.data_page_offset
    end = start + chunk.total_compressed_size
    if start < 0 or end > len(mapping):
        return None
    try:
        pages = _read_pages(mapping, start, end, column)
    except (_Unreadable, IndexError, ValueError):
        return None
    if sum(p.rows for p in pages) != metadata.row_group(group).num_rows:
        return None
    return pages


def read_rows(file: io.FileIO, pages: list[Page], start: int, stop: int, width: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``start:stop`` of a row group's feature pages, as a (stop - start, width) float32 array.

    Each PLAIN page the range covers costs one read into the array; decoded pages are copied.
    A file shorter than its footer says raises :class:`OSError`.

    Parameters
    ----------
    out : ndarray of shape (m, width), float32, optional
        A C-contiguous buffer with ``m >= stop - start`` rows to read into; the rows are
        returned as a view of its first rows.  Without it, a new array is returned.
    """
    n = max(stop - start, 0)
    if out is None:
        out = np.empty((n, width), dtype=np.float32)
    else:
        if out.dtype != np.float32 or out.ndim != 2 or out.shape[0] < n or out.shape[1] != width or not out.flags.c_contiguous:
            raise ValueError(f"read_rows needs a C-contiguous float32 buffer of at least ({n}, {width}). Got {out.dtype} {out.shape}.")
        out = out[:n]
    if stop <= start:
        return out
    for page in pages[bisect.bisect_right(pages, start, key=lambda p: p.first) - 1 :]:
        if page.first >= stop:
            break
        lo, hi = max(start, page.first), min(stop, page.first + page.rows)
        target = out[lo - start : hi - start]
        if page.values is not None:
            target[...] = page.values[lo - page.first : hi - page.first]
        else:
            _read_into(file, page.offset + (lo - page.first) * width * 4, memoryview(target).cast("B"))
    return out


def _read_into(file: io.FileIO, offset: int, target: memoryview) -> None:
    file.seek(offset)
    while target.nbytes:
        n = file.readinto(target)
        if not n:
            raise OSError(f"unexpected end of file at byte {file.tell()}")
        target = target[n:]


def _read_pages(buf: mmap.mmap, pos: int, end: int, column: FeatureColumn) -> list[Page]:
    width = column.byte_width // 4
    dictionary = None
    pages: list[Page] = []
    first = 0  # the next data page's first row
    while pos < end:
        header, pos = _read_struct(buf, pos)
        size = header.get(3)  # compressed_page_size (the bytes that follow; uncompressed here)
        if size is None or size < 0 or pos + size > end:
            raise _Unreadable("page size")
        body_start, pos = pos, pos + size
        kind = header.get(1)
        if kind == _DICTIONARY_PAGE:
            n, encoding = _fields(header.get(7), 1, 2)
            if encoding not in (_PLAIN, _PLAIN_DICTIONARY) or n * column.byte_width != size:
                raise _Unreadable("dictionary page")
            dictionary = _rows(buf, body_start, n, width)
        elif kind == _DATA_PAGE:
            n, encoding, level_encoding = _fields(header.get(5), 1, 2, 3)
            values = body_start
            if column.max_definition_level:
                if level_encoding != _RLE:
                    raise _Unreadable("definition levels")
                length = int.from_bytes(buf[values : values + 4], "little")
                _expect_all_ones(buf, values + 4, values + 4 + length, n)
                values += 4 + length
            pages.append(_page_rows(buf, values, body_start + size, first, n, encoding, width, dictionary))
            first += n
        elif kind == _DATA_PAGE_V2:
            n, nulls, encoding, def_length, rep_length = _fields(header.get(8), 1, 2, 4, 5, 6)
            if nulls != 0 or rep_length != 0:
                raise _Unreadable("nulls or repetition levels")
            values = body_start + def_length  # v2 levels: no length prefix, never compressed
            pages.append(_page_rows(buf, values, body_start + size, first, n, encoding, width, dictionary))
            first += n
        else:
            raise _Unreadable("page type")
    return pages


def _page_rows(buf, start: int, end: int, first: int, n: int, encoding: int, width: int, dictionary: np.ndarray | None) -> Page:
    """A data page's ``n`` rows from row ``first`` on: where its PLAIN values are, or its rows
    gathered from the dictionary."""
    if encoding == _PLAIN:
        if (end - start) != n * width * 4:
            raise _Unreadable("values size")
        return Page(first, n, start)
    if encoding in (_PLAIN_DICTIONARY, _RLE_DICTIONARY) and dictionary is not None:
        bit_width = buf[start]
        indices = _rle_hybrid(buf, start + 1, end, bit_width, n)
        if indices.size and int(indices.max()) >= dictionary.shape[0]:
            raise _Unreadable("dictionary index")
        return Page(first, n, -1, dictionary[indices])
    raise _Unreadable("value encoding")


def _rows(buf, start: int, n: int, width: int) -> np.ndarray:
    return np.frombuffer(buf, dtype=np.float32, count=n * width, offset=start).reshape(n, width)


def _expect_all_ones(buf, start: int, end: int, n: int) -> None:
    """Definition levels (bit width 1) that must all be 1: a page without nulls.

    Writers encode ``n`` ones as one run (the header ``n << 1`` as a varint, then the byte 1);
    those bytes are compared as they are, anything else is decoded.
    """
    if buf[start:end] == _one_run(n):
        return
    levels = _rle_hybrid(buf, start, end, 1, n)
    if not levels.all():
        raise _Unreadable("nulls")


def _one_run(n: int) -> bytes:
    """The RLE encoding of ``n`` ones of bit width 1 as a single run."""
    header = n << 1
    out = bytearray()
    while header > 0x7F:
        out.append(header & 0x7F | 0x80)
        header >>= 7
    out.append(header)
    out.append(1)
    return bytes(out)


def _rle_hybrid(buf, pos: int, end: int, bit_width: int, n: int) -> np.ndarray:
    """Decode ``n`` values of Parquet's RLE / bit-packing hybrid encoding (levels, dictionary indices)."""
    if not 0 <= bit_width <= 32:
        raise _Unreadable("bit width")
    out = np.empty(n, dtype=np.int64)
    filled = 0
    value_bytes = (bit_width + 7) // 8
    while filled < n:
        if pos >= end:
            raise _Unreadable("levels or indices end early")
        header, pos = _varint(buf, pos)
        if header & 1:  # bit-packed: (header >> 1) groups of 8 values, bit_width bits each, LSB first
            count = (header >> 1) * 8
            nbytes = (header >> 1) * bit_width
            if count == 0 or pos + nbytes > end:
                raise _Unreadable("bit-packed run")
            bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=pos), bitorder="little")
            weights = np.left_shift(np.int64(1), np.arange(bit_width, dtype=np.int64))
            values = bits.reshape(-1, bit_width).astype(np.int64) @ weights if bit_width else np.zeros(count, np.int64)
            take = min(count, n - filled)
            out[filled : filled + take] = values[:take]
            pos += nbytes
        else:  # a run: (header >> 1) copies of one value
            count = header >> 1
            if count == 0 or pos + value_bytes > end:
                raise _Unreadable("run")
            take = min(count, n - filled)
            out[filled : filled + take] = int.from_bytes(buf[pos : pos + value_bytes], "little")
            pos += value_bytes
        filled += take
    return out


# -- Thrift compact protocol: just enough to read a page header ------------------------------------

_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)


def _fields(struct: dict | None, *ids: int) -> tuple[int, ...]:
    if struct is None:
        raise _Unreadable("missing page header")
    values = tuple(struct.get(i) for i in ids)
    if any(not isinstance(v, int) for v in values):
        raise _Unreadable("page header field")
    return values


def _varint(buf, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise _Unreadable("varint")


def _zigzag(buf, pos: int) -> tuple[int, int]:
    value, pos = _varint(buf, pos)
    return (value >> 1) ^ -(value & 1), pos


def _read_struct(buf, pos: int, depth: int = 0) -> tuple[dict, int]:
    """A struct as ``{field id: value}``: integers and nested structs; other values are skipped (None)."""
    if depth > 8:
        raise _Unreadable("nesting")
    fields: dict[int, object] = {}
    last = 0
    while True:
        byte = buf[pos]
        pos += 1
        kind = byte & 0x0F
        if kind == _STOP:
            return fields, pos
        delta = byte >> 4
        if delta:
            field = last + delta
        else:
            field, pos = _zigzag(buf, pos)
        last = field
        fields[field], pos = _read_value(buf, pos, kind, depth)


def _read_value(buf, pos: int, kind: int, depth: int) -> tuple[object, int]:
    if kind in (_TRUE, _FALSE):  # a struct field's bool lives in its type
        return kind == _TRUE, pos
    if kind == _BYTE:
        return buf[pos], pos + 1
    if kind in (_I16, _I32, _I64):
        return _zigzag(buf, pos)
    if kind == _DOUBLE:
        return None, pos + 8
    if kind == _BINARY:
        length, pos = _varint(buf, pos)
        return None, pos + length
    if kind == _STRUCT:
        return _read_struct(buf, pos, depth + 1)
    if kind in (_LIST, _SET):
        byte = buf[pos]
        pos += 1
        size, element = byte >> 4, byte & 0x0F
        if size == 15:
            size, pos = _varint(buf, pos)
        for _ in range(size):
            pos = _skip_element(buf, pos, element, depth)
        return None, pos
    if kind == _MAP:
        size, pos = _varint(buf, pos)
        if size:
            types = buf[pos]
            pos += 1
            for _ in range(size):
                pos = _skip_element(buf, pos, types >> 4, depth)
                pos = _skip_element(buf, pos, types & 0x0F, depth)
        return None, pos
    raise _Unreadable(f"thrift type {kind}")


def _skip_element(buf, pos: int, kind: int, depth: int) -> int:
    if kind in (_TRUE, _FALSE):  # inside a list or map a bool takes a byte
        return pos + 1
    return _read_value(buf, pos, kind, depth + 1)[1]
