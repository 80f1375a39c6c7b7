"""Starting, reusing and stopping Ray for a run.

A run uses the Ray that is already initialised in this process (a notebook, a Ray job, a test
fixture) and leaves it running.  Otherwise it connects to ``address`` or starts a private
local Ray in its own temporary directory, with usage statistics off, and shuts it down after.
The folder of a driver that was killed (SIGKILL, a lost machine) is removed by a later run.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from alscale.exceptions import ClusterUnreachableError, ConfigError, first_line

__all__ = ["check_reachable", "connect_cluster", "ray_session", "remove_stale_temp_dirs"]

logger = logging.getLogger(__name__)


_RAY_AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
TEMP_PREFIX = "alscale-ray-"  # a private local Ray's folder in the system's temporary folder
DRIVER_PID_FILE = "driver.pid"


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Only errors from logger ``name`` inside the block."""
    log = logging.getLogger(name)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse, within ``timeout`` seconds, a ``host:port`` or ``ray://host:port`` where nothing listens.

    Ray itself retries an unreachable address for minutes before it gives up.  ``"auto"`` is
    checked at the address Ray finds for it (``RAY_ADDRESS``, or a Ray running on this machine);
    other forms Ray resolves itself are left to Ray.

    Raises
    ------
    ConfigError
        An HTTP (dashboard) address, or a port that is not a number.
    ClusterUnreachableError
        The connection is refused, times out or the host does not resolve.
    """
    if address == "auto":
        found = _auto_address()
        if found is None or found == "auto":
            return
        where = " in RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else ""
        try:
            check_reachable(found, timeout)
        except (ClusterUnreachableError, ConfigError) as exc:
            raise type(exc)(f"--address auto found {found!r}{where}; {str(exc)[0].lower()}{str(exc)[1:]}") from None
        return
    if address.startswith(("http://", "https://")):
        raise ConfigError(f"Expected the address of a Ray cluster's head node (host:6379, ray://host:10001, or auto). Got the "
                          f"HTTP address {address!r}: that is the dashboard's, which `ray job submit --address` takes.")
    target = address.removeprefix("ray://")
    if "://" in target:
        return
    if ":" not in target:
        if not address.startswith("ray://"):
            return  # a form Ray resolves itself
        target += f":{RAY_CLIENT_PORT}"  # what Ray Client connects to without a port
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"The Ray address {address!r} must end in a port number (host:6379, or ray://host:10001). Got port {port!r}.")
    try:
        speaks_http = _speaks_http(host, int(port), timeout)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        raise ClusterUnreachableError(
            f"Cannot reach a Ray cluster at {address!r}: {reason}. Expected the address of a running head node "
            f"(host:6379, or ray://host:{RAY_CLIENT_PORT} for Ray Client)."
        ) from None
    if speaks_http:  # Ray would try its gRPC on it for minutes
        raise ConfigError(f"Expected the address of a Ray cluster's head node (host:6379, ray://host:{RAY_CLIENT_PORT}, or auto). "
                          f"Got {address!r}, where an HTTP server answers: the dashboard's port, which `ray job submit "
                          "--address http://...` takes.")


#: The port Ray Client listens on by default, and connects to when ``ray://host`` names none.
RAY_CLIENT_PORT = 10001


def _speaks_http(host: str, port: int, timeout: float) -> bool:
    """Connect to ``host:port`` (OSError if nothing listens) and say whether an HTTP/1 server answers there.

    Ray's own ports speak gRPC (HTTP/2), which answers an HTTP/1 request with a binary frame or
    not at all; the dashboard's port answers ``HTTP/1.1 ...``.
    """
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.settimeout(min(timeout, 2.0))
        try:
            conn.sendall(f"HEAD / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            return conn.recv(5) == b"HTTP/"
        except OSError:  # no answer in time, or the connection dropped: not an HTTP server
            return False


def _auto_address() -> str | None:
    """The address ``ray.init(address="auto")`` would connect to; None where Ray finds none (it says so itself)."""
    try:
        from ray._private.services import get_ray_address_from_environment  # Ray's own lookup, as ray.init does it

        return get_ray_address_from_environment("auto", None)
    except Exception:  # noqa: BLE001 - no cluster, or another Ray version's internals: leave it to ray.init
        return None


def connect_cluster(address: str, **init_kwargs) -> None:
    """``ray.init(address=...)`` that fails in seconds, with one line, when no cluster answers.

    Raises
    ------
    ConfigError
        An HTTP (dashboard) address, one Ray cannot parse, or a token that cannot be read.
    ClusterUnreachableError
        Nothing listens at ``address``, or what listens is not a Ray head node that lets us in.
    """
    check_reachable(address)
    auth_error = getattr(ray.exceptions, "AuthenticationError", ())
    sigterm = _sigterm_handler()
    try:
        with _stderr_held():
            ray.init(address=address, **init_kwargs)
        _sigterm_after_init(sigterm)
    except auth_error as exc:  # a token that cannot be read: the submitter's set-up, not the cluster
        raise ConfigError(f"Cannot join the Ray cluster at {address!r}: {_first_line(exc)}. {TOKEN_HINT}") from None
    except ConnectionError as exc:
        client = (f"is that port its Ray Client server (ray://host:{RAY_CLIENT_PORT}; a head's GCS port takes host:6379 "
                  "without ray://)? ") if address.startswith("ray://") else ""
        raise ClusterUnreachableError(f"Cannot connect to a Ray cluster at {address!r}: {_first_line(exc)}. {client[0:1].upper()}"
                                      f"{client[1:]}If it uses token authentication (Ray's default), a wrong token fails this "
                                      f"way too: {TOKEN_HINT}") from None
    except ValueError as exc:  # an address Ray cannot parse, or settings it refuses with it
        raise ConfigError(f"Cannot join the Ray cluster at {address!r}: {_first_line(exc)}.") from None


@contextmanager
def _stderr_held() -> Iterator[None]:
    """Hold what is written to file descriptor 2 inside the block; write it out after, unless the block raises.

    Joining a cluster whose token this driver lacks, Ray's C++ client logs a line a second for
    about 20 s before Python hears of it: a failure is then one line of alscale's, which names
    what is needed, not twenty of Ray's before it.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no file descriptor 2 (an embedding host): nothing to hold
        yield
        return
    held = tempfile.TemporaryFile()
    os.dup2(held.fileno(), 2)
    ok = False
    try:
        yield
        ok = True
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if ok:
            held.seek(0)
            data = held.read()
            while data:
                data = data[os.write(2, data):]
        held.close()


