"""``alscale bench`` on a small pool: what it records is consistent with what it measured.

Speed itself is not asserted here (it is measured in benchmarks/, on an idle machine); this
checks the bookkeeping: every row scored, each ratio computed from its own raw measurement,
the reported run is the median one, and the selection it timed is a real, complete manifest.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from alscale import bench as bench_module
from alscale.bench import run_bench, run_strategy_bench
from alscale.cli import main
from alscale.model.session import BATCH_SIZE_CANDIDATES

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]

ROWS = 20_000


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    out_json = work / "results" / "engine.json"
    ECHOED.clear()
    results = run_bench(rows=ROWS, n_features=8, hidden=16, n_classes=4, actors=(1, 2), k=50,
                        repeats=3, workdir=str(work), out_json=str(out_json), echo=ECHOED.append)
    return work, out_json, results


#: What the module's benchmark run printed.
ECHOED: list[str] = []


def test_a_scan_too_short_to_measure_is_said_to_be(bench):
    _, _, results = bench
    notes = [line for line in ECHOED if "too short for a meaningful ratio" in line]
    assert len(notes) == sum(r["seconds_pipeline"] < 0.5 for r in results["pipeline"]) >= 1  # this tiny pool scans in ms


def test_results_are_written_and_match_what_was_returned(bench):
    _, out_json, results = bench
    assert json.loads(out_json.read_text()) == json.loads(json.dumps(results, default=str))
    assert not list(out_json.parent.glob("*.tmp"))


def test_each_run_is_paired_with_its_own_raw_measurement(bench):
    _, _, results = bench
    assert [r["actors"] for r in results["pipeline"]] == [1, 2]
    for run in results["pipeline"]:
        n = run["actors"]
        assert run["rows"] == ROWS
        assert run["ratio"] == pytest.approx(run["rows_per_s"] / (n * run["raw_rows_per_s"]))
        assert run["ratio_vs_concurrent_raw"] == pytest.approx(run["rows_per_s"] / run["raw_concurrent_rows_per_s"])
        ratios = run["ratios_of_all_runs"]
        assert len(ratios) == 3
        assert round(run["ratio"], 3) == sorted(ratios)[1]  # the median run is the one reported
        assert len(run["actor_peak_rss_mb"]) == n and min(run["actor_peak_rss_mb"]) > 0
        assert len(run["batch_sizes"]) == n and set(run["batch_sizes"]) <= set(BATCH_SIZE_CANDIDATES)  # "auto" chose
        assert all(r > 0 and r % b == 0 for r, b in zip(run["read_batch_rows"], run["batch_sizes"]))
        busy = sum(run["timings"]["actor_seconds"].values()) / n
        assert run["actor_busy_fraction"] == pytest.approx(busy / run["timings"]["score"])
        assert 0 < run["actor_busy_fraction"] <= 1  # the actors' work happens inside the scan


def test_the_timed_selection_is_a_complete_manifest(bench):
    work, _, _ = bench
    batch = pq.read_table(work / f"batch-pool-{ROWS}" / "batch.parquet")
    assert batch.num_rows == 50
    assert np.unique(batch.column("id").to_numpy()).size == 50
    assert not list(work.glob("*.checkpoints"))  # removed once the manifest was written


# --- what the benchmarks do with bad input, failures and their own arithmetic (no timing) -------

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    """Where tempfile makes its directories during the test, to see what is left behind."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "0"], "The 'rows' parameter must be an int >= 1. Got 0 instead."),
        (["--rows", "-5"], "The 'rows' parameter must be an int >= 1. Got -5 instead."),
        (["--features", "0"], "The 'n_features' parameter must be an int >= 1. Got 0 instead."),
        (["--hidden", "0"], "The 'hidden' parameter must be an int >= 1. Got 0 instead."),
        (["--classes", "1"], "The 'n_classes' parameter must be an int >= 2. Got 1 instead."),
        (["--actors", "0"], "The 'actors' parameter must be an int >= 1. Got 0 instead."),
        (["--k", "0"], "The 'k' parameter must be an int >= 1. Got 0 instead."),
        (["--k", "5000"], "Pool exhausted: 1000 available / 5000 requested"),
        (["--batch-size", "0"], "The 'batch_size' parameter must be 'auto' or an int >= 1. Got 0 instead."),
        (["--scaling", "0"], "The 'scaling' parameter must be an int >= 1. Got 0 instead."),
        (["--strategy", "qbc-vote"], "needs a committee"),
        (["--strategies", "--features", "8"], "--features applies only to the engine benchmark (without --strategies)."),
        (["--cm-k", "5", "--coreset-rows", "10"], "--cm-k, --coreset-rows apply only with --strategies."),
        (["--strategies", "--coreset-rows", "1000"], "The 'coreset_rows' parameter must be an int below 'rows' (1000)."),
        (["--strategies", "--coreset-rows", "500", "--k", "10", "--cm-k", "2000"], "Pool exhausted: 1000 available / 2000 requested"),
        (["--rows", "10000000000000"], "Expected room for the generated pool(s) in"),  # it used to fill the disk, then fail
        (["--strategies", "--rows", "10000000000000"], "GiB free; pass fewer rows, or a --workdir on a larger disk."),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_anything_is_generated(args, message, temp_root, tmp_path):
    out = tmp_path / "results" / "engine.json"
    r = CliRunner().invoke(main, ["bench", "--rows", "1000", *args, "--json", str(out)], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("alscale: error: ") and message in lines[0], r.stderr
    assert not any(temp_root.iterdir())  # no pool generated, nothing left behind
    assert not out.parent.exists()


@pytest.mark.parametrize(
    ("args", "which", "rows"),
    [([], "run_bench", 2_000_000), (["--strategies"], "run_strategy_bench", 1_000_000),
     (["--strategies", "--rows", "2000000"], "run_strategy_bench", 2_000_000)],  # 2M asked for used to run 1M
)
def test_rows_default_to_each_benchmark_own_size_and_an_explicit_size_is_kept(args, which, rows, monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(bench_module, which, lambda **kw: seen.update(kw))
    r = CliRunner().invoke(main, ["bench", *args, "--json", str(tmp_path / "r.json")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert seen["rows"] == rows


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_an_unwritable_json_fails_before_measuring(where, temp_root, tmp_path):
    (tmp_path / "a-file").write_text("")
    out = tmp_path if where == "a directory" else tmp_path / "a-file" / "engine.json"
    r = CliRunner().invoke(main, ["bench", "--rows", "1000", "--json", str(out)], catch_exceptions=False)
    assert r.exit_code == 2 and r.stderr.startswith(f"alscale: error: Cannot write the results to {str(out)!r}"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "generating pool" not in r.stderr
    assert not any(temp_root.iterdir())


def test_a_failed_run_removes_its_temporary_directory(temp_root, monkeypatch):
    def fail(*_args, **_kwargs):
        raise RuntimeError("the limit could not be measured")

    monkeypatch.setattr(bench_module, "raw_onnxruntime_rate", fail)
    with pytest.raises(RuntimeError, match="the limit"):
        run_bench(rows=1000, n_features=4, hidden=8, n_classes=3, actors=(1,), k=10, echo=lambda _m: None)
    monkeypatch.setattr(bench_module, "_exact_kmeanspp_seconds", fail)
    with pytest.raises(RuntimeError, match="the limit"):
        run_strategy_bench(rows=2000, k=10, cm_k=100, coreset_rows=1000, ref_k=2, echo=lambda _m: None)
    assert not any(temp_root.iterdir())


@pytest.mark.parametrize(
    ("script", "args", "target"),
    [
        ("bench_read", ["--rows", "2000", "--repeats", "1"], "alscale.pool.iter_shard"),
        ("bench_batch_size", ["--rows", "2000", "--repeats", "1"], "alscale.engine.runtime.ray_session"),
        ("bench_ray_overhead", ["--rows", "2000", "--repeats", "1"], "alscale.engine.driver.prepare_run"),
    ],
)
def test_a_failed_script_removes_its_pool(script, args, target, temp_root, tmp_path, monkeypatch):
    def fail(*_args, **_kwargs):
        raise RuntimeError("failed after the pool was written")

    monkeypatch.setattr(target, fail)
    with pytest.raises(RuntimeError, match="after the pool"):
        load_script(script).main([*args, "--json", str(tmp_path / "out.json")])
    assert not any(temp_root.iterdir())
    assert not (tmp_path / "out.json").exists()


def test_the_median_of_an_even_number_of_runs_is_the_lower_middle_one(monkeypatch):
    rates = iter([1.0, 4.0, 1.0, 3.0, 2.0])  # the warm-up, then against a raw rate of 1 with 2 actors: ratios 2, 0.5, 1.5, 1

    def pipeline(pool, model, actors, k, batch_size, strategy):
        return {"actors": actors, "rows_per_s": next(rates), "batch_sizes": [2048] * actors,
                "actor_busy_fraction": 1.0, "actor_peak_rss_mb": [100.0] * actors, "seconds_pipeline": 1.0,
                "seconds_end_to_end": 1.5}

    monkeypatch.setattr(bench_module, "_pipeline", pipeline)
    monkeypatch.setattr(bench_module, "raw_onnxruntime_rate", lambda *a, **kw: {"rows_per_s": 1.0, "batch_size": 2048, "by_batch_size": {2048: 1.0}})
    monkeypatch.setattr(bench_module, "raw_concurrent_rate", lambda *a, **kw: 2.0)
    monkeypatch.setattr("alscale.engine.runtime.ray_session", lambda **kw: contextlib.nullcontext())
    results = run_bench(rows=1000, n_features=4, hidden=8, n_classes=3, actors=(2,), k=10, repeats=4, echo=lambda _m: None)
    (run,) = results["pipeline"]
    assert run["ratios_of_all_runs"] == [2.0, 0.5, 1.5, 1.0]
    assert run["ratio"] == 1.0  # not 1.5: of two middle runs, the better one is not reported


def test_strategy_verdicts_divide_the_measured_seconds_not_rounded_ones(monkeypatch, tmp_path):
    rows, coreset_rows, k, cm_k, actors = 2000, 1000, 10, 100, 2
    seconds = {("entropy", k): 0.1, ("badge", k): 0.5, ("qbc-vote", k): 0.2, ("qbc-kl", k): 0.2, ("entropy", cm_k): 0.004,
               ("cluster-margin", cm_k): 0.011, ("coreset", k): 0.3}
    rss = {("badge", rows): 300.0, ("badge", coreset_rows): 250.0}

    def select(pool, model, *, strategy, k, actors, **_kw):
        n = int(Path(pool).name.split("-")[1])
        return SimpleNamespace(data={"timings": {"score": seconds[strategy, k]}, "counts": {"rows_total": n},
                                     "memory": {"actor_peak_rss_mb": [rss.get((strategy, n), 200.0)] * actors}})

    monkeypatch.setattr("alscale.select", select)
    monkeypatch.setattr("alscale.engine.runtime.ray_session", lambda **kw: contextlib.nullcontext())
    monkeypatch.setattr(bench_module, "_pipeline", lambda *a, **kw: None)
    monkeypatch.setattr(bench_module, "_exact_kmeanspp_seconds", lambda pool, model, k, ref_k: {"seconds_per_center": 2.5, "seconds_for_k": 25.0})
    results = run_strategy_bench(rows=rows, k=k, cm_k=cm_k, coreset_rows=coreset_rows, ref_k=2, actors=actors,
                                 workdir=str(tmp_path / "work"), echo=lambda _m: None)
    v = results["verdicts"]
    assert v["cluster_margin_over_entropy"] == pytest.approx(0.011 / 0.004)  # rounded to 0.01 s: 0.01 / 0.00
    assert v["badge_speedup_vs_exact_kmeanspp"] == pytest.approx(25.0 / 0.5)
    per_actor = (rows - coreset_rows) / actors
    assert v["badge_actor_bytes_per_row"] == pytest.approx(50.0 * 2**20 / per_actor)
    assert v["badge_actor_fixed_mb"] == pytest.approx(300.0 - 50.0 * (rows / actors) / per_actor)


def test_driver_memory_results_are_written_atomically(tmp_path, monkeypatch):
    written = []

    def finish(results, out_json):
        written.append(out_json)
        return real_finish(results, out_json)

    real_finish = bench_module._finish
    monkeypatch.setattr(bench_module, "_finish", finish)
    script = load_script("bench_driver_memory")
    monkeypatch.setattr(script, "measure", lambda pool, model, out, k, actors: {"peak_rss_mib": 200.0, "rss_after_import_mib": 150.0, "seconds": 1.0})
    out = tmp_path / "results" / "driver_memory.json"
    assert script.main(["--rows", "1000", "2000", "--out", str(out)]) == 0
    assert written == [str(out)] and json.loads(out.read_text())["ratio"] == 1.0
    assert not list(out.parent.glob("*.tmp"))


def test_bench_diversity_help_says_the_whole_first_sentence():
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "bench_diversity.py"), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "core-set, QBC and Cluster-Margin timings" in " ".join(proc.stdout.split())


def test_bench_diversity_refuses_an_unknown_configuration_before_timing(tmp_path):
    out = tmp_path / "diversity.json"
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "bench_diversity.py"), "--configs", "default,nope", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench_diversity.py: error: unknown --configs ['nope']; expected names among ["), lines
    assert "'default'" in lines[0] and "'tensor64'" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("script", ["bench_read", "bench_batch_size", "bench_ray_overhead", "bench_driver_memory"])
def test_a_script_refuses_a_bad_size_in_one_line_and_shows_its_defaults(script, temp_root, tmp_path, capsys):
    """They blamed a temporary pool folder the user never named (--rows 0), or had no median (--repeats 0)."""
    module = load_script(script)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--rows", "0", "--json" if script != "bench_driver_memory" else "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    floor = 100 if script == "bench_batch_size" else 1  # its selects keep k=100: a smaller pool failed after Ray started
    assert f".py: error: argument --rows: expected an int >= {floor}. Got 0 (see " in err and err.endswith(".py --help)\n"), err
    assert not any(temp_root.iterdir()) and not (tmp_path / "o.json").exists()
    with pytest.raises(SystemExit):
        module.main(["--help"])
    assert "(default: " in capsys.readouterr().out


def test_run_script_turns_bad_input_into_one_line_and_exit_2(capsys):
    from alscale.bench import run_script
    from alscale.exceptions import PoolExhaustedError

    def main():
        raise PoolExhaustedError(100, 1000)

    assert run_script(main) == 2
    assert capsys.readouterr().err == f"alscale: error: {PoolExhaustedError(100, 1000)}\n"
    assert run_script(lambda: 1) == 1 and run_script(lambda: None) == 0


def test_the_disk_check_counts_what_is_on_disk_at_once(tmp_path, monkeypatch):
    """Without a workdir the scaling pools are made one after another (each removed after use); with one, all stay."""
    from collections import namedtuple

    from alscale.bench import _check_disk
    from alscale.exceptions import OutputError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(bench_module.shutil, "disk_usage", lambda _p: usage(10**6, 0, 1500))
    pools = {"pool-10": 10, "pool-20": 20, "pool-25": 25}  # 32 bytes a row at 4 features: 320 + 640 + 800
    _check_disk(None, pools, 4, one_at_a_time=True)  # 10 + 25 rows at most: 1,120 bytes of 1,350
    with pytest.raises(OutputError, match="Expected room for the generated pool"):
        _check_disk(str(tmp_path), pools, 4)  # all three kept: 1,760 bytes
    (tmp_path / "pool-25").mkdir()
    (tmp_path / "pool-25" / "part-0.parquet").write_bytes(b"x" * 1000)  # replaced: three quarters of it count as free
    _check_disk(str(tmp_path), pools, 4)


# --- review fixes: the printed ratio can be checked by hand; results on stdout; --json is a .json file ----------

_SELECT_LINE = re.compile(r"select, (\d+) actor\(s\): ([\d,]+) rows/s, ratio ([\d.]+) of \1 x raw ([\d,]+) rows/s")


def _check_printed_ratios(lines, results):
    """Each printed ratio is the printed rows/s over (actors x the printed raw), and those are the JSON's figures."""
    printed = [m for m in map(_SELECT_LINE.search, lines) if m]
    assert len(printed) == len(results["pipeline"]) >= 1, lines
    for m, run in zip(printed, results["pipeline"]):
        n, rows_per_s, ratio, raw = int(m[1]), float(m[2].replace(",", "")), float(m[3]), float(m[4].replace(",", ""))
        assert n == run["actors"]
        assert (rows_per_s, raw, ratio) == (round(run["rows_per_s"]), round(run["raw_rows_per_s"]), round(run["ratio"], 2))
        assert rows_per_s / (n * raw) == pytest.approx(ratio, abs=0.005 + 1e-3)  # up to the printed rounding


def test_each_printed_ratio_shows_the_raw_figure_it_divides_by(bench):
    """The one raw rows/s printed was the first measurement; each ratio divided by another, shown only in the JSON."""
    _, _, results = bench
    _check_printed_ratios(ECHOED, results)


def test_bench_prints_results_on_stdout_and_progress_on_stderr(tmp_path):
    """Everything went to stderr (stdout was empty); simulate, round and status print their results on stdout."""
    out = tmp_path / "engine.json"
    out.write_text(json.dumps({"machine": {"cpu": "an earlier run"}}))  # an earlier benchmark's results are replaced
    r = CliRunner().invoke(main, ["bench", "--rows", "2000", "--k", "10", "--repeats", "1", "--actors", "1", "--json", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    results = json.loads(out.read_text())
    assert results["machine"]["cpu"] != "an earlier run"
    assert "generating pool" in r.stderr and "too short for a meaningful ratio" in r.stderr
    assert "generating pool" not in r.stdout and not _SELECT_LINE.search(r.stderr)
    assert "raw onnxruntime, 1 thread" in r.stdout and f"results written to {out}" in r.stdout
    _check_printed_ratios(r.stdout.splitlines(), results)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("victim.parquet", b"PAR1 a user's pool PAR1", "expected a path ending in .json. Got '.parquet'."),
        ("results", None, "expected a path ending in .json. Got no suffix."),
        ("package.json", b'{"name": "mine"}', "expected a new file or an earlier benchmark's results"),
        ("broken.json", b"PAR1 not json", "Got another file; it is left as it is."),
    ],
)
def test_json_must_be_a_json_path_and_never_replaces_another_file(name, content, message, temp_root, tmp_path):
    """--json victim.parquet replaced a Parquet file with the results."""
    out = tmp_path / name
    if content is not None:
        out.write_bytes(content)
    for args in ([], ["--strategies", "--coreset-rows", "500", "--k", "10", "--cm-k", "100"]):
        r = CliRunner().invoke(main, ["bench", "--rows", "1000", *args, "--json", str(out)], catch_exceptions=False)
        assert r.exit_code == 2 and r.stdout == "", r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"alscale: error: Cannot write the results to {str(out)!r}: ") and message in lines[0], lines
        assert (out.read_bytes() if content is not None else out.exists()) == (content if content is not None else False)
        assert not any(temp_root.iterdir())  # refused before anything was generated


# --- review fixes: the scripts in benchmarks/ behave as alscale bench ------------------------------------------

def _run_script(script: str, *args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "0"], "The 'rows' parameter must be an int >= 1. Got 0 instead."),
        (["--strategy", "nope"], "nope"),
        (["--json", "foo.txt"], "expected a path ending in .json. Got '.txt'."),
        (["--cm-k", "5"], "--cm-k applies only with --strategies."),
        (["--rows", "abc"], "'abc' is not a valid integer"),
        (["--bogus"], "No such option"),
    ],
)
def test_bench_engine_script_is_alscale_bench_one_line_and_exit_2(args, message, tmp_path):
    """It called the click command directly: a traceback and exit 1, or click's 3-line usage block."""
    proc = _run_script("bench_engine.py", *args, cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("alscale: error: ") and message in lines[0], lines
    assert not any(tmp_path.iterdir())


def test_bench_engine_script_takes_dash_h():
    proc = _run_script("bench_engine.py", "-h")
    assert proc.returncode == 0 and "--strategies" in proc.stdout, proc.stderr


@pytest.mark.parametrize(
    ("script", "args", "flag"),
    [
        ("bench_read", ["--rows", "2000", "--repeats", "1"], "--json"),
        ("bench_driver_memory", ["--rows", "1000", "--k", "10"], "--out"),
    ],
)
@pytest.mark.parametrize("name", ["precious.txt", "package.json"])
def test_a_script_never_replaces_another_file_and_measures_nothing(script, args, flag, name, temp_root, tmp_path, capsys):
    """bench_read.py --json precious.txt replaced a text file with the results, exit 0."""
    from alscale.bench import run_script

    out = tmp_path / name
    out.write_text('{"name": "mine"}')
    assert run_script(lambda: load_script(script).main([*args, flag, str(out)])) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"alscale: error: Cannot write the results to {str(out)!r}: ") and err.count("\n") == 1, err
    assert out.read_text() == '{"name": "mine"}'
    assert not any(temp_root.iterdir())  # refused before a pool was written


