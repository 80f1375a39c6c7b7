"""Pool resolution, feature layouts, shard planning and streaming reads (pyarrow only)."""

from __future__ import annotations

import os
from itertools import pairwise

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alscale.datasets import feature_array, make_pool, mixture
from alscale.exceptions import ConfigError, PoolError, PoolSchemaError, ShardError
from alscale.pool import decode_features, detect_features, iter_shard, plan_shards, read_id_file, resolve_pool
from alscale.pool.files import reads_path


@pytest.mark.parametrize("layout", ["binary", "list", "columns"])
def test_layouts_decode_to_the_same_array(tmp_path, layout):
    X, _ = mixture(1000, 6, 10, 3)
    table = pa.table({"id": np.arange(1000), **feature_array(X, layout)})
    (tmp_path / layout).mkdir()
    pq.write_table(table, tmp_path / layout / "p.parquet", row_group_size=300)
    pool = resolve_pool(str(tmp_path / layout))
    spec = detect_features(pool.schema, "id")
    assert spec.kind == layout and spec.width == 6
    shard = plan_shards(pool, 1)[0]
    batches = list(iter_shard(None, shard, spec, "id", 128))
    assert max(len(b.ids) for b in batches) == 128
    np.testing.assert_array_equal(np.concatenate([b.features for b in batches]), X)
    np.testing.assert_array_equal(np.concatenate([b.ids for b in batches]), np.arange(1000))


def test_binary_decode_is_zero_copy_and_respects_slices():
    X = np.arange(40, dtype=np.float32).reshape(10, 4)
    batch = pa.record_batch(feature_array(X, "binary"))
    spec = detect_features(batch.schema, "id")
    out = decode_features(batch.slice(3, 4), spec)
    np.testing.assert_array_equal(out, X[3:7])
    assert not out.flags.owndata  # a view on Arrow's buffer


def test_null_feature_rows_become_nan():
    arr = pa.FixedSizeListArray.from_arrays(pa.array(np.ones(6, np.float32)), 2)
    arr = pa.array([[1.0, 2.0], None, [3.0, 4.0]], type=pa.list_(pa.float32(), 2))
    out = decode_features(pa.record_batch({"features": arr}), detect_features(pa.schema([("features", arr.type)]), "id"))
    assert np.isnan(out[1]).all() and out[2].tolist() == [3.0, 4.0]


def _rows_by_group(shards):
    """{(path, row group): sorted [(first, stop)]} over every piece of every shard."""
    spans = {}
    for shard in shards:
        for p in shard.pieces:
            spans.setdefault((p.path, p.row_group), []).append((p.first, p.stop))
    return {key: sorted(v) for key, v in spans.items()}


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 30])
def test_shards_are_equal_to_the_row_and_cover_every_row_once(tmp_path, n):
    make_pool(tmp_path / "p", 10_000, n_features=2, files=3, row_group_size=700)
    pool = resolve_pool(str(tmp_path / "p"))
    shards = plan_shards(pool, n)
    sizes = [s.rows for s in shards]
    assert len(shards) == n and sum(sizes) == 10_000 and max(sizes) - min(sizes) <= 1
    spans = _rows_by_group(shards)
    for f in pool.files:
        for g, rows in enumerate(f.row_groups):
            covered = spans.pop((f.path, g))
            assert covered[0][0] == 0 and covered[-1][1] == rows, (f.path, g, covered)
            assert all(a[1] == b[0] for a, b in pairwise(covered)), covered  # no gap, no overlap
    assert not spans
    # in file order: each shard starts where the one before it stopped
    order = [(f.path, g) for f in pool.files for g in range(len(f.row_groups))]
    flat = [(order.index((p.path, p.row_group)), p.first) for s in shards for p in s.pieces]
    assert flat == sorted(flat)


def test_a_cut_on_a_row_group_boundary_splits_nothing(tmp_path):
    make_pool(tmp_path / "p", 4_000, n_features=2, files=2, row_group_size=1_000)
    shards = plan_shards(resolve_pool(str(tmp_path / "p")), 4)
    assert [[(p.row_group, p.first, p.rows) for p in s.pieces] for s in shards] == [[(0, 0, 1000)], [(1, 0, 1000)]] * 2


