"""A workspace round end to end on a real local Ray, checked against a numpy recomputation."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as skm

from alscale.exceptions import ModelError, WorkspaceError
from alscale.loop import _pool
from alscale.loop.metrics import cohen_kappa
from alscale.loop.plots import plot_composition
from alscale.loop.report import status_rows, status_table
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


def test_the_batch_size_is_checked_against_the_pool_as_it_is_now(tmp_path, blob_pool, pool_writer, ray_local):
    """A folder pool that grew since init: the check counted the rows recorded at init and refused a batch that fits."""
    folder = tmp_path / "pool"
    folder.mkdir()
    shutil.copyfile(blob_pool, folder / "part-0.parquet")
    ws = Workspace.create(tmp_path / "ws", pool=folder, label_column="label",
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 10})
    run_round(ws)
    ws.record_labels(_oracle(ws, _batch_ids(ws, 0)))
    at_init = ws.config["pool_rows"] - len(ws.excluded_ids())
    X = np.random.default_rng(1).normal(size=(100, 4)).astype(np.float32)
    pool_writer(folder / "part-1.parquet", X, np.zeros(100, int), ids=np.arange(1000, 1100), extra={"site": ["a"] * 100})
    r1 = run_round(ws, k=at_init + 50, actors=1)
    assert r1["selected"] == at_init + 50


def test_a_round_whose_batch_was_not_kept_runs_again_with_another_k_or_strategy(tmp_path, blob_pool, ray_local):
    """k and strategy decide only the batch: a round interrupted (or refused) before its batch reuses its model with new ones."""
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label",
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 10})
    run_round(ws)
    ws.record_labels(_oracle(ws, _batch_ids(ws, 0)))
    run_round(ws, actors=1)
    model = (ws.path / "rounds/001/model.onnx").read_bytes()
    for name in ("batch", "round.json"):  # as if the round stopped after training, before selecting
        path = ws.path / "rounds/001" / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    r1 = run_round(ws, k=7, strategy="margin", actors=1)
    assert r1["round"] == 1 and r1["selected"] == 7 and (ws.path / "rounds/001/model.onnx").read_bytes() == model
    (ws.path / "rounds/001/round.json").unlink()  # its batch is kept now: k may no longer change
    with pytest.raises(WorkspaceError, match=r"Round 001 was started with other inputs .*k: 7 then, 5 now"):
        run_round(ws, k=5, strategy="margin", actors=1)


def test_a_gain_compares_two_models_on_the_same_evaluation_rows_as_their_labels_arrive(tmp_path, blob_pool, ray_local):
    """Round 1 measured on 20 evaluation rows, round 2 on 60: the gain is round 2's model against round 1's on those 60."""
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 30,
                                                                     "batch_size": 10, "seed": 1, "metric": "log_loss"})
    run_round(ws)
    ws.record_labels(_oracle(ws, _batch_ids(ws, 0)))
    eval_ids = ws.evaluation_ids()
    ws.record_labels(_oracle(ws, eval_ids[:20]))
    r1 = run_round(ws, actors=1)
    assert r1["metrics"]["evaluation_labeled"] == 20 and r1["previous_model_metrics"] is None
    ws.record_labels(_oracle(ws, _batch_ids(ws, 1)) + _oracle(ws, eval_ids[20:]))
    r2 = run_round(ws, actors=1)
    assert r2["metrics"]["evaluation_labeled"] == 60

    table = _pool.read_columns(blob_pool, ["label"], ids=eval_ids)
    y_ev = np.array(table.column("label").to_pylist())
    X_ev = _pool.read_features(blob_pool, table.column("id").to_numpy())[1]
    before = predict_onnx(ws.path / "rounds/001/model.onnx", X_ev)[0]
    assert r2["previous_model_metrics"]["round"] == 1
    assert r2["previous_model_metrics"]["log_loss"] == pytest.approx(skm.log_loss(y_ev, before, labels=[0, 1, 2]), rel=1e-5)
    gain = r2["previous_model_metrics"]["log_loss"] - r2["metrics"]["log_loss"]  # a loss that falls is a positive gain
    assert r2["stopping"]["rules"][1]["evidence"]["gains_per_label"][-1] == pytest.approx(gain / 10)
    row = [r for r in status_rows(ws) if r["round"] == 2][0]
    assert row["gain"] == pytest.approx(gain) and row["gain_per_label"] == pytest.approx(gain / 10)


def _batch_ids(ws, number):
    return pq.read_table(ws.path / f"rounds/{number:03d}/batch/batch.parquet").column("id").to_pylist()


def test_rounds_select_no_more_than_the_budget_leaves(tmp_path, blob_pool, ray_local):
    import json

    from click.testing import CliRunner

    from alscale.cli import main

    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label",
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 10, "budget": 17})
    run_round(ws)
    ws.record_labels(_oracle(ws, _batch_ids(ws, 0)))
    result = CliRunner().invoke(main, ["round", str(ws.path), "--actors", "1"])
    assert result.exit_code == 0 and "budget: 5 of 17 labels left (12 used, 0 pending), so 5 selected instead of 10" in result.output, result.output
    r1 = load_history(ws)[-1]
    assert r1["selected"] == 5 and r1["budget"] == {"budget": 17, "used": 12, "pending": 0, "left": 5, "asked": 10}
    # the 5 are the top of the margin ranking a full batch would have taken
    ids, X = _pool.read_features(blob_pool, np.arange(300))
    probs, _ = predict_onnx(ws.path / "rounds/001/model.onnx", X)
    cand = np.setdiff1d(ids, np.concatenate([_batch_ids(ws, 0), ws.evaluation_ids()]))
    assert _batch_ids(ws, 1) == cand[np.lexsort((cand, -margin(probs[cand]).astype(np.float64)))[:5]].tolist()

    # the budget spent: the round trains and evaluates on the 17 labels and selects nothing
    ws.record_labels(_oracle(ws, _batch_ids(ws, 1)))
    result = CliRunner().invoke(main, ["round", str(ws.path), "--actors", "1"])
    assert result.exit_code == 0 and "so nothing selected; raise 'budget'" in result.output and "batch:" not in result.output, result.output
    r2 = load_history(ws)[-1]
    assert r2["labels"] == 17 and r2["selected"] == 0 and r2["batch"] is None and r2["metrics"]["n"] == 60
    assert not (ws.path / "rounds/002/batch").exists()
    assert r2["stopping"]["reasons"] == ["budget: 17 labels used of a budget of 17"]
    # ... and the next one, with no new label, is refused before its folder exists
    with pytest.raises(WorkspaceError, match=r"Expected labels left in the budget of 17 for round 003. Got 17 training labels used, "
                                             r"which round 002 trained on already; raise 'budget'"):
        run_round(ws, actors=1)
    result = CliRunner().invoke(main, ["round", str(ws.path), "--actors", "1"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "alscale: error: Expected labels left" in result.output
    assert not (ws.path / "rounds/003").exists()
    # raised in the settings, as the error says: the next round selects again
    config = json.loads((ws.path / "alscale-workspace.json").read_text())
    config["settings"]["budget"] = 30
    (ws.path / "alscale-workspace.json").write_text(json.dumps(config))
    r3 = run_round(ws.path, actors=1)
    assert r3["selected"] == 10 and "budget" not in r3


def _requested(ws, truth_eval):
    """Labels requested so far, counted from the state tables: training labels plus unanswered pending ids outside the evaluation set."""
    labeled = {r["id"] for r in ws.label_log().to_pylist() if r["status"] == "labeled"} - truth_eval
    answered = {r["id"] for r in ws.label_log().to_pylist()}
    waiting = set(ws.pending().column("id").to_pylist()) - answered - truth_eval
    return len(labeled), len(waiting)


def test_rounds_count_pending_ids_against_the_budget(tmp_path, blob_pool, ray_local):
    """With --mark-pending (or a push) before the answers came, each round selected as if nothing were out for labeling:
    budget 100, 60 labeled, two rounds of 40 each, 140 labels requested."""
    from click.testing import CliRunner

    from alscale.cli import main

    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label",
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 10, "budget": 40})
    evaluation = set(ws.evaluation_ids().tolist())
    run_round(ws)
    ws.record_labels(_oracle(ws, _batch_ids(ws, 0)))
    ws.add_pending(ws.evaluation_ids()[:20], batch_run_id="evaluation", queue="ls")  # the evaluation set is never trained on
    assert _requested(ws, evaluation) == (12, 0)

    selected = []
    for number in (1, 2, 3):
        result = CliRunner().invoke(main, ["round", str(ws.path), "--actors", "1", "--mark-pending"])
        assert result.exit_code == 0, result.output
        selected.append(load_history(ws)[-1]["selected"])
        used, waiting = _requested(ws, evaluation)
        assert used + waiting <= 40 and waiting == sum(selected)
    assert selected == [10, 10, 8]  # 12 labeled + 20 pending left 8 of the 40
    assert "budget: 8 of 40 labels left (12 used, 20 pending), so 8 selected instead of 10" in result.output
    assert load_history(ws)[-1]["budget"] == {"budget": 40, "used": 12, "pending": 20, "left": 8, "asked": 10}
    # spent by the pending ids, no new label: refused before the round's folder exists
    with pytest.raises(WorkspaceError, match=r"Got 12 training labels used, which round 003 trained on already, and 28 pending; "
                                             r"raise 'budget' .* \(or label the pending ids: the next round trains on them\)\."):
        run_round(ws, actors=1)
    assert not (ws.path / "rounds/004").exists()

    # a round interrupted after it marked its batch pending is finished with the same batch size: its own batch is not
    # an earlier one waiting for answers (counted, it left 0 and the rerun was refused)
    (ws.path / "rounds/003/round.json").unlink()
    assert run_round(ws, actors=1, mark_pending=True)["budget"] == {"budget": 40, "used": 12, "pending": 20, "left": 8,
                                                                     "asked": 10}

    # answers on part of it (a queue's): 5 new labels, 23 still pending -> the round trains on 17 and selects nothing
    ws.record_labels(_oracle(ws, _batch_ids(ws, 1)[:5]))
    ws.add_pending(_batch_ids(ws, 2), batch_run_id="round-002", queue="ls")  # pushed as well: one id, counted once
    assert _requested(ws, evaluation) == (17, 23)
    result = CliRunner().invoke(main, ["round", str(ws.path), "--actors", "1"])
    assert result.exit_code == 0 and ("budget: spent (17 training labels used and 23 pending of 40), so nothing selected"
                                      in result.output), result.output
    assert load_history(ws)[-1]["selected"] == 0 and _requested(ws, evaluation) == (17, 23)


def test_a_round_after_a_batch_neither_labeled_nor_pushed_warns_that_it_may_select_it_again(tmp_path, blob_pool, ray_local, caplog):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label",
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 10})
    run_round(ws)
    ws.record_labels(_oracle(ws, _batch_ids(ws, 0)))
    warning = ("all of round 001's batch of 10 were neither answered nor pending (pushed): this round may select them again; "
               "push or label them first")
    with caplog.at_level("WARNING", logger="alscale.loop.rounds"):
        run_round(ws, actors=1)
        assert "nor pending" not in caplog.text  # the seed batch was labeled
        run_round(ws, actors=1)
    assert warning in caplog.text
    assert _batch_ids(ws, 2) == _batch_ids(ws, 1)  # what it warns of: nothing changed, so the same batch
    caplog.clear()
    ws.add_pending(_batch_ids(ws, 2), batch_run_id="r2", queue="q")  # pushed: the next selection skips it
    with caplog.at_level("WARNING", logger="alscale.loop.rounds"):
        run_round(ws, actors=1)
    assert "nor pending" not in caplog.text
    assert not set(_batch_ids(ws, 3)) & set(_batch_ids(ws, 2))
    caplog.clear()
    ws.record_labels(_oracle(ws, _batch_ids(ws, 3)[:3]))  # a batch labeled in part: the rest may come back
    with caplog.at_level("WARNING", logger="alscale.loop.rounds"):
        run_round(ws, actors=1)
    assert "7 of round 003's batch of 10 were neither answered nor pending (pushed): this round may select them again" in caplog.text


def test_a_batch_larger_than_the_selectable_rows_is_refused_before_the_round_starts(tmp_path, blob_pool, ray_local):
    """It used to train, fail at the selection and leave a round folder that refused every other k."""
    from alscale.exceptions import PoolExhaustedError

    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label",
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 10})
    run_round(ws)
    ws.record_labels(_oracle(ws, _batch_ids(ws, 0)))
    available = ws.config["pool_rows"] - len(ws.excluded_ids())
    with pytest.raises(PoolExhaustedError, match=rf"Pool exhausted: {available} available / {available + 1} requested"):
        run_round(ws, k=available + 1, actors=1)
    assert not (ws.path / "rounds/001").exists()
    assert run_round(ws, actors=1)["selected"] == 10  # the next round runs with any k


def test_a_round_with_an_empty_evaluation_set_says_so_instead_of_asking_to_label_it(tmp_path, blob_pool, ray_local):
    """--eval-size 0 is a working loop (stop set and budget rules): no metrics, and nothing to label for them."""
    from click.testing import CliRunner

    from alscale.cli import main

    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 0, "stop_set_size": 50, "initial_size": 12, "batch_size": 10})
    run_round(ws)
    ws.record_labels(_oracle(ws, _batch_ids(ws, 0)))
    result = CliRunner().invoke(main, ["round", str(ws.path), "--actors", "1"])
    assert result.exit_code == 0 and "no metrics: the evaluation set is empty (init --eval-size 0)" in result.output, result.output
    assert "label them" not in result.output and load_history(ws)[-1]["selected"] == 10


def test_a_model_that_is_not_a_file_or_a_round_without_labels_writes_no_round(tmp_path, blob_pool, ray_local, model_factory):
    """Both used to start a round: a missing model after writing its inputs, a model without labels as a second seed round."""
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 50, "initial_size": 10})
    run_round(ws)  # round 000, the seed set; nothing labeled yet
    with pytest.raises(ModelError, match=r"Expected the round's model to be an ONNX file. Got '.*missing.onnx', which is not a file."):
        run_round(ws, model=tmp_path / "missing.onnx")
    with pytest.raises(WorkspaceError, match="Expected training labels for round 1. Got none"):
        run_round(ws, model=model_factory())
    assert sorted(p.name for p in ws.rounds_dir.iterdir()) == ["000"]


def test_a_second_round_while_one_runs_is_refused_and_writes_nothing(tmp_path, blob_pool):
    """Two `alscale round` at once used to write into one round's folder, each reporting its own k."""
    from alscale.loop._io import file_lock
    from alscale.loop.rounds import ROUND_LOCK

    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 50, "initial_size": 10})
    with file_lock(ws.path / ROUND_LOCK):  # held as a running round holds it (another process, or thread)
        with pytest.raises(WorkspaceError, match=r"Expected no other round running in workspace .*\. Got one"):
            run_round(ws, k=30)
    assert list(ws.rounds_dir.iterdir()) == []
    assert run_round(ws)["round"] == 0  # free again once it ends


