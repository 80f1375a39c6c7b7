"""What Ray costs the scan: the same shard scan in Ray actors and in plain processes, alternated.

Each of ``--actors`` workers gets one shard of the pool (``plan_shards``) and runs
``ShardWorker.score_shard`` on it (Parquet read, inference, entropy, top-K), either as a Ray
actor or in a plain ``multiprocessing`` process.  Both kinds are started and warmed once, then
run alternately, ``--repeats`` times each, next to the same workers running raw ONNX Runtime
(one thread, batches of 2,048 rows over an in-memory array of as many rows as their shard)::

    python benchmarks/bench_ray_overhead.py                       # 2M rows, 2 workers
    python benchmarks/bench_ray_overhead.py --rows 500000 --json bench-results/ray_overhead.json

It prints the median rows/s of each, the ratio Ray actors / plain processes (1.0: Ray costs
the scan nothing), and the scan against raw ONNX Runtime in as many processes at once.
Alternating the four runs keeps a slow minute on a shared machine from favouring any of them.
"""

from __future__ import annotations

import argparse
import sys
import os
import statistics
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from alscale.bench import ScriptArgumentParser, count, default_results, run_script

BATCH = 2048


class _TimedWorker:
    """A ``ShardWorker`` that times a shard scan, and raw ONNX Runtime on as many rows."""

    def __init__(self, job, model: str, rows: int):
        from alscale.engine.worker import ShardWorker
        from alscale.model.contract import load_session

        self.worker = ShardWorker(job)
        self.session = load_session(model, threads=1)
        self.input = self.session.get_inputs()[0].name
        self.x = np.random.default_rng(0).standard_normal((rows, job.feature_spec.width), dtype=np.float32)
        self.none = np.empty(0, dtype=np.uint64)

    def scan(self, shard) -> float:
        t0 = time.perf_counter()
        self.worker.score_shard(shard, 1000, self.none, self.none)
        return time.perf_counter() - t0

    def raw(self) -> float:
        t0 = time.perf_counter()
        for i in range(0, self.x.shape[0], BATCH):
            self.session.run(["probabilities"], {self.input: self.x[i : i + BATCH]})
        return time.perf_counter() - t0


def _plain_process(conn, job, model: str, shard) -> None:
    worker = _TimedWorker(job, model, shard.rows)
    while (what := conn.recv()) is not None:
        conn.send(worker.scan(shard) if what == "scan" else worker.raw())


def main(argv: list[str] | None = None) -> dict:
    parser = ScriptArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=count(), default=2_000_000)
    parser.add_argument("--actors", type=count(), default=2)
    parser.add_argument("--repeats", type=count(), default=6)
    parser.add_argument("--json", default=default_results("ray_overhead.json"))
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from alscale.bench import measure_in_scratch

    return measure_in_scratch(_measure, args, args.json, prefix="alscale-rayoh-")  # the pool goes even when a run fails


def _measure(args: argparse.Namespace, work: Path) -> dict:
    import ray

    from alscale.engine.runtime import ray_session
    from alscale.bench import machine_info, raw_onnxruntime_rate
    from alscale.config import SelectSettings
    from alscale.datasets import make_pool, random_mlp
    from alscale.engine.driver import prepare_run
    from alscale.pool.shards import plan_shards

    model = str(random_mlp(work / "model.onnx", (64, 256, 10)))
    pool = make_pool(work / "pool", args.rows, n_features=64, n_classes=10, files=4, row_group_size=131_072)
    run = prepare_run(SelectSettings(pool=str(pool), model=(model,), strategy="entropy", k=1000, batch_size=BATCH))
    job, shards = run.job(), plan_shards(run.pool, args.actors)
    rows = sum(s.rows for s in shards)

    ctx = get_context("spawn")
    pipes = [ctx.Pipe() for _ in shards]
    procs = [ctx.Process(target=_plain_process, args=(child, job, model, s), daemon=True) for (_, child), s in zip(pipes, shards)]
    for p in procs:
        p.start()

    def plain(what: str) -> None:
        for parent, _ in pipes:
            parent.send(what)
        for parent, _ in pipes:
            parent.recv()

    results: dict = {"machine": machine_info(), "rows": rows, "workers": len(shards), "batch_size": BATCH}
    try:
        with ray_session(num_cpus=len(shards)):
            actor_cls = ray.remote(num_cpus=1)(_TimedWorker)
            actors = [actor_cls.remote(job, model, s.rows) for s in shards]
            runs = {
                "ray_scan": lambda: ray.get([a.scan.remote(s) for a, s in zip(actors, shards)]),
                "plain_scan": lambda: plain("scan"),
                "ray_raw": lambda: ray.get([a.raw.remote() for a in actors]),
                "plain_raw": lambda: plain("raw"),
            }
            for once in runs.values():  # warm: page cache, sessions, first allocations
                once()
            rates: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, once in runs.items():
                    t0 = time.perf_counter()
                    once()
                    rates[name].append(rows / (time.perf_counter() - t0))
            for a in actors:
                ray.kill(a)
    finally:
        for parent, _ in pipes:
            parent.send(None)
        for p in procs:
            p.join(timeout=10)
    single = raw_onnxruntime_rate(model, 64, rows=min(rows, 500_000), batch_sizes=(BATCH,))["rows_per_s"]
    med = {name: statistics.median(v) for name, v in rates.items()}
    results.update(
        rows_per_s={name: round(v) for name, v in med.items()},
        all_rows_per_s={name: [round(x) for x in v] for name, v in rates.items()},
        raw_single_rows_per_s=round(single),
        ray_over_plain_scan=med["ray_scan"] / med["plain_scan"],
        ray_over_plain_raw=med["ray_raw"] / med["plain_raw"],
        scan_over_concurrent_raw=med["ray_scan"] / med["ray_raw"],
        scan_over_workers_x_single_raw=med["ray_scan"] / (len(shards) * single),
    )
    for name, v in med.items():
        print(f"{name:10s} {v:12,.0f} rows/s  (runs: {', '.join(f'{x / 1e6:.2f}M' for x in rates[name])})")
    print(f"raw onnxruntime alone, 1 thread: {single:,.0f} rows/s")
    print(f"Ray actors / plain processes: scan {results['ray_over_plain_scan']:.2f}, raw {results['ray_over_plain_raw']:.2f}")
    print(f"scan / raw in {len(shards)} processes at once: {results['scan_over_concurrent_raw']:.2f}; "
          f"scan / ({len(shards)} x raw alone): {results['scan_over_workers_x_single_raw']:.2f}")
    return results


if __name__ == "__main__":
    sys.exit(run_script(main))
