"""Selections on a real local Ray against a single-process numpy reference."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import alscale
from alscale.exceptions import (
    DuplicateIdError,
    InvalidFeaturesError,
    ModelError,
    PoolExhaustedError,
)
from alscale.model.session import BATCH_SIZE_CANDIDATES
from alscale.reduce import top_k_order
from alscale.rowrandom import id_keys
from alscale.strategies import entropy, least_confidence, margin, random_scores
from tests.conftest import read_pool_arrays, reference_probs, tied_features, write_pool

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]

SCORERS = {
    "entropy": lambda p, ids, seed: entropy(p),
    "margin": lambda p, ids, seed: margin(p),
    "least-confidence": lambda p, ids, seed: least_confidence(p),
    "random": lambda p, ids, seed: random_scores(id_keys(ids), seed),
}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    return write_pool(root / "pool", tied_features(6000), files=3, row_group_size=400)


@pytest.fixture(scope="module")
def reference(pool, model_path):
    ids, X = read_pool_arrays(pool)
    return ids, reference_probs(model_path, X)


def _expected(reference, strategy, k, seed=0, exclude=()):
    ids, probs = reference
    keep = ~np.isin(ids, np.asarray(exclude, dtype=ids.dtype)) if len(exclude) else np.ones(len(ids), bool)
    scores = SCORERS[strategy](probs[keep], ids[keep], seed)
    return ids[keep][top_k_order(scores, ids[keep], k)].tolist()


@pytest.mark.parametrize("strategy", sorted(SCORERS))
@pytest.mark.parametrize("actors,batch_size", [(1, 4096), (2, 333), (3, 1000), (2, "auto")])
def test_selection_equals_single_process_reference(pool, model_path, reference, strategy, actors, batch_size):
    m = alscale.select(pool, model_path, strategy=strategy, k=75, actors=actors, batch_size=batch_size, seed=3)
    assert m.ids == _expected(reference, strategy, 75, seed=3)
    assert m.batch.column("rank").to_pylist() == list(range(1, 76))
    assert m.data["counts"]["rows_scored"] == 6000 and m.data["counts"]["shards"] == actors


def test_one_row_group_still_feeds_every_actor(tmp_path, model_path):
    """A pool written as a single row group is cut inside it: three actors, three equal shards."""
    path = write_pool(tmp_path / "one", tied_features(3001), files=1, row_group_size=10_000)
    assert pq.ParquetFile(next(path.glob("*.parquet"))).metadata.num_row_groups == 1
    ids, X = read_pool_arrays(path)
    m = alscale.select(path, model_path, strategy="entropy", k=50, actors=3, batch_size=256)
    assert m.data["counts"]["shards"] == 3 and len(m.data["memory"]["actor_peak_rss_mb"]) == 3
    assert m.data["counts"]["rows_scored"] == 3001
    assert m.ids == ids[top_k_order(entropy(reference_probs(model_path, X)), ids, 50)].tolist()


@pytest.mark.parametrize("strategy", ["entropy", "margin", "least-confidence"])
def test_a_logits_model_is_softmaxed_like_the_reference(pool, model_factory, strategy):
    """A model that outputs logits: the actors' softmax against the reference's own."""
    logits_model = model_factory(0, output="logits")
    ids, X = read_pool_arrays(pool)
    probs = reference_probs(logits_model, X)  # softmax computed here, independently
    m = alscale.select(pool, logits_model, strategy=strategy, k=60, actors=2, batch_size=500)
    assert m.ids == ids[top_k_order(SCORERS[strategy](probs, ids, 0), ids, 60)].tolist()
    np.testing.assert_allclose(np.asarray(m.batch.column("confidence")), probs[np.searchsorted(ids, m.ids)].max(1), rtol=1e-6)


def test_ties_are_broken_by_id(pool, model_path, reference):
    m = alscale.select(pool, model_path, strategy="entropy", k=200, actors=2)
    scores = np.asarray(m.batch.column("score"))
    ids = np.asarray(m.batch.column("id"))
    tied = scores[1:] == scores[:-1]
    assert tied.sum() > 50  # the fixture really has ties
    assert (ids[1:][tied] > ids[:-1][tied]).all()


def test_manifest_contents_and_byte_identical_batches(tmp_path, pool, model_path, reference):
    a = alscale.select(pool, model_path, strategy="margin", k=40, actors=1, out=tmp_path / "a")
    b = alscale.select(pool, model_path, strategy="margin", k=40, actors=3, batch_size=128, out=tmp_path / "b")
    assert (tmp_path / "a" / "batch.parquet").read_bytes() == (tmp_path / "b" / "batch.parquet").read_bytes()
    assert b.ids == a.ids and b.data["run_id"] != a.data["run_id"]
    table = pq.read_table(tmp_path / "a" / "batch.parquet")
    assert table.column_names == ["id", "rank", "score", "strategy", "predicted_class", "predicted_index", "confidence"]
    ids, probs = reference
    rows = np.searchsorted(ids, np.asarray(table.column("id")))
    np.testing.assert_array_equal(np.asarray(table.column("predicted_index")), probs[rows].argmax(1))
    np.testing.assert_allclose(np.asarray(table.column("confidence")), probs[rows].max(1), rtol=1e-6)
    d = a.data
    assert d["schema_version"] == 1 and d["k"] == 40 and d["strategy"]["name"] == "margin"
    assert len(d["model"]["sha256"][0]) == 64 and d["model"]["classes"] == ["0", "1", "2", "3"]
    assert [f["rows"] for f in d["pool"]["files"]] == [2000, 2000, 2000]
    assert {"plan", "startup", "score", "check_ids", "reduce"} <= set(d["timings"])
    assert {"alscale", "ray", "onnxruntime", "pyarrow"} <= set(d["versions"])
    assert alscale.Manifest.read(tmp_path / "a").ids == a.ids
    assert d["settings"]["batch_size"] == "auto" and set(d["batch_sizes"]) <= set(BATCH_SIZE_CANDIDATES)
    assert b.data["batch_sizes"] == [128, 128, 128]
    # read in record batches of several model runs (8 features: 8 runs of 128 rows are 32 KiB)
    assert b.data["read_batch_rows"] == [1024, 1024, 1024]
    assert all(r % s == 0 for r, s in zip(d["read_batch_rows"], d["batch_sizes"]))


def test_exclusion_files(tmp_path, pool, model_path, reference):
    first = alscale.select(pool, model_path, k=30, actors=2).ids
    (tmp_path / "labeled.txt").write_text("\n".join(map(str, first[:10])) + "\n")
    pq.write_table(__import__("pyarrow").table({"id": first[10:20]}), tmp_path / "pending.parquet")
    m = alscale.select(pool, model_path, k=30, actors=2, exclude=[tmp_path / "labeled.txt", tmp_path / "pending.parquet"])
    assert m.ids == _expected(reference, "entropy", 30, exclude=first[:20])
    assert not set(m.ids) & set(first[:20])
    assert m.data["counts"]["rows_excluded"] == 20 and m.data["counts"]["rows_scored"] == 5980
    # one file as a plain string or a path, not a list: the same as a list of one (a string was split into letters)
    for one in (str(tmp_path / "labeled.txt"), tmp_path / "labeled.txt"):
        assert alscale.select(pool, model_path, k=30, actors=1, exclude=one).ids == _expected(reference, "entropy", 30, exclude=first[:10])


def test_exhausted_after_exclusion(tmp_path, model_path):
    small = write_pool(tmp_path / "small", tied_features(150), row_group_size=50)
    (tmp_path / "ex.txt").write_text("\n".join(map(str, range(30))))
    with pytest.raises(PoolExhaustedError, match="Pool exhausted: 120 available / 500 requested"):
        alscale.select(small, model_path, k=500, exclude=[tmp_path / "ex.txt"], out=tmp_path / "out")
    with pytest.raises(PoolExhaustedError, match="Pool exhausted: 120 available / 121 requested"):
        alscale.select(small, model_path, k=121, exclude=[tmp_path / "ex.txt"], out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", ["list", "columns"])
def test_other_layouts_and_string_ids(tmp_path, model_path, layout):
    X = tied_features(900, distinct=400)
    ids = np.array([f"doc-{i:05d}" for i in range(900)])
    pool = write_pool(tmp_path / layout, X, ids, files=2, row_group_size=100, layout=layout)
    m = alscale.select(pool, model_path, strategy="entropy", k=25, actors=2)
    expected = ids[top_k_order(entropy(reference_probs(model_path, X)), ids, 25)].tolist()
    assert m.ids == expected and isinstance(m.ids[0], str)


def test_exclude_files_of_which_no_id_is_in_the_pool_are_warned_of(tmp_path, model_path, caplog):
    """Integer ids (another pool's, or the row numbers) excluding from a pool of string ids match none of its rows."""
    X = tied_features(300, distinct=100)
    ids = np.array([f"doc-{i:05d}" for i in range(300)])
    pool = write_pool(tmp_path / "pool", X, ids, row_group_size=100)
    (tmp_path / "numbers.txt").write_text("\n".join(map(str, range(10))) + "\n")
    with caplog.at_level("WARNING", logger="alscale"):
        m = alscale.select(pool, model_path, k=5, actors=1, exclude=[tmp_path / "numbers.txt"])
    assert m.data["counts"]["exclude_ids_given"] == 10 and m.data["counts"]["rows_excluded"] == 0
    assert "none of the 10 id(s) of the exclude files is in the pool, so nothing was excluded" in caplog.text
    (tmp_path / "some.txt").write_text("doc-00001\n7\n")  # one of two in the pool: no warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="alscale"):
        assert alscale.select(pool, model_path, k=5, actors=1, exclude=[tmp_path / "some.txt"]).data["counts"]["rows_excluded"] == 1
    assert "nothing was excluded" not in caplog.text
    caplog.clear()  # labeled files alone are no exclude files: their own warning says what did not match
    with caplog.at_level("WARNING", logger="alscale"):
        alscale.select(pool, model_path, k=5, actors=1, labeled=[tmp_path / "numbers.txt"])
    assert "10 labeled id(s) are not in the pool" in caplog.text and "exclude files" not in caplog.text


def test_duplicate_ids_across_files_name_an_id(tmp_path, model_path):
    X = tied_features(600)
    ids = np.arange(600)
    ids[450] = 17  # file 2 repeats an id of file 0
    pool = write_pool(tmp_path / "dup", X, ids, files=3, row_group_size=100)
    with pytest.raises(DuplicateIdError, match="Id 17 appears more than once"):
        alscale.select(pool, model_path, k=5, actors=3, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_ids_under_one_key_are_named_as_a_duplicate_or_as_a_hash_collision():
    """Two string ids whose 64-bit hashes meet (no such pair can be written down here) are not called a duplicate."""
    from alscale.engine.driver import duplicate_id_error

    assert str(duplicate_id_error(["a7", "a7"])) == "Id 'a7' appears more than once in the pool; ids must be unique."
    collision = str(duplicate_id_error(["a7", "q2"]))
    assert "Ids 'a7' and 'q2' have the same 64-bit key (a hash collision of string ids)" in collision and "appears" not in collision


def test_duplicate_found_when_each_shard_increases_but_ranges_overlap(tmp_path, model_path):
    # every shard's ids increase, so shards send no keys; the overlap makes actors re-read them
    X = tied_features(600)
    ids = np.concatenate([np.arange(0, 300), np.arange(250, 550)])  # 250..299 twice
    pool = write_pool(tmp_path / "overlap", X, ids, files=2, row_group_size=100)
    with pytest.raises(DuplicateIdError, match=r"Id 2[5-9]\d appears more than once"):
        alscale.select(pool, model_path, k=5, actors=2, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_interleaved_increasing_ids_are_not_duplicates(tmp_path, model_path):
    X = tied_features(600)
    ids = np.concatenate([np.arange(0, 600, 2), np.arange(1, 600, 2)])  # shards overlap in range only
    pool = write_pool(tmp_path / "interleaved", X, ids, files=2, row_group_size=100)
    m = alscale.select(pool, model_path, strategy="entropy", k=40, actors=2)
    expected = ids[top_k_order(entropy(reference_probs(model_path, X)), ids, 40)].tolist()
    assert m.ids == expected


def test_invalid_features_error_or_skip(tmp_path, model_path, ):
    X = tied_features(500)
    X[[7, 300, 301]] = np.nan
    X[400, 2] = np.inf
    pool = write_pool(tmp_path / "nan", X, row_group_size=100)
    with pytest.raises(InvalidFeaturesError, match=r"4 row\(s\) hold NaN, inf or null features \(e\.g\. id 7\)"):
        alscale.select(pool, model_path, k=5, actors=2, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    m = alscale.select(pool, model_path, k=5, actors=2, on_invalid="skip")
    assert m.data["counts"]["rows_invalid"] == 4 and m.data["counts"]["rows_scored"] == 496
    keep = np.isfinite(X).all(1)
    ids = np.arange(500)[keep]
    assert m.ids == ids[top_k_order(entropy(reference_probs(model_path, X[keep])), ids, 5)].tolist()


@pytest.mark.parametrize("strategy", ["qbc-vote", "qbc-kl"])
def test_committee_from_a_directory_equals_numpy(tmp_path, pool, model_factory, reference, strategy):
    import shutil

    from alscale.strategies.committee import kl_to_consensus, vote_entropy

    members = [model_factory(s) for s in (0, 1, 2)]
    folder = tmp_path / "committee"
    folder.mkdir()
    for i, m in enumerate(members):
        shutil.copy(m, folder / f"member-{i}.onnx")
    by_dir = alscale.select(pool, folder, strategy=strategy, k=30, actors=2)
    by_list = alscale.select(pool, [str(folder / f"member-{i}.onnx") for i in range(3)], strategy=strategy, k=30, actors=3)
    ids, _ = reference
    X = read_pool_arrays(pool)[1]
    stacked = np.stack([reference_probs(m, X) for m in members])
    scores = vote_entropy(stacked) if strategy == "qbc-vote" else kl_to_consensus(stacked)
    assert by_dir.ids == by_list.ids == ids[top_k_order(scores, ids, 30)].tolist()
    assert len(by_dir.data["model"]["paths"]) == 3


def test_checkpoints_of_earlier_attempts_go_with_the_output_s_own(tmp_path, pool, model_path, caplog):
    """A folder under <out>.checkpoints from an attempt with another shard plan is not resumed, and goes on success."""
    out = tmp_path / "batch"
    stale = tmp_path / "batch.checkpoints" / "0123456789abcdef01234567"
    stale.mkdir(parents=True)
    (stale / "shard-00000.npz").write_bytes(b"an attempt with another actor count")
    m = alscale.select(pool, model_path, k=10, actors=2, out=out)
    assert m.data["counts"]["shards_resumed"] == 0
    assert "holds checkpoints of 1 run(s) with other inputs or another shard plan" in caplog.text
    assert not (tmp_path / "batch.checkpoints").exists()
    # a checkpoint folder the user named may hold other runs' checkpoints: only this run's own go
    shared = tmp_path / "shared-checkpoints"
    (shared / "0123456789abcdef01234567").mkdir(parents=True)
    alscale.select(pool, model_path, k=10, actors=2, out=tmp_path / "batch-2", checkpoint_dir=shared)
    assert [p.name for p in shared.iterdir()] == ["0123456789abcdef01234567"]


def test_a_run_without_out_removes_the_checkpoints_it_wrote_unless_kept(tmp_path, pool, model_path, reference):
    """Checkpoints are for resuming a run that did not finish; a finished one returns its batch and needs none."""
    folder = tmp_path / "ck"
    m = alscale.select(pool, model_path, k=10, actors=2, checkpoint_dir=folder)
    assert m.ids == _expected(reference, "entropy", 10) and m.data["checkpoints"] is None
    assert not folder.exists() or list(folder.iterdir()) == []
    kept = alscale.select(pool, model_path, k=10, actors=2, checkpoint_dir=folder, keep_checkpoints=True)
    assert kept.ids == m.ids and len(list(folder.rglob("shard-*.npz"))) == 2
    again = alscale.select(pool, model_path, k=10, actors=2, checkpoint_dir=folder)
    assert again.data["counts"]["shards_resumed"] == 2 and again.ids == m.ids
    assert not list(folder.rglob("shard-*.npz"))


def test_a_model_at_a_filesystem_uri(tmp_path, pool, model_path, reference):
    """Every actor reads the model from the URI itself (no shared volume on a cluster)."""
    m = alscale.select(pool, f"file://{model_path}", k=25, actors=2)
    assert m.ids == _expected(reference, "entropy", 25)
    assert m.data["model"]["paths"] == [f"file://{model_path}"]
    assert m.data["model"]["sha256"] == [hashlib.sha256(Path(model_path).read_bytes()).hexdigest()]
    with pytest.raises(ModelError, match="Model file 'file://.*nope.onnx' does not exist"):
        alscale.select(pool, f"file://{tmp_path}/nope.onnx", k=5)


@pytest.fixture
def unhandled_ray_errors(monkeypatch):
    """The errors Ray would print as unhandled (an error object dropped without being read)."""
    import ray._private.worker as ray_worker

    seen: list = []
    monkeypatch.setattr(ray_worker, "_unhandled_error_handler", seen.append)
    return seen


def _settle() -> None:
    """Give Ray time to report the errors of the objects just dropped."""
    import gc
    import time

    gc.collect()
    time.sleep(3)


def test_a_skipped_shard_leaves_no_unhandled_errors(tmp_path, model_path, unhandled_ray_errors):
    """The failed shard's key buckets are errors too: they are read, not printed by Ray one traceback each."""
    from tests.cluster.clusterkit import corrupt_row_group

    pool = write_pool(tmp_path / "pool", tied_features(1500), files=3, row_group_size=250)
    corrupt_row_group(sorted(pool.glob("*.parquet"))[1], row_group=1)
    m = alscale.select(pool, model_path, k=10, actors=3, skip_bad_shards=True)
    assert m.data["counts"]["shards_skipped"] == 1
    _settle()
    assert unhandled_ray_errors == []


def test_a_failed_run_reads_the_errors_of_the_shards_it_abandons(tmp_path, unhandled_ray_errors):
    """Every shard fails (NaN from the model): the error is raised once, and this process's Ray,
    which outlives the run, has none of the other shards' errors to print as unhandled."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from alscale.exceptions import ModelContractError
    from tests.unit.test_scan_inputs import nan_model

    X = np.abs(np.random.default_rng(1).standard_normal((4000, 3))).astype(np.float32)
    X[::400, 0] = -2.0  # a NaN row in every row group, so every shard fails
    pq.write_table(pa.table({"id": np.arange(4000), "features": pa.FixedSizeBinaryArray.from_buffers(pa.binary(12), 4000, [None, pa.py_buffer(X.tobytes())])}),
                   tmp_path / "pool.parquet", row_group_size=500)
    with pytest.raises(ModelContractError):
        alscale.select(tmp_path / "pool.parquet", nan_model(tmp_path / "nan.onnx"), k=5, actors=3)
    _settle()
    assert unhandled_ray_errors == []


def test_a_truncated_checkpoint_is_scored_again(tmp_path, pool, model_path, reference, unhandled_ray_errors, caplog):
    out = tmp_path / "batch"
    alscale.select(pool, model_path, k=25, actors=3, out=out, keep_checkpoints=True)
    saved = sorted((tmp_path / "batch.checkpoints").glob("*/shard-*.npz"))
    assert len(saved) == 3
    saved[1].write_bytes(saved[1].read_bytes()[:100])
    m = alscale.select(pool, model_path, k=25, actors=3, out=out, force=True)
    assert m.data["counts"]["shards_resumed"] == 2
    assert m.ids == _expected(reference, "entropy", 25)
    assert not (tmp_path / "batch.checkpoints").exists()
    warning = next(r.getMessage() for r in caplog.records if "unreadable" in r.getMessage())
    assert "checkpoint of shard 1" in warning and "\n" not in warning  # one line, not the task's traceback
    _settle()
    assert unhandled_ray_errors == []


def test_more_actors_than_the_callers_own_ray_has_cpus_fail_at_once(pool, model_path):
    """A Ray started by ray.init in this process has no autoscaler: waiting for a fourth CPU would wait for ever."""
    import time

    import ray

    from alscale.exceptions import ConfigError

    cpus = int(ray.cluster_resources()["CPU"])
    start = time.monotonic()
    with pytest.raises(ConfigError, match=rf"^{cpus + 1} actors need a CPU each; the Ray this process started has {cpus} and no autoscaler "
                                          rf"to add more: ask for {cpus} actors or fewer, or start Ray with more \(ray\.init\(num_cpus=\.\.\.\)\)\.$"):
        alscale.select(pool, model_path, k=5, actors=cpus + 1)
    assert time.monotonic() - start < 20
