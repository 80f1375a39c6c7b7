"""Run one round of the active-learning loop as a Ray job.

The workspace (``alscale init``) must be on storage the Ray head can read and write (a shared
volume in Kubernetes).  The round trains (or takes ``--model``), evaluates, checks the stopping
rules and selects the next batch on the cluster the job was submitted to::

    export RAY_AUTH_MODE=token   # Ray 2.60's token authentication; the token is in ~/.ray/auth_token
    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env-json '{"excludes": [".venv", ".labelstudio-venv", ".git", "tests", "benchmarks", "*.parquet", "*.onnx"]}' \\
        -- python jobs/loop_round_job.py --workspace /mnt/alscale/ws

A round interrupted anywhere is finished by submitting the job again.  Exit status: 0 on
success, 2 for bad input (workspace, labels, model, flags...), 1 for anything else (the cluster
lost an actor or node for good: a retry may succeed), 130 when stopped (Ctrl-C, ``ray job
stop``, Kubernetes' SIGTERM); the reason is one line on stderr.  On
success the round record is printed as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys

from _common import JobArgumentParser, connect_ray, require_cluster_paths, run_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the job's command line."""
    parser = JobArgumentParser(prog="loop_round_job.py",
                               description="Run the next round of an alscale workspace on this Ray cluster.")
    parser.add_argument("--workspace", required=True, help="workspace folder (created by `alscale init`)")
    parser.add_argument("--model", help="bring-your-own ONNX model for this round")
    parser.add_argument("--strategy", help="override the workspace's strategy")
    parser.add_argument("--k", type=int, help="override the batch size")
    parser.add_argument("--seed", type=int, help="override the round's seed")
    parser.add_argument("--actors", type=int, help="shard actors for the selection")
    parser.add_argument("--mark-pending", action="store_true", help="add the selected ids to the pending table")
    parser.add_argument("--verbose", "-v", action="store_true", help="log at INFO level (e.g. shards resumed from checkpoints) and print tracebacks")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)

    def body() -> str:
        from alscale.loop.rounds import run_round

        require_cluster_paths(outputs={"workspace": args.workspace}, inputs={"model": args.model})
        connect_ray()
        record = run_round(args.workspace, model=args.model, strategy=args.strategy, k=args.k, seed=args.seed,
                           actors=args.actors, mark_pending=args.mark_pending)
        return json.dumps(record, default=str, sort_keys=True)

    return run_job(body, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
