"""Every registered diversity strategy, one contract: any sharding (an empty shard too), int or string ids, the same batch."""

from __future__ import annotations

import numpy as np
import pytest

from alscale.reduce.shardgroup import LocalShardGroup, Selection
from alscale.rowrandom import id_keys
from alscale.strategies import STRATEGIES

DIVERSITY = sorted(name for name, s in STRATEGIES.items() if s.kind == "diversity")
PARAMS = {"cluster-margin": {"n_clusters": 4}}
N, C, D, K = 240, 3, 5, 12


def _rows(id_kind: str):
    rng = np.random.default_rng(5)
    ids = np.arange(N, dtype=np.int64) * 7 if id_kind == "int" else np.array([f"row-{i:04d}" for i in range(N)])
    logits = rng.normal(size=(N, C))
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    emb = rng.normal(size=(N, D)).astype(np.float32)
    selectable = np.arange(N) % 5 != 0  # a fifth excluded (or labeled, for the strategies that use them)
    return ids, probs, emb, selectable


def _select(name: str, id_kind: str, parts: list[np.ndarray]):
    strategy = STRATEGIES[name]
    ids, probs, emb, selectable = _rows(id_kind)
    keys = id_keys(ids)
    states = []
    for part in parts:
        builder = strategy.make_builder(dict(PARAMS.get(name, {})))
        if len(part):  # the engine calls add only for record batches with rows to score
            builder.add(ids[part], keys[part], probs[part], emb[part], selectable[part], ~selectable[part])
        states.append(builder.finish())
    return strategy.select(LocalShardGroup(states), K, 3, dict(PARAMS.get(name, {}))), ids, selectable


@pytest.mark.parametrize("id_kind", ["int", "string"])
@pytest.mark.parametrize("name", DIVERSITY)
def test_any_sharding_with_an_empty_shard_gives_the_same_batch(name, id_kind):
    whole, ids, selectable = _select(name, id_kind, [np.arange(N)])
    split, _, _ = _select(name, id_kind, [np.arange(0), np.arange(0, 100), np.arange(100, N), np.arange(0)])
    assert list(split.columns["id"]) == list(whole.columns["id"])
    np.testing.assert_allclose(split.columns["score"], whole.columns["score"], rtol=1e-6)
    chosen = list(whole.columns["id"])
    assert len(chosen) == len(set(chosen)) == K
    assert set(chosen) <= set(ids[selectable].tolist())
    assert np.isfinite(np.asarray(whole.columns["score"], dtype=np.float64)).all()


@pytest.mark.parametrize("name", DIVERSITY)
def test_the_selection_counts_rows_and_pickles(name):
    import pickle

    sel, _, _ = _select(name, "string", [np.arange(N)])
    assert isinstance(sel, Selection) and sel.n_rows == K
    assert all(len(col) == K for col in sel.columns.values())
    again = pickle.loads(pickle.dumps(sel))
    assert again.info == sel.info and list(again.columns) == list(sel.columns)
    for col in sel.columns:
        np.testing.assert_array_equal(again.columns[col], sel.columns[col])


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_registered_strategy_pickles_by_reference(name):
    """The engine sends each actor the strategy itself; a benchmark's spawned processes pickle it with pickle."""
    import pickle

    strategy = STRATEGIES[name]
    again = pickle.loads(pickle.dumps(strategy))
    assert again.name == name and (again.score is None) == (strategy.score is None)
