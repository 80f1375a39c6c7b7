"""Helpers for the queue tests: a real Label Studio server process, small pools and manifests.

Label Studio lives in its own virtual environment (``.labelstudio-venv``, made by
``.ci/install-label-studio``) so its pins never meet ours.  Without it the Label Studio tests
fail with a message saying how to install it, unless ``ALSCALE_SKIP_LABEL_STUDIO=1`` is set.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from alscale.manifest import write_manifest

ROOT = Path(__file__).resolve().parents[2]
LS_VENV = Path(os.environ.get("ALSCALE_LABEL_STUDIO_VENV", ROOT / ".labelstudio-venv"))
TASK_PAGE_CAP = 25  # the test server's most tasks per page
CLASSES = ["cat", "dog", "fox"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudioServer:
    """A Label Studio process on 127.0.0.1 with its own data dir, token and process group."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = secrets.token_hex(20)
        self.secret_key = secrets.token_urlsafe(40)  # Django's SECRET_KEY, which signs the server's JWTs
        self._pat: str | None = None
        self.username = "admin@alscale.test"
        self.password = secrets.token_urlsafe(12)
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir / "server.log"

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "DJANGO_"))}
        env.update({
            "LABEL_STUDIO_USERNAME": self.username,
            "LABEL_STUDIO_PASSWORD": self.password,
            "LABEL_STUDIO_USER_TOKEN": self.token,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "SSRF_PROTECTION_ENABLED": "false",
            "COLLECT_ANALYTICS": "false",
            "LATEST_VERSION_CHECK": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "SECRET_KEY": self.secret_key,
            "LOG_LEVEL": "WARNING",
            # a server that caps task pages, as deployments may: listings must follow 'total', not page size
            "TASK_API_PAGE_SIZE_MAX": str(TASK_PAGE_CAP),
        })
        return env

    def start(self, timeout: float = 240.0) -> None:
        cmd = [str(LS_VENV / "bin" / "label-studio"), "start", "--internal-host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--no-browser"]
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, cwd=self.data_dir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Label Studio exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"Label Studio did not answer on {self.url} within {timeout:.0f}s:\n{self.log.read_text()[-3000:]}")

    def clone(self, data_dir: Path) -> LabelStudioServer:
        """A second server (not started) whose database is a copy of this one's as it is now.

        It starts in seconds (the database is migrated already), on a port of its own, and numbers
        the projects and annotations it makes next as this one does: two servers whose ids meet.
        """
        import sqlite3

        other = LabelStudioServer(data_dir)
        other.data_dir.mkdir(parents=True, exist_ok=True)
        # the same user and token (a start does not change an existing user's), and the same signing key
        other.token, other.secret_key, other.username, other.password = self.token, self.secret_key, self.username, self.password
        source, copy = sqlite3.connect(self.data_dir / "label_studio.sqlite3"), sqlite3.connect(other.data_dir / "label_studio.sqlite3")
        try:
            source.backup(copy)  # a consistent snapshot while this server runs
        finally:
            copy.close()
            source.close()
        return other

    def kill(self) -> None:
        """SIGKILL the server's whole process group (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    # --- a small admin client for the tests -------------------------------------------------
    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Token {self.token}"}, timeout=120)

    def personal_access_token(self) -> str:
        """The admin's personal access token (a JWT refresh token; made on first use, one per user)."""
        if self._pat is None:
            with self.client() as c:
                r = c.post("/api/token/")
                r.raise_for_status()
                self._pat = r.json()["token"]
        return self._pat

    def expired_access_token(self) -> str:
        """An access token for the admin that the server signed, as it would, but whose lifetime ended a minute ago."""
        import base64
        import hashlib
        import hmac
        import json

        with httpx.Client(base_url=self.url, timeout=60) as c:
            r = c.post("/api/token/refresh/", json={"refresh": self.personal_access_token()})
            r.raise_for_status()
        header, payload, _ = r.json()["access"].split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        now = int(time.time())
        claims.update(iat=now - 360, exp=now - 60)
        body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).rstrip(b"=").decode()
        signature = hmac.new(self.secret_key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
        return f"{header}.{body}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"

    def create_project(self, classes=CLASSES, title: str = "alscale test") -> int:
        choices = "".join(f'<Choice value="{c}"/>' for c in classes)
        config = f'<View><Text name="text" value="$text"/><Choices name="label" toName="text" choice="single">{choices}</Choices></View>'
        with self.client() as c:
            r = c.post("/api/projects/", json={"title": title, "label_config": config})
            r.raise_for_status()
            return r.json()["id"]

    def tasks(self, project: int) -> list[dict]:
        out, page = [], 1
        with self.client() as c:
            while True:
                r = c.get("/api/tasks/", params={"project": project, "page": page, "page_size": 1000, "fields": "all"})
                r.raise_for_status()
                body = r.json()
                out.extend(body["tasks"])
                if len(out) >= body["total"] or not body["tasks"]:
                    return out
                page += 1

    def annotate(self, task_id: int, label: str | None, *, skip: bool = False) -> dict:
        """Submit an annotation the way the labeling UI does (POST /api/tasks/<id>/annotations/)."""
        result = [] if label is None else [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
        with self.client() as c:
            r = c.post(f"/api/tasks/{task_id}/annotations/", json={"result": result, "was_cancelled": skip, "lead_time": 1.5})
            r.raise_for_status()
            return r.json()

    def update_annotation(self, annotation_id: int, label: str) -> dict:
        result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
        with self.client() as c:
            r = c.patch(f"/api/annotations/{annotation_id}/", json={"result": result})
            r.raise_for_status()
            return r.json()


# --- pools, manifests, workspaces -------------------------------------------------------------
def write_pool(path: Path, n: int, *, string_ids: bool = False) -> Path:
    rng = np.random.default_rng(0)
    ids = [f"doc-{i:05d}" for i in range(n)] if string_ids else np.arange(1000, 1000 + n, dtype=np.int64)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    table = pa.table({
        "id": pa.array(ids),
        "text": pa.array([f"example text number {i}" for i in range(n)]),
        "features": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), 4),
    })
    pq.write_table(table, path)
    return path


