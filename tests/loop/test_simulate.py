"""Simulation on scikit-learn's digits, every round through the engine on a real local Ray."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from alscale.exceptions import OutputError
from alscale.loop.simulate import area_under_curve, digits_pool, labels_needed, simulate

pytestmark = pytest.mark.ray


def _snapshot(folder):
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def _cli(*args):
    from click.testing import CliRunner

    from alscale.cli import main

    res = CliRunner().invoke(main, ["simulate", *map(str, args)])
    return res.exit_code, res.output


def test_the_tables_goal_for_a_loss_is_the_full_loss_over_the_fraction():
    """90% of a full-data log loss of 0.1183 is a loss of 0.131 (what the labels-needed column counts), not 0.106."""
    from alscale.loop.simulate import _table

    needed = {"0.9": {"random": 40}}
    aulc = {"random": {"mean": 0.2, "std": 0.01}}
    head = _table(needed, aulc, ["random"], 0.1183, "log_loss", [0.9], 60).splitlines()[0]
    assert f"labels to 90% of full (log_loss <= {0.1183 / 0.9:.3f})" in head
    head = _table(needed, aulc, ["random"], 0.9, "accuracy", [0.9], 60).splitlines()[0]
    assert f"labels to 90% of full ({0.9 * 0.9:.3f})" in head


def test_aulc_and_labels_needed_reference():
    x, y = np.array([10, 20, 40]), np.array([0.5, 0.7, 0.8])
    assert area_under_curve(x, y) == pytest.approx(np.trapezoid(y, x) / 30)
    assert labels_needed(x, y, 0.7) == 20 and labels_needed(x, y, 0.9) is None
    assert labels_needed(x, np.array([0.9, 0.5, 0.3]), 0.5, higher_is_better=False) == 20


def test_digits_simulation_end_to_end(tmp_path, ray_local):
    pool = digits_pool(tmp_path / "digits.parquet")
    out = tmp_path / "sim"
    s = simulate(pool, out=out, strategies=["margin"], seeds=[0, 1], initial_size=20, batch_size=20, budget=60,
                 eval_size=300, actors=1)
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert len(rows) == 2 * 2 * 3
    assert sorted({int(r["labels"]) for r in rows}) == [20, 40, 60]
    assert json.loads((out / "curves.json").read_text())[0]["strategy"] == rows[0]["strategy"]
    for seed in ("0", "1"):  # paired: same initial set, so the first model is the same for each strategy
        first = {r["strategy"]: float(r["accuracy"]) for r in rows if r["seed"] == seed and r["round"] == "0"}
        assert first["random"] == first["margin"]
    assert (out / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "table.md").read_text()
    assert "| random |" in table and "| margin |" in table
    # summary numbers recomputed from the CSV
    acc = {st: np.array([[float(r["accuracy"]) for r in rows if r["strategy"] == st and r["seed"] == sd] for sd in "01"])
           for st in ("random", "margin")}
    for st in acc:
        ref = np.mean([area_under_curve(np.array([20, 40, 60]), c) for c in acc[st]])
        assert s["aulc"][st]["mean"] == pytest.approx(ref)
    assert 0.8 < s["full_metric"] <= 1.0

    # the same folder again: refused (it silently replaced the first run's results), then replaced with force
    (out / "notes.txt").write_text("mine")
    again = dict(strategies=["margin"], seeds=[0], initial_size=20, batch_size=30, budget=50, eval_size=300, actors=1)
    before = _snapshot(out)
    with pytest.raises(OutputError, match="Expected an output folder without an earlier simulation's results"):
        simulate(pool, out=out, **again)
    assert _snapshot(out) == before
    simulate(pool, out=out, force=True, **again)  # nothing of the first run is reused
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert sorted({int(r["labels"]) for r in rows}) == [20, 50]
    batch = out / "runs" / "margin" / "seed0" / "000" / "batch" / "batch.parquet"
    assert pq.read_table(batch).num_rows == 30
    assert not (out / "runs" / "margin" / "seed1").exists() and (out / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_margin_beats_random_on_digits(tmp_path, ray_local):
    pool = digits_pool(tmp_path / "digits.parquet")
    s = simulate(pool, out=tmp_path / "sim", strategies=["margin"], seeds=[0, 1, 2], initial_size=20, batch_size=20,
                 budget=120, eval_size=500, actors=1)
    assert s["aulc"]["margin"]["mean"] > s["aulc"]["random"]["mean"] + 0.01
    wins = sum(m > r for m, r in zip(s["aulc"]["margin"]["per_seed"], s["aulc"]["random"]["per_seed"]))
    assert wins >= 2


@pytest.mark.parametrize("args, message", [
    (["--strategies", "margn"], "Unknown strategy 'margn'"),
    (["--strategies", "qbc-vote"], "Got 'qbc-vote', which needs a committee of models."),
    (["--budget", 10], "The 'budget' parameter must be an int >= 20. Got 10 instead."),
    (["--eval-size", 300, "--budget", 1500], "The evaluation set (300) plus the budget (1500) must fit in the pool (1797 rows)."),
    (["--label-column", "oracle"], "Expected columns ['oracle'] in pool digits."),
    (["--seeds", "0,0"], "The 'seeds' parameter must not repeat a seed (each seed is one run of every strategy). Got [0, 0]."),
    (["--eval-size", "2.0"], "Got 2.0 instead; a float is a fraction of the pool: pass the int 2 for 2 rows."),
])
def test_a_refused_digits_simulation_writes_nothing(tmp_path, args, message):
    """--dataset digits wrote OUT/pool.parquet before the arguments were checked."""
    code, out = _cli("--dataset", "digits", "--out", tmp_path / "new", *args)
    assert code == 2 and out.startswith("alscale: error: ") and len(out.strip().splitlines()) == 1 and message in out, out
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    code, out = _cli("--dataset", "digits", "--out", tmp_path / "old", *args)
    assert code == 2 and message in out, out
    assert _snapshot(tmp_path / "old") == {"notes.txt": b"mine"}


def test_an_earlier_simulation_is_kept_unless_force(tmp_path, blob_pool):
    out = tmp_path / "sim"
    (out / "runs" / "margin" / "seed0" / "000").mkdir(parents=True)
    (out / "runs" / "margin" / "seed0" / "000" / "model.onnx").write_bytes(b"onnx")
    (out / "summary.json").write_text("{}")
    before = _snapshot(out)
    with pytest.raises(OutputError, match=r"Got '.*sim' holding runs/, summary.json; set force \(--force\) to replace them\."):
        simulate(blob_pool, out=out, strategies=["margin"], budget=40)
    code, text = _cli("--pool", blob_pool, "--out", out, "--budget", 40)
    assert code == 2 and "holding runs/, summary.json" in text and "--force" in text, text
    assert _snapshot(out) == before
    assert "--force" in _cli("--help")[1]


def test_the_metric_help_says_what_simulate_uses_it_for():
    """It said "and the target and gain stopping rules watch", copied from init: a simulation has no stopping rules."""
    text = " ".join(_cli("--help")[1].split())
    assert "The metric of the labels-needed table, the learning-curve plot and the area under it." in text
    assert "stopping" not in text


def test_force_never_removes_a_runs_folder_of_other_files(tmp_path, blob_pool):
    out = tmp_path / "project"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "events.out.tfevents.1").write_bytes(b"tensorboard")  # TensorBoard's default folder is runs/
    before = _snapshot(out)
    with pytest.raises(OutputError, match="to hold an earlier simulation's rounds .* nothing was removed"):
        simulate(blob_pool, out=out, strategies=["margin"], budget=40, force=True)
    with pytest.raises(OutputError, match="set force"):
        simulate(blob_pool, out=out, strategies=["margin"], budget=40)
    assert _snapshot(out) == before
    (out / "file").write_text("")
    with pytest.raises(OutputError, match="Expected an output folder at .*file'. Got a file."):
        simulate(blob_pool, out=out / "file", strategies=["margin"], budget=40)


def test_one_fraction_or_seed_is_a_list_of_one(tmp_path, blob_pool):
    from alscale.loop.simulate import _prepare

    plan = _prepare(blob_pool, out=tmp_path / "sim", fractions=0.9, seeds=np.int64(4), budget=40)
    assert (plan.fractions, plan.seeds, type(plan.seeds[0])) == ([0.9], [4], int)
    assert not (tmp_path / "sim").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"fractions": "0.9"}, "The 'fractions' parameter must be a number or a list of numbers. Got the string '0.9' instead."),
    ({"seeds": "0"}, "The 'seeds' parameter must be an int or a list of ints. Got the string '0' instead."),
    ({"seeds": [0, -1]}, "The 'seeds' parameter must hold ints >= 0. Got [0, -1] instead."),
    ({"seeds": [0, 1.0]}, "The 'seeds' parameter must hold ints >= 0. Got [0, 1.0] instead."),
    ({"eval_size": 2.0}, "The 'eval_size' setting must be a row count >= 0 or a fraction in (0, 1). Got 2.0 instead; "
                         "a float is a fraction of the pool: pass the int 2 for 2 rows."),
    ({"eval_size": 0}, "The 'eval_size' setting must give an evaluation set of at least 1 row. Got 0."),
])
def test_strings_negative_seeds_and_whole_float_eval_sizes_are_refused_in_one_line(tmp_path, blob_pool, kwargs, message):
    from alscale.exceptions import ConfigError
    from alscale.loop.simulate import check_simulation

    with pytest.raises(ConfigError) as err:
        check_simulation(blob_pool, out=tmp_path / "sim", budget=40, **kwargs)
    assert str(err.value) == message
    assert not (tmp_path / "sim").exists()


def test_a_failed_simulation_closes_its_progress_bar_first(tmp_path, blob_pool, ray_local, monkeypatch, capsys):
    """The one-line error came glued to the unfinished bar's line."""
    import importlib

    sim = importlib.import_module("alscale.loop.simulate")  # the package's `simulate` is the function

    def fail(*_args, **_kwargs):
        raise RuntimeError("a round failed")

    bars = []
    make_bar = sim._progress_bar
    monkeypatch.setattr(sim, "_run_one", fail)
    monkeypatch.setattr(sim, "_progress_bar", lambda total, enabled: bars.append(make_bar(total, enabled)) or bars[-1])
    with pytest.raises(RuntimeError, match="a round failed"):
        simulate(blob_pool, out=tmp_path / "sim", strategies=["margin"], budget=40, progress=True)
    assert len(bars) == 1 and bars[0].disable  # tqdm's mark of a closed bar: its line ended before the error's
    assert "simulating" in capsys.readouterr().err