#: What a driver needs to join a cluster with token authentication (Ray 2.60's default).
TOKEN_HINT = ("expected RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN, in the file RAY_AUTH_TOKEN_PATH "
              "names, or in ~/.ray/auth_token.")


def _first_line(exc: BaseException) -> str:
    """:func:`first_line` without its final full stop (the message goes on after it)."""
    return first_line(exc).rstrip(".")


@contextmanager
def _interrupt_after() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) that comes inside the block until it ends, then raise it.

    Ray's start-up, cut short, leaves processes that ``ray.shutdown`` does not know of (the
    node is not registered yet) and that keep the temporary folder in use.  Only where Python's
    own handler is in place, in the main thread; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Make sure Ray is up for the duration of the block.

    Parameters
    ----------
    address : str, optional
        A cluster to connect to (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``).
    num_cpus : int, optional
        CPUs of a private local Ray (default: all).
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        _check_same_cluster(address)
        yield
        return
    temp_dir = None
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    if not address:
        remove_stale_temp_dirs()
        temp_dir = tempfile.mkdtemp(prefix=TEMP_PREFIX)
        with open(os.path.join(temp_dir, DRIVER_PID_FILE), "w") as f:  # for remove_stale_temp_dirs of a later run
            f.write(str(os.getpid()))
    sigterm = _sigterm_handler()
    try:  # Ctrl-C while Ray starts: what it started so far is stopped, and its folder removed
        if address:
            connect_cluster(address, **kwargs)
        else:
            # address="local": always a new private Ray, never one found on this machine.  Ray logs a
            # notice that token auth (its default) is on; stderr is for alscale's one-line errors
            with _quiet(_RAY_AUTH_NOTICE_LOGGER), _interrupt_after():
                ray.init(address="local", num_cpus=num_cpus, _temp_dir=temp_dir, **kwargs)
            _sigterm_after_init(sigterm)
        yield
    finally:
        ray.shutdown()
        if temp_dir:
            _remove_tree(temp_dir)
        if sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)


