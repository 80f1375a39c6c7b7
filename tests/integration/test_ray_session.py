"""A private local Ray started for a run is shut down and leaves nothing in the temp folder."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import ray

from alscale.engine.runtime import ray_session

pytestmark = pytest.mark.ray


def _processes_of(base: str) -> list[str]:
    """Pids of the processes whose command line names the folder ``base`` (a private Ray's)."""
    import subprocess

    return subprocess.run(["pgrep", "-f", base], capture_output=True, text=True).stdout.split()


def _assert_nothing_left(base: str, seconds: float = 10.0) -> None:
    """Within ``seconds``, no process names ``base`` and the folder is empty."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = _processes_of(base)
        if not left and os.listdir(base) == []:
            break
        time.sleep(0.5)
    assert left == [] and os.listdir(base) == [], (left, os.listdir(base))


def _kill_what_is_left(base: str) -> None:
    import signal

    for pid in _processes_of(base):
        os.kill(int(pid), signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


def test_a_private_ray_leaves_no_temp_dir(monkeypatch):
    assert not ray.is_initialized()  # a Ray left running by an earlier test module would hide this one's
    base = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths have a length limit
    monkeypatch.setattr(tempfile, "tempdir", base)
    try:
        for _ in range(2):
            with ray_session(num_cpus=1):
                assert ray.get(ray.remote(lambda: os.getpid()).remote()) != os.getpid()  # a worker that logs as it exits
                assert [p for p in os.listdir(base) if p.startswith("alscale-ray-")]
            assert not ray.is_initialized()
            assert os.listdir(base) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_folder_of_a_killed_driver_is_removed_by_the_next_run(monkeypatch):
    """SIGKILL leaves a driver no time to clean up; the next private Ray removes what it left."""
    import signal
    import subprocess
    import sys
    import time

    from alscale.engine.runtime import remove_stale_temp_dirs

    assert not ray.is_initialized()
    base = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    monkeypatch.setattr(tempfile, "tempdir", base)
    script = ("import sys, time\nfrom alscale.engine.runtime import ray_session\n"
              "with ray_session(num_cpus=1):\n    print('up', flush=True)\n    time.sleep(120)\n")
    try:
        proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "TMPDIR": base}, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "up"
        (killed,) = [os.path.join(base, p) for p in os.listdir(base) if p.startswith("alscale-ray-")]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        alive = tempfile.mkdtemp(prefix="alscale-ray-", dir=base)  # a driver that still runs: this process
        with open(os.path.join(alive, "driver.pid"), "w") as f:
            f.write(str(os.getpid()))
        unknown = tempfile.mkdtemp(prefix="alscale-ray-", dir=base)  # no driver.pid: not ours to judge
        assert remove_stale_temp_dirs(base) == []  # changed less than a minute ago: maybe still being cleaned up
        old = time.time() - 120
        for path in (killed, alive, unknown):
            os.utime(path, (old, old))
        with ray_session(num_cpus=1):
            assert not os.path.exists(killed)
        left = sorted(p for p in os.listdir(base) if p.startswith("alscale-ray-"))  # Ray itself may write a file there
        assert left == sorted(os.path.basename(p) for p in (alive, unknown))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_an_address_other_than_the_ray_already_up_is_refused_not_ignored():
    """alscale.select(address=...) inside a process whose Ray is up: the same cluster or 'auto' is used, another refused."""
    from alscale.exceptions import ConfigError

    assert not ray.is_initialized()
    base = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, _temp_dir=base)
        current = ray.get_runtime_context().gcs_address
        for same in (None, "auto", current):
            with ray_session(same):
                assert ray.is_initialized()
        with pytest.raises(ConfigError, match=r"Expected no address, 'auto' or '.*': Ray is already initialised .* Got '127.0.0.1:1'"):
            with ray_session("127.0.0.1:1"):
                pass
        assert ray.is_initialized()  # the caller's Ray is left as it was
    finally:
        ray.shutdown()
        shutil.rmtree(base, ignore_errors=True)


def test_ctrl_c_while_ray_starts_leaves_no_folder_nor_processes(tmp_path):
    """SIGINT in the middle of ``ray.init`` (its session folder just made): the run stops, and Ray with it."""
    import subprocess
    import sys

    base = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths have a length limit
    script = tmp_path / "start.py"
    script.write_text(
        "import glob, os, signal, sys, tempfile, threading, time\n"
        f"tempfile.tempdir = {base!r}\n"
        "from alscale.engine.runtime import ray_session\n"
        "def interrupt_when_ray_starts():\n"
        "    while not glob.glob(os.path.join(tempfile.tempdir, 'alscale-ray-*', 'session_*')):\n"
        "        time.sleep(0.005)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "threading.Thread(target=interrupt_when_ray_starts, daemon=True).start()\n"
        "try:\n"
        "    with ray_session(num_cpus=1):\n"
        "        print('inside', flush=True)\n"
        "        time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
    )
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        assert proc.stdout.split() == ["interrupted"], proc.stdout + proc.stderr[-2000:]
        _assert_nothing_left(base)
    finally:
        _kill_what_is_left(base)


@pytest.mark.parametrize("own_handler", [False, True])
def test_sigterm_inside_the_session_runs_python_clean_up_not_an_abort(tmp_path, own_handler):
    """Ray's driver overrides SIGTERM below Python (a C++ stack trace, then abort: exit 134, no ``finally``).

    A caller's own handler is put back once Ray has started; without one, Ray's ``sys.exit`` runs
    (exit 15) and the session still removes its folder.  On the way out the handler from before
    the session is back.
    """
    import subprocess
    import sys

    base = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # short: Ray's socket paths have a length limit
    script = tmp_path / "term.py"
    script.write_text(
        "import os, signal, sys, tempfile, time\n"
        f"tempfile.tempdir = {base!r}\n"
        "from alscale.engine.runtime import ray_session\n"
        "class Stop(Exception): pass\n"
        "def own(signum, frame): raise Stop\n"
        f"if {own_handler}: signal.signal(signal.SIGTERM, own)\n"
        "before = signal.getsignal(signal.SIGTERM)\n"
        "try:\n"
        "    with ray_session(num_cpus=1):\n"
        "        print('inside', signal.getsignal(signal.SIGTERM) is own, flush=True)\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        time.sleep(30)\n"
        "except Stop:\n"
        "    print('stopped', signal.getsignal(signal.SIGTERM) is before, flush=True)\n"
    )
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
        if own_handler:
            assert (proc.returncode, proc.stdout.split()) == (0, ["inside", "True", "stopped", "True"]), proc.stdout + proc.stderr[-2000:]
        else:
            assert (proc.returncode, proc.stdout.split()) == (15, ["inside", "False"]), proc.stdout + proc.stderr[-2000:]
        assert "SIGTERM received" not in proc.stderr, proc.stderr[-2000:]
        _assert_nothing_left(base)
    finally:
        _kill_what_is_left(base)
