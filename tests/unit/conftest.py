"""Unit tests run without Ray: any attempt to start it fails loudly."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch):
    import ray

    def refuse(*args, **kwargs):
        raise RuntimeError("unit tests must not start Ray; move the test to tests/integration")

    monkeypatch.setattr(ray, "init", refuse)
