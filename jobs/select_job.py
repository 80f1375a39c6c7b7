"""Run one alscale selection as a Ray job.

Submit it to a running cluster (the working directory is uploaded; keep it small)::

    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env-json '{"excludes": [".venv", ".labelstudio-venv", ".git", "tests", "benchmarks", "*.parquet", "*.onnx"]}' \\
        -- python jobs/select_job.py --config select.toml

or run it in a KubeRay RayJob (``k8s/rayjob.yaml``).  The config file has the format of
``alscale select --config``; flags given here override it.  The manifest goes to the
configured ``out``: a local path, or any URI pyarrow opens (``s3://``, ``gs://``, ``hdfs://``,
``file://``), written first to a local temporary folder and then copied in under a staging
name and renamed, so a reader never sees half a manifest where the filesystem can rename.

Exit status: 0 on success, 2 for bad input (config, pool, model, output...), 1 for anything
else (the cluster lost an actor or node for good: a retry may succeed); the reason is one line
on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import uuid
from typing import Any

from _common import connect_ray, run_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the job's command line (the config file and a few overrides)."""
    parser = argparse.ArgumentParser(
        prog="select_job.py",
        description="Run one alscale selection on the Ray cluster this job was submitted to.",
    )
    parser.add_argument("--config", required=True, help="selection config (TOML or YAML), as for `alscale select --config`")
    parser.add_argument("--pool", help="override: Parquet file, directory, glob or URI")
    parser.add_argument("--model", action="append", help="override: ONNX model (repeat for a committee)")
    parser.add_argument("--strategy", help="override: strategy name")
    parser.add_argument("--k", type=int, help="override: batch size to select")
    parser.add_argument("--out", help="override: output location (local path or filesystem URI)")
    parser.add_argument("--seed", type=int, help="override: random seed")
    parser.add_argument("--actors", type=int, help="override: number of shard actors")
    parser.add_argument("--checkpoint-dir", help="override: where finished shards are checkpointed")
    parser.add_argument("--skip-bad-shards", action="store_true", default=None,
                        help="record and skip shards that fail every time instead of failing the run")
    parser.add_argument("--force", action="store_true", default=None, help="replace an existing output")
    parser.add_argument("--verbose", "-v", action="store_true", help="log progress and keep tracebacks")
    return parser.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("pool", "model", "strategy", "k", "out", "seed", "actors", "checkpoint_dir",
            "skip_bad_shards", "force")
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def is_remote(location: str) -> bool:
    """True when ``location`` is a filesystem URI (``scheme://...``) rather than a local path."""
    return "://" in location


def _open_destination(uri: str, *, force: bool):
    """(filesystem, path) of an output URI that may be written; OutputError if it may not."""
    from pyarrow import fs as pafs

    from alscale.exceptions import OutputError

    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        exists = filesystem.get_file_info(path.rstrip("/")).type != pafs.FileType.NotFound
    except (ValueError, OSError) as exc:
        raise OutputError(f"Cannot open output location {uri!r}: {exc}".splitlines()[0]) from None
    if exists and not force:
        raise OutputError(f"Output {uri!r} exists already; pass --force to replace it.")
    return filesystem, path.rstrip("/")


def publish(local_dir: str, uri: str, *, force: bool) -> None:
    """Copy a finished manifest folder to ``uri``: staged beside it, then renamed into place.

    Parameters
    ----------
    local_dir : str
        The manifest folder written by :func:`alscale.select`.
    uri : str
        Destination, any URI pyarrow opens.
    force : bool
        Replace an existing destination.
    """
    from pyarrow import fs as pafs

    from alscale.exceptions import OutputError

    filesystem, path = _open_destination(uri, force=force)
    staging = f"{path}.partial-{uuid.uuid4().hex[:12]}"
    try:
        filesystem.create_dir(staging, recursive=True)
        pafs.copy_files(local_dir, staging, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=filesystem)
        if filesystem.get_file_info(path).type != pafs.FileType.NotFound:
            filesystem.delete_dir(path)
        try:
            filesystem.move(staging, path)  # a rename where the filesystem has one
        except (OSError, NotImplementedError):
            pafs.copy_files(staging, path, source_filesystem=filesystem, destination_filesystem=filesystem)
            filesystem.delete_dir(staging)
    except OSError as exc:
        raise OutputError(f"Cannot write the manifest to {uri!r}: {exc}".splitlines()[0]) from None
    finally:
        try:
            if filesystem.get_file_info(staging).type != pafs.FileType.NotFound:
                filesystem.delete_dir(staging)
        except OSError:
            pass


def _record_destination(local_dir, uri: str) -> None:
    """The manifest names where it is published, not the temporary folder it was written to."""
    import json

    from alscale._atomic import atomic_write_bytes
    from alscale.manifest import MANIFEST_FILE, manifest_json

    path = os.path.join(str(local_dir), MANIFEST_FILE)
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    data["settings"]["out"] = uri
    atomic_write_bytes(path, manifest_json(data))


def run(settings) -> str:
    """Run the selection described by ``settings``; return where the manifest was written."""
    import alscale

    kwargs = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    kwargs["address"] = None  # connect_ray() has joined the cluster already
    out = settings.out
    if not is_remote(out):
        manifest = alscale.select(**kwargs)
        return str(manifest.path)
    from alscale.engine.checkpoint import remove_checkpoints

    _open_destination(out, force=settings.force)  # fail before the work, not after
    root = settings.checkpoint_dir or out.rstrip("/") + ".checkpoints"
    # the checkpoints stay until the manifest is published: a failed copy is retried without rescoring
    kwargs.update(checkpoint_dir=root, keep_checkpoints=True)
    with tempfile.TemporaryDirectory(prefix="alscale-job-") as tmp:
        kwargs["out"] = os.path.join(tmp, "manifest")
        manifest = alscale.select(**kwargs)
        _record_destination(manifest.path, out)
        publish(str(manifest.path), out, force=settings.force)
    if manifest.data.get("checkpoints") and not settings.keep_checkpoints:
        remove_checkpoints(manifest.data["checkpoints"], root, whole_root=not settings.checkpoint_dir)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)

    def body() -> str:
        from alscale.config import make_settings
        from alscale.exceptions import ConfigError

        settings = make_settings(args.config, **_overrides(args))
        if not settings.out:  # a job's batch is only worth its manifest: refused before any work
            raise ConfigError("The 'out' setting is required for a job: a local path or a URI (s3://, gs://, file://, ...). Got none.")
        connect_ray(settings.address)
        return f"manifest written to {run(settings)}"

    return run_job(body, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
