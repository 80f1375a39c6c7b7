"""The loop's settings and classes: defaults, and the checks a workspace, a round and a simulation share.

A workspace stores its settings in ``alscale-workspace.json`` (``settings``); ``alscale init``
flags and :meth:`alscale.loop.workspace.Workspace.create`'s ``settings`` argument set them.
Everything here is checked before anything is written.
"""

from __future__ import annotations

import math
import numbers
import pathlib
from collections.abc import Mapping

__all__ = ["DEFAULT_SETTINGS", "check_loop_settings", "check_loop_strategy", "check_model_strategy", "check_stored_settings", "merge_settings",
           "resolve_classes"]

DEFAULT_SETTINGS = {
    "eval_size": None,  # None: default_eval_size(n_pool); an int count, or a float fraction in (0, 1)
    "eval_seed": 0,
    "stop_set_size": None,  # None: same rule as eval_size
    "seed": 0,
    "strategy": "margin",
    "batch_size": 100,
    "initial_size": 100,
    "initial_method": "random",  # random | kmeans | hint
    "hint_column": None,
    "trainer": "logistic",
    "metric": "accuracy",
    "target": None,
    "budget": None,
    "patience": 3,
    "min_gain_per_label": 1e-4,
    "kappa_threshold": 0.99,
    "composition_threshold": 0.05,
    "features": None,
}


def check_loop_strategy(name: str) -> None:
    """Refuse a strategy that a round of the loop cannot select with.

    Checked before a workspace is created, a round trains, or a simulation starts: found at
    the selection, it would leave a round started with it.

    Parameters
    ----------
    name : str
        A strategy name.

    Raises
    ------
    StrategyError
        An unknown name, or a committee strategy (``qbc-*``): a round selects with one model.
    """
    from alscale.exceptions import StrategyError
    from alscale.strategies import get_strategy

    if get_strategy(name).needs_committee:
        raise StrategyError(f"Expected a strategy for one model: each round of the loop selects with one. "
                            f"Got {name!r}, which needs a committee of models.")


def check_model_strategy(model, name: str) -> None:
    """Refuse a model that lacks the embedding output a strategy selects with (badge, coreset, cluster-margin).

    The rounds' selection finds the embedding by its output name, as ``alscale inspect-model``
    shows it; checked at ``init`` and before a round's folder exists, not at the selection.

    Parameters
    ----------
    model : path
        An ONNX model file.
    name : str
        A strategy name (checked already: :func:`check_loop_strategy`).

    Raises
    ------
    StrategyError
        The strategy needs an embedding output and the model has none.
    ModelError, ModelContractError
        The model cannot be read, or breaks the output contract (only looked at for such a strategy).
    """
    from alscale.exceptions import StrategyError
    from alscale.model.contract import EMBEDDING_NAMES, inspect_model
    from alscale.strategies import get_strategy

    if not get_strategy(name).needs_embedding:
        return
    contract = inspect_model(model)
    if contract.embedding_output is None:
        raise StrategyError(
            f"Strategy {name!r} needs an embedding output; model {contract.path!r} has none among {[o[0] for o in contract.outputs]}. "
            f"Export its penultimate layer (n, h) as an output named one of {list(EMBEDDING_NAMES)}, or choose a strategy "
            "without one (--strategy margin).")


