"""Strategy-parameter checking shared by the diversity strategies."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from alscale.exceptions import ConfigError

__all__ = ["ENGINE_KEYS", "resolve_params"]

#: Keys the engine may pass to any builder or select function.
ENGINE_KEYS = frozenset({"cache_dir", "cache_key", "capacity", "centroids", "prepared"})


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def resolve_params(strategy: str, defaults: Mapping[str, Any], params: Mapping[str, Any] | None, *, from_user: bool = False) -> dict[str, Any]:
    """Merge ``params`` over ``defaults``; unknown keys raise :class:`ConfigError` with a hint.

    Values keep the type of their default where the default is an int, float or bool (so
    "3" from a command line becomes 3); ``None`` defaults accept anything.  ``from_user``:
    the parameters come from the user, who may not set the engine's own keys
    (:data:`ENGINE_KEYS`).
    """
    out = dict(defaults)
    for key, value in (params or {}).items():
        if key in ENGINE_KEYS and not from_user:
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
            if isinstance(default, bool) and not isinstance(value, bool):
                text = str(value).strip().lower()
                if text not in _TRUE + _FALSE:
                    raise ValueError(value)
                value = text in _TRUE
            elif isinstance(default, int) and value is not None:
                value = int(value)
            elif isinstance(default, float) and value is not None:
                value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"The {key!r} parameter of strategy {strategy!r} must be {_type_name(default)}. Got {value!r} instead."
            ) from None
        out[key] = value
    return out


def _type_name(default: Any) -> str:
    return "true or false" if isinstance(default, bool) else f"a {type(default).__name__}"
