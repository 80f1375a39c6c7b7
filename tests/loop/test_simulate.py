"""Simulation on scikit-learn's digits, every round through the engine on a real local Ray."""

from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from alscale.loop.simulate import area_under_curve, digits_pool, labels_needed, simulate

pytestmark = pytest.mark.ray


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

    # the same folder again with other settings: nothing of the first run is reused
    simulate(pool, out=out, strategies=["margin"], seeds=[0], initial_size=20, batch_size=30, budget=50, eval_size=300, actors=1)
    rows = list(csv.DictReader(open(out / "curves.csv")))
    assert sorted({int(r["labels"]) for r in rows}) == [20, 50]
    batch = out / "runs" / "margin" / "seed0" / "000" / "batch" / "batch.parquet"
    assert pq.read_table(batch).num_rows == 30


@pytest.mark.slow
def test_margin_beats_random_on_digits(tmp_path, ray_local):
    pool = digits_pool(tmp_path / "digits.parquet")
    s = simulate(pool, out=tmp_path / "sim", strategies=["margin"], seeds=[0, 1, 2], initial_size=20, batch_size=20,
                 budget=120, eval_size=500, actors=1)
    assert s["aulc"]["margin"]["mean"] > s["aulc"]["random"]["mean"] + 0.01
    wins = sum(m > r for m, r in zip(s["aulc"]["margin"]["per_seed"], s["aulc"]["random"]["per_seed"]))
    assert wins >= 2