def test_rounds_that_add_no_labels_do_not_count_as_stabilizing_predictions(tmp_path, blob_pool, ray_local):
    """Batches skipped three times: rounds 2-4 retrained on round 1's labels, and identical models used to say "stop"."""
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label",
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 10})
    run_round(ws)
    ws.record_labels(_oracle(ws, _batch_ids(ws, 0)))
    run_round(ws, actors=1)
    for number in (1, 2, 3):  # the annotators skip every task of the batch
        ws.record_labels([{"id": i, "label": None, "status": "skipped", "source": "t"} for i in _batch_ids(ws, number)])
        record = run_round(ws, actors=1)
    rule = record["stopping"]["rules"][2]
    assert record["round"] == 4 and record["labels"] == 12
    assert not rule["stop"] and rule["evidence"]["kappas"] == [] and rule["evidence"]["pairs_without_new_labels"] == 3
    # labels again: round 5's model is compared with round 4's, the latest trained on fewer labels
    ws.record_labels(_oracle(ws, _batch_ids(ws, 4)))
    record = run_round(ws, actors=1)
    before, after = (np.load(ws.path / f"rounds/{n:03d}/stop_predictions.npy") for n in (4, 5))
    assert record["stopping"]["rules"][2]["evidence"]["kappas"] == pytest.approx([cohen_kappa(before, after)])


