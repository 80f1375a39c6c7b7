"""Label files as spreadsheets write them: text ids and labels kept as text, a byte-order mark, a missing column."""

from __future__ import annotations

import numpy as np
import pytest

from alscale.exceptions import LabelError, QueueError
from alscale.loop.labels import import_labels
from alscale.loop.workspace import Workspace
from alscale.queues.files import read_labels


def test_ids_and_labels_that_look_like_numbers_or_booleans_stay_text(tmp_path, pool_writer):
    ids = [f"{i:05d}" for i in range(20)]  # zero-padded string ids
    pool = pool_writer(tmp_path / "p.parquet", np.zeros((20, 2), np.float32), ids=ids)
    ws = Workspace.create(tmp_path / "ws", pool=pool, classes=["true", "false", "01"], settings={"eval_size": 4, "initial_size": 2})
    labels = tmp_path / "labels.csv"
    labels.write_bytes("\ufeffid,label\r\n00003,true\r\n00007,01\r\n00008,\r\n".encode())  # BOM, CRLF, an empty label
    assert import_labels(ws, labels) == (3, 3)
    got = {r["id"]: (r["label"], r["status"]) for r in ws.labeled().to_pylist()}
    assert got == {"00003": ("true", "labeled"), "00007": ("01", "labeled"), "00008": (None, "skipped")}


def test_int_ids_written_as_text_are_read_as_the_pool_ids(tmp_path, pool_writer):
    pool = pool_writer(tmp_path / "p.parquet", np.zeros((20, 2), np.float32))
    ws = Workspace.create(tmp_path / "ws", pool=pool, classes=["a", "b"], settings={"eval_size": 4, "initial_size": 2})
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n0003,a\n12,b\n")
    import_labels(ws, labels)
    assert sorted(ws.labeled().column("id").to_pylist()) == [3, 12]


def test_a_labels_file_without_a_label_column_is_refused(tmp_path):
    for name, body in (("a.csv", "id,class\n1,cat\n"), ("b.jsonl", '{"id": 1, "class": "cat"}\n')):
        path = tmp_path / name
        path.write_text(body)
        with pytest.raises(QueueError, match=r"Expected a 'label' column in .*Got columns \['id', 'class'\]"):
            read_labels(path, source="t")
    with pytest.raises(LabelError, match=r"Expected columns \['label'\]"):
        import_labels(Workspace.__new__(Workspace), tmp_path / "a.csv")


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefflabel,id\ncat,1\n".encode())
    assert [(r["id"], r["label"], r["status"]) for r in read_labels(path, source="t")] == [("1", "cat", "labeled")]
    path = tmp_path / "bom.jsonl"
    path.write_bytes('\ufeff{"id": 2, "label": "dog"}\n'.encode())
    assert [(r["id"], r["label"]) for r in read_labels(path, source="t")] == [(2, "dog")]
