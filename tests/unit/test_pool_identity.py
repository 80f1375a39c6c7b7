"""The pool key that tells pools with overlapping ids apart in a shared labeling queue."""

from __future__ import annotations

import hashlib
import os
import re

from alscale.pool.identity import pool_key, pool_location


def _sha16(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def test_every_spelling_of_one_local_pool_has_one_key(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "pool"
    folder.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    real = os.path.realpath(folder)
    spellings = [str(folder), str(folder) + "/", "data/pool", "./data/../data/pool/", str(tmp_path / "link" / "pool"), folder]
    assert {pool_key(s) for s in spellings} == {_sha16(real)}
    assert pool_location("link/pool") == [real]


def test_uris_keep_their_scheme_and_lose_only_the_trailing_slash():
    assert pool_key("s3://bucket/pool/") == pool_key("s3://bucket/pool") == _sha16("s3://bucket/pool")
    assert pool_key("s3://bucket/pool") != pool_key("gs://bucket/pool")
    assert pool_key("s3://bucket/pool") != pool_key("s3://bucket/pool-2")


def test_a_list_is_keyed_as_a_set_of_locations(tmp_path):
    a, b = str(tmp_path / "a.parquet"), "s3://bucket/b.parquet"
    assert pool_key([a, b]) == pool_key([b, a, a]) == _sha16("\n".join(sorted([a, b])))
    assert pool_key([a, b]) not in {pool_key(a), pool_key(b)}


def test_different_pools_get_different_keys(tmp_path):
    keys = {pool_key(tmp_path / f"pool-{i}.parquet") for i in range(50)}
    assert len(keys) == 50 and all(re.fullmatch(r"[0-9a-f]{16}", k) for k in keys)


def test_a_glob_is_the_folder_it_reads_from(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    folder = os.path.realpath(tmp_path / "real")
    for spec in ("alias/*.parquet", "alias/**/*.parquet", "alias/part-[0-9].parquet", "alias/", "file://{}/real"):
        text = spec.format(tmp_path) if spec.startswith("file") else str(tmp_path / spec)
        assert pool_location(text) == [folder], spec
    assert pool_key("s3://bucket/pool/*.parquet") == pool_key("s3://bucket/pool/") == _sha16("s3://bucket/pool")
    assert pool_location(str(tmp_path / "real" / "one.parquet")) == [os.path.join(folder, "one.parquet")]  # a file is itself