# --- review fixes: a pool in OUT, feature columns, interrupted runs, strategies as a string, the legend ---------


def test_dataset_digits_never_replaces_another_pool_in_out(tmp_path, blob_pool):
    """`--dataset digits --out DIR` replaced a user's DIR/pool.parquet with the digits pool, exit 0, even without --force."""
    out = tmp_path / "sim"
    out.mkdir()
    (out / "pool.parquet").write_bytes(blob_pool.read_bytes())
    before = _snapshot(out)
    for force in ([], ["--force"]):  # --force replaces a simulation's results, never a pool
        code, text = _cli("--dataset", "digits", "--out", out, "--strategies", "margin", "--seeds", 0, "--budget", 40, *force)
        assert code == 2 and text.startswith("alscale: error: ") and len(text.strip().splitlines()) == 1, text
        assert f"Expected no pool.parquet in '{out}', or the digits dataset" in text, text
        assert "Got a pool of 300 rows with columns ['id', 'features', 'label', 'site']" in text, text
        assert _snapshot(out) == before
    (out / "pool.parquet").write_text("not a pool")
    code, text = _cli("--dataset", "digits", "--out", out, "--strategies", "margin", "--seeds", 0, "--budget", 40)
    assert code == 2 and "Got a file that cannot be read as Parquet" in text, text
    assert (out / "pool.parquet").read_text() == "not a pool"


