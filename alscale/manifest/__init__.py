"""The batch manifest: ``batch.parquet`` (the selected rows) and ``manifest.json`` (provenance).

Written atomically: both files go to a hidden temporary directory beside the target, which
is renamed into place, so a reader sees a whole manifest or none.
"""

from __future__ import annotations

from alscale.manifest.manifest import BATCH_FILE, MANIFEST_FILE, SCHEMA_VERSION, Manifest, check_output_free, manifest_json, write_manifest

__all__ = ["BATCH_FILE", "MANIFEST_FILE", "SCHEMA_VERSION", "Manifest", "check_output_free", "manifest_json", "write_manifest"]
