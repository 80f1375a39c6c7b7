"""Push 10,000 tasks into a real Label Studio: chunked, deduplicated push vs one single import.

Both imports send the same task JSON into fresh projects of the same server in the same run:

* baseline: one ``POST /api/projects/<id>/import`` with all tasks (no duplicate check);
* alscale: :meth:`LabelStudioConnector.push` (look up existing ids, then import in chunks).

Prints tasks/s for each and the ratio push_time / single_time, checked against ``--limit``, and
writes a JSON result.  The server is started from ``.labelstudio-venv`` (see
``.ci/install-label-studio``) on 127.0.0.1 with a throw-away data directory.

    .venv/bin/python benchmarks/bench_label_studio_push.py --n 10000
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from alscale.bench import ScriptArgumentParser, count, default_results, run_script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "queues"))

from queue_support import LabelStudioServer, make_manifest, write_pool  # noqa: E402

from alscale.bench import machine_info, measure_in_scratch  # noqa: E402
from alscale.queues import LabelStudioConnector, load_batch  # noqa: E402


def main() -> int:
    parser = ScriptArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=count(), default=10_000)
    parser.add_argument("--chunk-size", type=count(), default=1000)
    parser.add_argument("--limit", type=float, default=1.5, help="max allowed push_time / single_import_time")
    parser.add_argument("--out", default=default_results("label_studio_push.json"))
    args = parser.parse_args()

    # the output is checked before the server starts; its data folder goes even when a run fails
    out = measure_in_scratch(_measure, args, args.out, prefix="alscale-bench-ls-")
    return 0 if out["passed"] else 1


def _measure(args, tmp: Path) -> dict:
    server = LabelStudioServer(tmp / "ls")
    server.data_dir.mkdir()
    t0 = time.perf_counter()
    server.start()
    startup = time.perf_counter() - t0
    try:
        os.environ["LABEL_STUDIO_API_KEY"] = server.token
        pool = write_pool(tmp / "pool.parquet", args.n)
        ids = pq.read_table(pool, columns=["id"]).column("id").to_pylist()
        manifest = make_manifest(tmp / "batch", pool, ids, run_id="bench")

        single_project = server.create_project(title="single import")
        conn = LabelStudioConnector(server.url, single_project, data_columns=["text"], chunk_size=args.chunk_size)
        batch = load_batch(manifest, ["text"])
        from_name, to_name = conn.check_classes(batch.classes)
        tasks = [conn.build_task(r, batch, from_name, to_name) for r in batch.rows]
        with server.client() as client:
            t0 = time.perf_counter()
            r = client.post(f"/api/projects/{single_project}/import", json=tasks, timeout=600)
            single = time.perf_counter() - t0
            r.raise_for_status()

        push_project = server.create_project(title="alscale push")
        conn = LabelStudioConnector(server.url, push_project, data_columns=["text"], chunk_size=args.chunk_size)
        t0 = time.perf_counter()
        result = conn.push(manifest)
        pushed = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = conn.push(manifest)
        repush = time.perf_counter() - t0
        assert len(result.pushed) == args.n and len(again.existing) == args.n
        assert len(server.tasks(push_project)) == args.n
    finally:
        server.stop()

    ratio = pushed / single
    out = {
        "benchmark": "label_studio_push", "n": args.n, "chunk_size": args.chunk_size,
        "single_import_s": round(single, 3), "single_import_tasks_per_s": round(args.n / single, 1),
        "push_s": round(pushed, 3), "push_tasks_per_s": round(args.n / pushed, 1),
        "repush_all_existing_s": round(repush, 3), "server_startup_s": round(startup, 1),
        "ratio_push_over_single": round(ratio, 3), "limit": args.limit, "passed": ratio <= args.limit,
        "python": platform.python_version(), "httpx": httpx.__version__,
        "machine": machine_info(),  # as every benchmark's results: a later run may replace this file
    }
    print(f"single import: {args.n} tasks in {single:.2f}s ({args.n / single:,.0f} tasks/s)")
    print(f"alscale push : {args.n} tasks in {pushed:.2f}s ({args.n / pushed:,.0f} tasks/s), chunks of {args.chunk_size}")
    print(f"re-push (all already there): {repush:.2f}s")
    print(f"ratio push/single = {ratio:.2f} (limit {args.limit}) -> {'OK' if out['passed'] else 'TOO SLOW'}")
    return out


if __name__ == "__main__":
    sys.exit(run_script(main))
