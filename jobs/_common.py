"""What every alscale Ray job entrypoint shares: joining the cluster, exit codes, one-line errors.

The entrypoints run as ``python jobs/<name>.py``, so this module is imported from the script's
own folder (``jobs/`` is first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_OK, EXIT_FAILED, EXIT_ALSCALE_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT; SIGTERM too, as the CLI does

log = logging.getLogger("alscale.jobs")


class JobArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are bad input like any other: one line on stderr, exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ALSCALE_ERROR, f"alscale: error: {message} (see {self.prog} --help)\n")


def connect_ray(address: str | None = None) -> None:
    """Join the cluster the job runs on (``RAY_ADDRESS``, which ``ray job submit`` and KubeRay set).

    Without an address alscale starts a private local Ray for the call, as ``alscale select``.
    """
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        return
    import ray

    if not ray.is_initialized():
        from alscale.engine.runtime import connect_cluster

        connect_cluster(address, log_to_driver=True)


# where a Ray node unpacks a job's working directory: <session>/runtime_resources/working_dir_files/<package>/,
# the package being _ray_pkg_<hash> for a folder uploaded by `ray job submit --working-dir DIR` and
# <scheme>_<hash> for a zip at a URI (file://, s3://, gs://, https://); local:// folders are used in place
WORKING_DIR_FILES = ("runtime_resources", "working_dir_files")


def submitted_working_dir(cwd: str | None = None) -> str | None:
    """The root of Ray's copy of a job's working directory that ``cwd`` lies in, or None.

    A job submitted with ``--working-dir`` (a local folder, or a zip at a URI) runs in a copy
    that Ray unpacked under its session's ``runtime_resources/working_dir_files/`` and deletes
    with the job; a ``local://`` working directory, used in place, is no such copy.

    Parameters
    ----------
    cwd : str, optional
        The folder to check; the current directory by default.

    Returns
    -------
    str or None
        ``.../runtime_resources/working_dir_files/<package>`` (real path), or None.
    """
    parts = os.path.realpath(cwd if cwd is not None else os.getcwd()).split(os.sep)
    for i in range(len(parts) - 2):
        if tuple(parts[i:i + 2]) == WORKING_DIR_FILES and parts[i + 2]:
            return os.sep.join(parts[:i + 3])
    return None


def require_cluster_paths(*, outputs: dict, inputs: dict) -> None:
    """Refuse local paths that point into Ray's copy of the submitted working directory.

    ``ray job submit --working-dir .`` runs the entrypoint in a copy of that folder, made for the
    job and deleted with it, without what its excludes leave out (the pool, the model); so does
    a working directory zipped at a URI (``--working-dir file:///x/pkg.zip``, ``s3://``,
    ``gs://``, ``https://``; a RayJob's ``runtimeEnvYAML`` ``working_dir``).  An output there
    (a relative path, or one in a config file of the copy) would be lost; an input there that
    the copy does not hold is not the file the submitter meant.  Elsewhere (a job without a
    working directory, or with a ``local://`` one, used in place) nothing is checked.

    Parameters
    ----------
    outputs, inputs : dict
        Setting name -> a path, a list of paths or None (relative: to the current directory).

    Raises
    ------
    ConfigError
        An output in the copy, or an input in it that the copy does not hold.
    """
    copy = submitted_working_dir()
    if copy is None:
        return
    from alscale.exceptions import ConfigError

    def in_copy(value) -> list[str]:
        values = [value] if isinstance(value, (str, os.PathLike)) else list(value or ()) if isinstance(value, (list, tuple)) else []
        paths = [os.fspath(v) for v in values if isinstance(v, (str, os.PathLike)) and "://" not in os.fspath(v)]
        return [p for p in paths if (os.path.realpath(p) + os.sep).startswith(copy + os.sep)]

    for name, value in outputs.items():
        for path in in_copy(value):
            raise ConfigError(f"Expected an absolute path (on storage the cluster shares) or a URI for {name!r} in a job submitted "
                              f"with --working-dir: the job runs in Ray's copy of that folder, deleted after it. Got {path!r}, in that copy.")
    for name, value in inputs.items():
        for path in in_copy(value):
            if not (glob.glob(path, recursive=True) if any(ch in path for ch in "*?[") else os.path.exists(path)):
                raise ConfigError(f"Expected an absolute path or a URI for {name!r} in a job submitted with --working-dir: the "
                                  f"job runs in Ray's copy of that folder, which holds nothing at {path!r} (left out by the "
                                  "submit's excludes?).")


def run_job(body: Callable[[], str], *, verbose: bool) -> int:
    """Run ``body`` (which returns a line to print on success) and turn failures into exit codes.

    Returns
    -------
    int
        0 on success, 2 for bad input (an :class:`~alscale.exceptions.AlscaleError`), 1 for a
        :class:`~alscale.exceptions.ClusterError` or anything else, 130 when interrupted
        (Ctrl-C, or SIGTERM from ``ray job stop`` or Kubernetes);
        the reason is one line on stderr (the traceback too with ``verbose``).
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        from alscale._signals import sigterm_as_interrupt
        from alscale.exceptions import AlscaleError
    except ImportError as exc:  # `ray job submit --working-dir` ships the code, not its dependencies
        sys.stderr.write(f"alscale: error: Expected alscale's dependencies in the cluster's Python ({sys.executable}). "
                         f"Got {type(exc).__name__}: {exc}. Install them on every node (pip install -e .) or run the k8s/ image.\n")
        return EXIT_ALSCALE_ERROR

    try:
        with sigterm_as_interrupt():  # `ray job stop` and KubeRay's deadline send SIGTERM: cleaned up as at Ctrl-C
            line = body()
    except KeyboardInterrupt:  # what the job started is cleaned up by now; its checkpoints stay for a resubmit
        sys.stderr.write("alscale: interrupted\n")
        return EXIT_INTERRUPTED
    except AlscaleError as exc:
        if verbose:
            log.exception("job failed")
        if exc.exit_code == EXIT_FAILED:  # the cluster failed, not the input: a retry may succeed
            sys.stderr.write(f"alscale: job failed: {exc}\n")
            return EXIT_FAILED
        sys.stderr.write(f"alscale: error: {exc}\n")
        return EXIT_ALSCALE_ERROR
    except Exception as exc:  # a bug or a cluster failure: one line, the traceback with -v
        if verbose:
            log.exception("job failed")
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        sys.stderr.write(f"alscale: job failed: {type(exc).__name__}: {detail}\n")
        return EXIT_FAILED
    sys.stdout.write(line.rstrip("\n") + "\n")
    return EXIT_OK