def test_more_shards_than_row_groups_split_them(tmp_path):
    make_pool(tmp_path / "p", 100, n_features=2, row_group_size=60)
    shards = plan_shards(resolve_pool(str(tmp_path / "p")), 8)
    assert sorted({s.rows for s in shards}) == [12, 13]
    assert len(shards) == 8 and sum(s.rows for s in shards) == 100
    assert len(plan_shards(resolve_pool(str(tmp_path / "p")), 500)) == 100  # never an empty shard


@pytest.mark.parametrize("read_pages", [True, False])
@pytest.mark.parametrize("layout", ["binary", "list"])
def test_pieces_of_a_row_group_read_exactly_their_rows(tmp_path, layout, read_pages):
    """Shards cut inside row groups give back the pool's rows in order, once each, whatever the batch size."""
    X, _ = mixture(2_500, 6, 10, 3)
    table = pa.table({"id": np.arange(2_500) * 3, **feature_array(X, layout)})
    (tmp_path / "p").mkdir()
    pq.write_table(table, tmp_path / "p" / "a.parquet", row_group_size=1_000, compression="none")
    pool = resolve_pool(str(tmp_path / "p"))
    spec = detect_features(pool.schema, "id")
    for n, batch in ((3, 128), (7, 1000), (4, 333)):
        shards = plan_shards(pool, n)
        assert any(p.first > 0 for s in shards for p in s.pieces)  # some row group is split
        parts = [list(iter_shard(None, s, spec, "id", batch, read_pages=read_pages)) for s in shards]
        for shard, batches in zip(shards, parts):
            assert sum(len(b.ids) for b in batches) == shard.rows
            assert max(len(b.ids) for b in batches) <= batch
        got = [b for batches in parts for b in batches]
        np.testing.assert_array_equal(np.concatenate([b.ids for b in got]), np.arange(2_500) * 3)
        np.testing.assert_array_equal(np.concatenate([b.features for b in got]), X)


def test_glob_and_single_file(tmp_path):
    make_pool(tmp_path / "p", 900, n_features=2, files=3)
    assert len(resolve_pool(str(tmp_path / "p" / "part-0000[01].parquet")).files) == 2
    assert resolve_pool(str(tmp_path / "p" / "part-00000.parquet")).rows == 300
    assert resolve_pool("file://" + str(tmp_path / "p")).rows == 900


def test_missing_corrupt_empty_and_idless_pools(tmp_path):
    with pytest.raises(PoolError, match="does not exist"):
        resolve_pool(str(tmp_path / "nope"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(PoolSchemaError, match="not readable Parquet"):
        resolve_pool(str(tmp_path / "bad.parquet"))
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "x": pa.array([], pa.float32())}), tmp_path / "empty.parquet")
    with pytest.raises(PoolError, match="empty"):
        resolve_pool(str(tmp_path / "empty.parquet"))


def test_feature_detection_errors():
    schema = pa.schema([("id", pa.int64()), ("a", pa.list_(pa.float32(), 3)), ("b", pa.list_(pa.float32(), 3))])
    with pytest.raises(PoolSchemaError, match="--features"):
        detect_features(schema, "id")
    assert detect_features(schema, "id", ["b"]).columns == ("b",)
    with pytest.raises(PoolSchemaError, match="not in the pool"):
        detect_features(schema, "id", ["zz"])
    mixed = pa.schema([("id", pa.int64()), ("x", pa.float32()), ("text", pa.string())])
    with pytest.raises(PoolSchemaError, match="--features"):
        detect_features(mixed, "id")


def test_corrupt_row_group_names_file_and_group(tmp_path):
    make_pool(tmp_path / "p", 400, n_features=4, row_group_size=100, compression="snappy")
    path = tmp_path / "p" / "part-00000.parquet"
    meta = pq.ParquetFile(path).metadata
    col = meta.row_group(2).column(1)
    data = bytearray(path.read_bytes())
    start = col.data_page_offset
    data[start + 8 : start + 40] = b"\xff" * 32  # scribble over the page of row group 2
    path.write_bytes(bytes(data))
    pool = resolve_pool(str(tmp_path / "p"))
    spec = detect_features(pool.schema, "id")
    with pytest.raises(ShardError, match=r"row group 2"):
        for _ in iter_shard(None, plan_shards(pool, 1)[0], spec, "id", 50):
            pass


