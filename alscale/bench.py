"""Throughput and memory benchmark of the scoring pipeline against raw ONNX Runtime.

In one run: (a) raw onnxruntime on the same model, one intra-op thread, over an in-memory
array (the limit); (b) the full ``select`` pipeline (Parquet read, inference, scores, top-K)
with 1 and 2 actors.  The figure of merit is

    ratio = pipeline rows/s / (actors x raw single-thread rows/s)

plus peak memory of the driver and of each actor, and (with ``scaling``) actor memory on
pools of two sizes, to show it does not grow with the pool.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["machine_info", "raw_onnxruntime_rate", "run_bench"]


def machine_info() -> dict[str, Any]:
    """CPU model, cores and memory of this machine, for the results table."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib, "python": platform.python_version(), "platform": platform.platform()}


def raw_onnxruntime_rate(model: str, n_features: int, rows: int = 500_000, batch_sizes=(1024, 4096, 8192), repeats: int = 2) -> dict:
    """Best rows/s of one ONNX Runtime session with one thread over an in-memory array."""
    from alscale.model.contract import load_session

    session = load_session(model, threads=1)
    name = session.get_inputs()[0].name
    out = [o.name for o in session.get_outputs() if o.name in ("probabilities", "logits")][:1] or None
    X = np.random.default_rng(0).normal(size=(rows, n_features)).astype(np.float32)
    rates = {}
    for bs in batch_sizes:
        best = 0.0
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(0, rows, bs):
                session.run(out, {name: X[i : i + bs]})
            best = max(best, rows / (time.perf_counter() - t0))
        rates[bs] = best
    best_bs = max(rates, key=rates.get)
    return {"rows_per_s": rates[best_bs], "batch_size": best_bs, "by_batch_size": rates}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pipeline(pool: Path, model: Path, actors: int, k: int, batch_size: int, strategy: str) -> dict:
    import alscale

    t0 = time.perf_counter()
    manifest = alscale.select(pool, model, strategy=strategy, k=k, actors=actors, batch_size=batch_size)
    wall = time.perf_counter() - t0
    t = manifest.data["timings"]
    scan = t["score"] + t.get("check_ids", 0) + t.get("reduce", 0)
    rows = manifest.data["counts"]["rows_scored"]
    return {
        "actors": actors,
        "rows": rows,
        "seconds_pipeline": round(scan, 3),
        "seconds_end_to_end": round(wall, 3),
        "rows_per_s": rows / scan,
        "actor_peak_rss_mb": manifest.data["memory"]["actor_peak_rss_mb"],
        "timings": t,
    }


def run_bench(
    rows: int = 2_000_000,
    n_features: int = 64,
    hidden: int = 256,
    n_classes: int = 10,
    actors: tuple[int, ...] = (1, 2),
    k: int = 1000,
    batch_size: int = 8192,
    strategy: str = "entropy",
    scaling: tuple[int, ...] = (),
    workdir: str | None = None,
    out_json: str | None = None,
    echo=print,
) -> dict:
    """Generate a pool and model, measure raw ONNX Runtime and the pipeline, return the results.

    Parameters
    ----------
    rows, n_features, hidden, n_classes : int
        Pool size and the MLP's shape (n_features-hidden-n_classes).
    actors : tuple of int
        Actor counts to run the pipeline with.
    scaling : tuple of int
        Extra pool sizes on which to record actor memory (e.g. (1_000_000, 4_000_000)).
    """
    import ray

    from alscale.datasets import make_pool, random_mlp
    from alscale.engine.runtime import ray_session

    own_dir = workdir is None
    work = Path(workdir or tempfile.mkdtemp(prefix="alscale-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine_info(), "config": {"rows": rows, "model": f"MLP {n_features}-{hidden}-{n_classes}", "k": k, "batch_size": batch_size, "strategy": strategy}}
    model = random_mlp(work / "model.onnx", (n_features, hidden, n_classes))
    echo(f"generating pool: {rows:,} rows x {n_features} float32 (fixed_size_binary) ...")
    t0 = time.perf_counter()
    pool = make_pool(work / f"pool-{rows}", rows, n_features=n_features, n_classes=n_classes, files=4, row_group_size=131_072)
    results["generate_seconds"] = round(time.perf_counter() - t0, 2)

    raw = raw_onnxruntime_rate(str(model), n_features)
    results["raw_onnxruntime"] = raw
    echo(f"raw onnxruntime, 1 thread: {raw['rows_per_s']:,.0f} rows/s (batch {raw['batch_size']})")

    results["pipeline"] = []
    with ray_session(num_cpus=max(actors)):
        for n in actors:
            _pipeline(pool, model, n, k, batch_size, strategy) if n == actors[0] else None  # warm the page cache once
            res = _pipeline(pool, model, n, k, batch_size, strategy)
            res["ratio"] = res["rows_per_s"] / (n * raw["rows_per_s"])
            results["pipeline"].append(res)
            echo(
                f"select, {n} actor(s): {res['rows_per_s']:,.0f} rows/s, ratio {res['ratio']:.2f} "
                f"of {n} x raw; actor peak RSS {res['actor_peak_rss_mb']} MiB"
            )
        results["scaling"] = []
        for n_rows in scaling:
            p = make_pool(work / f"pool-{n_rows}", n_rows, n_features=n_features, n_classes=n_classes, files=4, row_group_size=131_072)
            res = _pipeline(p, model, max(actors), k, batch_size, strategy)
            results["scaling"].append({"rows": n_rows, "actor_peak_rss_mb": res["actor_peak_rss_mb"], "rows_per_s": res["rows_per_s"]})
            echo(f"scaling: {n_rows:,} rows -> actor peak RSS {res['actor_peak_rss_mb']} MiB")
            if own_dir:
                import shutil

                shutil.rmtree(p, ignore_errors=True)
        results["ray_version"] = ray.__version__
    results["driver_peak_rss_mb"] = round(_peak_rss_mb(), 1)
    echo(f"driver peak RSS: {results['driver_peak_rss_mb']} MiB")
    if out_json:
        Path(out_json).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(out_json).with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=2, default=str))
        os.replace(tmp, out_json)
    if own_dir:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return results
