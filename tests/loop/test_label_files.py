"""Label files as spreadsheets write them: text ids and labels kept as text, a byte-order mark, a missing column."""

from __future__ import annotations

import json
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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
    for name in ("a.csv", "b.jsonl"):  # the same reader and message, as a LabelError
        with pytest.raises(LabelError, match=r"Expected a 'label' column in .*Got columns \['id', 'class'\]"):
            import_labels(Workspace.__new__(Workspace), tmp_path / name)


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufefflabel,id\ncat,1\n".encode())
    assert [(r["id"], r["label"], r["status"]) for r in read_labels(path, source="t")] == [("1", "cat", "labeled")]
    path = tmp_path / "bom.jsonl"
    path.write_bytes('\ufeff{"id": 2, "label": "dog"}\n'.encode())
    assert [(r["id"], r["label"]) for r in read_labels(path, source="t")] == [(2, "dog")]


def _workspace(tmp_path, pool_writer):
    pool = pool_writer(tmp_path / "p.parquet", np.zeros((20, 2), np.float32))
    return Workspace.create(tmp_path / "ws", pool=pool, classes=["a", "b"], settings={"eval_size": 4, "initial_size": 2})


@pytest.mark.parametrize("name, write", [
    ("l.jsonl", lambda p: p.write_text('{"id": 3, "label": "a"}\n{"id": 7, "label": "b", "annotator": "ann"}\n{"id": 8, "label": ""}\n')),
    ("l.json", lambda p: p.write_text('{"alscale_id": 3, "label": "a", "text": "x"}\n{"alscale_id": 7, "label": "b", "annotator": "ann"}\n'
                                      '{"alscale_id": 8, "label": null}\n')),
    ("l.pq", lambda p: pq.write_table(pa.table({"id": [3, 7, 8], "label": ["a", "b", None], "annotator": [None, "ann", None]}), p)),
    ("l.txt", lambda p: p.write_text("id,label,annotator\n3,a,\n7,b,ann\n8,,\n")),  # no known suffix, not '{': CSV
])
def test_label_reads_the_labels_files_a_file_pull_reads(tmp_path, pool_writer, name, write):
    """JSONL was read as CSV ("Expected columns ['id', 'label'] ... Got columns ['{"id": 3', ...]")."""
    from click.testing import CliRunner

    from alscale.cli import main

    ws = _workspace(tmp_path, pool_writer)
    path = tmp_path / name
    write(path)
    res = CliRunner().invoke(main, ["label", str(ws.path), str(path)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"3 labels read from {path}, 3 new or changed;"), res.output
    got = {r["id"]: (r["label"], r["status"], r["annotator"]) for r in ws.label_log().to_pylist()}
    assert got == {3: ("a", "labeled", None), 7: ("b", "labeled", "ann"), 8: (None, "skipped", None)}


def test_label_says_label_for_one_and_lists_its_formats(tmp_path, pool_writer):
    from click.testing import CliRunner

    from alscale.cli import main

    ws = _workspace(tmp_path, pool_writer)
    path = tmp_path / "one.csv"
    path.write_text("id,label\n3,a\n")
    res = CliRunner().invoke(main, ["label", str(ws.path), str(path)])
    assert res.exit_code == 0 and res.output.startswith(f"1 label read from {path}, 1 new or changed;"), res.output
    help_text = " ".join(CliRunner().invoke(main, ["label", "--help"]).output.split())
    assert all(s in help_text for s in ("CSV (.csv)", "JSON lines (.jsonl, .json, .ndjson)", "Parquet (.parquet, .pq)")), help_text


def test_annotator_option_overrides_the_files_column(tmp_path, pool_writer):
    ws = _workspace(tmp_path, pool_writer)
    path = tmp_path / "l.jsonl"
    path.write_text('{"id": 3, "label": "a", "annotator": "file"}\n')
    assert import_labels(ws, path, annotator="opt") == (1, 1)
    assert ws.label_log().to_pylist()[0]["annotator"] == "opt"


@pytest.mark.parametrize("name, body, match", [
    ("open-quote.csv", 'id,label\n3148,cat\n3796,"dog\n3085,fox,extra\n', r"line 3: unexpected end of data \(a quote left open\?\)"),
    ("extra.csv", "id,label\n1,cat\n2,cat,extra\n", r"line 3 has 3 field\(s\), the header 2 \(id,label\)"),
    ("short.csv", "id,label\n1,cat\n2\n", r"line 3 has 1 field\(s\), the header 2"),
    ("empty.csv", "", r"the file is empty"),
    ("empty.jsonl", "", r"the file is empty"),
    ("bad.jsonl", '{"id": 1, "label": "cat"}\n\n{"id": 2, "lab\n', r"line 3 is not JSON \(Unterminated string"),
    ("open-header.csv", 'id,"label\n1,cat\n', r"line 1: unexpected end of data"),
])
def test_a_malformed_labels_file_is_refused_naming_the_line(tmp_path, name, body, match):
    """A quote left open would swallow the rest of the file into one label; a short row would read as a skip."""
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(QueueError, match=rf"Cannot read labels file .*{name}'?: {match}"):
        read_labels(path, source="t")


def test_a_quoted_multi_line_value_and_a_header_only_file_are_read(tmp_path):
    path = tmp_path / "text.csv"
    path.write_text('id,label,text\n1,cat,"two\nlines"\n2,dog,one\n')
    assert [(r["id"], r["label"]) for r in read_labels(path, source="t")] == [("1", "cat"), ("2", "dog")]
    path.write_text("id,label\n")
    assert read_labels(path, source="t") == []
    jsonl = tmp_path / "sep.jsonl"  # U+2028 is a line break to str.splitlines, not to JSON lines
    jsonl.write_text(json.dumps({"id": 1, "label": "a\u2028b"}, ensure_ascii=False) + "\r\n" + json.dumps({"id": 2, "label": "c"}) + "\n")
    assert [(r["id"], r["label"]) for r in read_labels(jsonl, source="t")] == [(1, "a\u2028b"), (2, "c")]


def test_two_annotators_files_of_one_name_keep_both_answers(tmp_path, pool_writer):
    """Both called labels.csv: one source; the annotator column keeps each answer, and the disagreement is listed."""
    pool = pool_writer(tmp_path / "p.parquet", np.zeros((20, 2), np.float32))
    ws = Workspace.create(tmp_path / "ws", pool=pool, classes=["cat", "dog"], settings={"eval_size": 4, "initial_size": 2})
    for folder, line in (("ann", "2,cat,alice\n3,dog,alice\n"), ("bob", "2,dog,bob\n3,dog,bob\n")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "labels.csv").write_text("id,label,annotator\n" + line)
    assert import_labels(ws, tmp_path / "ann" / "labels.csv") == (2, 2)
    assert import_labels(ws, tmp_path / "bob" / "labels.csv") == (2, 2)  # agreeing on 3 too: bob's answer is his own record
    kept = sorted((r["id"], r["label"], r["annotator"]) for r in ws.label_log().to_pylist())
    assert kept == [(2, "cat", "alice"), (2, "dog", "bob"), (3, "dog", "alice"), (3, "dog", "bob")]
    assert [(d["id"], d["used"]) for d in ws.disagreements()] == [(2, "dog")]
    assert import_labels(ws, tmp_path / "ann" / "labels.csv") == (2, 0)  # imported again: nothing changes
    (tmp_path / "both.csv").write_text("id,label,annotator\n5,cat,alice\n5,dog,bob\n")  # one file, two annotators: both kept
    assert import_labels(ws, tmp_path / "both.csv") == (2, 2)
    assert [d["id"] for d in ws.disagreements()] == [2, 5]


@pytest.mark.parametrize("name, write", [
    ("d.csv", lambda p: p.write_text("id,label,label\n3,a,b\n")),
    ("d.jsonl", lambda p: p.write_text('{"id": 3, "label": "a", "label": "b"}\n')),
    ("d.parquet", lambda p: pq.write_table(pa.Table.from_arrays([pa.array([3]), pa.array(["a"]), pa.array(["b"])],
                                                                names=["id", "label", "label"]), p)),
])
def test_a_labels_file_naming_a_column_twice_is_refused_naming_it(tmp_path, pool_writer, name, write):
    ws = _workspace(tmp_path, pool_writer)
    path = tmp_path / name
    write(path)
    with pytest.raises(LabelError, match=r"names the column 'label' twice"):
        import_labels(ws, path)
    assert ws.label_log().num_rows == 0


def test_one_labels_file_read_by_label_and_by_a_file_pull_is_one_source(tmp_path, pool_writer):
    from alscale.queues import pull

    ws = _workspace(tmp_path, pool_writer)
    path = tmp_path / "one.csv"
    path.write_text("id,label\n3,a\n")
    import_labels(ws, path)
    pull({"kind": "file", "labels": str(path)}, workspace=ws)
    assert [(r["id"], r["source"]) for r in ws.label_log().to_pylist()] == [(3, "one.csv")]  # one record, not two
    assert ws.disagreements() == []


@pytest.mark.parametrize("body, match", [
    ("id,label\n3,a\n99999999999999999999999,a\n", r"Got '99999999999999999999999' in row 2: outside the int64 range"),
    ("id,label\n1.237E+03,a\n", r"Got '1\.237E\+03' in row 1: scientific notation is not read as an id"),
])
def test_an_id_that_is_no_int64_is_refused_naming_its_row_and_why(tmp_path, pool_writer, body, match):
    ws = _workspace(tmp_path, pool_writer)
    path = tmp_path / "ids.csv"
    path.write_text(body)
    with pytest.raises(LabelError, match=match) as err:
        import_labels(ws, path)
    assert "..." not in str(err.value)


def test_a_json_array_and_a_semicolon_csv_are_told_what_is_expected(tmp_path):
    array = tmp_path / "a.json"
    array.write_text('[\n {"id": 3, "label": "a"}\n]\n')
    with pytest.raises(QueueError, match=r"expected JSON lines, one object per line; got a JSON array"):
        read_labels(array, source="t")
    semi = tmp_path / "s.csv"
    semi.write_text("id;label\n3;a\n")
    with pytest.raises(QueueError, match=r"Got columns \['id;label'\]; the header looks delimited by ';', expected commas"):
        read_labels(semi, source="t")
