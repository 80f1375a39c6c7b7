"""Peak driver memory of one selection: does it grow with the pool?

For each pool size (default 1M and 5M rows, k=1000) this writes a Parquet pool with few
features, then runs ``alscale.select`` in a fresh Python process and reads that process's peak
resident set size (``ru_maxrss``: the driver alone; shard actors are other processes).  The
driver only holds shard plans, per-shard top-K results and the merged top-K, so its peak should
stay flat while the pool grows five-fold.

It prints one line per size, then the ratio of the largest pool's peak to the smallest's
against a limit, and writes everything to JSON::

    python benchmarks/bench_driver_memory.py                # 1M and 5M rows
    python benchmarks/bench_driver_memory.py --rows 200000 1000000 --out bench-results/mem.json

Exit status 1 when the ratio exceeds the limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alscale.bench import ScriptArgumentParser, count, default_results, machine_info, run_script

N_FEATURES, N_CLASSES = 4, 3
ROWS_PER_FILE = 500_000

_DRIVER = r"""
import json, os, resource, sys, time
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
import alscale
pool, model, out, k, actors = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
manifest = alscale.select(pool, model, strategy="entropy", k=k, out=out, actors=actors,
                          batch_size=8192, seed=0)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_rss_mib": peak / 1024, "rss_after_import_mib": before / 1024,
                  "seconds": seconds, "rows_scored": manifest.data["counts"]["rows_scored"],
                  "selected": manifest.batch.num_rows}))
"""


def write_pool(folder: Path, n_rows: int, seed: int = 0) -> int:
    """Write ``n_rows`` rows (``id`` int64, ``features`` fixed_size_list<float32>[4]); return bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    size = 0
    for i, start in enumerate(range(0, n_rows, ROWS_PER_FILE)):
        n = min(ROWS_PER_FILE, n_rows - start)
        x = rng.normal(size=n * N_FEATURES).astype(np.float32)
        table = pa.table({
            "id": pa.array(np.arange(start, start + n, dtype=np.int64)),
            "features": pa.FixedSizeListArray.from_arrays(pa.array(x), N_FEATURES),
        })
        path = folder / f"part-{i:04d}.parquet"
        pq.write_table(table, path, row_group_size=65_536, compression="none")
        size += path.stat().st_size
    return size


def write_model(path: Path) -> None:
    from alscale.model.export import linear_to_onnx

    rng = np.random.default_rng(1)
    coef = rng.normal(size=(N_CLASSES, N_FEATURES)).astype(np.float32)
    path.write_bytes(linear_to_onnx(coef, np.zeros(N_CLASSES, np.float32)))


def measure(pool: Path, model: Path, out: Path, k: int, actors: int) -> dict:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    proc = subprocess.run([sys.executable, "-c", _DRIVER, str(pool), str(model), str(out), str(k), str(actors)],
                          capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"the selection failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = ScriptArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=count(), nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--k", type=count(), default=1000)
    parser.add_argument("--actors", type=count(), default=2)
    parser.add_argument("--limit", type=float, default=1.25,
                        help="largest allowed peak(largest pool) / peak(smallest pool)")
    parser.add_argument("--out", default=default_results("driver_memory.json"))
    args = parser.parse_args(argv)
    if args.k > min(args.rows):  # before any pool is written (a select on the smallest would fail after it)
        from alscale.exceptions import PoolExhaustedError

        raise PoolExhaustedError(min(args.rows), args.k)

    from alscale.bench import measure_in_scratch

    # the output is checked before any pool is written; the pools go even when a run fails
    report = measure_in_scratch(_measure, args, args.out, prefix="alscale-bench-mem-")
    return 0 if report["ok"] else 1


def _measure(args, tmp: Path) -> dict:
    results = []
    model = tmp / "model.onnx"
    write_model(model)
    for n in sorted(args.rows):
        pool = tmp / f"pool-{n}"
        t0 = time.perf_counter()
        nbytes = write_pool(pool, n)
        gen = time.perf_counter() - t0
        row = {"rows": n, "k": args.k, "pool_bytes": nbytes, "generate_seconds": round(gen, 2)}
        row.update(measure(pool, model, tmp / f"out-{n}", args.k, args.actors))
        results.append(row)
        sys.stdout.write(
            f"rows={n:>10,d}  pool={nbytes / 2**20:8.1f} MiB  driver peak RSS={row['peak_rss_mib']:7.1f} MiB"
            f"  (after import {row['rss_after_import_mib']:.1f} MiB)  select {row['seconds']:.1f} s\n"
        )
        for p in pool.iterdir():
            p.unlink()
    ratio = results[-1]["peak_rss_mib"] / results[0]["peak_rss_mib"]
    ok = ratio <= args.limit
    sys.stdout.write(
        f"peak RSS ratio {results[-1]['rows']:,d} / {results[0]['rows']:,d} rows = {ratio:.3f}"
        f" (limit {args.limit}): {'OK' if ok else 'TOO HIGH'}\n"
    )
    return {
        "benchmark": "driver_memory", "results": results, "ratio": ratio, "limit": args.limit, "ok": ok,
        "machine": machine_info(),
    }

if __name__ == "__main__":
    sys.exit(run_script(main))