def make_manifest(out: Path, pool: Path, ids: list, *, run_id: str, classes=CLASSES, seed: int = 0):
    """A batch manifest in the documented format (rank order = list order)."""
    k = len(ids)
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(len(classes)), size=k)
    pred = probs.argmax(1)
    batch = pa.table({
        "id": pa.array(ids),
        "rank": pa.array(np.arange(1, k + 1, dtype=np.int32)),
        "score": pa.array(np.linspace(2.0, 1.0, k)),
        "strategy": pa.array(["entropy"] * k),
        "predicted_class": pa.array([classes[i] for i in pred]),
        "predicted_index": pa.array(pred.astype(np.int32)),
        "confidence": pa.array(probs.max(1).astype(np.float32)),
    })
    data = {
        "schema_version": 1, "run_id": run_id, "created_at": "2025-01-01T00:00:00Z",
        "strategy": {"name": "entropy", "params": {}}, "k": k, "seed": seed,
        "model": {"paths": ["model.onnx"], "sha256": ["0" * 64], "classes": list(classes)},
        "pool": {"paths": [str(pool)], "id_column": "id", "feature_columns": ["features"],
                 "files": [{"path": str(pool), "size": pool.stat().st_size, "rows": pq.read_metadata(pool).num_rows}],
                 "fingerprint": "test"},
        "counts": {"rows_total": pq.read_metadata(pool).num_rows, "rows_scored": k, "rows_excluded": 0, "rows_invalid": 0},
        "timings": {}, "versions": {},
    }
    return write_manifest(out, batch, data, force=True)


