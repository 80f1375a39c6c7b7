"""The seed round: a full batch manifest that every queue takes, and how an interrupted one is finished."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from alscale.exceptions import PoolExhaustedError, WorkspaceError
from alscale.loop.evalset import SEED_STREAM
from alscale.loop.rounds import run_round
from alscale.loop.workspace import Workspace
from alscale.manifest import Manifest
from alscale.queues import load_batch, push
from alscale.rowrandom import id_keys, row_uniform


def test_the_seed_batch_goes_to_a_queue_with_pool_columns(tmp_path, blob_pool):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "seed": 3})
    r0 = run_round(ws)  # the seed round needs no model and no Ray
    assert r0["kind"] == "seed" and r0["selected"] == 12
    batch_dir = ws.path / "rounds" / "000" / "batch"

    # reference: the 12 non-evaluation, non-stop-set ids with the smallest draws of the seed stream
    ids = np.arange(300)
    excluded = ws.excluded_ids()
    cand = ids[~np.isin(ids, excluded)]
    keys = id_keys(cand)
    expected = cand[np.lexsort((keys, row_uniform(keys, r0["seed"], SEED_STREAM)))[:12]].tolist()
    assert Manifest.read(batch_dir).ids == expected

    batch = load_batch(batch_dir, ["site"])
    assert [r["rank"] for r in batch.rows] == list(range(1, 13))
    assert all(r["predicted_class"] is None and r["confidence"] is None for r in batch.rows)
    site = dict(zip(*(pq.read_table(blob_pool).column(c).to_pylist() for c in ("id", "site"))))
    assert [r["data"]["site"] for r in batch.rows] == [site[i] for i in expected]

    out = tmp_path / "queue.jsonl"
    result = push(batch_dir, {"kind": "file", "path": str(out), "data_columns": ["site"]}, workspace=ws)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["alscale_id"] for r in rows] == expected and all(r["prediction"] is None for r in rows)
    assert result.details["path"] == str(out)
    assert sorted(ws.pending().column("id").to_pylist()) == sorted(expected)


def test_a_round_that_kept_nothing_can_be_run_again_with_other_inputs(tmp_path, blob_pool):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12})
    with pytest.raises(PoolExhaustedError):
        run_round(ws, k=1000)  # fails before the batch is written
    assert run_round(ws, k=20)["selected"] == 20
    (ws.path / "rounds" / "000" / "round.json").unlink()  # as if it had crashed after the batch
    with pytest.raises(WorkspaceError, match=r"Round 000 was started with other inputs.*k: 20 then, 12 now"):
        run_round(ws)
    assert run_round(ws, k=20)["selected"] == 20


def test_a_strategy_given_for_the_seed_round_is_said_to_wait(tmp_path, blob_pool, caplog):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12})
    with caplog.at_level("WARNING", logger="alscale.loop.rounds"):
        r0 = run_round(ws, strategy="margin")
    assert r0["kind"] == "seed" and r0["strategy"] == "seed-random"
    assert "round 000 is the seed set (initial method 'random'): the strategy given applies from the first round with labels" in caplog.text


def test_batches_chosen_without_a_model_get_a_run_id_of_their_own_and_the_workspaces_classes(tmp_path, blob_pool, pool_writer):
    """Run ids are queues' idempotency keys: seed-<name>-<seed> was shared by a seed set chosen again and by
    any other workspace called the same, so a receiver that honoured the key dropped those batches."""
    def seed_run(ws) -> str:
        return Manifest.read(ws.path / "rounds" / "000" / "batch").data["run_id"]

    settings = {"eval_size": 60, "stop_set_size": 50, "initial_size": 12}
    a = Workspace.create(tmp_path / "a" / "ws", pool=blob_pool, classes=["0", "1", "2"], settings=settings)
    run_round(a)
    first = seed_run(a)
    import shutil

    shutil.rmtree(a.path / "rounds" / "000")  # README's way to start a round over, here with another size
    run_round(a, k=20)
    other_pool = pool_writer(tmp_path / "other.parquet", np.zeros((300, 2), np.float32))
    b = Workspace.create(tmp_path / "b" / "ws", pool=other_pool, settings=settings)  # another team's "ws"
    run_round(b)
    runs = [first, seed_run(a), seed_run(b)]
    assert len(set(runs)) == 3 and all(r.startswith("seed-ws-0-") for r in runs)
    evaluation = [Manifest.read(ws.evaluation_batch()).data["run_id"] for ws in (a, b)]
    assert len(set(evaluation)) == 2 and all(r.startswith("evaluation-ws-0-") for r in evaluation)
    assert load_batch(a.path / "rounds" / "000" / "batch").classes == ["0", "1", "2"]
    assert load_batch(a.evaluation_batch()).classes == ["0", "1", "2"]
    assert load_batch(b.evaluation_batch()).classes == []  # no classes given: none to name


def test_an_evaluation_batch_written_before_run_ids_had_a_digest_is_kept(tmp_path, blob_pool):
    """A queue may know it by its old run id already: rewriting it would send the same tasks again under a new key."""
    from alscale.loop.idbatch import write_id_batch

    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 60})
    write_id_batch(ws.path / "evaluation", ws.evaluation_ids(), id_type="int64", strategy="evaluation", run_id="evaluation-ws-0",
                   seed=0, pool=ws.config["pool"], id_column="id")
    assert Manifest.read(Workspace.open(ws.path).evaluation_batch()).data["run_id"] == "evaluation-ws-0"