def test_a_skl2onnx_model_serves_the_rounds_with_the_classes_inspect_model_reads(tmp_path, blob_pool, ray_local):
    """README's export (zipmap off) has no 'alscale.classes' metadata: init took it, and every round refused it."""
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    from alscale.exceptions import ModelContractError
    from alscale.model.contract import inspect_model

    X, y = _pool.read_features(blob_pool, np.arange(300))[1], np.repeat(np.arange(3), 100)
    clf = LogisticRegression(max_iter=300).fit(X[::7], y[::7])
    skl = tmp_path / "skl.onnx"
    skl.write_bytes(to_onnx(clf, X[:1], options={"zipmap": False}, target_opset=17).SerializeToString())
    contract = inspect_model(skl)  # LinearClassifier's classlabels_ints, which inspect-model used to skip for indices
    assert contract.classes == ("0", "1", "2") and contract.class_names_found
    with pytest.raises(ModelContractError, match=r"Expected the model .*skl.onnx to have classes \['2', '1', '0'\]. Got \['0', '1', '2'\]."):
        Workspace.create(tmp_path / "other", pool=blob_pool, label_column="label", classes=[2, 1, 0], model=skl)
    assert not (tmp_path / "other").exists()
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", model=skl,
                          settings={"eval_size": 60, "stop_set_size": 50, "initial_size": 12, "batch_size": 10})
    run_round(ws)
    ws.record_labels(_oracle(ws, _batch_ids(ws, 0)))
    r1 = run_round(ws, actors=1)
    assert r1["trainer"] == "external" and r1["selected"] == 10
    table = _pool.read_columns(blob_pool, ["label"], ids=ws.evaluation_ids())
    pred = clf.predict(_pool.read_features(blob_pool, table.column("id").to_numpy())[1])
    assert r1["metrics"]["accuracy"] == pytest.approx(skm.accuracy_score(table.column("label").to_pylist(), pred))


