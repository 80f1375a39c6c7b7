"""Strategy-parameter checking shared by the diversity strategies."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from alscale.exceptions import ConfigError

__all__ = ["ENGINE_KEYS", "resolve_params"]

#: Keys the engine may pass to any builder or select function.
ENGINE_KEYS = frozenset({"cache_dir", "cache_key", "capacity", "centroids", "prepared"})


def resolve_params(strategy: str, defaults: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``params`` over ``defaults``; unknown keys raise :class:`ConfigError` with a hint.

    Values keep the type of their default where the default is an int, float or bool (so
    "3" from a command line becomes 3); ``None`` defaults accept anything.
    """
    out = dict(defaults)
    for key, value in (params or {}).items():
        if key in ENGINE_KEYS:
            out[key] = value
            continue
        if not defaults:
            raise ConfigError(f"Strategy {strategy!r} takes no parameters. Got {key!r}.")
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown parameter {key!r} for strategy {strategy!r}; expected one of {sorted(defaults)}.{hint}")
        default = defaults[key]
        try:
            if isinstance(default, bool):
                value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int) and value is not None:
                value = int(value)
            elif isinstance(default, float) and value is not None:
                value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"The {key!r} parameter of strategy {strategy!r} must be a {type(default).__name__}. Got {value!r} instead."
            ) from None
        out[key] = value
    return out
