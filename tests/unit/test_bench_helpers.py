"""The benchmark's own bookkeeping, without Ray: what it records of the machine, and how it extrapolates its references."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from alscale import bench as bench_module
from alscale.bench import SIMD_FLAGS, exact_kmeanspp_seconds, machine_info
from alscale.strategies import gradient_factors

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_machine_info_names_the_cpu_features_and_versions_that_set_the_speed():
    """Two machines reported the same 'AMD EPYC' with and without AVX-512: the results could not tell them apart."""
    info = machine_info()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        text = cpuinfo.read_text()
        flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.split(":")[0].strip() in ("flags", "Features")), set())
        assert info["simd"] == [f for f in SIMD_FLAGS if f in flags]
        if "model name" in text:
            assert info["cpu"] == next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    import numpy
    import onnxruntime
    import pyarrow

    assert info["versions"]["onnxruntime"] == onnxruntime.__version__
    assert info["versions"]["numpy"] == numpy.__version__ and info["versions"]["pyarrow"] == pyarrow.__version__
    assert info["versions"]["ray"] == version("ray")


def test_the_exact_reference_pays_its_set_up_once_not_k_over_ref_k_times(monkeypatch):
    """One run's time over its centers, times k, scaled the set-up 50x: at 5,000 rows BADGE showed 230x."""
    clock = SimpleNamespace(now=0.0)
    setup, per_center = 3.0, 0.25

    def fake_kmeanspp(a, h, centers, rng, n_local_trials):
        clock.now += setup + centers * per_center

    monkeypatch.setattr("alscale.reduce.kmeans_parallel.kmeanspp_factored", fake_kmeanspp)
    monkeypatch.setattr(bench_module, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    timing = exact_kmeanspp_seconds(np.zeros((100, 3), np.float32), np.zeros((100, 4), np.float32), k=1000, ref_k=20)
    assert timing["timed_centers"] == [20, 40] and timing["timed_seconds"] == [8.0, 13.0]
    assert timing["seconds_per_center"] == pytest.approx(per_center) and timing["seconds_setup"] == pytest.approx(setup)
    assert timing["seconds_for_k"] == pytest.approx(setup + 1000 * per_center)  # not (3 + 20 * 0.25) / 20 * 1000 = 400


def test_the_exact_reference_runs_real_kmeanspp_on_ref_k_and_twice_as_many_centers(monkeypatch):
    from alscale.reduce import kmeans_parallel

    real, calls = kmeans_parallel.kmeanspp_factored, []

    def recording(a, h, centers, rng, n_local_trials):
        picks, gains = real(a, h, centers, rng, n_local_trials=n_local_trials)
        calls.append((centers, len(np.unique(picks))))
        return picks, gains

    monkeypatch.setattr(kmeans_parallel, "kmeanspp_factored", recording)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3000, 5)).astype(np.float32)
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    a, h = gradient_factors(probs, np.maximum(rng.normal(size=(3000, 16)), 0).astype(np.float32))
    timing = exact_kmeanspp_seconds(a, h, k=100, ref_k=5)
    assert calls == [(5, 5), (10, 10)]  # two real runs, each of distinct centers
    assert timing["timed_centers"] == [5, 10] and all(s > 0 for s in timing["timed_seconds"])


def _diversity(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / "bench_diversity.py"), "--rows", "3000", "--quality-rows", "2000", "--k", "10",
                           "--ref-k", "2", "--seeds", "1", "--skip-others", "--repeats", "1", *args],
                          capture_output=True, text=True, timeout=300)


def test_bench_diversity_gives_no_verdict_without_the_default_configuration(tmp_path):
    """Its goals are the default configuration's: without it, it printed 'cost ratio 0.000 ... FAIL' and exited 1."""
    proc = _diversity("--configs", "none", "--out", str(tmp_path / "d.json"))
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^\[speed\] none +build [\d.]+ s +total [\d.]+ s +speedup [\d.]+x \(limit 20x\)$", proc.stdout, re.M), proc.stdout
    assert "FAIL" not in proc.stdout and "PASS" not in proc.stdout
    assert (tmp_path / "d.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--configs", ","], "--configs names no configuration"),
    (["--rows", "20", "--ref-k", "11"], "must be an int from 1 to half 'rows' (10). Got 11"),
])
def test_bench_diversity_refuses_what_it_cannot_measure(tmp_path, args, message):
    proc = _diversity(*args, "--out", str(tmp_path / "d.json"))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not (tmp_path / "d.json").exists()
