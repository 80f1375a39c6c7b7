"""Argument checks shared by every layer, from the settings to the pure-numpy reduce.

A leaf module: it imports only :mod:`alscale.exceptions`, so that ``alscale.reduce`` can check
its arguments without importing ``alscale.config`` (which reads files).
"""

from __future__ import annotations

import numbers
from typing import Any

from alscale.exceptions import ConfigError

__all__ = ["check_int"]


def check_int(name: str, value: Any, minimum: int, or_text: str = "", flag: str | None = None) -> int:
    """``value`` as an int, or a :class:`ConfigError` that names the setting (and its ``flag``) and what it got.

    Parameters
    ----------
    name : str
        The parameter's name, as the user knows it.
    value : object
        An int or a numpy integer (a bool is refused).
    minimum : int
    or_text : str
        What else the parameter takes, for the message (e.g. ``"'auto' or "``).
    flag : str or None
        The CLI flag that sets it, for the message.

    Returns
    -------
    int

    Raises
    ------
    ConfigError
        "The 'k' parameter must be an int >= 1. Got 0 instead."
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        named = f"{name!r} parameter" + (f" ({flag})" if flag else "")
        raise ConfigError(f"The {named} must be {or_text}an int >= {minimum}. Got {value!r} instead.")
    return int(value)