def test_id_files(tmp_path):
    (tmp_path / "ids.txt").write_text("3\n\n5\n")
    (tmp_path / "ids.csv").write_text("id,other\n7,x\n8,y\n")
    pq.write_table(pa.table({"id": [9, 10]}), tmp_path / "ids.parquet")
    assert read_id_file(tmp_path / "ids.txt").tolist() == [3, 5]
    assert read_id_file(tmp_path / "ids.csv").tolist() == [7, 8]
    assert read_id_file(tmp_path / "ids.parquet").tolist() == [9, 10]
    with pytest.raises(ConfigError, match="Cannot read id file"):
        read_id_file(tmp_path / "missing.txt")
    (tmp_path / "words.txt").write_text("abc\n")
    with pytest.raises(ConfigError, match="integers"):
        read_id_file(tmp_path / "words.txt")


def test_id_files_that_cannot_match_are_refused_with_one_line(tmp_path):
    (tmp_path / "big.txt").write_text("5\n99999999999999999999\n")
    with pytest.raises(ConfigError, match=r"holds '99999999999999999999', but the pool's ids are integers \(int64\)"):
        read_id_file(tmp_path / "big.txt")
    (tmp_path / "short.csv").write_text("name,id\na,1\nb\n")
    with pytest.raises(ConfigError, match="expected a value in column 'id' of every row. Got none in line 3"):
        read_id_file(tmp_path / "short.csv")
    for values, bad in (([1.0, 2.0], "1.0"), (["a", None], "None")):
        pq.write_table(pa.table({"id": values}), tmp_path / "ids.parquet")
        with pytest.raises(ConfigError, match=f"holds {bad}, but the pool's ids are strings"):
            read_id_file(tmp_path / "ids.parquet", as_int=False)
    pq.write_table(pa.table({"id": [7, 8]}), tmp_path / "ints.parquet")  # integer ids of a string pool stay usable
    assert read_id_file(tmp_path / "ints.parquet", as_int=False).tolist() == ["7", "8"]


@pytest.mark.parametrize("tail", ["", "".join(f"{i}\n" for i in range(100, 40_000))])
def test_a_csv_id_file_with_a_quote_left_open_is_refused_naming_its_line(tmp_path, tail):
    """Short or past csv's field limit, the rest of the file would be one id: refused in one line."""
    (tmp_path / "ids.csv").write_text('id\n5\n"17\n' + tail)
    with pytest.raises(ConfigError, match=r"ids.csv': line 3: .*\(a quote left open\?\)\.$"):
        read_id_file(tmp_path / "ids.csv")


def test_iter_ids_matches_the_full_reader(tmp_path):
    from alscale.pool.reader import iter_ids

    make_pool(tmp_path / "p", 3_000, n_features=4, files=2, row_group_size=700)
    pool = resolve_pool(str(tmp_path / "p"))
    spec = detect_features(pool.schema, "id")
    for shard in plan_shards(pool, 2):
        full = np.concatenate([b.ids for b in iter_shard(None, shard, spec, "id", 256)])
        only = np.concatenate([b.ids for b in iter_ids(None, shard, "id")])
        np.testing.assert_array_equal(only, full)


def test_key_order_follows_batches_without_keeping_keys():
    from alscale.engine.worker import KeyOrder, bucket_keys

    order = KeyOrder()
    for part in ([1, 5, 9], [], [10, 30]):
        order.add(np.array(part, np.uint64))
    assert order.range == (1, 30)
    for parts in (([1, 5, 9], [9, 30]), ([1, 5, 4], [10]), ([3], [2])):
        order = KeyOrder()
        for part in parts:
            order.add(np.array(part, np.uint64))
        assert order.range is None, parts
    assert KeyOrder().range is None  # an empty shard proves nothing

    buckets = bucket_keys([np.array([9, 1, 5], np.uint64), np.array([30, 10], np.uint64)], 3)
    assert sorted(np.concatenate(buckets).tolist()) == [1, 5, 9, 10, 30]
    assert all((b % np.uint64(3) == i).all() for i, b in enumerate(buckets))


