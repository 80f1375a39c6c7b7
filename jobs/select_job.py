"""Run one alscale selection as a Ray job.

Submit it to a running cluster (the working directory is uploaded; keep it small)::

    export RAY_AUTH_MODE=token   # Ray 2.60's token authentication; the token is in ~/.ray/auth_token
    ray job submit --address http://127.0.0.1:8265 --working-dir . \\
        --runtime-env-json '{"excludes": [".venv", ".labelstudio-venv", ".git", "tests", "benchmarks", "*.parquet", "*.onnx"]}' \\
        -- python jobs/select_job.py --config select.toml

or run it in a KubeRay RayJob (``k8s/rayjob.yaml``).  The config file has the format of
``alscale select --config``; flags given here override it.  The manifest goes to the
configured ``out``: a local path, or any URI pyarrow opens (``s3://``, ``gs://``, ``hdfs://``,
``file://``), written first to a local temporary folder and then copied in under a staging
name and renamed, so a reader never sees half a manifest.  Where the filesystem renames no
folders (S3, GCS), the files are copied in one by one, ``manifest.json`` last.  ``--force``
replaces an earlier manifest there, never a file or a folder of other files.

Exit status: 0 on success, 2 for bad input (config, pool, model, output...), 1 for anything
else (the cluster lost an actor or node for good: a retry may succeed), 130 when stopped
(Ctrl-C, ``ray job stop``, Kubernetes' SIGTERM); the reason is one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import posixpath
import sys
import tempfile
import uuid
from typing import Any

from _common import JobArgumentParser, connect_ray, require_cluster_paths, run_job


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the job's command line (the config file and a few overrides)."""
    parser = JobArgumentParser(
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
    parser.add_argument("--verbose", "-v", action="store_true", help="log at INFO level (e.g. shards resumed from checkpoints) and print tracebacks")
    return parser.parse_args(argv)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("pool", "model", "strategy", "k", "out", "seed", "actors", "checkpoint_dir",
            "skip_bad_shards", "force")
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def is_remote(location: str) -> bool:
    """True when ``location`` is a filesystem URI (``scheme://...``) rather than a local path."""
    return "://" in location


def _filesystem(uri: str):
    """(filesystem, path) of a URI, the path without a trailing slash."""
    from pyarrow import fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(uri)
    return filesystem, path.rstrip("/")


def _open_destination(uri: str, *, force: bool):
    """(filesystem, path) of an output URI that may be written; OutputError if it may not.

    As for a local output, ``force`` replaces an earlier manifest (or an empty folder, or the
    ``batch.parquet`` of a copy cut short), never a file, nor a folder holding other files.
    """
    from pyarrow import fs as pafs

    from alscale.exceptions import OutputError
    from alscale.manifest import BATCH_FILE, MANIFEST_FILE
    from alscale.manifest.manifest import other_files_message

    try:
        filesystem, path = _filesystem(uri)
        kind = filesystem.get_file_info(path).type
        names = set()
        if force and kind == pafs.FileType.Directory:
            names = {posixpath.basename(info.path) for info in filesystem.get_file_info(pafs.FileSelector(path))}
    except (ValueError, OSError) as exc:
        raise OutputError(f"Cannot open output location {uri!r}: {exc}".splitlines()[0]) from None
    if kind == pafs.FileType.NotFound:
        return filesystem, path
    if not force:
        raise OutputError(f"Output {uri!r} exists already; pass --force to replace it.")
    if kind != pafs.FileType.Directory:
        raise OutputError(f"Output {uri!r} exists and is not a directory.")
    others = sorted(names - {MANIFEST_FILE, BATCH_FILE})
    if others:
        raise OutputError(other_files_message(repr(uri), others))
    return filesystem, path


def _check_writable(filesystem, path: str, uri: str) -> None:
    """Write a small file where :func:`publish` will stage the manifest, and remove it again.

    A destination the job cannot write (no permission, read-only credentials, a file where a
    folder should be) then fails before the scan, not after it: the checkpoints would go to the
    same place, so a retry would redo the whole scan.  Missing parent folders are created, as
    the publish step would create them.

    Raises
    ------
    OutputError
        Creating the folder or writing the file failed.
    """
    from alscale.exceptions import OutputError

    probe = f"{path.rstrip('/')}.write-check-{uuid.uuid4().hex[:12]}"
    try:
        filesystem.create_dir(probe, recursive=True)
        with filesystem.open_output_stream(f"{probe}/write-check") as stream:
            stream.write(b"alscale")
    except (OSError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OutputError(f"Cannot write output {uri!r} (checked before any work): {detail}") from None
    finally:
        try:
            filesystem.delete_dir(probe)
        except (OSError, ValueError):
            pass  # nothing was made


def _copy_manifest_last(filesystem, staging: str, path: str) -> None:
    """Copy the files of ``staging`` into ``path`` one by one, ``manifest.json`` last.

    For filesystems that rename no folders (S3, GCS): a reader that finds ``manifest.json``
    finds the whole batch beside it.
    """
    from pyarrow import fs as pafs

    from alscale.manifest import MANIFEST_FILE

    files = [info.path for info in filesystem.get_file_info(pafs.FileSelector(staging, recursive=True))
             if info.type == pafs.FileType.File]
    files.sort(key=lambda name: posixpath.basename(name) == MANIFEST_FILE)  # stable: the manifest goes last
    for source in files:
        target = path + source[len(staging):]
        filesystem.create_dir(posixpath.dirname(target), recursive=True)
        filesystem.copy_file(source, target)


def _remove_dir(filesystem, path: str) -> None:
    """Delete the folder ``path`` if it is there; a failure here must not hide the error being reported."""
    from pyarrow import fs as pafs

    try:
        if filesystem.get_file_info(path).type != pafs.FileType.NotFound:
            filesystem.delete_dir(path)
    except OSError:
        pass


def publish(local_dir: str, uri: str, *, force: bool) -> None:
    """Copy a finished manifest folder to ``uri``: staged beside it, then renamed into place.

    Where the filesystem renames no folders (S3, GCS), the staged files are copied in one by
    one, ``manifest.json`` last.  A failure leaves nothing at ``uri`` (an earlier output that
    ``force`` replaces is gone by then), so the job can be submitted again.

    Parameters
    ----------
    local_dir : str
        The manifest folder written by :func:`alscale.select`.
    uri : str
        Destination, any URI pyarrow opens.
    force : bool
        Replace an earlier manifest at the destination.
    """
    from pyarrow import fs as pafs

    from alscale.exceptions import OutputError

    filesystem, path = _open_destination(uri, force=force)
    staging = f"{path}.partial-{uuid.uuid4().hex[:12]}"
    writing = False  # True once the destination itself is being replaced or written
    try:
        filesystem.create_dir(staging, recursive=True)
        pafs.copy_files(local_dir, staging, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=filesystem)
        writing = True
        if filesystem.get_file_info(path).type != pafs.FileType.NotFound:
            filesystem.delete_dir(path)
        try:
            filesystem.move(staging, path)  # a rename where the filesystem has one
        except (OSError, NotImplementedError):
            _copy_manifest_last(filesystem, staging, path)
    except BaseException as exc:
        if writing:  # no half-copied manifest left behind to block the next attempt
            _remove_dir(filesystem, path)
        if isinstance(exc, OSError):
            raise OutputError(f"Cannot write the manifest to {uri!r}: {exc}".splitlines()[0]) from None
        raise
    finally:
        _remove_dir(filesystem, staging)


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

    _check_writable(*_open_destination(out, force=settings.force), out)  # fail before the work, not after
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
        from alscale.config import load_config_file, make_settings
        from alscale.exceptions import ConfigError

        given = {**(load_config_file(args.config) if args.config else {}), **_overrides(args)}  # before any is checked for existence
        require_cluster_paths(outputs={key: given.get(key) for key in ("out", "checkpoint_dir")},
                              inputs={key: given.get(key) for key in ("pool", "model", "exclude", "labeled")})
        settings = make_settings(args.config, **_overrides(args))
        if not settings.out:  # a job's batch is only worth its manifest: refused before any work
            raise ConfigError("The 'out' setting is required for a job: a local path or a URI (s3://, gs://, file://, ...). Got none.")
        connect_ray(settings.address)
        return f"manifest written to {run(settings)}"

    return run_job(body, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