def test_dataset_digits_uses_the_digits_pool_an_earlier_run_left_in_out(tmp_path, ray_local):
    """Re-running `--dataset digits` into its own --out (with --force) keeps working: that pool.parquet is the dataset."""
    import pyarrow as pa

    out = tmp_path / "sim"
    out.mkdir()
    # the same table written differently (another row-group size, as another pyarrow version might write it)
    pq.write_table(pq.read_table(digits_pool(tmp_path / "digits.parquet")), out / "pool.parquet", row_group_size=500)
    before = (out / "pool.parquet").read_bytes()
    (out / "summary.json").write_text("{}")  # an earlier run's results
    code, text = _cli("--dataset", "digits", "--out", out, "--strategies", "margin", "--seeds", 0, "--budget", 40,
                      "--eval-size", 300, "--actors", 1, "--quiet", "--force")
    assert code == 0, text
    assert (out / "pool.parquet").read_bytes() == before  # used as it is, not rewritten
    assert json.loads((out / "summary.json").read_text())["config"]["pool_rows"] == 1797
    assert isinstance(pq.read_table(out / "pool.parquet"), pa.Table)


@pytest.mark.parametrize("features", [["site"], ["features", "site"], "site"])
def test_feature_columns_select_refuses_are_refused_by_simulate_in_one_line(tmp_path, blob_pool, features):
    """A string column as features gave a traceback (ValueError: could not convert string to float), exit 1."""
    from alscale.exceptions import PoolSchemaError
    from alscale.loop.simulate import check_simulation
    from alscale.pool.features import detect_features

    names = [features] if isinstance(features, str) else features
    with pytest.raises(PoolSchemaError) as reference:  # select's rule, the reference
        detect_features(pq.read_schema(blob_pool), "id", names)
    with pytest.raises(PoolSchemaError) as err:
        check_simulation(blob_pool, out=tmp_path / "sim", budget=40, features=features)
    assert str(err.value) == str(reference.value) == "Column 'site' of type string cannot be used as features."
    code, text = _cli("--pool", blob_pool, "--out", tmp_path / "sim", "--budget", 40, *(a for n in names for a in ("--features", n)))
    assert (code, text) == (2, f"alscale: error: {reference.value}\n")
    assert not (tmp_path / "sim").exists()


