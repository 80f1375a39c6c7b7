"""The scan in one process (``ShardWorker``, no Ray) on inputs beyond the common case: float64
features for a double-input model, string ids, excluded rows with NaN features, ragged list
columns, a model that outputs NaN.  Each is checked against numpy and onnxruntime directly."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onnx import TensorProto, helper, numpy_helper

from alscale.engine.worker import ScoringJob, ShardWorker
from alscale.model import inspect_model
from alscale.pool import detect_features, iter_shard, plan_shards, resolve_pool
from alscale.pool.features import feature_dtype
from alscale.reduce import top_k_order
from alscale.strategies import get_strategy, margin


def double_model(path, d=2, offset=1e5):
    """A tensor(double) model: softmax of logits (x0 - offset, offset - x0, 0), sensitive below float32's resolution at ``offset``."""
    W = np.zeros((d, 3))
    W[0] = [1.0, -1.0, 0.0]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["z"]),
         helper.make_node("Softmax", ["z"], ["probabilities"], axis=-1)], "double",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", d])],
        [helper.make_tensor_value_info("probabilities", TensorProto.DOUBLE, ["N", 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(np.array([-offset, offset, 0.0]), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


def _worker(pool, model, strategy="margin", **job):
    resolved = resolve_pool(str(pool))
    spec = detect_features(resolved.schema, "id", job.pop("features", None))
    worker = ShardWorker(ScoringJob(None, spec, "id", (inspect_model(str(model)),), get_strategy(strategy), batch_size=256, **job))
    worker.ready()
    return worker, plan_shards(resolved, 1)[0]


def _double_pool(tmp_path, layout, n=3000):
    X = np.random.default_rng(5).standard_normal((n, 2)) * 1e-2 + 1e5  # float32 keeps ~7 digits: 1e5 +- 0.008
    ids = np.arange(n, dtype=np.int64)
    if layout == "columns":
        table = pa.table({"id": ids, "c0": X[:, 0], "c1": X[:, 1]})
    else:
        values = pa.array(X.reshape(-1), pa.float64())
        column = pa.FixedSizeListArray.from_arrays(values, 2) if layout == "fixed_size_list" else pa.ListArray.from_arrays(
            pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), values)
        table = pa.table({"id": ids, "features": column})
    pq.write_table(table, tmp_path / "pool.parquet", row_group_size=700)
    return ids, X


@pytest.mark.parametrize("layout", ["columns", "fixed_size_list", "list"])
def test_a_double_model_sees_the_pool_s_float64_values_exactly(tmp_path, layout):
    ids, X = _double_pool(tmp_path, layout)
    model = double_model(tmp_path / "m64.onnx")
    worker, shard = _worker(tmp_path / "pool.parquet", model)
    assert worker.feature_dtype == np.float64
    got = np.concatenate([b.features for b in iter_shard(None, shard, worker.job.feature_spec, "id", 1000, dtype=worker.feature_dtype)])
    np.testing.assert_array_equal(got, X)  # not rounded to float32 on the way

    result, *_ = worker.score_shard(shard, 50, np.empty(0, np.uint64), np.empty(0, np.uint64))
    probs = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    scores = margin(probs.astype(np.float32))  # the engine's probabilities are float32
    np.testing.assert_array_equal(result.top["id"], ids[top_k_order(scores, ids, 50)])
    rounded = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": X.astype(np.float32).astype(np.float64)})[0]
    assert not np.array_equal(result.top["id"], ids[top_k_order(margin(rounded.astype(np.float32)), ids, 50)])  # the test can tell


def test_the_decode_dtype_is_float32_unless_a_double_model_can_use_more():
    binary = detect_features(pa.schema([("id", pa.int64()), ("f", pa.binary(8))]), "id")
    columns = detect_features(pa.schema([("id", pa.int64()), ("a", pa.float64()), ("b", pa.float64())]), "id")
    assert feature_dtype(columns, ["tensor(float)"]) == np.float32
    assert feature_dtype(columns, ["tensor(float)", "tensor(double)"]) == np.float64
    assert feature_dtype(binary, ["tensor(double)"]) == np.float32  # float32 rows by definition, upcast by the session


def _string_id_pool(tmp_path, n=500, long_row=123, length=200_000, model=None):
    from alscale.strategies import entropy
    from tests.conftest import N_FEATURES, reference_probs, tied_features, write_pool

    X = tied_features(n, distinct=50)
    if model is not None:  # the long id's row is a copy of the best-scoring one: in the top-K, tied with it
        X[long_row] = X[np.argmax(entropy(reference_probs(model, X)))]
    ids = np.array([f"https://example.com/item/{i:05d}?ref=x" for i in range(n)], dtype=object)
    ids[long_row] = "L" * length  # a URL, a base64 key: one id far longer than the rest
    write_pool(tmp_path / "pool", X, ids, row_group_size=200)
    assert X.shape[1] == N_FEATURES
    return ids, X


def test_one_long_string_id_costs_its_own_bytes_not_every_row_s(tmp_path):
    """Ids were a fixed-width str array: every row padded to 200,000 characters (x4 bytes), 400 MB for these 500 rows."""
    import tracemalloc

    from alscale.pool import detect_features

    _string_id_pool(tmp_path)
    resolved = resolve_pool(str(tmp_path / "pool"))
    spec = detect_features(resolved.schema, "id")
    tracemalloc.start()
    try:
        ids = np.concatenate([b.ids for b in iter_shard(None, plan_shards(resolved, 1)[0], spec, "id", 500)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ids) == 500 and ids[123] == "L" * 200_000
    assert peak < 10 << 20, f"peak {peak / 2**20:.0f} MiB while reading 500 ids"


@pytest.mark.parametrize("long_row", [123, 7])
def test_string_ids_keep_their_order_and_checkpoint_compactly(tmp_path, model_path, long_row):
    """The top-K of string ids equals numpy's (score desc, then the id as a fixed-width str), and a shard's
    checkpoint holds its ids' own bytes."""
    from alscale.engine.checkpoint import _decode, _encode
    from alscale.strategies import entropy
    from tests.conftest import reference_probs

    ids, X = _string_id_pool(tmp_path, long_row=long_row, model=model_path)
    worker, shard = _worker(tmp_path / "pool", model_path, strategy="entropy")
    result, *buckets = worker.score_shard(shard, 400, np.empty(0, np.uint64), np.empty(0, np.uint64))
    scores = entropy(reference_probs(model_path, X))
    expected = ids[top_k_order(scores, ids.astype(str), 400)]  # the order of the old fixed-width ids: ties break on the id
    assert result.top["id"].tolist() == expected.tolist()
    assert expected[0] == "L" * 200_000  # tied with the best rows, first by the id ("L" < "h")
    data = _encode(result, tuple(buckets))
    assert len(data) < 1 << 20, f"a checkpoint of {len(data) / 2**20:.0f} MiB for 400 ids"
    again, _ = _decode(data)
    assert again.top["id"].tolist() == expected.tolist()
    np.testing.assert_array_equal(again.top["score"], result.top["score"])


@pytest.mark.parametrize("on_invalid", ["error", "skip"])
def test_excluded_rows_are_not_judged_on_their_features(tmp_path, model_path, on_invalid):
    """Rows 5 and 6 hold NaN and are excluded: counted as excluded, not invalid, and the run does not fail on them;
    row 9 holds NaN and is not excluded: the one invalid row."""
    from alscale.rowrandom import id_keys
    from alscale.strategies import entropy
    from tests.conftest import reference_probs, write_pool

    X = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    X[[5, 6], 0] = np.nan
    ids = np.arange(3000, dtype=np.int64)
    write_pool(tmp_path / "pool", X, row_group_size=500)
    worker, shard = _worker(tmp_path / "pool", model_path, strategy="entropy", on_invalid=on_invalid)
    exclude = np.sort(id_keys(np.array([5, 6, 100])))
    result, *_ = worker.score_shard(shard, 50, exclude, np.empty(0, np.uint64))
    assert (result.rows_excluded, result.rows_invalid, result.invalid_example) == (3, 0, None)
    assert result.rows_scored == 2997
    keep = ~np.isin(ids, [5, 6, 100])
    np.testing.assert_array_equal(result.top["id"], ids[keep][top_k_order(entropy(reference_probs(model_path, X[keep])), ids[keep], 50)])

    X[9, 3] = np.inf
    write_pool(tmp_path / "pool", X, row_group_size=500)
    worker, shard = _worker(tmp_path / "pool", model_path, strategy="entropy", on_invalid=on_invalid)
    result, *_ = worker.score_shard(shard, 50, exclude, np.empty(0, np.uint64))
    assert (result.rows_excluded, result.rows_invalid, result.invalid_example) == (3, 1, 9)


@pytest.mark.parametrize("null_row", [None, 1700])
@pytest.mark.parametrize("short_row", [1500, 1501, 0])
def test_a_ragged_list_row_is_named_against_the_model_s_width(tmp_path, model_path, short_row, null_row):
    """One row of 7 values where the model takes 8: that row is named, even as its batch's first (rows 0 and 1500 start
    a row group of 500, so a record batch; 1501 does not), with or without a null row in its batch."""
    from alscale.exceptions import PoolSchemaError

    X = np.random.default_rng(0).standard_normal((2000, 8)).astype(np.float32)
    rows = [list(map(float, x)) for x in X]
    rows[short_row] = rows[short_row][:7]
    if null_row is not None:
        rows[null_row] = None
    pq.write_table(pa.table({"id": np.arange(2000) + 1000, "features": pa.array(rows, pa.list_(pa.float32()))}), tmp_path / "pool.parquet",
                   row_group_size=500)
    worker, shard = _worker(tmp_path / "pool.parquet", model_path, strategy="entropy")
    worker.read_rows = 256
    expected = f"Feature column 'features' must hold 8 values in every row, as the model's input does. Got 7 in id {short_row + 1000}."
    with pytest.raises(PoolSchemaError, match="^" + expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.") + "$"):
        worker.score_shard(shard, 5, np.empty(0, np.uint64), np.empty(0, np.uint64))


def nan_model(path, d=3):
    """probabilities = softmax(log(1 + x)): NaN in a row with a feature below -1."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["x1"]), helper.make_node("Log", ["x1"], ["l"]),
         helper.make_node("Softmax", ["l"], ["probabilities"], axis=-1)], "nan",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", d])], [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", d])],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


@pytest.mark.parametrize("strategy", ["entropy", "random"])
def test_a_model_that_outputs_nan_is_named_with_an_id(tmp_path, strategy):
    from alscale.exceptions import ModelContractError

    X = np.abs(np.random.default_rng(1).standard_normal((3000, 3))).astype(np.float32)
    X[[2500, 2600], 0] = -2.0
    X[10, 1] = -3.0
    pq.write_table(pa.table({"id": np.arange(3000) + 7, "features": pa.FixedSizeBinaryArray.from_buffers(pa.binary(12), 3000, [None, pa.py_buffer(X.tobytes())])}),
                   tmp_path / "pool.parquet", row_group_size=500)
    model = nan_model(tmp_path / "nan.onnx")
    worker, shard = _worker(tmp_path / "pool.parquet", model, strategy=strategy)
    worker.runner.rows_per_run, worker.read_rows = 256, 512
    with pytest.raises(ModelContractError) as info:
        worker.score_shard(shard, 5, np.empty(0, np.uint64), np.empty(0, np.uint64))
    assert str(info.value) == (f"Expected finite probabilities from model {model!r}. Got NaN or inf in output 'probabilities' for 1 of 500 rows "
                               "of the first batch where one was found (e.g. id 17); later batches were not scored.")


def test_a_model_that_outputs_nan_on_zeros_says_it_is_the_load_time_probe(tmp_path):
    from alscale.exceptions import ModelContractError

    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["l"]), helper.make_node("Softmax", ["l"], ["probabilities"], axis=-1)], "nan0",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])], [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "log.onnx")
    with pytest.raises(ModelContractError, match=r"^Output 'probabilities' holds NaN or inf in 2 row\(s\) of the load-time probe of model "
                                                 r"'.*log\.onnx' \(2 rows of zeros, not pool rows\); expected finite probabilities\.$"):
        inspect_model(str(tmp_path / "log.onnx"))
