"""File exports (JSONL, CSV, Parquet, Ground Truth), labels files, settings and the public API."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

import alscale.queues as queues
from alscale.exceptions import ConfigError, QueueError
from alscale.manifest import Manifest
from alscale.queues import FileConnector, load_batch, make_connector, pull, push


def _expected(manifest):
    pool = {r["id"]: r["text"] for r in pq.read_table(manifest.data["pool"]["paths"][0]).to_pylist()}
    return [(r["id"], r["rank"], r["predicted_class"], pool[r["id"]]) for r in manifest.batch.to_pylist()]


def test_load_batch_reads_only_the_selected_rows(manifest):
    batch = load_batch(manifest.path, ["text", "vec=features"])
    assert [(r["id"], r["rank"], r["predicted_class"], r["data"]["text"]) for r in batch.rows] == _expected(manifest)
    pool = {r["id"]: r["features"] for r in pq.read_table(manifest.data["pool"]["paths"][0]).to_pylist()}
    assert all(r["data"]["vec"] == pytest.approx(pool[r["id"]]) for r in batch.rows)
    assert batch.classes == ["cat", "dog", "fox"] and batch.run_id == "run-0001"


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_exports_hold_the_batch_in_rank_order(tmp_path, manifest, workspace, fmt):
    result = push(manifest, {"kind": "file", "path": str(tmp_path / f"out-{{run_id}}.{fmt}"), "data_columns": ["text"]}, workspace=workspace)
    path = tmp_path / f"out-run-0001.{fmt}"
    assert result.details["path"] == str(path)
    if fmt == "jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert all(r["meta"]["alscale_id"] == r["alscale_id"] for r in rows)
    elif fmt == "csv":
        with open(path, newline="") as fh:
            rows = [{**r, "alscale_id": int(r["alscale_id"]), "rank": int(r["rank"])} for r in csv.DictReader(fh)]
    else:
        rows = pq.read_table(path).to_pylist()
    assert [(r["alscale_id"], r["rank"], r["prediction"], r["text"]) for r in rows] == _expected(manifest)
    assert sorted(workspace.pending().column("id").to_pylist()) == sorted(r[0] for r in _expected(manifest))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_ground_truth_manifest(tmp_path, manifest):
    FileConnector(tmp_path / "gt.manifest", data_columns=["text"]).push(manifest)
    lines = [json.loads(line) for line in (tmp_path / "gt.manifest").read_text().splitlines()]
    assert [(x["alscale-id"], x["source"]) for x in lines] == [(e[0], e[3]) for e in _expected(manifest)]
    assert all("source-ref" not in x for x in lines)
    with pytest.raises(ConfigError, match="one source column"):
        FileConnector(tmp_path / "gt2.manifest", data_columns=["text", "features"]).push(manifest)


def test_labels_file_pull(tmp_path, manifest, workspace):
    ids = manifest.batch.column("id").to_pylist()
    push(manifest, {"kind": "file", "path": str(tmp_path / "out.csv")}, workspace=workspace)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label,annotator\n" + f"{ids[0]},dog,ann\n{ids[1]},,ann\n")
    records = pull({"kind": "file", "path": str(tmp_path / "out.csv"), "labels": str(labels)}, workspace=workspace)
    assert [(r["status"], r["label"]) for r in records] == [("labeled", "dog"), ("skipped", None)]
    assert {r["id"]: r["label"] for r in workspace.labeled().to_pylist()} == {ids[0]: "dog", ids[1]: None}
    assert set(workspace.pending().column("id").to_pylist()) == set(ids[2:])
    with pytest.raises(QueueError, match="labels file"):
        FileConnector(tmp_path / "out.csv").pull()
    with pytest.raises(ConfigError, match="Expected no pool for a file queue: only Label Studio tasks carry their pool"):
        pull({"kind": "file", "labels": str(labels)}, workspace=workspace, pool=str(tmp_path))


def test_settings_errors():
    with pytest.raises(ConfigError, match="Did you mean 'project'"):
        make_connector({"kind": "label-studio", "url": "http://127.0.0.1:1", "projet": 3})
    with pytest.raises(ConfigError, match=r"Expected a queue kind among \['file', 'http', 'label-studio'\] \(--to, or 'kind'"):
        make_connector({"url": "http://127.0.0.1:1"})
    with pytest.raises(ConfigError, match="'project' must be an int"):
        make_connector({"kind": "label-studio", "url": "http://127.0.0.1:1", "project": "x"})
    with pytest.raises(ConfigError, match="format"):
        FileConnector("out.txt")


def test_exported_members_are_sorted():
    assert queues.__all__ == sorted(queues.__all__)
    assert all(hasattr(queues, name) for name in queues.__all__)


def test_write_errors_are_one_line_and_leave_nothing(tmp_path, manifest, workspace):
    from click.testing import CliRunner

    from alscale.cli import main

    target = tmp_path / "taken"
    target.mkdir()
    res = CliRunner().invoke(main, ["push", str(manifest.path), "-w", str(workspace.path), "--to", "file", "--path", str(target),
                                    "--format", "jsonl"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    assert f"Got the folder {str(target)!r}." in res.output  # refused before anything is written
    assert list(target.iterdir()) == [] and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert workspace.pending().num_rows == 0


def test_exports_get_the_usual_file_permissions(tmp_path, manifest):
    import os

    old = os.umask(0o022)
    os.umask(old)
    FileConnector(tmp_path / "out.jsonl").push(manifest)
    assert (tmp_path / "out.jsonl").stat().st_mode & 0o777 == 0o666 & ~old


def test_batch_of_another_pool_is_refused_before_the_file_is_written(tmp_path, pool, workspace):
    from alscale.exceptions import WorkspaceError

    from .queue_support import make_manifest, write_pool

    other = write_pool(tmp_path / "other.parquet", 400)
    m = make_manifest(tmp_path / "o", other, [1100, 1300], run_id="run-o")
    with pytest.raises(WorkspaceError, match="1 ids not in it, e.g. \\[1300\\]"):
        FileConnector(tmp_path / "out.jsonl").push(m, workspace=workspace)
    assert not (tmp_path / "out.jsonl").exists() and workspace.pending().num_rows == 0


@pytest.mark.parametrize("name, text, match", [
    ("labels.jsonl", '[1, 2]\n', "to be an object with an 'id' and a 'label'. Got \\[1, 2\\] in row 1"),
    ("labels.csv", "id,label\n1011.5,cat\n", "integer ids"),
    ("labels.csv", "id,label\n1010,cat\n1010,dog\n", "one answer per id .* 'cat' and 'dog' for id 1010"),
])
def test_bad_labels_files_are_rejected_whole(tmp_path, manifest, workspace, name, text, match):
    from alscale.exceptions import AlscaleError

    (tmp_path / name).write_text(text)
    conn = FileConnector(tmp_path / "out.csv", labels=tmp_path / name)
    with pytest.raises(AlscaleError, match=match):
        conn.pull(workspace=workspace)
    assert workspace.label_log().num_rows == 0


def test_a_file_holding_another_export_is_not_overwritten(tmp_path, pool, manifest, workspace):
    from click.testing import CliRunner

    from alscale.cli import main
    from alscale.exceptions import OutputError

    from .queue_support import make_manifest

    target = tmp_path / "next.jsonl"
    sent = push(manifest, {"kind": "file", "path": str(target), "data_columns": ["text"]}, workspace=workspace)
    first, inode = target.read_bytes(), target.stat().st_ino
    # the same batch again (a retry): allowed, the file is not written again, and it says so
    again = push(manifest, {"kind": "file", "path": str(target), "data_columns": ["text"]}, workspace=workspace)
    assert target.read_bytes() == first and target.stat().st_ino == inode
    batch_ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[:30]  # the manifest fixture's ids, in rank order
    assert (list(sent.pushed), sent.existing) == (batch_ids, ())
    assert (again.pushed, list(again.existing)) == ((), batch_ids)
    ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()[100:110]
    second = make_manifest(tmp_path / "batch-2", pool, ids, run_id="run-0002")
    with pytest.raises(OutputError, match="holds a different export already"):
        push(second, {"kind": "file", "path": str(target), "data_columns": ["text"]}, workspace=workspace)
    assert target.read_bytes() == first
    assert set(workspace.pending().column("id").to_pylist()) == {r["id"] for r in manifest.batch.to_pylist()}
    args = ["push", str(second.path), "-w", str(workspace.path), "--to", "file", "--path", str(target), "--data-column", "text"]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 2 and "--overwrite" in refused.output and target.read_bytes() == first
    assert "put '{run_id}' in the path" in refused.output
    per_run = str(tmp_path / "out-{run_id}.jsonl")
    push(manifest, {"kind": "file", "path": per_run, "data_columns": ["text"]}, workspace=workspace)
    with pytest.raises(OutputError, match="holds a different export already") as err:  # the same batch with other columns
        push(manifest, {"kind": "file", "path": per_run, "data_columns": ["text", "features"]}, workspace=workspace)
    assert "{run_id}" not in str(err.value)  # the path has it already: no such advice
    replaced = CliRunner().invoke(main, [*args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert replaced.output.strip().endswith(f"-> {target}")  # where the batch went
    templated = CliRunner().invoke(main, [*args[:-4], "--path", per_run, "--data-column", "text"])
    assert f"-> {tmp_path / 'out-run-0002.jsonl'}" in templated.output, templated.output  # {run_id} filled in
    assert [json.loads(line)["alscale_id"] for line in target.read_text().splitlines()] == ids
    with pytest.raises(ConfigError, match="'overwrite' must be true or false"):
        FileConnector(target, overwrite="yes")


def test_push_and_pull_show_only_their_own_options():
    from click.testing import CliRunner

    from alscale.cli import main

    push_help = CliRunner().invoke(main, ["push", "--help"]).output
    pull_help = CliRunner().invoke(main, ["pull", "--help"]).output
    assert "--data-column" in push_help and "--overwrite" in push_help and "--labels" not in push_help
    assert "--labels" in pull_help and "--data-column" not in pull_help and "--overwrite" not in pull_help
    example = next(line for line in push_help.splitlines() if "--to file --path" in line)
    assert example.strip().endswith("--data-column text")  # one line: pasting it runs one command


def test_a_file_pull_without_labels_names_the_flag(tmp_path, workspace):
    from click.testing import CliRunner

    from alscale.cli import main

    res = CliRunner().invoke(main, ["pull", "-w", str(workspace.path), "--to", "file"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
    assert "alscale pull --labels PATH" in res.output
    # --path (where a push writes) and --secret-env (the http queue, push only) are not pull's
    res = CliRunner().invoke(main, ["pull", "-w", str(workspace.path), "--to", "file", "--path", str(tmp_path / "out.jsonl")])
    assert res.exit_code == 2 and "No such option '--path' for `alscale pull`: it is an option of `alscale push`" in res.output
    res = CliRunner().invoke(main, ["pull", "-w", str(workspace.path), "--to", "file", "--pathh", "x"])
    assert res.exit_code == 2 and "No such option '--pathh'" in res.output and "alscale push" not in res.output
    assert "--path" not in CliRunner().invoke(main, ["pull", "--help"]).output


def test_a_file_pull_needs_only_labels_and_says_what_was_new(tmp_path, manifest, workspace):
    """--path was required but never read; the counts said 'pulled 1 annotations' and nothing of what changed."""
    from click.testing import CliRunner

    from alscale.cli import main

    ids = manifest.batch.column("id").to_pylist()
    labels = tmp_path / "labels.csv"
    labels.write_text(f"id,label\n{ids[0]},dog\n")
    args = ["pull", "-w", str(workspace.path), "--to", "file", "--labels", str(labels)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert res.output.strip() == "pulled 1 annotation: 1 labeled, 0 skipped, 0 cancelled; 1 new or changed"
    labels.write_text(f"id,label\n{ids[0]},dog\n{ids[1]},\n")
    res = CliRunner().invoke(main, args)
    assert res.output.strip() == "pulled 2 annotations: 1 labeled, 1 skipped, 0 cancelled; 1 new or changed", res.output
    res = CliRunner().invoke(main, args)  # the same file again: nothing new
    assert res.output.strip() == "pulled 2 annotations: 1 labeled, 1 skipped, 0 cancelled; 0 new or changed", res.output
    assert {r["id"]: r["label"] for r in workspace.labeled().to_pylist()} == {ids[0]: "dog", ids[1]: None}


def test_a_file_queue_without_a_path_pulls_but_does_not_push(tmp_path, manifest, workspace):
    from click.testing import CliRunner

    from alscale.cli import main

    labels = tmp_path / "labels.jsonl"
    labels.write_text(f'{{"alscale_id": {manifest.batch.column("id")[0].as_py()}, "label": "fox"}}\n')
    assert [r["label"] for r in FileConnector(labels=labels).pull(workspace=workspace)] == ["fox"]
    with pytest.raises(ConfigError, match="Expected a 'path' to write the batch to"):
        FileConnector(labels=labels).push(manifest, workspace=workspace)
    assert workspace.pending().num_rows == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["batch-1", "labels.jsonl", "pool.parquet", "ws"]
    with pytest.raises(ConfigError, match="Got neither"):
        FileConnector()
    res = CliRunner().invoke(main, ["pull", "-w", str(workspace.path), "--to", "file"])  # neither: it names --labels first
    assert res.exit_code == 2 and res.output.strip() == ("alscale: error: Expected 'labels' to pull from (alscale pull --labels PATH) "
                                                         "or a 'path' to push to (alscale push --path PATH) for the file queue. Got neither."), res.output
    res = CliRunner().invoke(main, ["push", str(manifest.path), "-w", str(workspace.path), "--to", "file"])
    assert res.exit_code == 2 and "'path'" in res.output  # a push still needs --path


def test_a_folder_as_the_file_queue_path_and_overrides_of_a_built_connector_are_refused(tmp_path):
    from alscale.exceptions import ConfigError
    from alscale.queues import FileConnector, make_connector

    folder = tmp_path / "q"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"Expected a file for the file queue's 'path' \(e.g. '.*q/\{run_id\}.jsonl'\). Got the folder '.*q'."):
        make_connector({"kind": "file", "path": str(folder)})
    built = FileConnector(str(tmp_path / "out.jsonl"))
    assert make_connector(built) is built and make_connector(built, path=None) is built
    with pytest.raises(ConfigError, match=r"Expected settings \(a dict\) to apply \['path'\] to. Got a connector"):
        make_connector(built, path=str(tmp_path / "other.jsonl"))


def test_the_evaluation_set_goes_through_a_queue_like_a_batch(tmp_path, workspace):
    """`alscale push WS/evaluation`: its ids are pending in the queue, and the answers pulled back are evaluation labels."""
    batch = workspace.evaluation_batch()
    assert batch == workspace.path / "evaluation"
    eval_ids = workspace.evaluation_ids().tolist()
    result = push(batch, {"kind": "file", "path": str(tmp_path / "{run_id}.csv"), "data_columns": ["text"]}, workspace=workspace)
    assert sorted(result.pushed) == sorted(eval_ids)
    with open(tmp_path / f"{result.run_id}.csv", newline="") as fh:
        assert sorted(int(r["alscale_id"] if "alscale_id" in r else r["id"]) for r in csv.DictReader(fh)) == sorted(eval_ids)
    assert sorted(workspace.pending().column("id").to_pylist()) == sorted(eval_ids)
    labels = tmp_path / "answers.csv"
    labels.write_text("id,label\n" + "".join(f"{i},cat\n" for i in eval_ids))
    pull({"kind": "file", "labels": str(labels)}, workspace=workspace)
    assert workspace.label_counts() == {"training": 0, "evaluation": len(eval_ids), "skipped": 0, "cancelled": 0}
    assert workspace.pending().num_rows == 0
    # written at creation; kept while it is the evaluation set's, and written again where it is not
    written = (batch / "manifest.json").stat().st_mtime_ns
    assert workspace.evaluation_batch() == batch and (batch / "manifest.json").stat().st_mtime_ns == written
    from alscale.loop.idbatch import write_id_batch

    stale = [i for i in workspace.pool_ids().tolist() if i not in eval_ids][:len(eval_ids)]  # another set, left at this path
    write_id_batch(batch, np.array(stale), id_type=workspace.id_type, strategy="evaluation", run_id=result.run_id,
                   seed=0, pool=workspace.config["pool"], id_column="id")
    assert workspace.evaluation_batch() == batch
    assert Manifest.read(batch).batch.column("id").to_pylist() == eval_ids and Manifest.read(batch).run_id == result.run_id
    # the batch.parquet or manifest.json of a batch is the batch; another file is refused in one line
    assert Manifest.read(batch / "batch.parquet").path == batch == Manifest.read(batch / "manifest.json").path
    from alscale.exceptions import OutputError

    with pytest.raises(OutputError, match=r"Expected a batch folder .* Got the file .*pool.parquet'\.$"):
        Manifest.read(workspace.config["pool"])
