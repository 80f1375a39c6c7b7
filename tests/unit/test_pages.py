"""Feature rows read from Parquet data pages without Arrow, checked against Arrow's own decoding."""

from __future__ import annotations

import mmap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alscale.datasets import feature_array
from alscale.exceptions import ShardError
from alscale.pool import detect_features, iter_shard, plan_shards, resolve_pool
from alscale.pool.pages import feature_column, feature_pages, read_rows

WIDTH = 8


def _features(n: int, distinct: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((distinct or n, WIDTH), dtype=np.float32)
    return X if distinct is None else X[rng.integers(0, distinct, n)]


def _write(path, X, *, nullable=True, **options) -> None:
    field = pa.field("features", pa.binary(WIDTH * 4), nullable=nullable)
    schema = pa.schema([pa.field("id", pa.int64()), field])
    table = pa.Table.from_arrays([pa.array(np.arange(len(X)) * 3 + 7), feature_array(X, "binary")["features"]], schema=schema)
    pq.write_table(table, path, compression=options.pop("compression", "none"), **options)


def _pages_of(path):
    """Every row group's pages, as :func:`feature_pages` sees them (None: read with Arrow)."""
    metadata = pq.ParquetFile(path).metadata
    with open(path, "rb") as handle:
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    column = feature_column(metadata, "features", WIDTH * 4)
    return [feature_pages(mapping, metadata, g, column) for g in range(metadata.num_row_groups)]


def _scan(path, batch_size):
    pool = resolve_pool(str(path))
    spec = detect_features(pool.schema, "id")
    return list(iter_shard(None, plan_shards(pool, 1)[0], spec, "id", batch_size))


def _arrow_features(path) -> np.ndarray:
    column = pq.read_table(path, columns=["features"]).column(0).combine_chunks()
    return np.frombuffer(column.buffers()[1], dtype=np.float32).reshape(-1, WIDTH)


LAYOUTS = {
    "plain, v1 pages": {"use_dictionary": False},
    "plain, v2 pages": {"use_dictionary": False, "data_page_version": "2.0"},
    "dictionary first, then plain (pyarrow's default)": {"dictionary_pagesize_limit": 4096},
    "dictionary first, v2 pages": {"dictionary_pagesize_limit": 4096, "data_page_version": "2.0"},
    "every page dictionary-encoded": {"distinct": 50},
    "small pages, a batch spans several": {"use_dictionary": False, "data_page_size": 700, "write_batch_size": 10},
    "required column": {"use_dictionary": False, "nullable": False},
    "page checksums and no statistics": {"dictionary_pagesize_limit": 4096, "write_page_checksum": True, "write_statistics": False},
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("batch_size", [1, 333, 4096])
def test_pages_read_the_same_rows_as_arrow(tmp_path, layout, batch_size):
    options = dict(LAYOUTS[layout])
    X = _features(3000, distinct=options.pop("distinct", None))
    path = tmp_path / "p.parquet"
    _write(path, X, row_group_size=1200, **options)
    assert all(pages is not None for pages in _pages_of(path))  # the page reader, not Arrow, reads them
    batches = _scan(path, batch_size)
    got = np.concatenate([b.features for b in batches])
    np.testing.assert_array_equal(got.view(np.uint32), _arrow_features(path).view(np.uint32))  # bit for bit
    np.testing.assert_array_equal(np.concatenate([b.ids for b in batches]), np.arange(3000) * 3 + 7)
    assert [len(b.ids) for b in batches] == [len(b.features) for b in batches]
    assert max(len(b.ids) for b in batches) == min(batch_size, 1200)  # batches never span row groups


def test_read_pages_false_reads_with_arrow_alone(tmp_path, monkeypatch):
    from alscale.pool import reader

    path = tmp_path / "p.parquet"
    _write(path, _features(1000), use_dictionary=False)
    monkeypatch.setattr(reader, "feature_pages", lambda *a: pytest.fail("the page reader ran"))
    pool = resolve_pool(str(path))
    batches = list(iter_shard(None, plan_shards(pool, 1)[0], detect_features(pool.schema, "id"), "id", 300, read_pages=False))
    np.testing.assert_array_equal(np.concatenate([b.features for b in batches]), _features(1000))


def test_dictionary_and_small_pages_are_really_exercised(tmp_path):
    """The layouts above cover what they name: decoded pages, and batches made of many pages."""
    _write(tmp_path / "d.parquet", _features(3000, distinct=50), row_group_size=1200)
    assert all(p.values is not None for pages in _pages_of(tmp_path / "d.parquet") for p in pages)
    _write(tmp_path / "s.parquet", _features(3000), row_group_size=1200, use_dictionary=False, data_page_size=700, write_batch_size=10)
    assert all(len(pages) >= 20 and all(p.values is None for p in pages) for pages in _pages_of(tmp_path / "s.parquet"))
    _write(tmp_path / "m.parquet", _features(3000), row_group_size=1200, dictionary_pagesize_limit=4096)
    kinds = {p.values is None for pages in _pages_of(tmp_path / "m.parquet") for p in pages}
    assert kinds == {True, False}


def test_read_rows_gives_any_range(tmp_path):
    X = _features(1000)
    path = tmp_path / "p.parquet"
    _write(path, X, use_dictionary=False, data_page_size=1000, write_batch_size=10)
    (pages,) = _pages_of(path)
    assert len(pages) > 10
    with open(path, "rb", buffering=0) as file:
        for start, stop in [(0, 1000), (0, 1), (999, 1000), (37, 38), (31, 513), (500, 500)]:
            np.testing.assert_array_equal(read_rows(file, pages, start, stop, WIDTH), X[start:stop])


def test_read_rows_fills_a_given_buffer(tmp_path):
    """With ``out``, rows land in the buffer's first rows (plain and dictionary pages alike) and come back as a view of it."""
    X = _features(1000)
    path = tmp_path / "p.parquet"
    _write(path, X, data_page_size=1000, write_batch_size=10, dictionary_pagesize_limit=4096)
    (pages,) = _pages_of(path)
    assert {p.values is None for p in pages} == {True, False}
    buffer = np.full((600, WIDTH), np.nan, dtype=np.float32)
    with open(path, "rb", buffering=0) as file:
        for start, stop in [(0, 600), (37, 38), (400, 1000), (999, 1000)]:
            got = read_rows(file, pages, start, stop, WIDTH, buffer)
            assert np.shares_memory(got, buffer) and got.shape == (stop - start, WIDTH)
            np.testing.assert_array_equal(got, X[start:stop])
            np.testing.assert_array_equal(buffer[: stop - start], X[start:stop])


@pytest.mark.parametrize(
    "buffer",
    [np.empty((10, WIDTH), np.float32), np.empty((100, WIDTH), np.float64), np.empty((100, WIDTH + 1), np.float32), np.empty((100, 2 * WIDTH), np.float32)[:, ::2]],
    ids=["too few rows", "float64", "wrong width", "not contiguous"],
)
def test_read_rows_refuses_a_buffer_that_does_not_fit(tmp_path, buffer):
    path = tmp_path / "p.parquet"
    _write(path, _features(100), use_dictionary=False)
    (pages,) = _pages_of(path)
    with open(path, "rb", buffering=0) as file, pytest.raises(ValueError, match="C-contiguous float32 buffer of at least \\(50, 8\\)"):
        read_rows(file, pages, 0, 50, WIDTH, buffer)


@pytest.mark.parametrize("name", ["plain, v1 pages", "dictionary first, then plain (pyarrow's default)", "small pages, a batch spans several"])
def test_a_reused_buffer_gives_every_batch_its_own_rows(tmp_path, name):
    """``reuse_buffer=True``: each batch, copied before the next is read, holds the rows a fresh array would.

    Row groups and shards cut mid-group are crossed, and the last batch of a group is short.
    """
    options = dict(LAYOUTS[name])
    X = _features(3000, distinct=options.pop("distinct", None))
    path = tmp_path / "p.parquet"
    _write(path, X, nullable=options.pop("nullable", True), row_group_size=1100, **options)
    pool = resolve_pool(str(path))
    spec = detect_features(pool.schema, "id")
    for shard in plan_shards(pool, 2):
        fresh = [(b.ids.copy(), b.features) for b in iter_shard(None, shard, spec, "id", 256)]
        reused = [(b.ids.copy(), b.features.copy()) for b in iter_shard(None, shard, spec, "id", 256, reuse_buffer=True)]
        assert len(reused) == len(fresh) > 4
        for (ids_a, a), (ids_b, b) in zip(fresh, reused):
            np.testing.assert_array_equal(ids_a, ids_b)
            np.testing.assert_array_equal(a, b)
    batches = iter_shard(None, plan_shards(pool, 1)[0], spec, "id", 256, reuse_buffer=True)
    first, second = next(batches).features, next(batches).features
    assert np.shares_memory(first, second)  # one buffer: the caller must be done with a batch before the next


@pytest.mark.parametrize(
    "case",
    ["compressed", "nulls", "list layout", "nested page-less columns"],
)
def test_what_the_pages_cannot_give_is_read_by_arrow(tmp_path, case):
    X = _features(500)
    path = tmp_path / "p.parquet"
    if case == "compressed":
        _write(path, X, compression="snappy")
        assert _pages_of(path) == [None]
    elif case == "nulls":
        column = pa.array([None if i % 7 == 0 else X[i].tobytes() for i in range(500)], type=pa.binary(WIDTH * 4))
        pq.write_table(pa.table({"id": np.arange(500), "features": column}), path, compression="none")
        assert _pages_of(path) == [None]
        X = X.copy()
        X[::7] = np.nan  # Arrow's reading: null rows are NaN rows
    elif case == "list layout":
        pq.write_table(pa.table({"id": np.arange(500), **feature_array(X, "list")}), path, compression="none")
        assert feature_column(pq.ParquetFile(path).metadata, "features", WIDTH * 4) is None
    else:
        nested = pa.array([{"a": i} for i in range(500)])
        table = pa.table({"meta": nested, "id": np.arange(500), **feature_array(X, "binary")})
        pq.write_table(table, path, compression="none")
        assert feature_column(pq.ParquetFile(path).metadata, "features", WIDTH * 4).index == 2  # a leaf index, not a field index
    got = np.concatenate([b.features for b in _scan(path, 128)])
    np.testing.assert_array_equal(got, X)


def test_a_damaged_page_header_leaves_the_row_group_to_arrow(tmp_path):
    path = tmp_path / "p.parquet"
    _write(path, _features(2000), use_dictionary=False, data_page_size=2000, write_batch_size=10)
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(1)
    data = bytearray(path.read_bytes())
    data[chunk.data_page_offset : chunk.data_page_offset + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    assert _pages_of(path) == [None]
    with pytest.raises(ShardError, match=r"p\.parquet' row group 0"):
        _scan(path, 256)


def test_a_read_past_the_end_of_the_file_is_an_error(tmp_path):
    """Pages that end past the file's end (a file cut short after its footer was read) raise, never return short rows."""
    path = tmp_path / "p.parquet"
    _write(path, _features(2000), use_dictionary=False, row_group_size=1000)
    pages = _pages_of(path)[1]
    last = pages[-1]
    short = tmp_path / "short.parquet"
    short.write_bytes(path.read_bytes()[: last.offset + 10])  # the same bytes, ending inside the last page
    with open(short, "rb", buffering=0) as file, pytest.raises(OSError, match="end of file"):
        read_rows(file, pages, last.first, last.first + last.rows, WIDTH)


@pytest.mark.parametrize(
    ("encoded", "bit_width", "n", "expected"),
    [
        (bytes([0x0A, 1]), 1, 5, [1, 1, 1, 1, 1]),  # a run of five 1s
        (bytes([0x03, 0b10110101]), 1, 8, [1, 0, 1, 0, 1, 1, 0, 1]),  # one bit-packed group, LSB first
        (bytes([0x03, 0x88, 0xC6, 0xFA]), 3, 8, [0, 1, 2, 3, 4, 5, 6, 7]),  # the Parquet spec's example
        (bytes([0x04, 0x2C, 0x01, 0x03, 0xFF]), 9, 3, [300, 300, 255]),  # a 2-byte run value, then a packed group
    ],
)
def test_rle_hybrid_decodes_known_encodings(encoded, bit_width, n, expected):
    from alscale.pool.pages import _rle_hybrid

    padded = encoded + bytes(16)
    assert _rle_hybrid(padded, 0, len(padded), bit_width, n).tolist() == expected


@pytest.mark.parametrize(
    ("encoded", "reason"),
    [
        (bytes([0x01]) + bytes(8), "bit-packed run"),  # zero groups of eight, then bytes that would decode
        (bytes([0x00, 0x00]), "run"),  # a run of zero values
        (bytes([0x0A]), "run"),  # a run of five whose value byte is missing
    ],
)
def test_rle_hybrid_refuses_empty_or_truncated_runs(encoded, reason):
    from alscale.pool.pages import _rle_hybrid, _Unreadable

    with pytest.raises(_Unreadable, match=f"^{reason}$"):  # refused by the run's own check, not by running out of bytes
        _rle_hybrid(encoded, 0, len(encoded), 1, 5)


@pytest.mark.parametrize("n", [1, 63, 64, 8191, 8192, 20_000, 1 << 21])
def test_one_run_is_the_rle_encoding_of_n_ones(n):
    from alscale.pool.pages import _one_run, _rle_hybrid

    encoded = _one_run(n)
    assert _rle_hybrid(encoded, 0, len(encoded), 1, n).tolist() == [1] * n


@pytest.fixture
def rle_calls(monkeypatch):
    """``(bit_width, n)`` of every RLE/bit-packing decode from here on."""
    from alscale.pool import pages

    calls = []
    real = pages._rle_hybrid
    monkeypatch.setattr(pages, "_rle_hybrid", lambda buf, pos, end, bit_width, n: calls.append((bit_width, n)) or real(buf, pos, end, bit_width, n))
    return calls


def test_all_ones_levels_are_compared_as_bytes_and_other_encodings_decoded(rle_calls):
    from alscale.pool.pages import _expect_all_ones, _one_run, _Unreadable

    _expect_all_ones(_one_run(1000), 0, len(_one_run(1000)), 1000)  # a writer's single run: no decoding
    assert [n for _, n in rle_calls] == []
    _expect_all_ones(bytes([0x03, 0xFF]), 0, 2, 8)  # eight ones, bit-packed: decoded, and accepted
    assert [n for _, n in rle_calls] == [8]
    with pytest.raises(_Unreadable, match="nulls"):
        _expect_all_ones(bytes([0x03, 0b11110111]), 0, 2, 8)  # one null among them


def test_pyarrow_writes_the_levels_of_a_column_without_nulls_as_one_run(tmp_path, rle_calls):
    """The byte comparison is the path real files take (levels are never decoded for them)."""
    path = tmp_path / "p.parquet"
    _write(path, _features(5000), use_dictionary=False, data_page_size=4096)
    assert all(p is not None and len(p) > 1 for p in _pages_of(path))
    assert 1 not in [width for width, _ in rle_calls]  # no bit width 1 decoding: definition levels were compared, not decoded
