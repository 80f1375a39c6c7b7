"""Bad input at the CLI: one line on stderr, exit code 2, nothing half-written."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from alscale.cli import main
from alscale.loop.workspace import CONFIG_NAME, Workspace


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def _one_line_error(out):
    lines = [line for line in out.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("alscale: error: ")


def test_init_eval_set_larger_than_pool(tmp_path, blob_pool):
    code, out = _run("init", tmp_path / "ws", "--pool", blob_pool, "--eval-size", 1000)
    assert code == 2 and _one_line_error(out) and "larger than the pool" in out
    assert not (tmp_path / "ws" / CONFIG_NAME).exists()


def test_init_status_and_label_import(tmp_path, blob_pool):
    code, out = _run("init", tmp_path / "ws", "--pool", blob_pool, "--label-column", "label", "--eval-size", 50,
                     "--initial", 10, "--group-column", "site")
    assert code == 0, out
    ws = Workspace.open(tmp_path / "ws")
    assert ws.config["evaluation"]["size"] == 50 and ws.classes == [0, 1, 2]
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n1,0\n2,1\n3,\n")
    code, out = _run("label", ws.path, labels)
    assert code == 0, out
    assert "3 labels read" in out and "3 new or changed" in out
    table = {r["id"]: r for r in ws.labeled().to_pylist()}
    assert table[1]["label"] == "0" and table[3]["status"] == "skipped"
    code, out = _run("label", ws.path, labels)
    assert "0 new or changed" in out
    code, out = _run("status", ws.path)
    assert code == 0 and "no rounds yet" in out


def test_label_not_in_classes_exit_2(tmp_path, blob_pool):
    Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", settings={"eval_size": 50})
    f = tmp_path / "l.parquet"
    pq.write_table(pa.table({"id": [1, 2], "label": ["0", "seven"]}), f)
    code, out = _run("label", tmp_path / "ws", f)
    assert code == 2 and _one_line_error(out) and "known classes" in out
    assert Workspace.open(tmp_path / "ws").labeled().num_rows == 0


def test_labels_for_ids_not_in_pool_exit_2(tmp_path, blob_pool):
    Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", settings={"eval_size": 50})
    f = tmp_path / "l.csv"
    f.write_text("id,label\n1,0\n5000,1\n")
    code, out = _run("label", tmp_path / "ws", f)
    assert code == 2 and _one_line_error(out) and "not in the pool" in out and "5000" in out
    assert Workspace.open(tmp_path / "ws").labeled().num_rows == 0


def test_newer_schema_exit_2(tmp_path, blob_pool):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 50})
    cfg = json.loads((ws.path / CONFIG_NAME).read_text())
    cfg["schema_version"] = 99
    (ws.path / CONFIG_NAME).write_text(json.dumps(cfg))
    code, out = _run("status", ws.path)
    assert code == 2 and _one_line_error(out) and "schema_version 99" in out


def test_model_classes_mismatch_exit_2(tmp_path, blob_pool):
    from alscale.model.export import linear_to_onnx

    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", settings={"eval_size": 50})
    ids, _ = ws.pool_ids(), None
    train = [i for i in ids.tolist() if i not in set(ws.evaluation_ids().tolist())][:6]
    ws.record_labels([{"id": i, "label": i % 3, "source": "t"} for i in train])
    model = tmp_path / "m.onnx"
    model.write_bytes(linear_to_onnx(np.ones((2, 4)), np.zeros(2), classes=["cat", "dog"]))
    code, out = _run("round", ws.path, "--model", model)
    assert code == 2 and _one_line_error(out) and "Expected the model" in out and "['cat', 'dog']" in out
    assert not list((ws.path / "rounds").glob("*/round.json"))


def test_model_of_the_wrong_feature_width_exit_2_and_keeps_nothing(tmp_path, blob_pool):
    from alscale.model.export import linear_to_onnx

    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", settings={"eval_size": 50})
    train = [i for i in ws.pool_ids().tolist() if i not in set(ws.evaluation_ids().tolist())][:6]
    ws.record_labels([{"id": i, "label": i % 3, "source": "t"} for i in train])
    model = tmp_path / "m7.onnx"  # the pool has 4 features
    model.write_bytes(linear_to_onnx(np.ones((3, 7)), np.zeros(3), classes=[0, 1, 2]))
    code, out = _run("round", ws.path, "--model", model)
    assert code == 2 and _one_line_error(out) and "cannot score rows of 4 features" in out
    assert not list((ws.path / "rounds").glob("*/model.onnx"))  # a rerun with another model may start the round


def test_init_refuses_hint_without_column_and_a_fractional_eval_size(tmp_path, blob_pool):
    code, out = _run("init", tmp_path / "ws", "--pool", blob_pool, "--initial-method", "hint")
    assert code == 2 and _one_line_error(out) and "--hint-column" in out
    code, out = _run("init", tmp_path / "ws", "--pool", blob_pool, "--eval-size", "50.5")
    assert code == 2 and _one_line_error(out) and "50.5" in out
    assert not (tmp_path / "ws" / CONFIG_NAME).exists()


def test_a_round_without_evaluation_labels_says_how_to_get_metrics(tmp_path, blob_pool, ray_local):
    """No label column: the evaluation set has to be labeled like any batch, and round says so."""
    code, out = _run("init", tmp_path / "ws", "--pool", blob_pool, "--eval-size", 50, "--initial", 12, "--batch", 5)
    assert code == 0 and "classes any (none given)" in out and "state/evaluation.parquet" in out, out
    ws = Workspace.open(tmp_path / "ws")
    code, out = _run("round", ws.path, "--actors", 1)
    assert code == 0, out
    seed = pq.read_table(ws.path / "rounds" / "000" / "batch" / "batch.parquet").column("id").to_pylist()
    truth = dict(zip(*[pq.read_table(blob_pool, columns=["id", "label"]).column(c).to_pylist() for c in ("id", "label")]))
    ws.record_labels([{"id": i, "label": truth[i], "source": "t"} for i in seed])
    code, out = _run("round", ws.path, "--actors", 1)
    assert code == 0 and "no metrics: none of the 50 evaluation-set ids is labeled" in out, out
    ws.record_labels([{"id": i, "label": truth[i], "source": "t"} for i in ws.evaluation_ids().tolist()])
    code, out = _run("round", ws.path, "--actors", 1)
    assert code == 0 and "(evaluation set: 50 labeled)" in out and "no metrics" not in out, out


def test_unusable_output_paths_exit_2_with_one_line(tmp_path, blob_pool):
    a_file, a_dir = tmp_path / "a-file", tmp_path / "a-dir"
    a_file.write_text("x")
    a_dir.mkdir()
    code, out = _run("init", a_file, "--pool", blob_pool, "--eval-size", 10)
    assert code == 2 and _one_line_error(out) and "a-file" in out and "Not a directory" in out
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 10})
    png_dir = tmp_path / "a-dir.png"
    png_dir.mkdir()
    result = CliRunner().invoke(main, ["status", str(ws.path), "--plot", str(png_dir)])
    assert result.exit_code == 2 and _one_line_error(result.stderr) and f"Got '{png_dir}', which is a folder." in result.stderr
    png_dir.rmdir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-dir", "a-file", "pool.parquet", "ws"]  # no temp file left
    code, out = _run("simulate", "--dataset", "digits", "--out", a_file, "--strategies", "random", "--seeds", 0)
    assert code == 2 and _one_line_error(out) and f"Expected an output folder at '{a_file}'. Got a file." in out


def test_status_plot_writes_only_a_png_outside_the_workspace(tmp_path, blob_pool):
    """`--plot` used to replace any file with a PNG: a Parquet file of labels, or the workspace's own config."""
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 10})
    labels = tmp_path / "labels.parquet"
    labels.write_bytes(b"PAR1 not a plot")
    config = ws.path / "alscale-workspace.json"
    kept = config.read_bytes()
    for target, message in ((labels, f"Expected --plot to name a .png file. Got '{labels}'"),
                            (config, "Expected --plot to name a .png file."),
                            (ws.path / "state" / "c.png", f"Expected --plot outside the workspace '{ws.path}'")):
        result = CliRunner().invoke(main, ["status", str(ws.path), "--plot", str(target)])
        assert result.exit_code == 2 and _one_line_error(result.stderr) and message in result.stderr, result.output
        assert result.stdout == ""  # refused before the table
    assert labels.read_bytes() == b"PAR1 not a plot" and config.read_bytes() == kept
    assert not (ws.path / "state" / "c.png").exists()
    result = CliRunner().invoke(main, ["status", str(ws.path), "--plot", str(tmp_path / "c.png")])
    assert result.exit_code == 0 and "no round has compared" in result.stderr and not (tmp_path / "c.png").exists()
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    result = CliRunner().invoke(main, ["status", str(ws.path), "--plot", str(notes)])
    assert result.exit_code == 2 and "which is not a PNG image" in result.stderr and notes.read_text() == "not a picture"
    notes.write_bytes(b"\x89PNG\r\n\x1a\n an earlier plot")  # accepted (to be replaced once a round has a composition)
    assert CliRunner().invoke(main, ["status", str(ws.path), "--plot", str(notes)]).exit_code == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--initial", 0], "The 'initial_size' parameter (--initial) must be an int >= 1. Got 0 instead."),
        (["--batch", 0], "The 'batch_size' parameter (--batch) must be an int >= 1. Got 0 instead."),
        (["--budget", 0], "The 'budget' parameter (--budget) must be an int >= 1. Got 0 instead."),
        (["--seed", -3], "The 'seed' parameter (--seed) must be an int >= 0. Got -3 instead."),  # rounds would select with seed -2, -1, ...
        (["--target", 2], "The target (--target) of metric 'accuracy' must be a number in [0, 1]. Got 2.0 instead."),
        (["--metric", "log_loss", "--target", "nan"], "The target (--target) of metric 'log_loss' must be a number in [0, inf]. Got nan instead."),
        (["--classes", " , "], "Expected at least one class name. Got an empty list"),
        (["--eval-size", "nan"], "The 'eval_size' setting must be a row count or a fraction in (0, 1). Got nan instead."),
        (["--eval-size", "inf"], "The 'eval_size' setting must be a row count or a fraction in (0, 1). Got inf instead."),
        (["--budget", 50, "--initial", 100], "Expected a budget (--budget) of at least the seed set's 100 labels (--initial). Got 50."),
        (["--hint-column", "site"], "Got initial method 'random', which ignores it; add --initial-method hint"),
        (["--label-column", "label", "--classes", "0,1"], "Expected the values of label column 'label' among the classes ['0', '1']. Got '2';"),
    ],
)
def test_init_refuses_settings_the_rounds_would_fail_on(tmp_path, blob_pool, args, message):
    code, out = _run("init", tmp_path / "ws", "--pool", blob_pool, "--eval-size", 50, *args)
    assert code == 2 and _one_line_error(out) and message in out, out
    assert not (tmp_path / "ws" / CONFIG_NAME).exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--k", 0], "The 'k' parameter must be an int >= 1. Got 0 instead."),  # used to fall back to the workspace's batch
        (["--seed", -1], "The 'seed' parameter must be an int >= 0. Got -1 instead."),
        (["--actors", 0], "The 'actors' parameter must be an int >= 1. Got 0 instead."),
    ],
)
def test_round_refuses_bad_options_before_starting_the_round(tmp_path, blob_pool, args, message):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", settings={"eval_size": 50})
    code, out = _run("round", ws.path, *args)
    assert code == 2 and _one_line_error(out) and message in out, out
    assert not (ws.path / "rounds").exists() or not any((ws.path / "rounds").iterdir())