def check_loop_settings(settings: dict) -> None:
    """Refuse, before a workspace is written, settings the first rounds would fail on (integers made int in place)."""
    from alscale.config import check_int
    from alscale.exceptions import ConfigError
    from alscale.loop.metrics import METRICS
    from alscale.loop.seedset import INITIAL_METHODS
    from alscale.loop.train import TRAINERS

    method = settings["initial_method"]
    if method not in INITIAL_METHODS:
        raise ConfigError(f"The initial method must be one of {list(INITIAL_METHODS)}. Got {method!r} instead.")
    if method == "hint" and not settings["hint_column"]:
        raise ConfigError("The 'hint' initial method needs the 'hint_column' setting (--hint-column). Got none.")
    if method != "hint" and settings["hint_column"]:  # only the 'hint' method reads it: ignored, it would be a silent no-op
        raise ConfigError(f"Expected the 'hint' initial method (--initial-method hint) with a hint column (--hint-column "
                          f"{settings['hint_column']!r}). Got initial method {method!r}, which ignores it; add --initial-method hint "
                          f"(the 'initial_method' setting), or leave the hint column out.")
    if settings["trainer"] not in TRAINERS:
        raise ConfigError(f"The trainer must be one of {list(TRAINERS)}. Got {settings['trainer']!r} instead.")
    if settings["metric"] not in METRICS:
        raise ConfigError(f"The metric must be one of {list(METRICS)}. Got {settings['metric']!r} instead.")
    check_loop_strategy(settings["strategy"])  # an unknown name: StrategyError with the close match
    # rounds select with seed + round number, which the engine requires to be >= 0
    flags = {"batch_size": "--batch", "initial_size": "--initial", "seed": "--seed", "eval_seed": "--seed", "budget": "--budget"}
    for name, minimum in (("batch_size", 1), ("initial_size", 1), ("seed", 0), ("eval_seed", 0), ("patience", 1)):
        settings[name] = check_int(name, settings[name], minimum, flag=flags.get(name))  # numpy integers kept as int
    if settings["budget"] is not None:
        settings["budget"] = check_int("budget", settings["budget"], 1, flag=flags["budget"])
        if settings["budget"] < settings["initial_size"]:  # the seed set alone would spend it
            raise ConfigError(f"Expected a budget (--budget) of at least the seed set's {settings['initial_size']} labels (--initial). "
                              f"Got {settings['budget']}.")
    for name in ("min_gain_per_label", "kappa_threshold", "composition_threshold"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ConfigError(f"The {name!r} setting must be a finite number. Got {value!r} instead.")
    features = settings["features"]
    if features is not None and (not isinstance(features, list) or not features or not all(isinstance(c, str) for c in features)):
        raise ConfigError(f"The 'features' setting must be a column name or a list of them. Got {features!r} instead.")
    target = settings["target"]
    if target is not None:
        high = math.inf if settings["metric"] == "log_loss" else 1.0  # accuracy, macro F1 and ECE lie in [0, 1]
        if isinstance(target, bool) or not isinstance(target, numbers.Real) or not (math.isfinite(target) and 0 <= target <= high):
            raise ConfigError(f"The target (--target) of metric {settings['metric']!r} must be a number in [0, {high:g}]. Got {target!r} instead.")


def merge_settings(settings: Mapping | None) -> dict:
    """The defaults overridden by ``settings``, checked (integers made int).

    Parameters
    ----------
    settings : dict, optional
        Keys among ``DEFAULT_SETTINGS``.  ``seed`` sets ``eval_seed`` too unless that is given,
        as ``alscale init --seed`` does; a single ``features`` column may be a str.

    Returns
    -------
    dict
        Every setting.

    Raises
    ------
    ConfigError
        A key that is not a setting (with the close match), or a value out of range.
    StrategyError
        An unknown strategy, or one that needs a committee.
    """
    from alscale.exceptions import ConfigError

    if settings is not None and not isinstance(settings, Mapping):
        raise ConfigError(f"The 'settings' parameter must be a dict of loop settings. Got {settings!r} instead.")
    settings = dict(settings or {})
    if "seed" in settings and "eval_seed" not in settings:  # as `alscale init --seed` does
        settings["eval_seed"] = settings["seed"]
    if isinstance(settings.get("features"), str):  # one column, as `alscale select --features` takes it
        settings["features"] = [settings["features"]]
    elif isinstance(settings.get("features"), tuple):
        settings["features"] = list(settings["features"])
    unknown = _unknown_settings_message(settings, "workspace settings")
    if unknown:
        raise ConfigError(unknown)
    merged = {**DEFAULT_SETTINGS, **settings}
    check_loop_settings(merged)
    return merged


def resolve_classes(classes, column_values: list | None, label_column: str | None, model) -> list | None:
    """The workspace's classes: those given, or the label column's values; checked against both and the model.

    Parameters
    ----------
    classes : iterable or None
        The classes given (``--classes``).
    column_values : list or None
        The label column's distinct values (None without a label column).
    label_column : str or None
    model : path or None
        The workspace's own model, which must name its classes (``alscale.classes`` metadata, or
        a skl2onnx classifier's class labels): these, in order, where there are classes.

    Raises
    ------
    ConfigError
        No class, classes named twice, or label-column values outside the classes.
    ModelContractError
        The model names no classes, or other ones.
    """
    import numpy as np

    from alscale.exceptions import ConfigError

    if classes is None and column_values is not None:
        classes = sorted(column_values, key=lambda v: (str(type(v)), v))
    classes = None if classes is None else [c.item() if isinstance(c, np.generic) else c for c in classes]
    if classes is not None and not classes:
        raise ConfigError("Expected at least one class name. Got an empty list; leave the classes out to accept any label.")
    if classes is not None and len({str(c) for c in classes}) != len(classes):
        raise ConfigError(f"Expected distinct class names. Got {classes}.")
    if column_values is not None:  # rounds compare labels as text: the column's evaluation labels must be classes
        outside = sorted({str(v) for v in column_values} - {str(c) for c in classes})
        if outside:
            more = f" (and {len(outside) - 1} other value(s) outside them)" if len(outside) > 1 else ""
            raise ConfigError(f"Expected the values of label column {label_column!r} among the classes {classes}. "
                              f"Got {outside[0]!r}{more}; give every class, or leave the classes out to take them from the column.")
    if model is not None:
        _check_model_class_names(model, classes)
    return classes


def _check_model_class_names(model, classes: list | None) -> None:
    """Refuse the workspace's model where it names no classes, or other ones than ``classes`` (None: any names)."""
    from alscale.exceptions import ModelContractError, ModelError
    from alscale.loop.train import check_model_classes, model_classes

    try:
        found = model_classes(model)  # what rounds check the model with
    except ModelContractError:  # readable, but its class names or outputs are not what rounds need: said now
        raise
    except ModelError:  # not readable as ONNX (yet): the first round that uses it says so
        return
    if found is None or classes is not None:  # without a class list, rounds compare its names with the labels seen
        check_model_classes(found, () if classes is None else classes, path=model)


def _unknown_settings_message(settings: Mapping, what: str, where: str = "") -> str | None:
    """The one-line error for keys of ``settings`` that are not loop settings (with close matches); None if all are."""
    import difflib

    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if not unknown:
        return None
    hints = [difflib.get_close_matches(k, DEFAULT_SETTINGS, n=1) for k in unknown]
    hint = "".join(f" Did you mean {h[0]!r}?" for h in hints if h)
    return f"Unknown {what} {unknown}{where}; expected keys among {sorted(DEFAULT_SETTINGS)}.{hint}"


def check_stored_settings(settings, cfg_path: pathlib.Path) -> None:
    """Refuse, as the workspace opens, settings edited by hand into what ``init`` would have refused.

    README invites raising ``budget`` in the config file: a value of the wrong type found then,
    rather than at the end of a round that has already selected its batch.
    """
    from alscale.exceptions import AlscaleError, WorkspaceError

    if not isinstance(settings, dict):
        raise WorkspaceError(f"Expected the 'settings' of {str(cfg_path)!r} to be an object. Got {type(settings).__name__}.")
    unknown = _unknown_settings_message(settings, "settings", f" in {str(cfg_path)!r}")
    if unknown:
        raise WorkspaceError(unknown)
    try:
        check_loop_settings({**DEFAULT_SETTINGS, **settings})  # on a copy: the file is what the workspace reads
    except AlscaleError as exc:  # ConfigError, StrategyError
        raise WorkspaceError(f"{cfg_path}: {exc}") from None