def _sigterm_handler():
    """SIGTERM's handler in Python, or None off the main thread (which alone may set one)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGTERM)


def _sigterm_after_init(before) -> None:
    """Make SIGTERM run a Python handler again once ``ray.init`` has returned.

    ``ray.init`` sets its own handler (``sys.exit``), and then the driver's C++ core worker
    overrides it below Python with one that prints a stack trace and aborts (exit 134): no
    ``finally`` runs, so Ray's temporary folder and a select's staging folder stay behind.  The
    handler the caller had is put back (the CLI's: SIGTERM as Ctrl-C); where the caller had
    none, Ray's own ``sys.exit`` is set again, so the clean-up still runs.  ``before`` is
    :func:`_sigterm_handler`'s answer from before ``ray.init``.
    """
    if before is None:
        return
    now = signal.getsignal(signal.SIGTERM)
    handler = now if before is signal.SIG_DFL and callable(now) else before
    if handler is not None:  # None: a handler set outside Python, which Python cannot set again
        signal.signal(signal.SIGTERM, handler)


def remove_stale_temp_dirs(root: str | None = None) -> list[str]:
    """Remove the private Ray folders of alscale drivers that were killed before they could.

    A driver writes its process id into its folder (``alscale-ray-*/driver.pid``); a folder whose
    driver no longer runs, and that has not changed for a minute, is removed.  Folders without
    that file, or of a process that still runs (or of another user), are left alone.

    Parameters
    ----------
    root : str, optional
        Where the folders are (default: the system's temporary folder).

    Returns
    -------
    list of str
        The folders removed.
    """
    root = root or tempfile.gettempdir()
    removed = []
    for path in glob.glob(os.path.join(root, TEMP_PREFIX + "*")):
        try:
            with open(os.path.join(path, DRIVER_PID_FILE)) as f:
                pid = int(f.read().strip())
            if os.stat(path).st_uid != os.getuid() or time.time() - os.stat(path).st_mtime < 60 or _running(pid):
                continue
        except (OSError, ValueError):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _check_same_cluster(address: str | None) -> None:
    """Refuse an ``address`` other than the cluster this process's Ray is already connected to.

    The Ray that is up is reused (a notebook, a Ray job); an explicit other address would be
    silently ignored otherwise.

    Raises
    ------
    ConfigError
        ``address`` is neither None, ``"auto"`` nor the current cluster's GCS address.
    """
    if address is None or address == "auto":
        return
    try:
        current = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - a Ray Client connection or another Ray version: nothing to compare with
        return
    if address.removeprefix("ray://") != current:
        raise ConfigError(
            f"Expected no address, 'auto' or {current!r}: Ray is already initialised in this process and connected there. "
            f"Got {address!r}; call ray.shutdown() first to use another cluster.")


def _remove_tree(path: str, seconds: float = 3.0) -> None:
    """Remove ``path``, trying again while Ray's exiting processes still write their last logs into it."""
    deadline = time.monotonic() + seconds
    while True:
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path) or time.monotonic() > deadline:
            return
        time.sleep(0.1)
