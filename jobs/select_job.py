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
import re
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


def _destination(filesystem, path: str):
    """(type, names): what is at ``path``, and for a folder the names of what it holds."""
    from pyarrow import fs as pafs

    kind = filesystem.get_file_info(path).type
    names = set()
    if kind == pafs.FileType.Directory:
        names = {posixpath.basename(info.path) for info in filesystem.get_file_info(pafs.FileSelector(path))}
    return kind, names


def _cut_short(kind, names: set[str]) -> bool:
    """Whether a destination is a copy cut short: a folder with ``batch.parquet`` and no ``manifest.json``.

    Where the filesystem renames no folders (S3, GCS) :func:`publish` copies ``manifest.json``
    last, so a job killed during the copy (OOM, a lost node, a deadline's SIGKILL) leaves just
    ``batch.parquet``.  No reader takes it for a batch, and it is no output: a retry replaces it
    without ``--force``.
    """
    from pyarrow import fs as pafs

    from alscale.manifest import BATCH_FILE

    return kind == pafs.FileType.Directory and names == {BATCH_FILE}


def _written_meanwhile(uri: str, checkpoints: str | None) -> str:
    """The error for a destination that another run wrote after this one checked it."""
    if checkpoints:
        return (f"Output {uri!r} was written by another run while this one ran. This run's checkpoints stay in "
                f"{checkpoints!r}: run it again with --force to replace that output from them (nothing is scored "
                "again), or delete them.")
    return f"Output {uri!r} was written by another run while this one ran; run it again with --force to replace it."


def _refuse(uri: str, kind, names: set[str], *, force: bool, meanwhile: bool = False, checkpoints: str | None = None) -> None:
    """Raise OutputError (one line) if the destination may not be written.

    ``meanwhile``: it was found free before the work, so an output there now was written by
    another run since (``checkpoints``: where this run's are, for the message).
    """
    from pyarrow import fs as pafs

    from alscale.exceptions import OutputError
    from alscale.manifest import BATCH_FILE, MANIFEST_FILE
    from alscale.manifest.manifest import other_files_message

    if kind == pafs.FileType.NotFound or _cut_short(kind, names):
        return
    if not force:
        raise OutputError(_written_meanwhile(uri, checkpoints) if meanwhile else f"Output {uri!r} exists already; pass --force to replace it.")
    if kind != pafs.FileType.Directory:
        raise OutputError(f"Output {uri!r} exists and is not a directory.")
    others = sorted(names - {MANIFEST_FILE, BATCH_FILE})
    if others:
        raise OutputError(other_files_message(repr(uri), others))


def _open_destination(uri: str, *, force: bool, meanwhile: bool = False, checkpoints: str | None = None):
    """(filesystem, path) of an output URI that may be written; OutputError if it may not.

    As for a local output, ``force`` replaces an earlier manifest (or an empty folder), never a
    file, nor a folder holding other files.  A copy cut short (:func:`_cut_short`) is replaced
    with or without ``force``.  ``meanwhile`` and ``checkpoints`` as in :func:`_refuse`.
    """
    from alscale.exceptions import OutputError

    try:
        filesystem, path = _filesystem(uri)
        kind, names = _destination(filesystem, path)
    except (ValueError, OSError) as exc:
        raise OutputError(f"Cannot open output location {uri!r}: {exc}".splitlines()[0]) from None
    _refuse(uri, kind, names, force=force, meanwhile=meanwhile, checkpoints=checkpoints)
    return filesystem, path


def _stale_siblings(filesystem, path: str) -> list[str]:
    """The folders this tool names beside ``path`` for a while: ``<path>.partial-<id>`` (staging) and
    ``<path>.write-check-<id>`` (the check before the work).

    A publish or a check removes its own; a job killed in either leaves it behind.  Listing
    failures give an empty list: the sweep is a courtesy, never a reason to fail.
    """
    from pyarrow import fs as pafs

    parent, name = posixpath.split(path)
    if not parent or not name:
        return []
    own = re.compile(re.escape(name) + r"\.(?:partial|write-check)-[0-9a-f]{12}")
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    except (OSError, ValueError):
        return []
    return sorted(info.path for info in infos
                  if info.type == pafs.FileType.Directory and own.fullmatch(posixpath.basename(info.path)))


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