@pytest.mark.parametrize(
    "args,message",
    [
        (["--seeds=0,-1"], "The 'seeds' parameter must hold ints >= 0. Got [0, -1] instead."),  # was sklearn's traceback
        (["--fractions", "0.9,nan"], "The 'fractions' parameter must hold numbers > 0 (of the full-data metric). Got [0.9, nan]."),
        (["--eval-size", "inf"], "The 'eval_size' setting must be a row count or a fraction in (0, 1). Got inf instead."),
        (["--eval-size", "150.5"], "The 'eval_size' setting must be a row count >= 0 or a fraction in (0, 1). Got 150.5 instead."),
    ],
)
def test_simulate_refuses_bad_numbers_with_one_line(tmp_path, blob_pool, args, message):
    code, out = _run("simulate", "--pool", blob_pool, "--out", tmp_path / "sim", *args)
    assert code == 2 and _one_line_error(out) and message in out, out
    assert not (tmp_path / "sim" / "summary.json").exists()


def test_label_and_status_count_training_and_evaluation_labels_apart(tmp_path, blob_pool):
    """The budget counts training labels only: status and label say how many of each there are."""
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", settings={"eval_size": 50})
    evaluation = ws.evaluation_ids()[:3].tolist()
    outside = [i for i in range(300) if i not in set(ws.evaluation_ids().tolist())]
    training, skipped = outside[:5], outside[5:7]
    f = tmp_path / "labels.csv"
    f.write_text("id,label\n" + "".join(f"{i},1\n" for i in evaluation + training) + "".join(f"{i},\n" for i in skipped))
    code, out = _run("label", ws.path, f)
    assert code == 0 and ("labeled set now 5 for training, 3 of the evaluation set (not used: rounds take the evaluation set's "
                          "labels from the pool's column 'label'), 2 skipped") in out, out
    assert ws.label_counts() == {"training": len(ws.training_labels()[0]), "evaluation": 3, "skipped": 2, "cancelled": 0}
    code, out = _run("status", ws.path)
    # a label column labels the evaluation set (what rounds evaluate on): the 3 recorded by hand are not what counts there
    assert code == 0 and "evaluation set 50 (50 labeled from column 'label')  labeled 5 for training  skipped 2  pending 0" in out, out


