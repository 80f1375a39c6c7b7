"""Strategy-parameter checking shared by the diversity strategies."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from alscale.exceptions import ConfigError

__all__ = ["ENGINE_KEYS", "PARAM_RULES", "resolve_params", "user_params"]

#: Keys the engine may pass to any builder or select function.
ENGINE_KEYS = frozenset({"cache", "capacity", "centroids", "prepared"})


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

#: What each built-in strategy's parameters take: ``("int", minimum)``, ``("float", minimum,
#: open)`` (a finite number ``> minimum`` when ``open``, else ``>= minimum``), ``("choice",
#: values)`` or ``("bool",)``.  A parameter of a strategy not listed here is checked against the
#: type of its default (an int default takes ints, a float default finite numbers, a bool default
#: true or false, a str default a string; a None default anything).
PARAM_RULES: dict[str, dict[str, tuple]] = {
    "badge": {
        "rounds": ("int", 1),
        "oversampling": ("float", 0, True),
        "sketch": ("choice", ("tensor", "kron", "none")),
        "sketch_dim": ("int", 1),
        "local_trials": ("int", 0),
        "factor_dtype": ("choice", ("float32", "float16")),
    },
    "cluster-margin": {
        "n_clusters": ("int", 1),
        "candidate_multiple": ("float", 1, False),
        "sample_size": ("int", 0),
        "niter": ("int", 1),
        "embedding_dtype": ("choice", ("float32", "float16")),
    },
    "coreset": {"report_radius": ("bool",)},
}


def resolve_params(strategy: str, defaults: Mapping[str, Any], params: Mapping[str, Any] | None, *, from_user: bool = False) -> dict[str, Any]:
    """Merge ``params`` over ``defaults``, each value checked and converted.

    Parameters
    ----------
    strategy : str
        The strategy's name (its rules are looked up in :data:`PARAM_RULES`).
    defaults : mapping
        The strategy's parameters and their defaults.
    params : mapping or None
        The parameters given.
    from_user : bool
        The parameters come from the user, who may not set the engine's own keys
        (:data:`ENGINE_KEYS`); otherwise those pass through unchecked.

    Returns
    -------
    dict
        ``defaults`` with the given parameters over them: ints as ``int`` (numpy integers
        included), floats as ``float``, flags as ``bool`` (``"true"``/``"yes"``/``"on"``/``"1"``
        and their opposites, as a command line gives them, are read as flags).

    Raises
    ------
    ConfigError
        A key that is not a string or not one of ``defaults`` (with a "did you mean"), or a
        value of the wrong type or out of range (a bool, a string or a float for an int, ``2.0``
        included; NaN or infinity; a value below the minimum; None).
    """
    out = dict(defaults)
    rules = PARAM_RULES.get(strategy, {})
    for key, value in (params or {}).items():
        if key in ENGINE_KEYS and not from_user:
            out[key] = value
            continue
        if not defaults:
            raise ConfigError(f"Strategy {strategy!r} takes no parameters. Got {key!r}.")
        if not isinstance(key, str):
            raise ConfigError(f"The parameter names of strategy {strategy!r} must be strings. Got {key!r} instead.")
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown parameter {key!r} for strategy {strategy!r}; expected one of {sorted(defaults)}.{hint}")
        rule = rules.get(key) or _rule_of(defaults[key])
        if rule is not None:
            value = _check(strategy, key, value, rule)
        out[key] = value
    return out


def user_params(strategy: str, defaults: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters the user gave, checked and converted as :func:`resolve_params` does
    (``from_user=True``), without the defaults: what a manifest should record.

    Raises
    ------
    ConfigError
        As :func:`resolve_params`.
    """
    resolved = resolve_params(strategy, defaults, params, from_user=True)
    return {key: resolved[key] for key in (params or {})}


def _rule_of(default: Any) -> tuple | None:
    """The rule for a parameter no :data:`PARAM_RULES` entry describes, from its default."""
    if isinstance(default, bool):
        return ("bool",)
    if isinstance(default, numbers.Integral):
        return ("int", None)
    if isinstance(default, numbers.Real):
        return ("float", None, False)
    if isinstance(default, str):
        return ("str",)
    return None  # a None (or other) default: anything


def _check(strategy: str, key: str, value: Any, rule: tuple) -> Any:
    """``value`` converted by ``rule``, or a one-line :class:`ConfigError` naming both."""
    kind = rule[0]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, np.bool_):
            return bool(value)
        text = str(value).strip().lower() if isinstance(value, (str, numbers.Integral)) else None
        if text in _TRUE + _FALSE:
            return text in _TRUE
        expected = "true or false"
    elif kind == "int":
        minimum = rule[1]
        if isinstance(value, numbers.Integral) and not isinstance(value, bool) and (minimum is None or value >= minimum):
            return int(value)
        expected = "an int" + (f" >= {minimum}" if minimum is not None else "")
    elif kind == "float":
        minimum, open_ = rule[1], rule[2]
        number = _finite(value)
        if number is not None and (minimum is None or number > minimum or (number == minimum and not open_)):
            return number
        expected = "a finite number" + (f" {'>' if open_ else '>='} {minimum}" if minimum is not None else "")
    elif kind == "choice":
        if isinstance(value, str) and value in rule[1]:
            return value
        expected = "one of " + ", ".join(repr(c) for c in rule[1])
    else:  # "str"
        if isinstance(value, str):
            return value
        expected = "a string"
    raise ConfigError(f"The {key!r} parameter of strategy {strategy!r} must be {expected}. Got {value!r} instead.")


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None where it is not a real number (bools are not) or not finite."""
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):  # an int too large for a float
        return None
    return number if math.isfinite(number) else None