@pytest.mark.parametrize("metric, first", [("log_loss", "log loss"), ("ece", "ECE"), ("macro_f1", "macro-F1"), ("accuracy", "accuracy")])
def test_round_reports_the_workspace_metric_first_as_init_help_says(tmp_path, blob_pool, monkeypatch, metric, first):
    """`init --metric` says "What rounds report first"; round always printed accuracy first."""
    from click.testing import CliRunner

    from alscale.cli import main
    from alscale.loop import rounds

    init_help = " ".join(CliRunner().invoke(main, ["init", "--help"]).output.split())
    assert "What rounds report first, status tabulates, and the target and gain stopping rules watch." in init_help
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", settings={"eval_size": 50, "metric": metric})
    values = {"accuracy": 0.875, "macro_f1": 0.8125, "log_loss": 0.3125, "ece": 0.0625, "n": 50}
    record = {"round": 1, "selected": 10, "strategy": "margin", "labels": 12, "metrics": values, "batch": None}
    monkeypatch.setattr(rounds, "run_round", lambda *args, **kwargs: record)  # the printing alone, without a round
    result = CliRunner().invoke(main, ["round", str(ws.path)])
    assert result.exit_code == 0, result.output
    line = next(text for text in result.output.splitlines() if "(evaluation set: 50 labeled)" in text)
    shown = {"accuracy": "accuracy 0.8750", "macro_f1": "macro-F1 0.8125", "log_loss": "log loss 0.3125", "ece": "ECE 0.0625"}
    expected = [shown[metric]] + [shown[m] for m in ("accuracy", "macro_f1", "log_loss", "ece") if m != metric]
    assert line == "  " + "  ".join(expected) + "  (evaluation set: 50 labeled)"
    assert line.startswith(f"  {first} ")
