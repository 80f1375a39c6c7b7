"""Turn Ray's wrapped exceptions back into alscale's own."""

from __future__ import annotations

import ray
import ray.exceptions

from alscale.exceptions import AlscaleError, ClusterError, first_line

__all__ = ["discard_errors", "unwrap_ray_error"]


def discard_errors(refs) -> None:
    """Read the refs of a task that failed, so that Ray does not print each error again as unhandled.

    A failed task's other return values (a shard's key buckets) hold its error too; dropped
    unread, Ray prints the task's traceback once per value.
    """
    for ref in refs:
        try:
            ray.get(ref, timeout=10)
        except Exception:  # noqa: BLE001  (the error is the point: it is now read)
            pass


def unwrap_ray_error(exc: BaseException) -> BaseException:
    """The :class:`AlscaleError` inside a Ray error, or a :class:`ClusterError` describing it."""
    if isinstance(exc, ray.exceptions.RayTaskError):  # checked first: Ray subclasses the cause's type
        cause = getattr(exc, "cause", None)
        if isinstance(cause, AlscaleError):
            return cause
        if cause is not None and not isinstance(cause, ray.exceptions.RayError):
            return cause
    if isinstance(exc, AlscaleError):
        return exc
    if isinstance(exc, ray.exceptions.RayError):
        first = first_line(exc)
        return ClusterError(f"Ray failed: {type(exc).__name__}: {first}")
    return exc