def test_status_counts_the_evaluation_labels_a_workspace_evaluates_on(tmp_path, blob_pool, pool_writer):
    """Without a label column: the labels recorded for evaluation ids; with one: the column's non-null rows."""
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"eval_size": 50})
    evaluation = ws.evaluation_ids()[:3].tolist()
    outside = [i for i in range(300) if i not in set(ws.evaluation_ids().tolist())][:4]
    ws.record_labels([{"id": i, "label": "a", "source": "t"} for i in evaluation + outside])
    code, out = _run("status", ws.path)
    assert code == 0 and "evaluation set 50  labeled 4 for training, 3 of the evaluation set  skipped 0  pending 0" in out, out

    X = pq.read_table(blob_pool, columns=["features"]).column("features").combine_chunks().flatten().to_numpy().reshape(300, 4)
    truth = [None if i % 3 == 0 else f"c{i % 2}" for i in range(300)]  # a partly labeled pool
    partly = pool_writer(tmp_path / "partly.parquet", X, truth)
    ws = Workspace.create(tmp_path / "ws2", pool=partly, label_column="label", settings={"eval_size": 60})
    expected = sum(truth[i] is not None for i in ws.evaluation_ids().tolist())
    assert 0 < expected < 60
    code, out = _run("status", ws.path)
    assert code == 0 and f"evaluation set 60 ({expected} labeled from column 'label')  labeled 0 for training  skipped 0" in out, out