def test_strategies_as_one_string_are_split_on_commas_as_the_cli_splits_them(tmp_path, blob_pool):
    from alscale.exceptions import StrategyError
    from alscale.loop.simulate import _prepare, check_simulation

    plan = _prepare(blob_pool, out=tmp_path / "sim", strategies="margin, entropy,", budget=40)
    assert plan.strategies == ["random", "margin", "entropy"]
    with pytest.raises(StrategyError, match="Unknown strategy 'foo'"):  # it was one unknown name 'margin,foo'
        check_simulation(blob_pool, out=tmp_path / "sim", strategies="margin,foo", budget=40)
    code, text = _cli("--pool", blob_pool, "--out", tmp_path / "sim", "--strategies", "margin,foo", "--budget", 40)
    assert code == 2 and "Unknown strategy 'foo'" in text, text


def _interrupt_in_a_round(monkeypatch):
    """Make the first round write its model, then raise KeyboardInterrupt (Ctrl-C), as a real round could."""
    import importlib

    sim = importlib.import_module("alscale.loop.simulate")

    def interrupted(*_args, run_dir, **_kwargs):
        (run_dir / "000").mkdir(parents=True)
        (run_dir / "000" / "model.onnx").write_bytes(b"half a round")
        raise KeyboardInterrupt

    monkeypatch.setattr(sim, "_run_one", interrupted)


