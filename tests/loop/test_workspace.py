from __future__ import annotations

import json
import multiprocessing as mp
import re

import numpy as np
import pyarrow as pa
import pytest

from alscale.exceptions import AlscaleError, ConfigError, LabelError, PoolSchemaError, WorkspaceError
from alscale.loop.workspace import CONFIG_NAME, SCHEMA_VERSION, Workspace
from alscale.rowrandom import id_keys, row_uniform
from alscale.loop.evalset import EVAL_STREAM


def _ws(tmp_path, pool, **kw):
    settings = {"eval_size": 50, "stop_set_size": 40, **kw.pop("settings", {})}
    return Workspace.create(tmp_path / "ws", pool=pool, label_column="label", settings=settings, **kw)


def test_create_reserves_eval_set_from_rowrandom(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    ev = ws.evaluation_ids()
    ids = np.arange(300, dtype=np.int64)
    draws = row_uniform(id_keys(ids), 0, EVAL_STREAM)
    assert sorted(ev.tolist()) == sorted(np.argsort(draws, kind="stable")[:50].tolist())
    assert ws.classes == [0, 1, 2]
    again = Workspace.open(ws.path)
    assert again.config == ws.config
    assert np.array_equal(again.evaluation_ids(), ev)
    assert set(ev.tolist()) <= set(again.excluded_ids().tolist())


def test_pending_idempotent_and_labels_remove_pending(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    assert ws.add_pending([1, 2, 3], batch_run_id="r1", queue="q") == 3
    assert ws.add_pending([2, 3, 4, 4], batch_run_id="r2", queue="q") == 1
    p = ws.pending()
    assert p.column("id").to_pylist() == [1, 2, 3, 4]
    assert p.column("batch_run_id").to_pylist() == ["r1", "r1", "r1", "r2"]
    recs = [{"id": 1, "label": 0, "status": "labeled", "source": "ls", "annotation_id": "a1", "annotator": "x"},
            {"id": 2, "label": None, "status": "skipped", "source": "ls", "annotation_id": "a2", "annotator": "x"}]
    assert ws.record_labels(recs) == 2
    assert ws.record_labels(recs) == 0  # idempotent
    assert ws.pending().column("id").to_pylist() == [3, 4]
    # an updated annotation replaces the label
    assert ws.record_labels([{**recs[0], "label": 2}]) == 1
    lab = ws.labeled()
    assert lab.num_rows == 2
    row = {r["id"]: r for r in lab.to_pylist()}
    assert row[1]["label"] == "2" and row[1]["status"] == "labeled"
    assert row[2]["status"] == "skipped"
    assert ws.remove_pending([4, 99]) == 1
    excluded = set(ws.excluded_ids().tolist())
    assert {1, 2, 3} <= excluded and 4 not in excluded
    ids, labels = ws.training_labels()
    assert ids.tolist() == ([1] if 1 not in set(ws.evaluation_ids().tolist()) else [])


def test_cancelled_does_not_count_as_labeled(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    ws.add_pending([5], batch_run_id="r", queue="q")
    ws.record_labels([{"id": 5, "label": None, "status": "cancelled", "source": "ls", "annotation_id": "c"}])
    assert ws.labeled().num_rows == 0
    assert ws.pending().num_rows == 0


def test_label_not_in_classes_is_rejected_and_nothing_written(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    ws.record_labels([{"id": 1, "label": 1, "source": "csv"}])
    before = ws.label_log()
    with pytest.raises(LabelError, match="known classes"):
        ws.record_labels([{"id": 2, "label": 0, "source": "csv"}, {"id": 3, "label": "cat", "source": "csv"}])
    assert ws.label_log().equals(before)
    with pytest.raises(LabelError, match=r"^id 4: .*Got 'Cat'\. \(1 more record\(s\) refused too, e.g. id 5: .*Got 'wolf'\.\)$"):
        ws.record_labels([{"id": 4, "label": "Cat", "source": "csv"}, {"id": 5, "label": "wolf", "source": "csv"}])
    # a record refused for its label and its id is one refused record, not two
    with pytest.raises(LabelError, match=r"^id 'x': Expected a label among the known classes .* Got 'zzz'\.$"):
        ws.record_labels([{"id": "x", "label": "zzz", "source": "csv"}, {"id": 3, "label": 0, "source": "csv"}])


def test_label_for_id_not_in_pool(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    with pytest.raises(LabelError, match="not in the pool"):
        ws.record_labels([{"id": 1000, "label": 1, "source": "csv"}])
    assert ws.label_log().num_rows == 0


def test_non_integral_ids_are_refused_not_truncated(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    for bad in (11.5, "11.5", True):
        with pytest.raises(LabelError, match="integer ids"):
            ws.record_labels([{"id": bad, "label": 1, "source": "csv"}])
    assert ws.label_log().num_rows == 0
    # what CSV readers give for an integer column with a gap: 11.0 is id 11
    assert ws.record_labels([{"id": 11.0, "label": 1, "source": "csv"}, {"id": "12", "label": 2, "source": "csv"}]) == 2
    assert sorted(ws.labeled().column("id").to_pylist()) == [11, 12]


def test_two_answers_for_one_id_in_one_call_are_a_conflict(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    with pytest.raises(LabelError, match="one answer per id.*1.*2.*id 4"):
        ws.record_labels([{"id": 4, "label": 1, "source": "csv"}, {"id": 4, "label": 2, "source": "csv"}])
    assert ws.label_log().num_rows == 0
    # the same answer twice is no conflict, and annotations with their own ids are separate answers
    assert ws.record_labels([{"id": 4, "label": 1, "source": "csv"}, {"id": 4, "label": 1, "source": "csv"}]) == 1
    assert ws.record_labels([{"id": 5, "label": 1, "source": "ls", "annotation_id": "a1"},
                             {"id": 5, "label": 2, "source": "ls", "annotation_id": "a2"}]) == 2


def test_skip_invalid_records_the_rest_and_warns(tmp_path, blob_pool, caplog):
    ws = _ws(tmp_path, blob_pool)
    records = [{"id": 1, "label": 1, "source": "ls", "annotation_id": "1"},
               {"id": 5000, "label": 1, "source": "ls", "annotation_id": "2"},  # another pool's task
               {"id": "doc-7", "label": 1, "source": "ls", "annotation_id": "3"},  # another id type
               {"id": 2, "label": "zebra", "source": "ls", "annotation_id": "4"},  # a choice added later
               {"id": 3, "label": 0, "source": "ls", "annotation_id": "5"}]
    with pytest.raises(LabelError):
        ws.record_labels(records)
    assert ws.label_log().num_rows == 0
    with caplog.at_level("WARNING", logger="alscale.loop.workspace"):
        assert ws.record_labels(records, skip_invalid=True) == 2
    assert {r["id"]: r["label"] for r in ws.labeled().to_pylist()} == {1: "1", 3: "0"}
    assert "left out 3 label record(s)" in caplog.text
    assert "e.g. id 5000: Expected label ids from the pool" in caplog.text  # the id names the task to look at


def test_require_in_pool(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    ws.require_in_pool([0, 299], what="the ids of batch b")
    with pytest.raises(WorkspaceError, match="Expected the ids of batch b in workspace .* 2 ids not in it, e.g. \\[300, 301\\]"):
        ws.require_in_pool([0, 300, 301], what="the ids of batch b")
    with pytest.raises(WorkspaceError, match="do not fit .*integer ids"):
        ws.require_in_pool(["doc-1"], what="the ids of batch b")


def test_eval_set_larger_than_pool_writes_nothing(tmp_path, blob_pool):
    with pytest.raises(ConfigError, match="larger than the pool"):
        Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 301})
    assert not (tmp_path / "ws").exists()


def test_newer_schema_is_refused(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    cfg = json.loads((ws.path / CONFIG_NAME).read_text())
    cfg["schema_version"] = SCHEMA_VERSION + 1
    (ws.path / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(WorkspaceError, match="newer"):
        Workspace.open(ws.path)
    with pytest.raises(WorkspaceError, match="alscale init"):
        Workspace.open(tmp_path / "nothing")


def test_create_twice_refused(tmp_path, blob_pool):
    _ws(tmp_path, blob_pool)
    with pytest.raises(WorkspaceError, match="existing"):
        _ws(tmp_path, blob_pool)


def test_crash_before_head_swap_keeps_old_state(tmp_path, blob_pool, monkeypatch):
    ws = _ws(tmp_path, blob_pool)
    ws.add_pending([7, 8], batch_run_id="r", queue="q")
    import alscale.loop.workspace as wsmod

    real = wsmod.atomic_write_json

    def boom(path, obj):
        if str(path).endswith("HEAD.json"):
            raise OSError("disk gone")
        return real(path, obj)

    monkeypatch.setattr(wsmod, "atomic_write_json", boom)
    with pytest.raises(OSError):
        ws.record_labels([{"id": 7, "label": 1, "source": "csv"}])
    monkeypatch.setattr(wsmod, "atomic_write_json", real)
    assert ws.labeled().num_rows == 0 and ws.pending().column("id").to_pylist() == [7, 8]
    assert ws.record_labels([{"id": 7, "label": 1, "source": "csv"}]) == 1  # re-run finishes it
    assert ws.pending().column("id").to_pylist() == [8]
    assert len(list((ws.path / "state").glob("labels-*.parquet"))) == 1


def _writer(path, start):
    ws = Workspace.open(path)
    for i in range(start, start + 10):
        ws.add_pending([i], batch_run_id=f"r{i}", queue="q")


def test_concurrent_writers_lose_nothing(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(ws.path), s)) for s in (100, 200)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(ws.pending().column("id").to_pylist()) == list(range(100, 110)) + list(range(200, 210))


def test_string_ids(tmp_path, pool_writer):
    X = np.zeros((20, 2), np.float32)
    pool = pool_writer(tmp_path / "p.parquet", X, ids=[f"doc-{i}" for i in range(20)])
    ws = Workspace.create(tmp_path / "ws", pool=pool, classes=["pos", "neg"], settings={"eval_size": 4, "initial_size": 2})
    assert ws.record_labels([{"id": "doc-3", "label": "pos", "source": "csv"}]) == 1
    assert ws.labeled().schema.field("id").type == pa.string()
    with pytest.raises(LabelError):
        ws.record_labels([{"id": "doc-99", "label": "pos", "source": "csv"}])
    assert "doc-3" in ws.excluded_ids().tolist()


def test_readers_never_see_a_superseded_version(tmp_path, blob_pool):
    """A reader racing a writer reads the old or the new table, never a deleted file."""
    import threading

    ws = _ws(tmp_path, blob_pool)
    pool_ids = [i for i in ws.pool_ids().tolist() if i not in set(ws.excluded_ids().tolist())][:60]
    errors = []

    def write():
        for i, row_id in enumerate(pool_ids):
            ws.add_pending([row_id], batch_run_id=f"run-{i}", queue="test")

    writer = threading.Thread(target=write)
    writer.start()
    seen = 0
    while writer.is_alive() and seen < 5000:
        try:
            seen = max(seen, ws.pending().num_rows)
        except Exception as exc:  # the race this guards against: FileNotFoundError
            errors.append(exc)
            break
    writer.join()
    assert not errors
    assert ws.pending().num_rows == len(pool_ids)


def test_answer_times_order_versions_of_one_annotation(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    rec = {"id": 5, "status": "labeled", "source": "ls", "annotation_id": "a1"}
    assert ws.record_labels([{**rec, "label": "1", "answered_at": "2026-01-02T00:00:00+00:00"}]) == 1
    assert ws.record_labels([{**rec, "label": "0", "answered_at": "2026-01-01T23:00:00-02:00"}]) == 1  # 01:00 UTC: newer
    assert ws.record_labels([{**rec, "label": "1", "answered_at": "2026-01-02T00:30:00"}]) == 0  # naive = UTC: older
    assert ws.labeled().column("label").to_pylist() == ["0"]
    # without a time on either side, the latest arrival wins, as before
    assert ws.record_labels([{**rec, "label": "1"}]) == 1
    assert ws.labeled().column("label").to_pylist() == ["1"]


def test_label_logs_written_before_answer_times_still_read(tmp_path, blob_pool):
    import pyarrow.parquet as pq

    ws = _ws(tmp_path, blob_pool)
    ws.record_labels([{"id": 5, "label": "1", "source": "ls", "annotation_id": "a1"}])
    state = tmp_path / "ws" / "state"
    (log_file,) = state.glob("labels-*.parquet")
    pq.write_table(pq.read_table(log_file).drop_columns(["answered_at"]), log_file)  # the layout of earlier versions
    assert ws.label_log().column("answered_at").to_pylist() == [None]
    assert ws.record_labels([{"id": 6, "label": "0", "source": "ls", "annotation_id": "a2", "answered_at": "2026-01-01T00:00:00Z"}]) == 1
    assert sorted(ws.labeled().column("id").to_pylist()) == [5, 6]


def test_answered_ids_sent_again_are_not_pending(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    ws.add_pending([5, 6, 7], batch_run_id="r1", queue="q")
    ws.record_labels([{"id": 5, "label": "1", "source": "q"}, {"id": 6, "status": "skipped", "label": None, "source": "q"},
                      {"id": 7, "status": "cancelled", "label": None, "source": "q"}])
    assert ws.pending().num_rows == 0
    # the batch pushed again: an empty (cancelled) answer is an answer too, which the queue serves no more
    assert ws.add_pending([5, 6, 7, 8], batch_run_id="r1", queue="q") == 1
    assert sorted(ws.pending().column("id").to_pylist()) == [8]


def test_an_id_answered_empty_is_not_selected_again_and_the_round_counts_it_answered(tmp_path, blob_pool, caplog):
    """Cancelled (submitted with no choice) is "answered, no label": excluded like a skip, not pending again."""
    import pyarrow.parquet as pq

    from alscale.loop import rounds

    ws = _ws(tmp_path, blob_pool)
    outside = [i for i in range(1, 200) if i not in set(ws.evaluation_ids().tolist())][:4]
    ws.add_pending(outside, batch_run_id="r1", queue="q")
    ws.record_labels([{"id": i, "label": None, "status": "cancelled", "source": "q", "annotation_id": f"a{i}"} for i in outside])
    assert ws.pending().num_rows == 0 and ws.labeled().num_rows == 0  # no label, nothing to train on
    assert ws.answered_ids().tolist() == sorted(outside)
    assert set(outside) <= set(ws.excluded_ids().tolist())  # the next selection skips them
    assert ws.add_pending(outside, batch_run_id="r2", queue="q") == 0  # found in the queue again: not pending again
    assert ws.label_counts()["cancelled"] == 4
    from alscale.loop.report import status_table

    assert "skipped 0  answered empty 4  pending 0" in status_table(ws)
    folder = tmp_path / "ws" / "rounds" / "001" / "batch"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"id": pa.array(outside, pa.int64())}), folder / "batch.parquet")
    assert rounds._unanswered_batch(ws, [{"round": 1, "batch": "batch"}]) is None  # all answered: nothing to warn of
    ws.record_labels([{"id": outside[0], "label": "1", "source": "q", "annotation_id": f"a{outside[0]}"}])  # fixed later
    assert ws.training_labels()[0].tolist() == [outside[0]]
    assert ws.label_counts()["cancelled"] == 3


def test_a_label_never_seen_before_is_warned_of_without_a_class_list(tmp_path, blob_pool, caplog):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 50, "stop_set_size": 40})
    assert ws.classes is None
    ws.record_labels([{"id": 1, "label": "cat", "source": "f"}, {"id": 2, "label": "dog", "source": "f"}])
    assert "new class" not in caplog.text  # the first labels define the classes
    ws.record_labels([{"id": 3, "label": "dgo", "source": "f"}])
    assert "new class(es) ['dgo'], not in the labeled set so far (['cat', 'dog'])" in caplog.text
    assert ws.labeled().num_rows == 3  # recorded all the same: without --classes any label is taken


@pytest.mark.parametrize("settings, match", [
    ({"initial_method": "hint"}, "needs the 'hint_column' setting"),
    ({"initial_method": "cluster"}, "initial method must be one of"),
    ({"trainer": "svm"}, "trainer must be one of"),
    ({"metric": "auc"}, "metric must be one of"),
    ({"strategy": "margn"}, "margin"),
    ({"eval_size": 1500.7}, "row count >= 0 or a fraction"),
    # the seed set alone would spend the budget
    ({"budget": 99, "initial_size": 100}, r"Expected a budget \(--budget\) of at least the seed set's 100 labels \(--initial\). Got 99."),
    # only the 'hint' initial method reads the hint column: it would be ignored without a word
    ({"hint_column": "site"}, r"Got initial method 'random', which ignores it; add --initial-method hint"),
    ({"hint_column": "site", "initial_method": "kmeans"}, "Got initial method 'kmeans', which ignores it"),
])
def test_settings_the_first_round_would_fail_on_are_refused_at_create(tmp_path, blob_pool, settings, match):
    with pytest.raises(AlscaleError, match=match):
        _ws(tmp_path, blob_pool, settings=settings)
    assert not (tmp_path / "ws").exists()


def test_pool_key_is_fixed_at_creation_and_derived_for_older_workspaces(tmp_path, blob_pool):
    """The key marks this pool's tasks in a shared queue: it survives an edited pool path."""
    import hashlib
    import os
    import pathlib

    ws = _ws(tmp_path, blob_pool)
    expected = hashlib.sha256(os.path.realpath(blob_pool).encode("utf-8")).hexdigest()[:16]
    assert ws.config["pool_key"] == ws.pool_key == expected
    cfg = pathlib.Path(ws.path) / CONFIG_NAME
    config = json.loads(cfg.read_text())
    config["pool"] = str(tmp_path / "moved" / "pool.parquet")  # the pool moved; its tasks did not change
    cfg.write_text(json.dumps(config))
    assert Workspace.open(ws.path).pool_key == expected
    del config["pool_key"]  # a workspace made before the key was stored
    cfg.write_text(json.dumps(config))
    moved = hashlib.sha256(os.path.realpath(tmp_path / "moved" / "pool.parquet").encode("utf-8")).hexdigest()[:16]
    assert Workspace.open(ws.path).pool_key == moved


def test_a_budget_of_the_seed_set_and_a_hint_column_with_its_method_are_taken(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool, settings={"budget": 100, "initial_size": 100, "initial_method": "hint", "hint_column": "site"})
    assert ws.settings["budget"] == ws.settings["initial_size"] == 100 and ws.settings["hint_column"] == "site"


def test_label_column_values_outside_the_classes_are_refused_at_create(tmp_path, pool_writer):
    """Round 1 would fail on the first evaluation label outside the classes: refused when the workspace is made."""
    X = np.zeros((40, 2), np.float32)
    truth = ["cat", "dog", None, "fox"] * 10  # a partly labeled column: nulls are no class
    pool = pool_writer(tmp_path / "p.parquet", X, truth)
    for classes, example in ((["cat", "dog"], "'fox'"), (["cat"], "'dog' (and 1 other value(s) outside them)")):
        with pytest.raises(ConfigError, match=re.escape(f"Expected the values of label column 'label' among the classes {classes}. Got {example}")):
            Workspace.create(tmp_path / "ws", pool=pool, label_column="label", classes=classes, settings={"eval_size": 4, "initial_size": 2})
        assert not (tmp_path / "ws").exists()
    ws = Workspace.create(tmp_path / "ws", pool=pool, label_column="label", classes=["dog", "cat", "fox", "owl"],
                          settings={"eval_size": 4, "initial_size": 2})  # more classes than the column holds, in any order
    assert ws.classes == ["dog", "cat", "fox", "owl"]


def test_class_names_compare_as_text_with_the_label_column(tmp_path, blob_pool):
    """Labels are compared as text (the round's rule): classes '0'..'2' fit an integer column of 0..2, '0','1' do not."""
    assert _ws(tmp_path, blob_pool, classes=["0", "1", "2"]).classes == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="Got '2'"):
        Workspace.create(tmp_path / "ws2", pool=blob_pool, label_column="label", classes=["0", "1"], settings={"eval_size": 50})


def test_a_model_of_other_classes_or_without_class_names_is_refused_at_create(tmp_path, blob_pool):
    import onnx

    from alscale.exceptions import ModelContractError
    from alscale.model.export import linear_to_onnx

    other = tmp_path / "other.onnx"
    other.write_bytes(linear_to_onnx(np.ones((2, 4)), np.zeros(2), classes=["cat", "dog"]))
    with pytest.raises(ModelContractError, match=r"Expected the model .*other.onnx to have classes \['0', '1', '2'\]. Got \['cat', 'dog'\]."):
        _ws(tmp_path, blob_pool, model=other)
    assert not (tmp_path / "ws").exists()
    reordered = tmp_path / "reordered.onnx"  # rounds need the outputs in the workspace's class order
    reordered.write_bytes(linear_to_onnx(np.ones((3, 4)), np.zeros(3), classes=[2, 1, 0]))
    with pytest.raises(ModelContractError, match=r"Got \['2', '1', '0'\]"):
        _ws(tmp_path, blob_pool, model=reordered)
    unnamed = onnx.load_from_string(linear_to_onnx(np.ones((2, 4)), np.zeros(2), classes=["cat", "dog"]))
    del unnamed.metadata_props[:]  # no class names: every round would refuse it, so creation does
    (tmp_path / "unnamed.onnx").write_bytes(unnamed.SerializeToString())
    for label_column in ("label", None):  # with a class list and without one
        with pytest.raises(ModelContractError, match=r"Expected class names in the model .*unnamed.onnx .*Got none; add them in output "
                                                     r"order: onnx.helper.set_model_props"):
            Workspace.create(tmp_path / "ws", pool=blob_pool, label_column=label_column, model=tmp_path / "unnamed.onnx",
                             settings={"eval_size": 50})
        assert not (tmp_path / "ws").exists()
    same = tmp_path / "same.onnx"
    same.write_bytes(linear_to_onnx(np.ones((3, 4)), np.zeros(3), classes=[0, 1, 2]))
    assert Workspace.create(tmp_path / "ws2", pool=blob_pool, label_column="label", model=same, settings={"eval_size": 50}).classes == [0, 1, 2]
    # without a class list there is nothing to compare with
    assert Workspace.create(tmp_path / "ws3", pool=blob_pool, model=other, settings={"eval_size": 50}).classes is None
    broken = onnx.load_from_string(linear_to_onnx(np.ones((3, 4)), np.zeros(3), classes=[0, 1, 2]))
    onnx.helper.set_model_props(broken, {"alscale.classes": '{"cat": 0}'})  # class names set by hand, not a list
    (tmp_path / "broken.onnx").write_bytes(broken.SerializeToString())
    with pytest.raises(ModelContractError, match="'alscale.classes' metadata .* JSON list of distinct class names"):
        Workspace.create(tmp_path / "ws4", pool=blob_pool, label_column="label", model=tmp_path / "broken.onnx", settings={"eval_size": 50})
    assert not (tmp_path / "ws4").exists()


def test_an_id_sent_to_a_second_queue_is_pending_in_both_until_answered(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    assert ws.add_pending([1, 2], batch_run_id="r1", queue="label-studio:1") == 2
    assert ws.add_pending([1, 2, 3], batch_run_id="r1", queue="label-studio:7") == 3  # the right project, after the wrong one
    assert ws.add_pending([2, 3], batch_run_id="r1", queue="label-studio:7") == 0
    rows = sorted(zip(ws.pending().column("id").to_pylist(), ws.pending().column("queue").to_pylist()))
    assert rows == [(1, "label-studio:1"), (1, "label-studio:7"), (2, "label-studio:1"), (2, "label-studio:7"), (3, "label-studio:7")]
    ws.record_labels([{"id": 1, "label": 0, "status": "labeled", "source": "label-studio:7", "annotation_id": "a", "annotator": None}])
    assert sorted(set(ws.pending().column("id").to_pylist())) == [2, 3]
    assert 1 not in set(ws.pending().column("id").to_pylist())


def test_rename_queue_moves_labels_pending_and_sent_runs_in_one_commit(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    old, new = "label-studio:3", "label-studio:3@http://ls.example.org"
    ws.add_sent(old, "r1")
    ws.add_sent(new, "r2")
    ws.add_pending([1, 2, 3], batch_run_id="r1", queue=old)
    ws.add_pending([3, 4], batch_run_id="r2", queue=new)
    ws.add_pending([5], batch_run_id="r9", queue="manual")
    ws.record_labels([
        {"id": 1, "label": 0, "source": old, "annotation_id": "7", "annotator": "a", "answered_at": "2025-01-01T00:00:00Z"},
        {"id": 6, "label": 1, "source": old, "annotation_id": "8", "annotator": "a", "answered_at": "2025-01-03T00:00:00Z"},
        {"id": 6, "label": 2, "source": new, "annotation_id": "8", "annotator": "a", "answered_at": "2025-01-02T00:00:00Z"},
        {"id": 9, "label": 2, "source": "labels.csv", "annotation_id": None, "annotator": None},
    ])
    version = json.loads((ws.path / "state" / "HEAD.json").read_text())["version"]

    assert ws.rename_queue(old, new) == {"labels": 2, "pending": 2, "sent": 1}
    head = json.loads((ws.path / "state" / "HEAD.json").read_text())
    assert head["version"] == version + 1  # labels, pending and sent runs changed together
    assert head["sent"] == {new: ["r2", "r1"]}
    log = [(r["id"], r["label"], r["source"], r["annotation_id"]) for r in ws.label_log().to_pylist()]
    # annotation 8 was kept under both names: the later answer (the one kept as label-studio:3) stays
    assert log == [(1, "0", new, "7"), (6, "1", new, "8"), (9, "2", "labels.csv", None)]
    assert sorted(zip(ws.pending().column("id").to_pylist(), ws.pending().column("queue").to_pylist())) == [
        (2, new), (3, new), (4, new), (5, "manual")]
    assert ws.sent_runs(new) == {"r1", "r2"} and ws.sent_runs(old) == set()

    assert ws.rename_queue(old, new) == {"labels": 0, "pending": 0, "sent": 0}
    assert json.loads((ws.path / "state" / "HEAD.json").read_text())["version"] == version + 1  # nothing written


def test_remove_pending_needs_a_list_of_ids(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    ws.add_pending([1, 2], batch_run_id="r1", queue="q")
    for bad in (None, 5, "7", [[1, 2], [3]]):
        with pytest.raises(LabelError) as err:
            ws.remove_pending(bad)
        assert str(err.value) == f"Expected a list of ids. Got {bad!r} instead."
    assert ws.remove_pending({2, 9}) == 1 and ws.pending().column("id").to_pylist() == [1]  # a set is a list of ids


def test_add_pending_refuses_ids_outside_the_pool(tmp_path, blob_pool, pool_writer):
    ws = _ws(tmp_path, blob_pool)
    ws.add_pending([1, 2], batch_run_id="r1", queue="q")
    with pytest.raises(WorkspaceError) as err:  # the pool's ids are 0..299
        ws.add_pending([-1, 2, 300], batch_run_id="r2", queue="q")
    assert re.fullmatch(r"Expected pending ids in workspace '.*'s pool '.*'\. Got 2 ids not in it, e.g\. \[-1, 300\]\.", str(err.value))
    with pytest.raises(WorkspaceError, match=r"^pending ids do not fit workspace .*: Expected integer ids \(int64\)\. Got 'doc-1': not a whole number"):
        ws.add_pending(["doc-1"], batch_run_id="r2", queue="q")
    assert ws.pending().column("id").to_pylist() == [1, 2]  # nothing recorded
    assert ws.add_pending(iter([3, 299]), batch_run_id="r3", queue="q") == 2  # an iterator is read once
    strings = Workspace.create(tmp_path / "ws-s", pool=pool_writer(tmp_path / "s.parquet", np.zeros((20, 2)), ids=[f"d{i}" for i in range(20)]),
                               settings={"eval_size": 2, "stop_set_size": 2, "initial_size": 2})
    with pytest.raises(WorkspaceError, match=r"Got 1 ids not in it, e\.g\. \['d20'\]\.$"):
        strings.add_pending(["d1", "d20"], batch_run_id="r", queue="q")
    assert strings.add_pending(["d1", "d19"], batch_run_id="r", queue="q") == 2


def test_label_records_may_be_a_table_and_anything_else_is_one_line(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    ws.add_pending([3, 4, 5], batch_run_id="r1", queue="q")
    table = pa.table({"id": [3, 4], "label": [0, None], "status": ["labeled", "skipped"], "source": ["t", "t"]})
    assert ws.record_labels(table) == 2
    assert ws.labeled().select(["id", "label", "status"]).to_pylist() == [
        {"id": 3, "label": "0", "status": "labeled"}, {"id": 4, "label": None, "status": "skipped"}]
    assert ws.pending().column("id").to_pylist() == [5]
    for bad, shown in ((None, "None"), ({"id": 5, "label": 1}, "{'id': 5, 'label': 1}"), ("5", "'5'")):
        with pytest.raises(LabelError) as err:
            ws.record_labels(bad)
        assert str(err.value) == f"Expected label records as a list of dicts or a pyarrow Table. Got {shown} instead."
    with pytest.raises(LabelError) as err:  # a record that is a table's column: its repr spans lines
        ws.record_labels([pa.chunked_array([[5]])])
    assert str(err.value) == "Expected each label record to be a dict with an 'id'. Got a ChunkedArray."
    assert ws.labeled().num_rows == 2


def test_feature_columns_must_be_in_the_pool_at_creation(tmp_path, blob_pool):
    for features in ("nope", ["features", "nope"]):
        with pytest.raises(PoolSchemaError, match=r"Expected columns \['nope'\] in pool .*\. Got columns \["):
            _ws(tmp_path, blob_pool, settings={"features": features})
        assert not (tmp_path / "ws").exists()
    assert _ws(tmp_path, blob_pool, settings={"features": "features"}).settings["features"] == ["features"]


@pytest.mark.parametrize("name", ["eval_size", "stop_set_size"])
@pytest.mark.parametrize("size", [1.0, 2.0, np.float64(50.0)])
def test_a_float_size_is_a_fraction_and_a_whole_float_is_refused(tmp_path, blob_pool, name, size):
    with pytest.raises(ConfigError) as err:
        _ws(tmp_path, blob_pool, settings={name: size})
    n = int(size)
    assert str(err.value) == (f"The {name!r} setting must be a row count >= 0 or a fraction in (0, 1). Got {size!r} instead; "
                              f"a float is a fraction of the pool: pass the int {n} for {n} rows.")
    assert not (tmp_path / "ws").exists()


def test_sizes_as_ints_fractions_and_flags(tmp_path, blob_pool):
    from alscale.loop.evalset import resolve_size, size_from_flag

    ws = _ws(tmp_path, blob_pool, settings={"eval_size": 0.2, "stop_set_size": np.int64(7)})
    assert (ws.config["evaluation"]["size"], ws.config["stop_set"]["size"]) == (60, 7)  # 0.2 * 300 rows; 7 rows
    # the command line reads --eval-size as the Python API does: digits are counts (500 rows, 0 rows), the rest fractions
    assert [(v, type(v)) for v in map(size_from_flag, ("500", " 0", "0.25", "1.0", "2.0", "150.5"))] == [
        (500, int), (0, int), (0.25, float), (1.0, float), (2.0, float), (150.5, float)]
    assert resolve_size(size_from_flag("1"), 300, name="eval_size") == 1 and resolve_size(0.0, 300, name="eval_size") == 0
    with pytest.raises(ConfigError, match=r"a whole-number float such as|must be a row count >= 0 or a fraction"):
        resolve_size(size_from_flag("2.0"), 300, name="eval_size")  # not 2 rows, as from Python
    with pytest.raises(ConfigError, match=r"^Expected a size as a row count \(500\) or a fraction of the pool \(0.2\)\. Got 'half'\.$"):
        size_from_flag("half")
    with pytest.raises(ConfigError, match="Got '²'"):  # a digit to str.isdigit, not to int()
        size_from_flag("²")
    with pytest.raises(ConfigError, match=r"^The 'eval_size' setting \(301 rows\) must not be larger than the pool \(300 rows\)\.$"):
        resolve_size(301, 300, name="eval_size")
    with pytest.raises(ConfigError, match=r"^The 'eval_size' setting must be a row count >= 0 or a fraction in \(0, 1\)\. Got 1.5 instead\.$"):
        resolve_size(1.5, 300, name="eval_size")


def test_disagreeing_answers_are_warned_of_listed_and_the_latest_is_used(tmp_path, blob_pool, caplog):
    from alscale.loop.report import status_table

    ws = _ws(tmp_path, blob_pool)
    ws.record_labels([{"id": 7, "label": 0, "source": "ls", "annotation_id": "a1", "annotator": "ann"},
                      {"id": 8, "label": 1, "source": "ls", "annotation_id": "a2", "annotator": "ann"},
                      {"id": 9, "label": 2, "source": "ls", "annotation_id": "a3", "annotator": "ann"}])
    assert ws.disagreements() == []
    caplog.clear()
    # a second annotator: agrees on 8, disagrees on 7; an edit of one annotation (a3) is no disagreement
    ws.record_labels([{"id": 7, "label": 1, "source": "ls", "annotation_id": "b1", "annotator": "bob"},
                      {"id": 8, "label": 1, "source": "ls", "annotation_id": "b2", "annotator": "bob"},
                      {"id": 9, "label": 0, "source": "ls", "annotation_id": "a3", "annotator": "ann"}])
    found = ws.disagreements()
    assert found == [{"id": 7, "labels": [("0", "ann", "ls"), ("1", "bob", "ls")], "used": "1"}]
    assert {r["id"]: r["label"] for r in ws.labeled().to_pylist()}[7] == found[0]["used"]
    warned = [r.getMessage() for r in caplog.records if "disagree" in r.getMessage()]
    assert len(warned) == 1 and "1 id(s)" in warned[0] and "id 7" in warned[0] and "the latest ('1') is used" in warned[0]
    assert "id 7: '0' (ann), '1' (bob) -> '1'" in status_table(ws)
    caplog.clear()  # pulled again, with a new answer on another id: the disagreement is not warned of again
    ws.record_labels([{"id": 7, "label": 1, "source": "ls", "annotation_id": "b1", "annotator": "bob"},
                      {"id": 10, "label": 0, "source": "ls", "annotation_id": "c1", "annotator": "ann"}])
    assert not [r for r in caplog.records if "disagree" in r.getMessage()]
    # a label file agreeing with the latest keeps the id listed (three answers, two labels); a skip adds none
    ws.record_labels([{"id": 7, "label": 1, "source": "fix.csv"}, {"id": 8, "label": None, "status": "skipped", "source": "x"}])
    assert [d["id"] for d in ws.disagreements()] == [7] and len(ws.disagreements()[0]["labels"]) == 3


def test_a_missing_or_damaged_head_is_refused_and_nothing_is_deleted(tmp_path, blob_pool):
    """Without HEAD.json the state read as empty and the next write removed the label history."""
    ws = _ws(tmp_path, blob_pool)
    ws.add_pending([1, 2, 3], batch_run_id="r1", queue="q")
    ws.record_labels([{"id": 1, "label": "0", "source": "f"}, {"id": 5, "label": "2", "source": "f"}])
    head = ws.path / "state" / "HEAD.json"
    kept = json.loads(head.read_text())
    files = sorted(p.name for p in (ws.path / "state").iterdir())
    head.unlink()
    for use in (ws.labeled, ws.pending, lambda: ws.record_labels([{"id": 7, "label": "1", "source": "g"}]),
                lambda: ws.add_pending([9], batch_run_id="r2", queue="q")):
        with pytest.raises(WorkspaceError, match=r"HEAD.json', which names the current state files. Got none beside labels-"):
            use()
    assert sorted(p.name for p in (ws.path / "state").iterdir()) == sorted(set(files) - {"HEAD.json"})
    suggested = json.loads(re.search(r"write (\{.*\}) into it", str(pytest.raises(WorkspaceError, ws.labeled).value)).group(1))
    assert {k: suggested[k] for k in ("labels", "pending")} == {k: kept[k] for k in ("labels", "pending")}
    head.write_text(json.dumps(suggested))  # as the message says: the labels are all back
    assert ws.labeled().column("id").to_pylist() == [1, 5] and ws.pending().column("id").to_pylist() == [2, 3]
    for text, match in (('{"version": 3, "labels": ', "Expected valid JSON in"), ('{"labels": 4}', "to hold a version and the labels")):
        head.write_text(text)
        with pytest.raises(WorkspaceError, match=match):
            ws.labeled()
    head.write_text(json.dumps({**kept, "labels": "labels-99999999.parquet"}))
    with pytest.raises(WorkspaceError, match=r"Cannot read the workspace state file .*labels-99999999.parquet', which state/HEAD.json names"):
        ws.labeled()


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["settings"].update(budget="600"), r"alscale-workspace.json: The 'budget' parameter .*Got '600' instead"),
    (lambda c: c["settings"].update(patiense=4), r"Unknown settings \['patiense'\] in .*alscale-workspace.json'; expected keys among .* Did you mean 'patience'\?"),
    (lambda c: c["settings"].update(strategy="qbc-vote"), r"alscale-workspace.json: Expected a strategy for one model"),
    (lambda c: c.update(settings=[1]), r"Expected the 'settings' of .* to be an object"),
])
def test_settings_edited_by_hand_are_checked_when_the_workspace_opens(tmp_path, blob_pool, edit, match):
    """README invites raising the budget in the config file: a string used to fail at the end of a round that had selected."""
    ws = _ws(tmp_path, blob_pool, settings={"budget": 200})
    config = json.loads((ws.path / CONFIG_NAME).read_text())
    edit(config)
    (ws.path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(WorkspaceError, match=match):
        Workspace.open(ws.path)


def test_an_evaluation_file_edited_away_is_one_error(tmp_path, blob_pool):
    ws = _ws(tmp_path, blob_pool)
    config = json.loads((ws.path / CONFIG_NAME).read_text())
    config["evaluation"]["file"] = "state/eval.parquet"
    (ws.path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(WorkspaceError, match=r"evaluation \(evaluation.file in alscale-workspace.json\): no such file '.*state/eval.parquet'"):
        Workspace.open(ws.path).evaluation_ids()


def test_the_latest_answer_is_the_one_given_last_not_the_one_recorded_last(tmp_path, blob_pool, caplog):
    """Two annotators answer id 5; the one edited last (by the queue's clock) is used, whatever order a pull lists them in."""
    ws = _ws(tmp_path, blob_pool)
    with caplog.at_level("WARNING"):
        ws.record_labels([
            {"id": 5, "label": "2", "source": "ls", "annotation_id": "b", "annotator": "2", "answered_at": "2026-12-07T19:00:04.5Z"},
            {"id": 5, "label": "1", "source": "ls", "annotation_id": "a", "annotator": "1", "answered_at": "2026-12-07T19:00:02.1Z"},
        ])
    assert {r["id"]: r["label"] for r in ws.labeled().to_pylist()} == {5: "2"}
    assert ws.disagreements() == [{"id": 5, "labels": [("1", "1", "ls"), ("2", "2", "ls")], "used": "2"}]
    assert "the latest ('2') is used" in caplog.text
    # a label file's record carries no answer time: the time it was recorded (now) stands for it
    ws.record_labels([{"id": 5, "label": "0", "source": "fix.csv"}])
    assert {r["id"]: r["label"] for r in ws.labeled().to_pylist()} == {5: "0"}


@pytest.mark.parametrize("key", ["pool", "id_column", "pool_rows", "classes", "evaluation", "stop_set"])
def test_a_config_without_a_key_alscale_reads_is_refused_when_the_workspace_opens(tmp_path, blob_pool, key):
    """`label` and `status` raised KeyError (without 'pool', 'pool_rows', 'id_column'); without 'classes' any label was taken."""
    ws = _ws(tmp_path, blob_pool)
    config = json.loads((ws.path / CONFIG_NAME).read_text())
    del config[key]
    (ws.path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(WorkspaceError) as err:
        Workspace.open(ws.path)
    assert str(err.value).startswith(f"Expected the key {key!r} (")
    assert str(err.value).endswith(f") in '{ws.path / CONFIG_NAME}'. Got none; put it back as `alscale init` wrote it, or "
                                   f"restore the file from a backup.")


@pytest.mark.parametrize("key, value, what", [
    ("pool", 7, "the pool: a path or glob, or a list of them"),
    ("pool", [], "the pool: a path or glob, or a list of them"),
    ("id_column", "", "a column name"),
    ("pool_rows", "300", "an int >= 0"),
    ("pool_rows", True, "an int >= 0"),
    ("classes", "cat,dog", "a list of class names, or null for any label"),
    ("evaluation", {"size": "50", "file": "state/evaluation.parquet"}, 'an object with an int "size" >= 0 and a "file"'),
    ("stop_set", None, 'an object with an int "size" >= 0 and a "file"'),
    ("id_type", "int", '"int64" or "string"'),
    ("group_columns", "site", "a list of column names"),
    ("label_column", 3, "a column name, or null"),
])
def test_a_config_key_of_the_wrong_type_is_refused_when_the_workspace_opens(tmp_path, blob_pool, key, value, what):
    ws = _ws(tmp_path, blob_pool)
    config = json.loads((ws.path / CONFIG_NAME).read_text())
    config[key] = value
    (ws.path / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(WorkspaceError) as err:
        Workspace.open(ws.path)
    assert str(err.value) == f"Expected the key {key!r} in '{ws.path / CONFIG_NAME}' to hold {what}. Got {value!r}."


def test_a_config_that_is_no_object_says_so_and_null_classes_or_no_pool_key_still_open(tmp_path, blob_pool):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 50})  # no classes, no label column: any label
    path = ws.path / CONFIG_NAME
    config = json.loads(path.read_text())
    assert config["classes"] is None
    del config["pool_key"]  # made before the key was stored: filled on use
    path.write_text(json.dumps(config))
    assert Workspace.open(ws.path).classes is None
    config["classes"] = []  # an older init on a label column of nulls wrote this: it opens, and refuses every label as then
    path.write_text(json.dumps(config))
    empty = Workspace.open(ws.path)
    assert empty.classes == []
    with pytest.raises(LabelError, match=r"Expected a label among the known classes \[\]\. Got 'cat'\."):
        empty.record_labels([{"id": int(empty.pool_ids()[0]), "label": "cat", "source": "file:x"}])
    path.write_text("[1, 2]")  # was "Expected an integer schema_version ... Got None."
    with pytest.raises(WorkspaceError) as err:
        Workspace.open(ws.path)
    assert str(err.value) == f"Expected a JSON object in {path}. Got [1, 2]."
