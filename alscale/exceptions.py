"""The one exception tree of alscale.

Every error alscale raises on purpose derives from :class:`AlscaleError`.  The CLI and the job
entrypoints turn any of them into one line on stderr and its ``exit_code``: 2 for bad input
(fix it and run again), 1 for :class:`ClusterError` and :class:`QueueUnavailableError` (the
cluster or the labeling queue failed; the same run may succeed when retried).  An ``OSError`` about a path the user gave (a file where a folder is
expected, no permission) is one line with exit code 2 too.  Everything else is a bug and keeps
its traceback in the CLI; a job entrypoint (``jobs/``) prints it as one line with exit code 1,
and its traceback with ``-v``.

::

    AlscaleError
    ├── ConfigError                 an option or config-file value is wrong
    ├── PoolError                   the unlabeled pool cannot be used
    │   ├── PoolSchemaError         missing id column, unusable feature columns, corrupt file
    │   ├── DuplicateIdError        the same id appears twice in the pool
    │   ├── InvalidFeaturesError    NaN or inf in the features
    │   └── PoolExhaustedError      fewer selectable rows than requested
    ├── ModelError                  the ONNX model cannot be loaded or run
    │   └── ModelContractError      outputs/inputs do not fit what alscale needs
    ├── StrategyError               unknown strategy, or one that needs what is not there
    ├── OutputError                 the output location exists or cannot be written
    ├── EngineError                 the cluster cannot be reached, or a shard failed on it
    │   ├── ClusterUnreachableError  nothing answers at the Ray address given
    │   ├── ClusterError            an actor or node was lost for good (exit code 1)
    │   ├── ShardError              one shard fails the same way every time
    │   └── ShardStateLostError     an actor restarted and lost a shard's state (rebuilt)
    ├── WorkspaceError              the active-learning workspace is inconsistent
    │   └── LabelError              a label or labeled id is not acceptable
    └── QueueError                  a labeling queue refused or could not be reached
        ├── QueueAuthError          wrong or missing credentials
        └── QueueUnavailableError   the server cannot be reached or keeps failing (exit code 1)

Messages say what was expected and what was got, e.g. ``"The 'k' parameter must be an int
>= 1. Got 0 instead."`` or ``"Pool exhausted: 120 available / 500 requested"``.
"""

from __future__ import annotations

__all__ = [
    "AlscaleError",
    "ClusterError",
    "ClusterUnreachableError",
    "ConfigError",
    "DuplicateIdError",
    "EngineError",
    "InvalidFeaturesError",
    "LabelError",
    "ModelContractError",
    "ModelError",
    "OutputError",
    "PoolError",
    "PoolExhaustedError",
    "PoolSchemaError",
    "QueueAuthError",
    "QueueError",
    "QueueUnavailableError",
    "ShardError",
    "ShardStateLostError",
    "StrategyError",
    "WorkspaceError",
]  # the error classes; first_line and short_repr (below) are helpers for messages


class AlscaleError(Exception):
    """Base class of every error alscale raises on purpose."""

    #: The exit status of the CLI and the job entrypoints for this error.
    exit_code = 2

    def __reduce__(self):  # keep subclasses picklable across Ray processes
        return (self.__class__, self.args)


class ConfigError(AlscaleError, ValueError):
    """An option or configuration value is invalid."""


class PoolError(AlscaleError):
    """The unlabeled pool cannot be read or used."""


class PoolSchemaError(PoolError):
    """The pool's files or columns do not have the expected layout."""


class DuplicateIdError(PoolError):
    """An id appears more than once in the pool."""


class InvalidFeaturesError(PoolError):
    """Features hold NaN or infinite values."""


class PoolExhaustedError(PoolError):
    """Fewer selectable examples than requested.

    Parameters
    ----------
    available : int
        Rows that could still be selected.
    requested : int
        Rows asked for.
    """

    def __init__(self, available: int, requested: int):
        self.available = int(available)
        self.requested = int(requested)
        super().__init__(f"Pool exhausted: {self.available} available / {self.requested} requested")

    def __reduce__(self):
        return (self.__class__, (self.available, self.requested))


class ModelError(AlscaleError):
    """The ONNX model cannot be loaded or run."""


class ModelContractError(ModelError):
    """The model's inputs or outputs do not fit alscale's contract."""


class StrategyError(AlscaleError, ValueError):
    """Unknown strategy, or a strategy whose needs the model or pool cannot meet."""


class OutputError(AlscaleError):
    """The output location exists already or cannot be written."""


class EngineError(AlscaleError):
    """Distributed execution failed."""


class ClusterUnreachableError(EngineError):
    """Nothing answers at the Ray cluster address given (``--address``)."""


class ClusterError(EngineError):
    """Ray or the cluster failed (an actor out of restarts, a node lost for good), not the input."""

    exit_code = 1


class ShardError(EngineError):
    """A shard fails deterministically (for example a corrupt row group)."""


class ShardStateLostError(EngineError):
    """A restarted actor no longer holds a shard's state; the driver rebuilds and replays it."""


class WorkspaceError(AlscaleError):
    """The active-learning workspace is missing, newer than this alscale, or inconsistent."""


class LabelError(WorkspaceError):
    """A label, or the id it is for, is not acceptable."""


class QueueError(AlscaleError):
    """A labeling queue refused a request or answered unexpectedly."""


class QueueAuthError(QueueError):
    """The labeling queue rejected the credentials."""


class QueueUnavailableError(QueueError):
    """The labeling queue cannot be reached, or keeps failing (5xx, timeouts) after the retries.

    Not the input's fault: the same command may succeed later (exit code 1, as for
    :class:`ClusterError`), and nothing is recorded as sent that the queue did not take.
    """

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, for a one-line error; its type's name when it has none.

    ``OSError()`` and many library errors carry an empty message, where ``str(exc).splitlines()[0]``
    would raise IndexError (a traceback instead of the one line).
    """
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def short_repr(value, limit: int = 120) -> str:
    """``value``'s repr where it is one line of at most ``limit`` characters, else ``"a <type>"``.

    For the "Got ..." of a message about a value read from a file or given by a caller: a table's
    or a long list's repr would span lines or screens.
    """
    text = repr(value)
    return text if len(text) <= limit and "\n" not in text else f"a {type(value).__name__}"