def test_init_with_an_empty_evaluation_set_does_not_ask_to_label_it(tmp_path, blob_pool):
    code, out = _run("init", tmp_path / "ws", "--pool", blob_pool, "--eval-size", 0)
    assert code == 0 and "evaluation set 0," in out and "label the evaluation set" not in out, out
    code, out = _run("init", tmp_path / "ws2", "--pool", blob_pool, "--eval-size", 10)
    assert code == 0 and "label the evaluation set too" in out, out


def test_status_shows_the_history_while_the_pool_is_away(tmp_path, blob_pool):
    """A label-column workspace counts its evaluation labels from the pool: an unreadable pool used to fail the whole status."""
    import shutil

    pool = tmp_path / "moved.parquet"
    shutil.copyfile(blob_pool, pool)
    ws = Workspace.create(tmp_path / "ws", pool=pool, label_column="label", settings={"eval_size": 50})
    pool.rename(tmp_path / "elsewhere.parquet")
    code, out = _run("status", ws.path)
    assert code == 0 and "labels of column 'label' not counted, the pool is not readable now: Expected Parquet files" in out, out
    assert "(no rounds yet: run `alscale round`)" in out


def test_a_round_given_a_file_that_is_no_model_says_one_line_and_writes_nothing(tmp_path, blob_pool, ray_local, caplog):
    """It used to log the unanswered-batch warning, write rounds/002/inputs.json, then fail on the model."""
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label",
                          settings={"eval_size": 50, "stop_set_size": 50, "initial_size": 12, "batch_size": 10})
    assert _run("round", ws.path)[0] == 0
    seed = pq.read_table(ws.path / "rounds/000/batch/batch.parquet").column("id").to_pylist()
    ws.record_labels([{"id": i, "label": i % 3, "source": "t"} for i in seed])
    assert _run("round", ws.path, "--actors", 1)[0] == 0  # round 1; its batch is left unlabeled
    text = tmp_path / "hostname"
    text.write_text("not a model\n")
    with caplog.at_level("WARNING", logger="alscale.loop.rounds"):
        code, out = _run("round", ws.path, "--model", text)
    assert code == 2 and _one_line_error(out) and "Cannot read the ONNX model" in out, out
    assert "nor pending" not in caplog.text  # the warning a round logs once it starts
    assert not (ws.path / "rounds/002").exists()


