"""The public API is pinned: a change to it is a deliberate change to this test."""

from __future__ import annotations

import subprocess
import sys

import alscale


def test_all_is_sorted_and_exact():
    assert alscale.__all__ == sorted(alscale.__all__)
    assert set(alscale.__all__) == {
        "AlscaleError",
        "Manifest",
        "SelectSettings",
        "Workspace",
        "__version__",
        "inspect_model",
        "load_config_file",
        "make_settings",
        "run_round",
        "select",
        "simulate",
    }
    for name in alscale.__all__:
        assert hasattr(alscale, name)


def test_every_error_derives_from_alscale_error():
    import alscale.exceptions as exc

    for name in exc.__all__:
        assert issubclass(getattr(exc, name), exc.AlscaleError)
    assert str(exc.PoolExhaustedError(120, 500)) == "Pool exhausted: 120 available / 500 requested"


def test_python_dash_m_alscale():
    proc = subprocess.run([sys.executable, "-m", "alscale", "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "alscale" in proc.stdout and "select" in proc.stdout


def test_pure_cores_do_not_import_ray():
    code = "import sys, alscale.strategies, alscale.reduce, alscale.pool, alscale.model, alscale.manifest; print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr
