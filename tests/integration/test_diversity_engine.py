"""Diversity and committee strategies through ``alscale.select`` on a real local Ray.

Each selection is checked against the same strategy run in this process over a
LocalShardGroup built from ONNX Runtime outputs computed here.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import alscale
from alscale.cli import main as cli_main
from alscale.datasets import make_model, make_pool
from alscale.exceptions import AlscaleError, PoolExhaustedError
from alscale.model.export import mlp_to_onnx
from alscale.reduce.shardgroup import LocalShardGroup
from alscale.reduce.topk import top_k_order
from alscale.rowrandom import id_keys
from alscale.strategies import get_strategy
from alscale.strategies.committee import kl_to_consensus, vote_entropy

pytestmark = pytest.mark.ray  # ray_local: the shared module-scoped local Ray of tests/conftest.py

N_ROWS, N_FEATURES, N_CLASSES, K = 600, 8, 3, 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("div")
    pool = make_pool(root / "pool", N_ROWS, n_features=N_FEATURES, n_classes=N_CLASSES, layout="list", files=2, row_group_size=100, seed=3)
    models = [make_model(root / f"m{i}.onnx", n_features=N_FEATURES, n_classes=N_CLASSES, hidden=16, n_train=400, seed=i) for i in range(2)]
    table = pq.read_table(pool)
    order = np.argsort(table["id"].to_numpy())
    ids = table["id"].to_numpy()[order]
    x = table["features"].combine_chunks().flatten().to_numpy().reshape(-1, N_FEATURES)[order].astype(np.float32)
    outs = []
    for m in models:
        sess = ort.InferenceSession(str(m), providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        res = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
        outs.append((res["probabilities"].astype(np.float32), res["embedding"].astype(np.float32)))
    return {"root": root, "pool": pool, "models": models, "ids": ids, "outs": outs}


def _local(name, setup, k, seed, params, labeled=(), shards=2):
    probs, emb = setup["outs"][0]
    ids = setup["ids"]
    keys = id_keys(ids)
    lab = np.isin(ids, np.asarray(labeled, dtype=ids.dtype))
    strategy = get_strategy(name)
    states = []
    for part in np.array_split(np.arange(len(ids)), shards):
        b = strategy.make_builder(dict(params))
        b.add(ids[part], keys[part], probs[part], emb[part], ~lab[part], lab[part])
        states.append(b.finish())
    return strategy.select(LocalShardGroup(states), k, seed, dict(params))


@pytest.mark.parametrize(
    "name, params",
    [("badge", {}), ("coreset", {}), ("cluster-margin", {"n_clusters": 5, "candidate_multiple": 3})],
)
def test_diversity_strategies_equal_single_process_run(ray_local, setup, tmp_path, name, params):
    labeled = setup["ids"][::50]
    lab_file = tmp_path / "labeled.txt"
    lab_file.write_text("\n".join(str(i) for i in labeled) + "\n")
    man = alscale.select(setup["pool"], setup["models"][0], strategy=name, k=K, out=tmp_path / "out", actors=2, seed=4,
                         labeled=[lab_file], strategy_params=params)
    batch = man.batch
    ref = _local(name, setup, K, 4, params, labeled=labeled)
    np.testing.assert_array_equal(batch["id"].to_numpy(), ref.columns["id"])
    np.testing.assert_allclose(batch["score"].to_numpy(), ref.columns["score"], rtol=1e-5)
    assert not np.isin(batch["id"].to_numpy(), labeled).any()
    assert batch["rank"].to_pylist() == list(range(1, K + 1))
    if name == "cluster-margin":
        np.testing.assert_array_equal(batch["cluster"].to_numpy(), ref.columns["cluster"])
    assert all(r > b for r, b in zip(man.data["read_batch_rows"], man.data["batch_sizes"]))  # several runs per read


def test_cluster_margin_centroids_cached_by_another_runs_exclusions_are_not_reused(ray_local, setup, tmp_path):
    """Round 1, then round 2 with its batch excluded, beside one cache: round 2 equals a round 2 run without a cache."""
    params = {"n_clusters": 5, "candidate_multiple": 3, "sample_size": 200}
    first = alscale.select(setup["pool"], setup["models"][0], strategy="cluster-margin", k=K, out=tmp_path / "shared" / "r1",
                           actors=2, seed=4, strategy_params=params)
    assert first.data["strategy"]["info"]["cache"] == "miss"
    excluded = tmp_path / "round-1.txt"
    excluded.write_text("\n".join(str(i) for i in setup["ids"][setup["ids"] % 3 == 0]) + "\n")  # a third of the pool, its sample too
    second = alscale.select(setup["pool"], setup["models"][0], strategy="cluster-margin", k=K, out=tmp_path / "shared" / "r2",
                            actors=2, seed=4, exclude=[excluded], strategy_params=params)
    fresh = alscale.select(setup["pool"], setup["models"][0], strategy="cluster-margin", k=K, actors=2, seed=4,
                           exclude=[excluded], strategy_params=params)  # no output: no cache
    assert second.data["strategy"]["info"]["cache"] == "miss"
    assert second.ids == fresh.ids
    assert second.batch["cluster"].to_pylist() == fresh.batch["cluster"].to_pylist()
    again = alscale.select(setup["pool"], setup["models"][0], strategy="cluster-margin", k=K, out=tmp_path / "shared" / "r2b",
                           actors=2, seed=4, exclude=[excluded], strategy_params=params)
    assert again.data["strategy"]["info"]["cache"] == "hit" and again.ids == second.ids  # a rerun reuses them


def test_cluster_margin_centroids_of_other_feature_columns_are_not_reused(ray_local, setup, tmp_path):
    """--features picks what the embeddings are computed from: centroids of column 'features' served a run on 'mirrored'."""
    import pyarrow as pa

    table = pq.read_table(setup["pool"])
    x = table["features"].combine_chunks().flatten().to_numpy().reshape(-1, N_FEATURES)
    mirrored = pa.FixedSizeListArray.from_arrays(pa.array((-x[:, ::-1]).ravel(), pa.float32()), N_FEATURES)
    pool = tmp_path / "two.parquet"
    pq.write_table(table.select(["id", "features"]).append_column("mirrored", mirrored), pool, row_group_size=150)
    params = {"n_clusters": 5, "candidate_multiple": 3, "sample_size": 200}

    def run(features, out=None):
        return alscale.select(pool, setup["models"][0], strategy="cluster-margin", k=K, out=out, actors=2, seed=4,
                              features=features, strategy_params=params)

    assert run("features", tmp_path / "shared" / "a").data["strategy"]["info"]["cache"] == "miss"
    second = run("mirrored", tmp_path / "shared" / "b")
    assert second.data["strategy"]["info"]["cache"] == "miss"
    assert second.ids == run("mirrored").ids  # as a run with no cache at all


@pytest.mark.parametrize("name, func", [("qbc-vote", vote_entropy), ("qbc-kl", kl_to_consensus)])
def test_committee_strategies_match_numpy(ray_local, setup, tmp_path, name, func):
    man = alscale.select(setup["pool"], setup["models"], strategy=name, k=K, out=tmp_path / "out", actors=2)
    member = np.stack([p for p, _ in setup["outs"]])
    scores = func(member)
    top = top_k_order(scores, setup["ids"], K)
    np.testing.assert_array_equal(man.batch["id"].to_numpy(), setup["ids"][top])
    np.testing.assert_allclose(man.batch["score"].to_numpy(), scores[top], rtol=1e-4, atol=1e-6)
    assert all(r > b for r, b in zip(man.data["read_batch_rows"], man.data["batch_sizes"]))  # several runs per read


def test_badge_without_embedding_output_is_a_one_line_cli_error(setup, tmp_path):
    rng = np.random.default_rng(0)
    w = [rng.normal(size=(N_FEATURES, 6)).astype(np.float32), rng.normal(size=(6, N_CLASSES)).astype(np.float32)]
    b = [np.zeros(6, np.float32), np.zeros(N_CLASSES, np.float32)]
    model = tmp_path / "noemb.onnx"
    model.write_bytes(mlp_to_onnx(w, b, embedding=False))
    out = tmp_path / "out"
    res = CliRunner().invoke(cli_main, ["select", "--pool", str(setup["pool"]), "--model", str(model), "--strategy", "badge", "--k", "5", "--out", str(out), "-q"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("alscale: error:") and "embedding" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("strategy", ["badge", "coreset", "cluster-margin"])
def test_a_committee_is_refused_by_the_embedding_strategies_with_a_one_line_cli_error(setup, tmp_path, strategy):
    """They mixed the members' mean probabilities with member 0's embedding: the gradient of no model."""
    out = tmp_path / "out"
    args = ["select", "--pool", str(setup["pool"]), "--strategy", strategy, "--k", "5", "--out", str(out), "-q"]
    res = CliRunner().invoke(cli_main, [*args, *(a for m in setup["models"][:2] for a in ("--model", str(m)))])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines == [f"alscale: error: Strategy {strategy!r} works in one model's embedding space; expected one model. Got a committee "
                     "of 2 (committees are for qbc-vote and qbc-kl, or an uncertainty strategy on their mean probabilities)."]
    assert not out.exists()


def test_committee_with_different_classes_is_refused(ray_local, setup, tmp_path):
    other = make_model(tmp_path / "m4.onnx", n_features=N_FEATURES, n_classes=N_CLASSES + 1, hidden=8, n_train=200)
    with pytest.raises(AlscaleError, match="class"):
        alscale.select(setup["pool"], [setup["models"][0], other], strategy="qbc-vote", k=5, out=tmp_path / "out", actors=2)
    assert not (tmp_path / "out").exists()


def test_k_larger_than_pool_and_unknown_labeled_ids(ray_local, setup, tmp_path):
    with pytest.raises(PoolExhaustedError, match=f"{N_ROWS} available / {N_ROWS + 1} requested"):
        alscale.select(setup["pool"], setup["models"][0], strategy="badge", k=N_ROWS + 1, out=tmp_path / "o1", actors=2)
    assert not (tmp_path / "o1").exists()
    lab_file = tmp_path / "labeled.txt"
    lab_file.write_text("0\n1\n999999\n888888\n")
    man = alscale.select(setup["pool"], setup["models"][0], strategy="coreset", k=5, out=tmp_path / "o2", actors=2, labeled=[lab_file])
    assert man.data["counts"]["labeled_ids_not_in_pool"] == 2
    assert man.data["counts"]["labeled_ids_given"] == 4


def test_the_manifest_records_the_checked_parameter_values(ray_local, setup, tmp_path):
    """numpy numbers given as parameters are recorded as the int or float the strategy used, not as strings."""
    m = alscale.select(setup["pool"], setup["models"][0], strategy="badge", k=5, actors=2,
                       strategy_params={"rounds": np.int64(3), "oversampling": np.float32(2)})
    params = m.data["strategy"]["params"]
    assert params == {"rounds": 3, "oversampling": 2.0}
    assert type(params["rounds"]) is int and type(params["oversampling"]) is float
    from alscale.strategies import get_strategy

    # every value the run used: the given ones over the strategy's defaults, taken from the strategy itself
    assert m.data["strategy"]["values"] == {**get_strategy("badge").defaults, "rounds": 3, "oversampling": 2.0}
    assert set(m.data["strategy"]["values"]) >= {"sketch", "sketch_dim", "local_trials", "factor_dtype"}
    assert m.ids == alscale.select(setup["pool"], setup["models"][0], strategy="badge", k=5, actors=2,
                                   strategy_params={"rounds": 3, "oversampling": 2.0}).ids