def test_a_strategy_that_needs_an_embedding_is_refused_for_a_model_without_one(tmp_path, blob_pool):
    """init used to take it, and each round copied the model, evaluated it and wrote its state before the selection failed."""
    from alscale.model.export import linear_to_onnx

    model = tmp_path / "m.onnx"  # probabilities only
    model.write_bytes(linear_to_onnx(np.ones((3, 4)), np.zeros(3), classes=[0, 1, 2], embedding=False))
    hint = "needs an embedding output; model .*m.onnx' has none among \\[.*'probabilities'.*\\]. Export its penultimate layer"
    code, out = _run("init", tmp_path / "ws", "--pool", blob_pool, "--label-column", "label", "--model", model, "--strategy", "badge")
    assert code == 2 and _one_line_error(out) and "Strategy 'badge'" in out and "'embedding'" in out, out
    assert re.search(hint, out) and not (tmp_path / "ws").exists()
    code, out = _run("init", tmp_path / "ws", "--pool", blob_pool, "--label-column", "label", "--model", model, "--eval-size", 50,
                     "--initial", 12)
    assert code == 0, out
    assert _run("round", tmp_path / "ws")[0] == 0  # the seed set, chosen without a model
    ws = Workspace.open(tmp_path / "ws")
    seed = pq.read_table(ws.path / "rounds/000/batch/batch.parquet").column("id").to_pylist()
    ws.record_labels([{"id": i, "label": i % 3, "source": "t"} for i in seed])
    for strategy in ("coreset", "cluster-margin"):
        code, out = _run("round", ws.path, "--strategy", strategy)
        assert code == 2 and _one_line_error(out) and f"Strategy {strategy!r} needs an embedding output" in out, out
    assert not (ws.path / "rounds/001").exists()


def _workspace_after_a_seed_round(tmp_path, blob_pool):
    """A workspace whose round 000 is recorded complete (no batch kept) and with 6 training labels: the next round is 001."""
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", settings={"eval_size": 50, "stop_set_size": 40})
    train = [i for i in ws.pool_ids().tolist() if i not in set(ws.evaluation_ids().tolist())][:6]
    ws.record_labels([{"id": i, "label": i % 3, "source": "t"} for i in train])
    (ws.path / "rounds" / "000").mkdir(parents=True)
    (ws.path / "rounds" / "000" / "round.json").write_text(json.dumps({"round": 0, "labels": 0, "kind": "seed", "batch": None}))
    return ws