def test_an_interrupted_simulation_removes_what_it_wrote_and_runs_again(tmp_path, blob_pool, ray_local, monkeypatch):
    """Ctrl-C left full_model.onnx and runs/, and the same command was refused as 'an earlier simulation's results'."""
    out = tmp_path / "sim"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = dict(strategies=["margin"], seeds=[0], budget=40, eval_size=60, actors=1)
    with monkeypatch.context() as patch:
        _interrupt_in_a_round(patch)
        with pytest.raises(KeyboardInterrupt):
            simulate(blob_pool, out=out, **args)
        assert _snapshot(out) == {"notes.txt": b"mine"}
        with pytest.raises(KeyboardInterrupt):  # a folder the run created goes, with its parents it created
            simulate(blob_pool, out=tmp_path / "new" / "sim", **args)
        assert not (tmp_path / "new").exists()
    simulate(blob_pool, out=out, **args)  # the same call again: not refused
    assert (out / "summary.json").exists() and (out / "notes.txt").read_text() == "mine"


def test_an_interrupted_digits_simulation_exits_130_and_leaves_out_as_it_was(tmp_path, ray_local, monkeypatch):
    _interrupt_in_a_round(monkeypatch)
    args = ["--dataset", "digits", "--strategies", "margin", "--seeds", 0, "--budget", 40, "--eval-size", 300, "--quiet"]
    code, text = _cli(*args, "--out", tmp_path / "new")
    assert (code, text) == (130, "alscale: interrupted\n")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    code, text = _cli(*args, "--out", tmp_path / "old")
    assert code == 130 and _snapshot(tmp_path / "old") == {"notes.txt": b"mine"}


def test_files_of_a_killed_simulation_are_named_as_such(tmp_path, blob_pool):
    """A run killed before it could clean up (SIGKILL) leaves files that are not results: the message says so."""
    out = tmp_path / "sim"
    (out / "runs" / "margin" / "seed0").mkdir(parents=True)
    (out / "full_model.onnx").write_bytes(b"onnx")
    with pytest.raises(OutputError) as err:
        simulate(blob_pool, out=out, strategies=["margin"], budget=40)
    assert str(err.value) == (f"Expected an output folder without an earlier simulation's results. Got '{out}' holding runs/, "
                              "full_model.onnx, left by a simulation that did not finish (no summary.json); "
                              "set force (--force) to replace them.")


@pytest.mark.parametrize("metric, curves", [
    ("log_loss", {"random": [[6.4, 2.1, 0.7, 0.5, 0.45]], "margin": [[6.4, 0.8, 0.6, 0.4, 0.3]]}),
    ("accuracy", {"random": [[0.5, 0.7, 0.8, 0.85, 0.9]], "margin": [[0.5, 0.8, 0.88, 0.92, 0.95]]}),
])
def test_the_learning_curve_legend_covers_no_point_of_a_curve(tmp_path, monkeypatch, metric, curves):
    """For log_loss (lower is better) the legend in the lower right covered the curves' last points."""
    from alscale.loop import plots

    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig) or save(fig, path))
    labels = {name: np.array([20, 40, 60, 80, 100]) for name in curves}
    plots.plot_learning_curves({k: np.array(v) for k, v in curves.items()}, labels, tmp_path / "lc.png", metric=metric,
                               full_metric=0.131 if metric == "log_loss" else 0.96)
    (fig,) = figures
    fig.canvas.draw()
    (ax,) = fig.axes
    box = ax.get_legend().get_window_extent()
    for name, values in curves.items():
        points = ax.transData.transform(np.column_stack([labels[name], np.mean(values, axis=0)]))
        assert not box.count_contains(points), (name, points, box)
