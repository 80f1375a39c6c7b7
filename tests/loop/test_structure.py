from __future__ import annotations

import subprocess
import sys


def test_loop_imports_leave_ray_out():
    code = "import sys, alscale.loop, alscale.loop.report, alscale.loop.labels; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_loop_all_sorted():
    import alscale.loop

    assert alscale.loop.__all__ == sorted(alscale.loop.__all__)
    assert all(hasattr(alscale.loop, name) for name in alscale.loop.__all__)
