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
