"""Reading a pool's features: the page reader against Arrow's decoder and a plain file read.

One process reads every row of a generated pool (``--rows`` x 64 float32 features in an
uncompressed ``fixed_size_binary`` column, 4 files, row groups of 131,072 rows) as the actors
do, in batches of 4,096 rows, three ways, alternated ``--repeats`` times:

* ``pages``: ``iter_shard`` as the engine runs it (features read from their data pages);
* ``arrow``: ``iter_shard(read_pages=False)`` (Arrow decodes the column);
* ``limit``: the files read front to back into one reused 1 MiB buffer, no parsing at all: the
  cost of moving the bytes out of the page cache once.

It prints the median seconds per 1M rows of each, ``limit / pages`` (1.0: reading costs no more
than copying the bytes) and ``arrow / pages``::

    python benchmarks/bench_read.py                    # 1M rows
    python benchmarks/bench_read.py --rows 4000000 --json bench-results/read.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

BATCH = 4096


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default="bench-results/read.json")
    args = parser.parse_args(argv)

    from alscale.bench import _finish, machine_info
    from alscale.datasets import make_pool
    from alscale.pool import detect_features, iter_shard, plan_shards, resolve_pool

    work = Path(tempfile.mkdtemp(prefix="alscale-read-"))
    make_pool(work / "pool", args.rows, n_features=64, n_classes=10, files=4, row_group_size=131_072)
    pool = resolve_pool(str(work / "pool"))
    spec = detect_features(pool.schema, "id")
    shard = plan_shards(pool, 1)[0]
    buffer = memoryview(bytearray(1 << 20))

    def scan(read_pages: bool) -> float:
        t0 = time.perf_counter()
        for _ in iter_shard(None, shard, spec, "id", BATCH, read_pages=read_pages):
            pass
        return time.perf_counter() - t0

    def plain_read() -> float:
        t0 = time.perf_counter()
        for f in pool.files:
            with open(f.path, "rb", buffering=0) as file:
                while file.readinto(buffer):
                    pass
        return time.perf_counter() - t0

    ways = {"pages": lambda: scan(True), "arrow": lambda: scan(False), "limit": plain_read}
    for way in ways.values():  # the page cache and the imports, once
        way()
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():
            seconds[name].append(way())
    per_million = {name: statistics.median(s) / args.rows * 1e6 for name, s in seconds.items()}
    results = {
        "machine": machine_info(),
        "rows": args.rows,
        "batch_rows": BATCH,
        "seconds_per_million_rows": per_million,
        "all_seconds": seconds,
        "limit_over_pages": per_million["limit"] / per_million["pages"],
        "arrow_over_pages": per_million["arrow"] / per_million["pages"],
    }
    for name, value in per_million.items():
        print(f"{name:6s} {value * 1000:6.1f} ms per 1M rows")
    print(f"pages reach {results['limit_over_pages']:.2f} of the plain read and are {results['arrow_over_pages']:.2f}x as fast as Arrow")
    _finish(results, args.json, work)
    print(f"results written to {args.json}")
    return results


if __name__ == "__main__":
    main()
