"""A workspace round end to end on a real local Ray, checked against a numpy recomputation."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from alscale.exceptions import ModelError, WorkspaceError
from alscale.loop import _pool
from alscale.loop.plots import plot_composition
from alscale.loop.report import status_table
from alscale.loop.rounds import load_history, run_round
from alscale.loop.train import predict_onnx
from alscale.loop.workspace import Workspace
from alscale.strategies.uncertainty import margin

pytestmark = pytest.mark.ray


def _oracle(ws, ids):
    table = _pool.read_columns(ws.config["pool"], ["label"], ids=ids)
    return [{"id": i, "label": lab, "source": "oracle"} for i, lab in zip(table.column("id").to_pylist(), table.column("label").to_pylist())]


def test_seed_round_then_model_round(tmp_path, blob_pool, ray_local):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", group_columns=["site"],
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 15, "seed": 3})
    r0 = run_round(ws)
    seed_ids = pq.read_table(ws.path / "rounds/000/batch/batch.parquet").column("id").to_pylist()
    assert r0["kind"] == "seed" and len(seed_ids) == 12
    assert not set(seed_ids) & set(ws.evaluation_ids().tolist())
    ws.record_labels(_oracle(ws, seed_ids))

    r1 = run_round(ws, strategy="margin", actors=1)
    assert r1["round"] == 1 and r1["labels"] == 12 and r1["selected"] == 15
    batch = pq.read_table(ws.path / "rounds/001/batch/batch.parquet")
    picked = batch.column("id").to_pylist()

    # reference: margin over every non-excluded pool row with the round's model, one process
    ids, X = _pool.read_features(blob_pool, np.arange(300))
    probs, _ = predict_onnx(ws.path / "rounds/001/model.onnx", X)
    excluded = set(seed_ids) | set(ws.evaluation_ids().tolist())
    cand = np.array([i for i in ids.tolist() if i not in excluded])
    scores = margin(probs[cand])
    order = np.lexsort((cand, -scores.astype(np.float64)))
    assert picked == cand[order[:15]].tolist()  # the same rows, in rank order

    # metrics: sklearn on the saved model's predictions over the evaluation set
    ev = ws.evaluation_ids()
    y_ev = np.array(_pool.read_columns(blob_pool, ["label"], ids=ev).column("label").to_pylist())
    ev_sorted = np.sort(ev)
    pred = probs[ev_sorted].argmax(1)
    assert r1["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y_ev, pred))
    assert r1["metrics"]["macro_f1"] == pytest.approx(skm.f1_score(y_ev, pred, average="macro"))
    assert [v["rule"] for v in r1["stopping"]["rules"]] == ["target", "diminishing_returns", "stabilizing_predictions", "budget"]
    # the stop set's predictions are kept as class names (stable when a later round meets a new class)
    stop = ws.stop_set_ids()  # read_features keeps the order of the ids asked for
    np.testing.assert_array_equal(np.load(ws.path / "rounds/001/stop_predictions.npy"), probs[stop].argmax(1).astype(str))

    # crash after selection, before round.json: re-running finishes round 1 with the same batch
    (ws.path / "rounds/001/round.json").unlink()
    again = run_round(ws, strategy="margin", actors=1)
    assert again["round"] == 1 and again["model_sha256"] == r1["model_sha256"]
    assert pq.read_table(ws.path / "rounds/001/batch/batch.parquet").column("id").to_pylist() == picked
    assert [h["round"] for h in load_history(ws)] == [0, 1]

    # ... but not with other inputs: the kept model and batch would not be the ones asked for
    (ws.path / "rounds/001/round.json").unlink()
    for kwargs, changed in (({"strategy": "entropy"}, "strategy: 'margin' then, 'entropy' now"), ({"strategy": "margin", "k": 9}, "k: 15 then, 9 now")):
        with pytest.raises(WorkspaceError, match=f"Round 001 was started with other inputs.*{changed}"):
            run_round(ws, actors=1, **kwargs)
    assert run_round(ws, strategy="margin", actors=1)["model_sha256"] == r1["model_sha256"]

    text = status_table(ws)
    assert "round" in text and f"{r1['metrics']['accuracy']:.4f}" in text
    png = plot_composition(load_history(ws), tmp_path / "composition.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    comp = r1["composition"]
    train_labels = [r["label"] for r in _oracle(ws, seed_ids)]
    y_ev_str = [str(v) for v in y_ev]
    shares = lambda vals: np.array([sum(str(v) == str(c) for v in vals) / len(vals) for c in (0, 1, 2)])  # noqa: E731
    from scipy.spatial.distance import jensenshannon

    assert comp["classes_jsd"] == pytest.approx(jensenshannon(shares(train_labels), shares(y_ev_str), base=2) ** 2)


def test_the_workspace_model_serves_every_round_without_model(tmp_path, blob_pool, ray_local):
    from alscale.loop.train import export_model, train_model

    X, y = _pool.read_features(blob_pool, np.arange(300))[1], np.repeat(np.arange(3), 100)
    own = export_model(train_model(X[::7], y[::7], [0, 1, 2], trainer="logistic"), tmp_path / "own.onnx")
    with pytest.raises(ModelError, match="not a file"):
        Workspace.create(tmp_path / "nope", pool=blob_pool, model=tmp_path / "missing.onnx")
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", model=own,
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 10})
    run_round(ws)
    seed_ids = pq.read_table(ws.path / "rounds/000/batch/batch.parquet").column("id").to_pylist()
    ws.record_labels(_oracle(ws, seed_ids))
    r1 = run_round(ws, strategy="margin", actors=1)
    assert r1["trainer"] == "external" and r1["model_sha256"] == hashlib.sha256(own.read_bytes()).hexdigest()
    # reference: margin with that model over the rows neither labeled nor reserved, one process
    probs, _ = predict_onnx(own, X)
    cand = np.setdiff1d(np.arange(300), np.concatenate([seed_ids, ws.evaluation_ids()]))
    scores = margin(probs[cand])
    expected = cand[np.lexsort((cand, -scores.astype(np.float64)))[:10]]
    assert pq.read_table(ws.path / "rounds/001/batch/batch.parquet").column("id").to_pylist() == expected.tolist()


def test_without_classes_an_evaluation_label_of_a_class_not_trained_on_counts_as_missed(tmp_path, blob_pool, ray_local):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, group_columns=["site"],
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 30, "batch_size": 10, "seed": 1})
    run_round(ws)
    seed_ids = pq.read_table(ws.path / "rounds/000/batch/batch.parquet").column("id").to_pylist()
    ws.record_labels([r for r in _oracle(ws, seed_ids) if r["label"] != 2])  # class 2 not labeled for training yet
    ws.record_labels(_oracle(ws, ws.evaluation_ids()))
    r1 = run_round(ws, strategy="margin", actors=1)

    table = _pool.read_columns(blob_pool, ["label"], ids=ws.evaluation_ids())
    y_ev = np.array(table.column("label").to_pylist())
    probs, _ = predict_onnx(ws.path / "rounds/001/model.onnx", _pool.read_features(blob_pool, table.column("id").to_numpy())[1])
    assert probs.shape[1] == 3  # an output for class 2, which the model never predicts
    pred = probs.argmax(1)
    assert not (pred == 2).any()
    assert r1["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(y_ev, pred))
    assert r1["metrics"]["per_class_recall"]["2"] == 0.0