def _rss_file_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssFile:"))


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_reading_a_large_file_keeps_only_about_one_row_group_mapped(tmp_path):
    make_pool(tmp_path / "big", 200_000, n_features=64, files=1, row_group_size=20_000)  # ~51 MiB, 10 groups
    make_pool(tmp_path / "warm", 2_000, n_features=64, files=1, row_group_size=1_000)
    for name in ("warm", "big"):
        pool = resolve_pool(str(tmp_path / name))
        spec = detect_features(pool.schema, "id")
        before, peak, rows = _rss_file_kib(), 0, 0
        for batch in iter_shard(None, plan_shards(pool, 1)[0], spec, "id", 2048):
            rows += len(batch.ids)
            peak = max(peak, _rss_file_kib())
        grown_mib = (peak - before) / 1024
    assert rows == 200_000
    assert grown_mib < 15, f"{grown_mib:.1f} MiB of the 51 MiB file stayed mapped"


def test_files_whose_schemas_differ_are_named_with_the_difference(tmp_path):
    feats = pa.array([[0.5] * 4] * 3, pa.list_(pa.float32(), 4))
    pq.write_table(pa.table({"id": pa.array([1, 2, 3], pa.int64()), "features": feats}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": pa.array([4, 5, 6], pa.uint64()), "features": feats}), tmp_path / "b.parquet")
    with pytest.raises(PoolSchemaError, match="b.parquet' has id: uint64 where the first file has int64"):
        resolve_pool(str(tmp_path))
    pq.write_table(pa.table({"key": pa.array([4, 5, 6], pa.int64()), "features": feats}), tmp_path / "b.parquet")
    with pytest.raises(PoolSchemaError, match=r"columns \['key', 'features'\] where the first file has \['id', 'features'\]"):
        resolve_pool(str(tmp_path))


@pytest.mark.parametrize("values, bad", [([1.5, 2.0], "1.5"), (["7", "7.5"], "'7.5'")])
def test_fractional_ids_in_an_id_file_are_refused(tmp_path, values, bad):
    pq.write_table(pa.table({"id": values}), tmp_path / "ids.parquet")
    with pytest.raises(ConfigError, match=f"holds {bad}, but the pool's ids are integers"):
        read_id_file(tmp_path / "ids.parquet")
    pq.write_table(pa.table({"id": [3.0, 4.0]}), tmp_path / "whole.parquet")  # integral floats are ids
    assert read_id_file(tmp_path / "whole.parquet").tolist() == [3, 4]


def test_a_file_rewritten_in_place_changes_the_fingerprint(tmp_path):
    """Same ids, sizes and row counts, new features: checkpoints and cached clusterings must not match it."""
    import os

    make_pool(tmp_path / "p", 2000, n_features=8, seed=0)
    before = resolve_pool(str(tmp_path / "p")).fingerprint()
    again = resolve_pool(str(tmp_path / "p")).fingerprint()
    assert again == before  # nothing changed: the same fingerprint
    (path,) = (tmp_path / "p").glob("*.parquet")
    stat = path.stat()
    make_pool(tmp_path / "p", 2000, n_features=8, seed=1)  # regenerated: other features
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # at least a second later, whatever the clock
    after = resolve_pool(str(tmp_path / "p")).fingerprint()
    assert [f["size"] for f in after["files"]] == [f["size"] for f in before["files"]]
    assert after["sha256"] != before["sha256"]


@pytest.mark.parametrize("as_uri", [False, True])
def test_write_file_atomic_and_read_file_round_trip(tmp_path, as_uri):
    from alscale.engine.storage import read_file, write_file_atomic

    folder = tmp_path / "deep" / "folder"
    location = f"file://{folder}" if as_uri else str(folder)
    path = write_file_atomic(location, "state-00003.pkl", b"first")
    write_file_atomic(location, "state-00003.pkl", b"second")  # replaces it
    assert path == str(folder / "state-00003.pkl")
    assert read_file(location, "state-00003.pkl") == b"second" == (folder / "state-00003.pkl").read_bytes()
    assert [p.name for p in folder.iterdir()] == ["state-00003.pkl"]  # no temporary file left


def test_a_file_shorter_than_its_plan_is_a_shard_error(tmp_path):
    """A file rewritten with fewer rows after the plan was made: every reader names what it expected."""
    from alscale.pool.reader import iter_ids

    make_pool(tmp_path / "p", 1_000, n_features=4, row_group_size=1_000)
    pool = resolve_pool(str(tmp_path / "p"))
    spec = detect_features(pool.schema, "id")
    last = plan_shards(pool, 2)[1]
    make_pool(tmp_path / "p", 600, n_features=4, row_group_size=1_000)  # same path, fewer rows
    for read in (lambda: iter_shard(None, last, spec, "id", 128), lambda: iter_shard(None, last, spec, "id", 128, read_pages=False),
                 lambda: iter_ids(None, last, "id")):
        with pytest.raises(ShardError, match=r"row group 0: it has 600 rows, the plan expected 1000"):
            list(read())


def test_files_that_differ_only_in_nullability_make_one_pool(tmp_path):
    strict = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("x", pa.float32())])
    (tmp_path / "p").mkdir()
    pq.write_table(pa.table({"id": [1, 2], "x": [0.5, 1.5]}, schema=strict), tmp_path / "p" / "a.parquet")
    pq.write_table(pa.table({"id": pa.array([3], pa.int64()), "x": pa.array([2.5], pa.float32())}), tmp_path / "p" / "b.parquet")
    assert resolve_pool(str(tmp_path / "p")).rows == 3
    pq.write_table(pa.table({"id": pa.array([4], pa.int32()), "x": pa.array([2.5], pa.float32())}), tmp_path / "p" / "c.parquet")
    with pytest.raises(PoolSchemaError, match="id: int32 where the first file has int64"):
        resolve_pool(str(tmp_path / "p"))