def test_bench_diversity_never_replaces_another_file(tmp_path):
    out = tmp_path / "precious.txt"
    out.write_text("my notes")
    proc = _run_script("bench_diversity.py", "--rows", "3000", "--quality-rows", "2000", "--k", "10", "--ref-k", "2",
                       "--seeds", "1", "--configs", "default", "--skip-others", "--repeats", "1", "--out", str(out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "expected a path ending in .json" in lines[0], proc.stderr
    assert "[quality]" not in proc.stdout and out.read_text() == "my notes"


def test_a_script_fails_on_an_unwritable_output_before_measuring(temp_root, tmp_path, capsys):
    """The output path was first tried after the whole measurement."""
    from alscale.bench import run_script

    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "read.json"
    assert run_script(lambda: load_script("bench_read").main(["--rows", "2000", "--repeats", "1", "--json", str(out)])) == 2
    captured = capsys.readouterr()
    assert "is a file, not a directory" in captured.err and captured.out == ""
    assert not any(temp_root.iterdir())


# --- review fixes: SIGTERM stops a benchmark as Ctrl-C does -----------------------------------------------------

def _sigterm_self(*_args, **_kwargs):
    """Where a benchmark is stopped: SIGTERM to this process, as ``kill`` or a job runner sends it."""
    import os
    import signal
    import time

    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler runs here
    raise AssertionError("SIGTERM did not stop the benchmark")


def test_sigterm_while_measuring_removes_the_pool(temp_root, monkeypatch):
    """SIGTERM left the generated pool (hundreds of MB at the default size) in /tmp."""
    monkeypatch.setattr(bench_module, "raw_onnxruntime_rate", _sigterm_self)
    with pytest.raises(KeyboardInterrupt):
        run_bench(rows=1000, n_features=4, hidden=8, n_classes=3, actors=(1,), k=10, echo=lambda _m: None)
    assert not any(temp_root.iterdir())


def test_sigterm_in_the_ray_session_is_one_line_exit_130_and_cleans_up(temp_root, monkeypatch, tmp_path):
    """Inside Ray, Ray's own SIGTERM handler (sys.exit) ran: its exit code and a multi-line dump."""
    monkeypatch.setattr(bench_module, "_pipeline", _sigterm_self)
    r = CliRunner().invoke(main, ["bench", "--rows", "1000", "--k", "10", "--actors", "1", "--repeats", "1",
                                  "--json", str(tmp_path / "engine.json")], catch_exceptions=False)
    assert r.exit_code == 130 and r.stderr.strip().splitlines()[-1] == "alscale: interrupted", r.output
    assert not any(temp_root.iterdir()) and not (tmp_path / "engine.json").exists()


def test_sigterm_stops_a_script_in_one_line_with_exit_130(temp_root, monkeypatch, tmp_path, capsys):
    from alscale.bench import run_script

    monkeypatch.setattr("alscale.pool.iter_shard", _sigterm_self)
    with pytest.raises(SystemExit) as exit_info:
        run_script(lambda: load_script("bench_read").main(["--rows", "2000", "--repeats", "1", "--json", str(tmp_path / "r.json")]))
    assert exit_info.value.code == 130 and capsys.readouterr().err == "alscale: interrupted\n"
    assert not any(temp_root.iterdir()) and not (tmp_path / "r.json").exists()


# --- review fixes: what is timed, and whose memory, is said as it is ---------------------------------------------

def test_each_select_line_says_what_is_timed_and_the_end_to_end_seconds(bench):
    """rows/s time the scan only, but help and output called it the full select pipeline."""
    _, _, results = bench
    lines = [line for line in ECHOED if _SELECT_LINE.search(line)]
    for line, run in zip(lines, results["pipeline"]):
        assert (f"rows/s over the timed scan of {run['seconds_pipeline']:.2f} s (score, id check, reduce), "
                f"{run['seconds_end_to_end']:.2f} s end to end") in line
        assert run["seconds_end_to_end"] >= run["seconds_pipeline"]


def test_the_peak_memory_of_the_whole_benchmark_process_is_not_called_the_driver_s(bench):
    """It was printed and stored as "driver peak RSS", but the process also generates the pool and runs raw onnxruntime."""
    _, out_json, results = bench
    assert "driver_peak_rss_mb" not in json.loads(out_json.read_text())
    assert results["benchmark_process_peak_rss_mb"] > 0
    assert f"benchmark process peak RSS (driver, pool generation, raw onnxruntime): {results['benchmark_process_peak_rss_mb']} MiB" in ECHOED


def test_bench_help_says_what_the_rows_per_second_time():
    r = CliRunner().invoke(main, ["bench", "--help"])
    text = " ".join(r.output.split())
    assert "full select pipeline" not in text and "time only the scan" in text and "not planning, actor start-up or the manifest write" in text
    assert "peak memory of each actor and of the benchmark process" in text


def test_driver_memory_refuses_k_above_the_smallest_pool_before_writing_it(temp_root, tmp_path, capsys):
    """--rows 1000 --k 5000 wrote the pool, then printed a 12-line traceback, exit 1."""
    from alscale.bench import run_script
    from alscale.exceptions import PoolExhaustedError

    out = tmp_path / "mem.json"
    assert run_script(lambda: load_script("bench_driver_memory").main(["--rows", "1000", "20000", "--k", "5000", "--out", str(out)])) == 2
    assert capsys.readouterr().err == f"alscale: error: {PoolExhaustedError(1000, 5000)}\n"
    assert not any(temp_root.iterdir()) and not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "abc"], "argument --rows: expected an int >= 1. Got 'abc'"),
        (["--quality-rows", "0"], "argument --quality-rows: expected an int >= 1. Got 0"),  # an IndexError
        (["--seeds", "0"], "argument --seeds: expected an int >= 1. Got 0"),  # an UnboundLocalError
        (["--quality-rows", "100", "--k", "500", "--skip-speed", "--skip-others"], "Pool exhausted: 100 available / 500 requested"),
        (["--rows", "1000", "--cm-k", "5000", "--skip-speed", "--skip-quality"], "Pool exhausted: 1000 available / 5000 requested"),
    ],
)
def test_bench_diversity_refuses_bad_sizes_in_one_line_and_exit_2(args, message, tmp_path):
    """It used plain argparse and int: an 8-line usage block, or a traceback and exit 1."""
    out = tmp_path / "diversity.json"
    proc = _run_script("bench_diversity.py", *args, "--out", str(out))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert proc.stdout == "" and not out.exists()


