"""``alscale bench`` on a small pool: what it records is consistent with what it measured.

Speed itself is not asserted here (it is measured in benchmarks/, on an idle machine); this
checks the bookkeeping: every row scored, each ratio computed from its own raw measurement,
the reported run is the median one, and the selection it timed is a real, complete manifest.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from alscale.bench import run_bench
from alscale.model.session import BATCH_SIZE_CANDIDATES

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]

ROWS = 20_000


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    out_json = work / "results" / "engine.json"
    results = run_bench(rows=ROWS, n_features=8, hidden=16, n_classes=4, actors=(1, 2), k=50,
                        repeats=3, workdir=str(work), out_json=str(out_json), echo=lambda _m: None)
    return work, out_json, results


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