def publish(local_dir: str, uri: str, *, force: bool, checked: bool = False, checkpoints: str | None = None) -> None:
    """Copy a finished manifest folder to ``uri``: staged beside it, then renamed into place.

    Where the filesystem renames no folders (S3, GCS), the staged files are copied in one by
    one, ``manifest.json`` last.  A failure leaves nothing at ``uri`` (an earlier output that
    ``force`` replaces is gone by then), so the job can be submitted again.  Without ``force``,
    an output that another run (the same job submitted twice) published while this one staged
    is left as it is, and this run fails saying so; a copy cut short (:func:`_cut_short`) is
    replaced.

    Parameters
    ----------
    local_dir : str
        The manifest folder written by :func:`alscale.select`.
    uri : str
        Destination, any URI pyarrow opens.
    force : bool
        Replace an earlier manifest at the destination.
    checked : bool
        The caller found the destination free before its work (:func:`run`): an output there
        now was written by another run since.
    checkpoints : str, optional
        Where this run's checkpoints are, for the error when another run wrote the output.

    Raises
    ------
    OutputError
        The destination may not be written, was written by another run meanwhile, or the
        copy failed.
    """
    from pyarrow import fs as pafs

    from alscale.exceptions import OutputError

    filesystem, path = _open_destination(uri, force=force, meanwhile=checked, checkpoints=checkpoints)
    staging = f"{path}.partial-{uuid.uuid4().hex[:12]}"
    writing = False  # True once the destination itself is being replaced or written
    try:
        filesystem.create_dir(staging, recursive=True)
        pafs.copy_files(local_dir, staging, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=filesystem)
        # looked at again: another run may have published here since the check above
        kind, names = _destination(filesystem, path)
        _refuse(uri, kind, names, force=force, meanwhile=True, checkpoints=checkpoints)
        writing = True
        if kind != pafs.FileType.NotFound:
            filesystem.delete_dir(path)
        try:
            filesystem.move(staging, path)  # a rename where the filesystem has one
        except (OSError, NotImplementedError):
            if filesystem.get_file_info(path).type != pafs.FileType.NotFound:  # another run's, since: never copied into
                writing = False
                raise OutputError(_written_meanwhile(uri, checkpoints)) from None
            _copy_manifest_last(filesystem, staging, path)
    except BaseException as exc:
        if writing:  # no half-copied manifest left behind to block the next attempt
            _remove_dir(filesystem, path)
        if isinstance(exc, OSError):
            raise OutputError(f"Cannot write the manifest to {uri!r}: {exc}".splitlines()[0]) from None
        raise
    finally:
        _remove_dir(filesystem, staging)


def _record_destination(local_dir, uri: str, settings) -> None:
    """The manifest records the job's settings and where it is published, not the temporary
    folder it was written to, nor the checkpoints :func:`run` keeps only until it is published
    (``checkpoints`` is null unless ``keep_checkpoints`` keeps them, as for a local output)."""
    import json

    from alscale._atomic import atomic_write_bytes
    from alscale.manifest import MANIFEST_FILE, manifest_json

    path = os.path.join(str(local_dir), MANIFEST_FILE)
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    data["settings"].update(out=uri, checkpoint_dir=settings.checkpoint_dir, keep_checkpoints=settings.keep_checkpoints)
    if not settings.keep_checkpoints:
        data["checkpoints"] = None
    atomic_write_bytes(path, manifest_json(data))


def _sweep(filesystem, paths: list[str]) -> None:
    """Remove what :func:`_stale_siblings` found, where it is still there; failures only logged."""
    from pyarrow import fs as pafs

    from _common import log

    for path in paths:
        try:
            if filesystem.get_file_info(path).type == pafs.FileType.Directory:
                filesystem.delete_dir(path)
        except (OSError, ValueError) as exc:
            log.warning("could not remove %s, left by an earlier attempt: %s", path, exc)


def run(settings) -> str:
    """Run the selection described by ``settings``; return where the manifest was written.

    An ``out`` URI is checked (and written to) before the work; the checkpoints stay until the
    manifest is published there, so a failed copy is retried without scoring again.  Staging and
    check folders that a killed earlier attempt left beside the output, there before the work and
    still there after the publish, are removed then.
    """
    import alscale

    kwargs = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    kwargs["address"] = None  # connect_ray() has joined the cluster already
    out = settings.out
    if not is_remote(out):
        manifest = alscale.select(**kwargs)
        return str(manifest.path)
    from alscale.engine.checkpoint import remove_checkpoints

    filesystem, path = _open_destination(out, force=settings.force)
    # a live publish's staging folder lasts one copy; one there before the work and still there after is a killed attempt's
    stale = _stale_siblings(filesystem, path)
    _check_writable(filesystem, path, out)  # fail before the work, not after
    root = settings.checkpoint_dir or out.rstrip("/") + ".checkpoints"
    # the checkpoints stay until the manifest is published: a failed copy is retried without rescoring
    kwargs.update(checkpoint_dir=root, keep_checkpoints=True)
    with tempfile.TemporaryDirectory(prefix="alscale-job-") as tmp:
        kwargs["out"] = os.path.join(tmp, "manifest")
        manifest = alscale.select(**kwargs)
        checkpoints = manifest.data.get("checkpoints")
        _record_destination(manifest.path, out, settings)
        publish(str(manifest.path), out, force=settings.force, checked=True, checkpoints=checkpoints)
    _sweep(filesystem, stale)
    if checkpoints and not settings.keep_checkpoints:
        remove_checkpoints(checkpoints, root, whole_root=not settings.checkpoint_dir)
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
