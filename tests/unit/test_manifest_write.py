"""The manifest's write: both files on disk before the folder appears."""

from __future__ import annotations

import os

import pyarrow as pa

from alscale.manifest import Manifest, write_manifest


def test_both_files_are_fsynced_before_the_folder_is_renamed_into_place(tmp_path, monkeypatch):
    """A power cut can leave the renamed folder only with files already on disk: batch.parquet included."""
    events = []
    fsync, rename = os.fsync, os.rename

    def recording_fsync(fd):
        events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        return fsync(fd)

    def recording_rename(src, dst):
        events.append(("rename", os.path.basename(dst)))
        return rename(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "rename", recording_rename)
    batch = pa.table({"id": pa.array([3, 1], pa.int64()), "rank": pa.array([1, 2], pa.int32())})
    write_manifest(tmp_path / "out", batch, {"schema_version": 1, "k": 2})
    synced_before = {name for kind, name in events[: events.index(("rename", "out"))] if kind == "fsync"}
    assert {"batch.parquet", "manifest.json"} <= synced_before
    assert Manifest.read(tmp_path / "out").batch.column("id").to_pylist() == [3, 1]


def test_creation_problem_names_the_folder_that_decides(tmp_path):
    """One check for "can this path be created?" (the manifest, simulate and the benchmarks each had a copy)."""
    from alscale._atomic import creation_problem

    (tmp_path / "a-file").write_text("x")
    assert creation_problem(tmp_path / "new" / "deeper" / "out") is None
    assert creation_problem(tmp_path / "a-file" / "out") == f"{str(tmp_path / 'a-file')!r} is a file, not a directory"
    assert creation_problem(tmp_path / "a-file" / "x" / "out") == f"{str(tmp_path / 'a-file')!r} is a file, not a directory"
