"""``batch_size="auto"`` against the fixed 2,048 rows, on narrow and wide MLPs.

For each hidden width (default 256, 1024 and 4096 units, MLP 64-H-10) and actor count (1 and
2), ``select`` runs alternately with ``batch_size=2048`` and ``batch_size="auto"`` in one Ray
session, ``--repeats`` times each; the median rows/s of each, their ratio and the sizes "auto"
chose are printed and written as JSON::

    python benchmarks/bench_batch_size.py                      # 1M rows
    python benchmarks/bench_batch_size.py --rows 200000 --json bench-results/batch_size.json

Alternating the two settings, rather than running one after the other, keeps a slow minute on a
shared machine from favouring either.
"""

from __future__ import annotations

import argparse
import sys
import os
import statistics
from pathlib import Path

from alscale.bench import ScriptArgumentParser, count, default_results, run_script


def main(argv: list[str] | None = None) -> dict:
    parser = ScriptArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=count(100), default=1_000_000, help="pool rows, at least 100 (each select keeps k=100)")
    parser.add_argument("--hidden", type=count(), nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--actors", type=count(), nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=count(), default=3)
    parser.add_argument("--json", default=default_results("batch_size.json"))
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from alscale.bench import measure_in_scratch

    return measure_in_scratch(_measure, args, args.json, prefix="alscale-bs-")  # the pool goes even when a run fails


def _measure(args: argparse.Namespace, work: Path) -> dict:
    import alscale
    from alscale.engine.runtime import ray_session
    from alscale.bench import machine_info
    from alscale.datasets import make_pool, random_mlp

    pool = make_pool(work / "pool", args.rows, n_features=64, n_classes=10, files=4, row_group_size=131_072)
    results: dict = {"machine": machine_info(), "rows": args.rows, "runs": []}
    with ray_session(num_cpus=max(args.actors)):
        for hidden in args.hidden:
            model = random_mlp(work / f"mlp-{hidden}.onnx", (64, hidden, 10))
            alscale.select(pool, model, k=100, actors=args.actors[0], batch_size=2048)  # warm the page cache
            for actors in args.actors:
                rates: dict = {2048: [], "auto": []}
                chosen = []
                for _ in range(args.repeats):
                    for setting, measured in rates.items():
                        m = alscale.select(pool, model, k=100, actors=actors, batch_size=setting)
                        measured.append(m.data["counts"]["rows_scored"] / m.data["timings"]["score"])
                        if setting == "auto":
                            chosen.extend(m.data["batch_sizes"])
                fixed, auto = statistics.median(rates[2048]), statistics.median(rates["auto"])
                row = {"model": f"MLP 64-{hidden}-10", "actors": actors, "rows_per_s_2048": fixed, "rows_per_s_auto": auto,
                       "auto_over_2048": auto / fixed, "auto_chose": sorted(chosen), "all_rows_per_s": {str(k): v for k, v in rates.items()}}
                results["runs"].append(row)
                print(f"MLP 64-{hidden}-10, {actors} actor(s): 2048 rows {fixed:,.0f} rows/s, auto {auto:,.0f} rows/s "
                      f"({auto / fixed:.2f}x), auto chose {sorted(set(chosen))}", flush=True)
    return results


if __name__ == "__main__":
    sys.exit(run_script(main))