def test_an_unreadable_folder_inside_a_pool_is_an_error(tmp_path, monkeypatch):
    import os

    for sub in ("a", "b"):
        (tmp_path / "p" / sub).mkdir(parents=True)
        pq.write_table(pa.table({"id": [1 if sub == "a" else 2], "x": [0.5]}), tmp_path / "p" / sub / "f.parquet")
    real = os.scandir

    def scandir(path="."):  # root reads every folder: a permission error can only be staged
        if str(path).endswith(os.sep + "b"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(PoolError, match=r"Cannot open pool .*Permission denied"):
        resolve_pool(str(tmp_path / "p"))


def test_a_failed_write_to_another_filesystem_leaves_no_temporary_file(monkeypatch):
    """On a remote filesystem (here pyarrow's in-memory one) the move fails: its temporary file goes too."""
    import pyarrow.fs as pafs

    from alscale.engine import storage

    filesystem = pafs._MockFileSystem()
    monkeypatch.setattr(storage, "split_location", lambda location: (filesystem, "bucket/run"))
    filesystem.create_dir("bucket/run/state-00001.pkl")  # a folder where the file should go: the move fails
    with pytest.raises(OSError):
        storage.write_file_atomic("mock://bucket/run", "state-00001.pkl", b"state")
    left = filesystem.get_file_info(pafs.FileSelector("bucket/run"))
    assert [(info.base_name, info.type) for info in left] == [("state-00001.pkl", pafs.FileType.Directory)]


@pytest.mark.parametrize("as_uri", [False, True])
def test_a_folder_skips_names_starting_with_dot_or_underscore_at_any_depth(tmp_path, as_uri):
    """A Spark job still writing (``_temporary/``) or a hidden part: skipped as a path and as a URI, as pyarrow's datasets do."""
    import pyarrow.dataset as ds

    table = pa.table({"id": np.arange(3), "x": np.ones(3, np.float32)})
    for name in ("part-0.parquet", "sub/part-1.parquet", "_temporary/0/part-0.parquet", ".part-2.parquet", "sub/.hidden/p.parquet",
                 "sub/_p.parquet"):
        (tmp_path / "pool" / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp_path / "pool" / name)
    spec = f"file://{tmp_path / 'pool'}" if as_uri else str(tmp_path / "pool")
    found = sorted(os.path.relpath(f.path, tmp_path / "pool") for f in resolve_pool(spec).files)
    assert found == ["part-0.parquet", "sub/part-1.parquet"]
    assert sorted(os.path.relpath(f, tmp_path / "pool") for f in ds.dataset(tmp_path / "pool").files) == found


def test_the_loop_and_the_queues_list_a_folder_as_the_engine_does(tmp_path):
    """A Spark job's _temporary/ part was skipped by the engine but read by the workspace and the queues."""
    from alscale.loop._pool import pool_files
    from alscale.queues.base import _pool_files

    table = pa.table({"id": np.arange(3), "x": np.ones(3, np.float32)})
    for name in ("part-0.parquet", "_temporary/0/part-0.parquet", ".part-1.parquet", "sub/part-2.parquet"):
        (tmp_path / "pool" / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp_path / "pool" / name)
    engine = [f.path for f in resolve_pool(str(tmp_path / "pool")).files]
    assert len(engine) == 2
    assert pool_files(tmp_path / "pool") == engine == _pool_files({"paths": [str(tmp_path / "pool")]})
    glob = str(tmp_path / "pool" / "**" / "*.parquet")  # a glob too: the workspace and the queues read _temporary/ parts before
    assert pool_files(glob) == [f.path for f in resolve_pool(glob).files] == _pool_files({"paths": [glob]}) == engine


_GLOB_LAYOUT = ("top.parquet", "sub/nested.parquet", "sub/deeper/d.parquet", "_temporary/0/t.parquet", ".hidden/h.parquet",
                "sub/_p.parquet", "sub/.q.parquet", "_SUCCESS", "notes.txt")


def _glob_reference(base, pattern):
    """Python's glob, then the folder's rule: no name below ``base`` starting with "." or "_" (the patterns name none)."""
    import glob

    found = [p for p in glob.glob(os.path.join(base, pattern), recursive=True, include_hidden=True) if os.path.isfile(p)]
    return sorted(p for p in found if not any(part.startswith((".", "_")) for part in os.path.relpath(p, base).split(os.sep)))


@pytest.mark.parametrize("pattern", ["*.parquet", "**/*.parquet", "*/*.parquet", "**/d.parquet", "sub/**/*.parquet", "**", "*/**/*.parquet",
                                     "s?b/*.parquet", "[st]*/*.parquet", "**/*"])
@pytest.mark.parametrize("as_uri", [False, True])
def test_a_glob_reads_the_same_files_as_a_path_and_as_a_uri(tmp_path, pattern, as_uri):
    """``*`` stays within a name, ``**`` matches zero or more folders, hidden and underscore names are skipped: as a path and as a URI."""
    from alscale.pool.files import _list_files

    for name in _GLOB_LAYOUT:
        (tmp_path / "pool" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pool" / name).write_bytes(b"x")
    base = str(tmp_path / "pool")
    if as_uri and "?" in pattern:
        pytest.skip("in a URI, '?' starts the query (s3://bucket/pool?region=...)")
    spec = f"file://{base}/{pattern}" if as_uri else f"{base}/{pattern}"
    expected = _glob_reference(base, pattern)
    assert expected  # every pattern here matches something
    assert _list_files(spec) == (None, expected)


def test_a_glob_reads_hidden_or_underscore_names_only_where_it_names_them(tmp_path):
    from alscale.pool.files import _list_files

    for name in _GLOB_LAYOUT:
        (tmp_path / "pool" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pool" / name).write_bytes(b"x")
    base = str(tmp_path / "pool")
    for prefix in ("", "file://"):
        assert _list_files(f"{prefix}{base}/_temporary/*/*.parquet")[1] == [f"{base}/_temporary/0/t.parquet"]
        assert _list_files(f"{prefix}{base}/sub/_*")[1] == [f"{base}/sub/_p.parquet"]
        assert _list_files(f"{prefix}{base}/.*/*.parquet")[1] == [f"{base}/.hidden/h.parquet"]
        assert _list_files(f"{prefix}{base}/nope/*.parquet")[1] == []


def test_a_relative_glob_keeps_its_spelling(tmp_path, monkeypatch):
    import glob

    from alscale.pool.files import glob_files

    for name in _GLOB_LAYOUT:
        (tmp_path / "pool" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pool" / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "pool")
    assert glob_files("**/*.parquet") == sorted(["top.parquet", "sub/nested.parquet", "sub/deeper/d.parquet"])
    assert glob_files("../pool/*.parquet") == glob.glob("../pool/*.parquet") == ["../pool/top.parquet"]


def test_a_spark_folder_reads_the_same_as_a_folder_and_as_a_glob(tmp_path):
    """A ``_temporary/`` part holding ids of the finished parts: the glob read it and failed on a duplicate id."""
    table = pa.table({"id": np.arange(3), "x": np.ones(3, np.float32)})
    for name in ("part-0.parquet", "_temporary/0/part-0.parquet"):
        (tmp_path / "pool" / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp_path / "pool" / name)
    folder = [f.path for f in resolve_pool(str(tmp_path / "pool")).files]
    assert folder == [str(tmp_path / "pool" / "part-0.parquet")]
    assert [f.path for f in resolve_pool(str(tmp_path / "pool" / "**" / "*.parquet")).files] == folder
    assert [f.path for f in resolve_pool(f"file://{tmp_path}/pool/**/*.parquet").files] == folder


def test_id_files_as_spreadsheets_write_them(tmp_path):
    """Excel's "CSV UTF-8" starts with a byte order mark; pandas writes an int column with gaps as 1011.0; a .CSV is a CSV."""
    cases = {
        "bom.csv": ("\ufeffid,label\r\n1011,a\r\n12,b\r\n", True, [1011, 12]),
        "bom-one.csv": ("\ufeffid\n1\n2\n", True, [1, 2]),
        "bom.txt": ("\ufeff5\n6\n", True, [5, 6]),
        "floats.csv": ("id\n1011.0\n-2.00\n9007199254740993.0\n", True, [1011, -2, 9007199254740993]),
        "UPPER.CSV": ("id,label\n1,a\n", True, [1]),
        "bom-str.csv": ("\ufeffid\ndoc a\ndoc b\n", False, ["doc a", "doc b"]),
        "other-header-int.csv": ("doc_id\n3\n4\n", True, [3, 4]),  # no integer id is called doc_id
    }
    for name, (text, as_int, expected) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8", newline="")
        assert read_id_file(tmp_path / name, "id", as_int).tolist() == expected, name
    for value in ("1011.5", "1e3", "1_000", "0x10"):
        (tmp_path / "bad.csv").write_text(f"id\n{value}\n")
        with pytest.raises(ConfigError, match=f"holds '{value}', but the pool's ids are integers"):
            read_id_file(tmp_path / "bad.csv")


def test_a_one_column_string_id_csv_must_be_headed_by_the_id_column(tmp_path):
    """"doc_id" over string ids could be a header or an id: refused, naming the column expected, not counted as an id."""
    (tmp_path / "ids.csv").write_text("doc_id\nx1\nx2\n")
    with pytest.raises(ConfigError, match=r"^Id file '.*ids\.csv' has one column headed 'doc_id'; expected the header 'id' \(--id-column\)\. "):
        read_id_file(tmp_path / "ids.csv", "id", as_int=False)
    assert read_id_file(tmp_path / "ids.csv", "doc_id", as_int=False).tolist() == ["x1", "x2"]


def test_glob_files_takes_a_plain_path_too(tmp_path):
    from alscale.pool.files import glob_files

    (tmp_path / "a.parquet").write_bytes(b"x")
    assert glob_files(str(tmp_path / "a.parquet")) == [str(tmp_path / "a.parquet")]
    assert glob_files(str(tmp_path / "gone.parquet")) == [] and glob_files(str(tmp_path / "gone" / "*.parquet")) == []


def test_a_glob_follows_linked_folders_as_pythons_glob_does(tmp_path):
    """os.walk does not enter a symlinked folder by itself: a linked partition's files were dropped, silently."""
    from alscale.pool.files import glob_files

    for name in ("pool/a.parquet", "elsewhere/e.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "pool" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for pattern in ("pool/*/*.parquet", "pool/**/*.parquet", "pool/linked*/*.parquet"):
        expected = _glob_reference(str(tmp_path / "pool"), pattern.split("/", 1)[1])
        assert glob_files(str(tmp_path / pattern)) == expected
        assert str(tmp_path / "pool" / "linked" / "e.parquet") in expected
    # a link back up the tree: Python's glob goes round it until the path is too long; each folder is walked once here
    (tmp_path / "elsewhere" / "back").symlink_to(tmp_path / "pool", target_is_directory=True)
    assert glob_files(str(tmp_path / "pool/**/*.parquet")) == [str(tmp_path / "pool/a.parquet"), str(tmp_path / "pool/linked/e.parquet")]


@pytest.mark.parametrize("form", ["folder", "folder-uri", "glob", "glob-uri"])
def test_linked_folders_are_read_once_whichever_way_the_pool_is_named(tmp_path, form):
    """A folder skipped linked partitions (os.walk), and a URI read each file once per trip round a link loop (41 times)."""
    from alscale.pool.files import _list_files

    for name in ("pool/a.parquet", "pool/sub/b.parquet", "elsewhere/e.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "pool" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "pool" / "sub" / "back").symlink_to(tmp_path / "pool", target_is_directory=True)  # a loop
    base = str(tmp_path / "pool")
    spec = {"folder": base, "folder-uri": f"file://{base}", "glob": f"{base}/**/*.parquet", "glob-uri": f"file://{base}/**/*.parquet"}[form]
    assert _list_files(spec) == (None, [f"{base}/a.parquet", f"{base}/linked/e.parquet", f"{base}/sub/b.parquet"])


def test_reads_path_answers_what_the_pool_would_read(tmp_path):
    pool = tmp_path / "pool"
    (pool / "part").mkdir(parents=True)
    batch = pool / "part" / "out" / "batch.parquet"
    assert reads_path(str(pool), batch) and reads_path(f"file://{pool}", batch)
    assert not reads_path(str(pool), pool / "_out" / "batch.parquet")  # a folder skips "_" names, as pyarrow does
    assert not reads_path(str(pool), tmp_path / "pool-out" / "batch.parquet")  # a sibling whose name starts alike
    assert reads_path(f"{pool}/**/*.parquet", batch) and not reads_path(f"{pool}/*.parquet", batch)
    assert reads_path(f"{pool}/*/*/*.parquet", batch) and not reads_path(f"{pool}/*/*.parquet", batch)
    single = pool / "a.parquet"
    assert reads_path(str(single), single) and not reads_path(str(single), batch)
    assert not reads_path("s3://bucket/pool", batch)
    old = os.getcwd()
    os.chdir(tmp_path)
    try:  # relative specs and paths
        assert reads_path("pool", "pool/part/out/batch.parquet") and reads_path("pool/**/*.parquet", batch)
    finally:
        os.chdir(old)


# --- 2026-12-08 review: a path that exists is read as it is, glob characters and all ---------------------------

def test_an_existing_path_with_glob_characters_is_read_as_it_is(tmp_path):
    """``pools/run[1]`` exists, yet was read as a glob (matching ``run1``) and reported as "does not exist"."""
    make_pool(tmp_path / "run[1]", 600, n_features=2, files=2)
    assert resolve_pool(str(tmp_path / "run[1]")).rows == 600
    assert resolve_pool(str(tmp_path / "run[1]" / "part-00000.parquet")).rows == 300
    make_pool(tmp_path / "run1", 90, n_features=2, files=1)  # what the same spelling matches as a glob
    assert resolve_pool(str(tmp_path / "run[1]")).rows == 600
    assert resolve_pool(str(tmp_path / "run[1]" / "*.parquet")).rows == 90  # not a path: a glob, with Python's rules


def test_a_parquet_id_file_is_read_as_parquet_whatever_its_suffix(tmp_path):
    """``--exclude ids.pq`` was read as text: "'utf-8' codec can't decode byte 0xcc"."""
    for name in ("ids.pq", "ids.parq", "ids"):
        pq.write_table(pa.table({"id": pa.array([5, 3, 9], pa.int64())}), tmp_path / name)
        assert read_id_file(tmp_path / name).tolist() == [5, 3, 9]
    (tmp_path / "ids.txt").write_text("PAR\n7\n")  # text that merely starts like it
    with pytest.raises(ConfigError, match="'PAR'"):
        read_id_file(tmp_path / "ids.txt")


def test_a_feature_column_named_twice_is_refused(tmp_path):
    """``--features f0 --features f0 --features f2``: f0 fed the model twice and f1 never, silently."""
    schema = pa.schema([("id", pa.int64()), ("f0", pa.float32()), ("f1", pa.float32()), ("f2", pa.float32())])
    with pytest.raises(PoolSchemaError, match=r"Expected each feature column once. Got \['f0'\] more than once in \['f0', 'f0', 'f2'\]"):
        detect_features(schema, "id", ["f0", "f0", "f2"])
    assert detect_features(schema, "id", ["f0", "f1", "f2"]).width == 3
