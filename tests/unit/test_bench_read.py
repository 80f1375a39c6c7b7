"""``benchmarks/bench_read.py`` on a small pool: it times what it names and writes it (no speed asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_read.py"


def test_bench_read_records_every_way_and_its_ratios(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_read", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "read.json"
    results = module.main(["--rows", "20000", "--repeats", "2", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    per_million = results["seconds_per_million_rows"]
    assert set(per_million) == {"pages", "arrow", "plain read", "pages + model", "arrow + model", "model alone"}
    assert all(len(v) == 2 and min(v) > 0 for v in results["all_seconds"].values())
    assert results["scan_ratio_pages"] == per_million["model alone"] / per_million["pages + model"]
    assert "the scan reaches" in capsys.readouterr().out