@pytest.mark.parametrize(
    "text,got",
    [
        ('{"round": 1', "Got unreadable JSON (Expecting ',' delimiter"),  # cut short: a traceback, exit 1, from status and round
        ("[1, 2]", "to be an object with an integer round and labels. Got [1, 2];"),
        ('{"round": "0", "labels": 0}', "Got {'round': '0', 'labels': 0};"),
        (b"\xff\xfe", "Got unreadable JSON ("),
    ],
)
def test_a_damaged_round_record_is_one_line_for_status_and_round(tmp_path, blob_pool, text, got):
    ws = _workspace_after_a_seed_round(tmp_path, blob_pool)
    record = ws.path / "rounds" / "000" / "round.json"
    record.write_bytes(text if isinstance(text, bytes) else text.encode())
    expected = (f"Expected the record of round 000 in '{record}'", got,
                f"restore it from a backup, or delete '{record.parent}' (and any later round) to run round 000 again.")
    for command in ("status", "round"):
        code, out = _run(command, ws.path)
        assert code == 2 and _one_line_error(out) and all(part in out for part in expected), (command, out)
    assert not (ws.path / "rounds" / "001").exists()


@pytest.mark.parametrize("text", ['{"k": 10, "seed"', '"k"'])
def test_a_damaged_inputs_file_of_a_round_being_finished_is_one_line(tmp_path, blob_pool, text):
    ws = _workspace_after_a_seed_round(tmp_path, blob_pool)
    started = ws.path / "rounds" / "001"
    started.mkdir()
    (started / "model.onnx").write_bytes(b"kept from the interrupted run")  # so the round is resumed, not started over
    (started / "inputs.json").write_text(text)
    before = {p.name: p.read_bytes() for p in started.iterdir()}
    code, out = _run("round", ws.path, "--actors", 1)
    assert code == 2 and _one_line_error(out), out
    assert f"Expected the inputs of unfinished round 001 in '{started / 'inputs.json'}'" in out
    assert f"delete '{started}' to start the round over." in out
    assert {p.name: p.read_bytes() for p in started.iterdir()} == before  # nothing trained, written or replaced


@pytest.mark.parametrize(
    "content,got",
    [
        (b"junk\n", "Got an unreadable file ("),
        (b"\x93NUMPY\x01\x00v\x00{'descr'", "Got an unreadable file (EOF: reading array header"),  # cut short
        (None, "an array of shape (40,). Got shape (3,);"),  # a readable array, not of the stop set's 40 rows
    ],
)
def test_damaged_stop_set_predictions_are_refused_before_the_round_trains(tmp_path, blob_pool, content, got):
    """A junk file was read at the end of the round: round 001's model was trained and written, then a traceback."""
    import io

    ws = _workspace_after_a_seed_round(tmp_path, blob_pool)
    path = ws.path / "rounds" / "000" / "stop_predictions.npy"
    if content is None:
        buf = io.BytesIO()
        np.save(buf, np.array(["0", "1", "2"]))
        content = buf.getvalue()
    path.write_bytes(content)
    code, out = _run("round", ws.path, "--actors", 1)
    assert code == 2 and _one_line_error(out), out
    assert f"Expected a round's predictions on the stop set in '{path}'" in out and got in out, out
    assert f"delete '{path.parent}' (and any later round) to run round 000 again." in out
    assert not (ws.path / "rounds" / "001").exists()


@pytest.mark.parametrize("key", ["pool", "pool_rows", "id_column", "classes"])
def test_a_config_without_a_key_is_one_line_for_label_and_status(tmp_path, blob_pool, key):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, classes=["0", "1", "2"], settings={"eval_size": 50})
    config = json.loads((ws.path / CONFIG_NAME).read_text())
    del config[key]
    (ws.path / CONFIG_NAME).write_text(json.dumps(config))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n1,0\n2,seven\n")  # 'seven' was taken once the classes were gone
    for args in (("label", ws.path, labels), ("status", ws.path)):
        code, out = _run(*args)
        assert code == 2 and _one_line_error(out) and f"Expected the key {key!r} (" in out and CONFIG_NAME in out, (args, out)
    assert not list((ws.path / "state").glob("labels-*.parquet"))  # nothing recorded
