"""Reading a pool's features: the page reader against Arrow's decoder, alone and with the model.

One process reads every row of a generated pool (``--rows`` x 64 float32 features in an
uncompressed ``fixed_size_binary`` column, 4 files, row groups of 131,072 rows) as the actors
do, in batches of 4,096 rows, each way below alternated ``--repeats`` times:

* ``pages``: ``iter_shard`` as the engine runs it (features read from their data pages);
* ``arrow``: ``iter_shard(read_pages=False)`` (Arrow decodes the column);
* ``plain read``: the files read front to back into one reused 1 MiB buffer, no parsing: the
  cost of moving the bytes out of the page cache once;
* ``pages + model`` and ``arrow + model``: the same reads, each batch then checked for NaN, run
  through the MLP 64-256-10 in slices of 2,048 rows and scored (entropy): the scan without its
  top-K;
* ``model alone``: the MLP over the same rows held in memory (the limit of the scan).

It prints the median milliseconds per 1M rows of each, and the two scans' ratios to the model
alone::

    python benchmarks/bench_read.py                    # 1M rows
    python benchmarks/bench_read.py --rows 4000000 --json bench-results/read.json
"""

from __future__ import annotations

import argparse
import sys
import statistics
import time
from pathlib import Path

from alscale.bench import ScriptArgumentParser, count, default_results, run_script

BATCH = 4096
RUN = 2048


def main(argv: list[str] | None = None) -> dict:
    parser = ScriptArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=count(), default=1_000_000)
    parser.add_argument("--repeats", type=count(), default=7)
    parser.add_argument("--json", default=default_results("read.json"))
    args = parser.parse_args(argv)

    from alscale.bench import measure_in_scratch

    return measure_in_scratch(_measure, args, args.json, prefix="alscale-read-")  # the pool goes even when a run fails


def _measure(args: argparse.Namespace, work: Path) -> dict:
    import numpy as np

    from alscale.bench import machine_info
    from alscale.datasets import make_pool, random_mlp
    from alscale.model import ModelRunner, inspect_model
    from alscale.pool import detect_features, iter_shard, plan_shards, resolve_pool
    from alscale.strategies.uncertainty import entropy

    make_pool(work / "pool", args.rows, n_features=64, n_classes=10, files=4, row_group_size=131_072)
    pool = resolve_pool(str(work / "pool"))
    spec = detect_features(pool.schema, "id")
    shard = plan_shards(pool, 1)[0]
    buffer = memoryview(bytearray(1 << 20))
    runner = ModelRunner([inspect_model(random_mlp(work / "model.onnx", (64, 256, 10)))])
    runner.rows_per_run = RUN
    in_memory = np.concatenate([b.features for b in iter_shard(None, shard, spec, "id", BATCH)])

    def read(read_pages: bool) -> float:
        t0 = time.perf_counter()
        for _ in iter_shard(None, shard, spec, "id", BATCH, read_pages=read_pages):
            pass
        return time.perf_counter() - t0

    def scan(read_pages: bool) -> float:
        t0 = time.perf_counter()
        for batch in iter_shard(None, shard, spec, "id", BATCH, read_pages=read_pages):
            if not np.isfinite(batch.features).all():
                raise ValueError("the generated pool holds NaN")
            entropy(runner(batch.features).probs)
        return time.perf_counter() - t0

    def model_alone() -> float:
        t0 = time.perf_counter()
        for i in range(0, in_memory.shape[0], RUN):
            runner(in_memory[i : i + RUN])
        return time.perf_counter() - t0

    def plain_read() -> float:
        t0 = time.perf_counter()
        for f in pool.files:
            with open(f.path, "rb", buffering=0) as file:
                while file.readinto(buffer):
                    pass
        return time.perf_counter() - t0

    ways = {
        "pages": lambda: read(True),
        "arrow": lambda: read(False),
        "plain read": plain_read,
        "pages + model": lambda: scan(True),
        "arrow + model": lambda: scan(False),
        "model alone": model_alone,
    }
    for way in ways.values():  # the page cache and the imports, once
        way()
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():
            seconds[name].append(way())
    per_million = {name: statistics.median(s) / args.rows * 1e6 for name, s in seconds.items()}
    model = per_million["model alone"]
    results = {
        "machine": machine_info(),
        "rows": args.rows,
        "batch_rows": BATCH,
        "model_rows": RUN,
        "seconds_per_million_rows": per_million,
        "all_seconds": seconds,
        "scan_ratio_pages": model / per_million["pages + model"],
        "scan_ratio_arrow": model / per_million["arrow + model"],
    }
    for name, value in per_million.items():
        print(f"{name:14s} {value * 1000:6.1f} ms per 1M rows")
    print(f"the scan reaches {results['scan_ratio_pages']:.3f} of the model alone with the page reader, "
          f"{results['scan_ratio_arrow']:.3f} with Arrow's decoder")
    return results


if __name__ == "__main__":
    sys.exit(run_script(main))