def test_bench_diversity_help_shows_every_default():
    proc = _run_script("bench_diversity.py", "--help")
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and "--quality-rows QUALITY_ROWS rows of the quality comparison (default: 50000)" in text, text
    assert "results/diversity.json)" in text and text.count("(default: ") >= 14


def test_strategies_refuse_several_actor_counts(temp_root, tmp_path):
    """--strategies --actors 1 --actors 2 measured only 2, silently."""
    out = tmp_path / "strategies.json"
    r = CliRunner().invoke(main, ["bench", "--strategies", "--actors", "1", "--actors", "2", "--json", str(out)], catch_exceptions=False)
    assert r.exit_code == 2 and r.stderr == ("alscale: error: --strategies measures one actor count: expected one --actors. "
                                             "Got 1, 2.\n"), r.output
    assert not any(temp_root.iterdir()) and not out.exists()


@pytest.mark.parametrize("script", ["bench_read", "bench_batch_size", "bench_ray_overhead", "bench_driver_memory",
                                    "bench_diversity", "bench_label_studio_push"])
def test_every_script_writes_to_bench_results_of_the_folder_it_runs_from(script):
    """bench_label_studio_push.py wrote <repo>/bench-results, the others ./bench-results (from benchmarks/: untracked, not ignored)."""
    proc = _run_script(f"{script}.py", "--help")
    text = "".join(proc.stdout.split())  # help wraps long defaults
    assert proc.returncode == 0 and "(default:bench-results/" in text, proc.stdout + proc.stderr


@pytest.mark.parametrize("where", ["bench-results/engine.json", "benchmarks/bench-results/read.json"])
def test_git_ignores_bench_results_wherever_a_benchmark_ran(where):
    root = BENCHMARKS.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    proc = subprocess.run(["git", "check-ignore", "-q", where], cwd=root, timeout=30)
    assert proc.returncode == 0, f"{where} is not ignored"


def test_scaling_help_says_from_which_pool_size_the_memory_compares():
    r = CliRunner().invoke(main, ["bench", "--help"])
    assert "below 524,288 rows a pool has smaller row groups (rows / 4), so compare sizes of 524,288 rows and up" in " ".join(r.output.split())
