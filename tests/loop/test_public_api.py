"""The loop's Python functions: the defaults of the CLI, and bad values refused in one line before anything is written."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import alscale.loop
from alscale.cli import main
from alscale.exceptions import AlscaleError, ConfigError, StrategyError
from alscale.loop import Workspace, import_labels, load_history, run_round, simulate


def _one_line(exc: pytest.ExceptionInfo) -> bool:
    return isinstance(exc.value, AlscaleError) and "\n" not in str(exc.value)


def test_seed_sets_the_evaluation_set_as_init_seed_does(tmp_path, blob_pool):
    result = CliRunner().invoke(main, ["init", str(tmp_path / "cli"), "--pool", str(blob_pool), "--seed", "7", "--eval-size", "40"])
    assert result.exit_code == 0, result.output
    ws = Workspace.create(tmp_path / "py", pool=blob_pool, settings={"seed": 7, "eval_size": 40})
    cli = Workspace.open(tmp_path / "cli")
    assert ws.config["evaluation"]["seed"] == 7  # it stayed 0: another evaluation set than the command line's
    assert ws.evaluation_ids().tolist() == cli.evaluation_ids().tolist()
    assert ws.stop_set_ids().tolist() == cli.stop_set_ids().tolist()


@pytest.mark.parametrize("kwargs, match", [
    ({"path": None}, "'path' parameter must be a path"),
    ({"pool": None}, "'pool' parameter must be a path or a list of paths"),
    ({"pool": 5}, "'pool' parameter"),
    ({"model": 5}, "'model' parameter must be a path"),
    ({"id_column": None}, "'id_column' parameter must be a column name"),
    ({"classes": "0,1,2"}, "'classes' parameter must be a list of class names"),  # it became ['0', ',', '1', ...]
    ({"classes": 3}, "'classes' parameter"),
    ({"group_columns": 5}, "'group_columns' parameter"),
    ({"settings": "seed"}, "'settings' parameter must be a dict"),
    ({"settings": {"features": 5}}, "'features' setting"),
    ({"settings": {"min_gain_per_label": "x"}}, "'min_gain_per_label' setting must be a finite number"),
    ({"settings": {"kappa_threshold": float("nan")}}, "'kappa_threshold' setting"),
    ({"settings": {"composition_threshold": None}}, "'composition_threshold' setting"),
    ({"settings": {"strategy": 3}}, "strategy must be a name"),
])
def test_create_refuses_bad_values_before_writing(tmp_path, blob_pool, kwargs, match):
    args = {"path": tmp_path / "ws", "pool": blob_pool, **kwargs}
    with pytest.raises(AlscaleError, match=match) as exc:
        Workspace.create(args.pop("path"), **args)
    assert _one_line(exc)
    assert not (tmp_path / "ws").exists()


def test_create_takes_one_group_column_or_feature_column_as_a_string(tmp_path, blob_pool):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, group_columns="site", settings={"features": "features", "seed": np.int64(2)})
    assert ws.config["group_columns"] == ["site"]  # it asked for columns 's', 'i', 't', 'e'
    assert ws.settings["features"] == ["features"]  # rounds would read columns 'f', 'e', ...
    assert type(ws.settings["seed"]) is int
    assert Workspace.create(tmp_path / "ws2", pool=blob_pool, group_columns=None).config["group_columns"] == []


def test_open_and_round_refuse_a_non_path(tmp_path):
    for call in (lambda: Workspace.open(None), lambda: run_round(5), lambda: load_history(None)):
        with pytest.raises(ConfigError, match="must be a path") as exc:
            call()
        assert _one_line(exc)


def test_an_unknown_strategy_is_refused_before_the_round_starts(tmp_path, blob_pool):
    ws = Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", settings={"eval_size": 60, "initial_size": 12})
    run_round(ws)  # the seed round: no model, no Ray
    ids = [i for i in ws.pool_ids().tolist() if i not in set(ws.evaluation_ids().tolist())][::20]
    ws.record_labels([{"id": i, "label": str(i // 100), "source": "t"} for i in ids])
    with pytest.raises(StrategyError, match="Did you mean 'margin'"):
        run_round(ws, strategy="margn")
    # the typo was found after the model was trained and the round's inputs recorded, so the round
    # refused to finish with strategy="margin" until its folder was deleted
    assert not (ws.rounds_dir / "001").exists()
    with pytest.raises(StrategyError, match="needs a committee of models"):  # a round has one model: it failed after training too
        run_round(ws, strategy="qbc-kl")
    assert not (ws.rounds_dir / "001").exists()
    with pytest.raises(ConfigError, match="'model' parameter must be a path"):
        run_round(ws, model=5)


def test_a_committee_strategy_is_refused_for_the_loop(tmp_path, blob_pool):
    result = CliRunner().invoke(main, ["init", str(tmp_path / "ws"), "--pool", str(blob_pool), "--strategy", "qbc-vote"])
    assert result.exit_code == 2 and "needs a committee" in result.output  # every model round failed at selection
    assert not (tmp_path / "ws").exists()
    with pytest.raises(StrategyError, match="needs a committee of models"):
        Workspace.create(tmp_path / "ws", pool=blob_pool, settings={"strategy": "qbc-kl"})
    with pytest.raises(StrategyError, match="needs a committee of models"):
        simulate(blob_pool, out=tmp_path / "sim", strategies=["margin", "qbc-vote"])
    assert not (tmp_path / "sim").exists()


def test_import_labels_is_public_and_takes_a_workspace_path(tmp_path, blob_pool):
    assert "import_labels" in alscale.loop.__all__
    Workspace.create(tmp_path / "ws", pool=blob_pool, label_column="label", settings={"eval_size": 60})
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n1,0\n2,1\n")
    assert import_labels(tmp_path / "ws", labels) == (2, 2)  # it needed an open Workspace (AttributeError on a path)
    assert import_labels(str(tmp_path / "ws"), labels) == (2, 0)
    assert load_history(tmp_path / "ws") == []
    with pytest.raises(ConfigError, match="'path' parameter must be a path"):
        import_labels(tmp_path / "ws", None)


def test_simulate_checks_its_arguments_before_removing_earlier_runs(tmp_path, blob_pool):
    out = tmp_path / "sim"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "kept").write_text("an earlier simulation's rounds")
    with pytest.raises(ConfigError, match="trainer must be one of"):
        simulate(blob_pool, out=out, trainer="svm", budget=40)
    assert (out / "runs" / "kept").exists()
    with pytest.raises(StrategyError, match="'margn'"):  # one name, not the letters 'm', 'a', ...
        simulate(blob_pool, out=out, strategies="margn")
    for kwargs, match in (({"seeds": 1.5}, "'seeds' parameter"), ({"fractions": ["x"]}, "'fractions' parameter"),
                          ({"actors": 0}, "'actors' parameter"), ({"eval_seed": -1}, "'eval_seed' parameter"),
                          ({"features": 5}, "'features' parameter"), ({"out": None}, "'out' parameter")):
        args = {"out": out, **kwargs}
        with pytest.raises(ConfigError, match=match) as exc:
            simulate(blob_pool, **args)
        assert _one_line(exc)
