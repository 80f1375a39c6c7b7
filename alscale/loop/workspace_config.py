"""The workspace's config file, ``alscale-workspace.json``: planned at creation, checked at every open.

It holds the schema version, the pool (its path or glob and its key), the model, the id, label
and group columns, the classes, the loop's settings, and the sizes and seeds of the evaluation
and stop sets.  :func:`plan_workspace` checks a new workspace's arguments, reads the pool's ids
and reserves the two sets, writing nothing; :func:`read_config` refuses a file that alscale did
not write or that was edited into something it cannot read.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa

from alscale.exceptions import ModelError, WorkspaceError, short_repr
from alscale.loop import _pool
from alscale.loop._io import read_json
from alscale.loop.evalset import EVAL_STREAM, STOP_STREAM, default_eval_size, reserve_random, resolve_size
from alscale.loop.settings import check_model_strategy, check_stored_settings, merge_settings, resolve_classes
from alscale.pool.identity import pool_key

__all__ = ["CONFIG_NAME", "SCHEMA_VERSION", "WorkspacePlan", "check_config_keys", "now_iso", "plan_workspace", "read_config"]

SCHEMA_VERSION = 1
CONFIG_NAME = "alscale-workspace.json"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value) -> bool:
    return isinstance(value, str) and bool(value)


def _is_reserved_set(value) -> bool:
    return isinstance(value, dict) and _is_int(value.get("size")) and value["size"] >= 0 and isinstance(value.get("file"), str)


#: The config's keys every alscale that wrote schema_version 1 wrote, each with its test and what it should hold.
_REQUIRED_KEYS = {
    "pool": (lambda v: _is_name(v) or (isinstance(v, list) and bool(v) and all(_is_name(p) for p in v)),
             "the pool: a path or glob, or a list of them"),
    "id_column": (_is_name, "a column name"),
    "pool_rows": (lambda v: _is_int(v) and v >= 0, "an int >= 0"),
    # an empty list: an older init on a label column of nulls wrote it (every label is refused, as then)
    "classes": (lambda v: v is None or isinstance(v, list), "a list of class names, or null for any label"),
    "evaluation": (_is_reserved_set, 'an object with an int "size" >= 0 and a "file"'),
    "stop_set": (_is_reserved_set, 'an object with an int "size" >= 0 and a "file"'),
}
#: Keys read with a default where absent; present, they must hold what alscale wrote.
_OPTIONAL_KEYS = {
    "id_type": (lambda v: v in ("int64", "string"), '"int64" or "string"'),
    "label_column": (lambda v: v is None or _is_name(v), "a column name, or null"),
    "model": (lambda v: v is None or _is_name(v), "a path, or null"),
    "group_columns": (lambda v: isinstance(v, list) and all(_is_name(c) for c in v), "a list of column names"),
    "pool_key": (lambda v: v is None or isinstance(v, str), "a string"),  # a workspace made before it had one gets it on use
}


def check_config_keys(config: dict, cfg_path: pathlib.Path) -> None:
    """Refuse a config file (edited by hand) that lacks a key alscale reads, or holds one of another type.

    ``classes`` must be there even where it is null: a workspace made without classes writes
    null (any label), while a missing key is a damaged file, not a choice to accept any label.
    """
    for key, (valid, what) in _REQUIRED_KEYS.items():
        if key not in config:
            raise WorkspaceError(f"Expected the key {key!r} ({what}) in {str(cfg_path)!r}. Got none; put it back as "
                                 f"`alscale init` wrote it, or restore the file from a backup.")
        if not valid(config[key]):
            raise WorkspaceError(f"Expected the key {key!r} in {str(cfg_path)!r} to hold {what}. Got {short_repr(config[key])}.")
    for key, (valid, what) in _OPTIONAL_KEYS.items():
        if key in config and not valid(config[key]):
            raise WorkspaceError(f"Expected the key {key!r} in {str(cfg_path)!r} to hold {what}. Got {short_repr(config[key])}.")


def now_iso() -> str:
    """The time now, UTC, ISO 8601 to the microsecond: what the workspace stamps its writes with."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def read_config(path: pathlib.Path) -> dict:
    """The config of the workspace at ``path``, checked.

    Raises
    ------
    WorkspaceError
        No config file, one that is not valid JSON or not an object, a schema version newer
        than this alscale's, a key alscale reads missing or of the wrong type, or bad settings.
    """
    cfg_path = path / CONFIG_NAME
    if not cfg_path.is_file():
        raise WorkspaceError(f"Expected a workspace ({CONFIG_NAME}) in {path}. Got none; run `alscale init` first.")
    try:
        config = read_json(cfg_path)
    except ValueError as exc:
        raise WorkspaceError(f"Expected valid JSON in {cfg_path}. Got: {exc}") from None
    if not isinstance(config, dict):
        raise WorkspaceError(f"Expected a JSON object in {cfg_path}. Got {short_repr(config)}.")
    version = config.get("schema_version")
    if not isinstance(version, int):
        raise WorkspaceError(f"Expected an integer schema_version in {cfg_path}. Got {version!r}.")
    if version > SCHEMA_VERSION:
        raise WorkspaceError(
            f"Workspace {path} has schema_version {version}, newer than this alscale supports ({SCHEMA_VERSION}); upgrade alscale.")
    check_config_keys(config, cfg_path)
    check_stored_settings(config.get("settings", {}), cfg_path)
    return config


@dataclasses.dataclass(frozen=True)
class WorkspacePlan:
    """A new workspace, computed and not written yet.

    Attributes
    ----------
    path : pathlib.Path
    config : dict
        What ``alscale-workspace.json`` will hold.
    ids : ndarray of shape (n,)
        The pool's ids (int64, or str objects).
    evaluation_ids, stop_set_ids : ndarray
        The reserved evaluation and stop sets.
    """

    path: pathlib.Path
    config: dict
    ids: np.ndarray
    evaluation_ids: np.ndarray
    stop_set_ids: np.ndarray


def plan_workspace(path, *, pool, model=None, id_column: str = "id", label_column: str | None = None,
                   classes: Sequence | None = None, group_columns: Sequence[str] = (), settings: dict | None = None) -> WorkspacePlan:
    """Check a new workspace's arguments, read the pool's ids and reserve its evaluation and stop sets; nothing is written.

    Parameters and errors are :meth:`alscale.loop.workspace.Workspace.create`'s.
    """
    from alscale.config import check_path
    from alscale.exceptions import ConfigError

    path = pathlib.Path(check_path("path", path))
    pool = _pool.check_pool_spec(pool)
    if model is not None:
        check_path("model", model)
    for name, value in (("id_column", id_column), ("label_column", label_column)):
        if not (isinstance(value, str) and value) and not (value is None and name == "label_column"):
            raise ConfigError(f"The {name!r} parameter must be a column name. Got {value!r} instead.")
    if classes is not None and (isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable)):
        raise ConfigError(f"The 'classes' parameter must be a list of class names. Got {classes!r} instead.")
    group_columns = [group_columns] if isinstance(group_columns, str) else group_columns or []
    group_columns = list(group_columns) if isinstance(group_columns, Iterable) else group_columns
    if not isinstance(group_columns, list) or not all(isinstance(c, str) and c for c in group_columns):
        raise ConfigError(f"The 'group_columns' parameter must be a column name or a list of them. Got {group_columns!r} instead.")
    if (path / CONFIG_NAME).exists():
        raise WorkspaceError(f"Expected no workspace at {path}. Got an existing {CONFIG_NAME}.")
    merged = merge_settings(settings)
    if model is not None and not pathlib.Path(model).is_file():
        raise ModelError(f"Expected the workspace's model to be an ONNX file. Got {str(model)!r}, which is not a file.")

    pool_spec = [str(pathlib.Path(p).resolve()) if pathlib.Path(p).exists() else str(p) for p in pool]
    pool_value = pool_spec[0] if len(pool_spec) == 1 else pool_spec
    dataset = _pool.pool_dataset(pool_value)
    needed = [id_column, *( [label_column] if label_column else []), *group_columns]
    if merged["hint_column"]:
        needed.append(merged["hint_column"])
    needed += merged["features"] or []  # rounds read them: a missing one is refused now, not at the first round
    _pool._check_columns(dataset, needed, pool_value)
    id_kind = "int64" if pa.types.is_integer(dataset.schema.field(id_column).type) else "string"
    ids = _pool.as_ids(dataset.to_table(columns=[id_column]).column(id_column), id_kind)
    if len(np.unique(ids)) != len(ids):
        from alscale.exceptions import DuplicateIdError

        raise DuplicateIdError(f"Expected unique ids in column {id_column!r}. Got {len(ids) - len(np.unique(ids))} duplicates.")
    column_values = None  # the label column's distinct values, nulls left out
    if label_column:
        column_values = [v for v in dataset.to_table(columns=[label_column]).column(label_column).unique().to_pylist() if v is not None]
    classes = resolve_classes(classes, column_values, label_column, model)
    if model is not None:
        check_model_strategy(model, merged["strategy"])  # found at the first selection, every round would fail there

    n_pool = len(ids)
    eval_n = default_eval_size(n_pool) if merged["eval_size"] is None else resolve_size(merged["eval_size"], n_pool, name="eval_size")
    stop_n = default_eval_size(n_pool) if merged["stop_set_size"] is None else resolve_size(merged["stop_set_size"], n_pool, name="stop_set_size")
    eval_ids = reserve_random(ids, eval_n, seed=int(merged["eval_seed"]), stream=EVAL_STREAM)
    stop_ids = reserve_random(ids, stop_n, seed=int(merged["eval_seed"]), stream=STOP_STREAM)
    if merged["initial_size"] is not None and eval_n + int(merged["initial_size"]) > n_pool:
        raise ConfigError(
            f"The evaluation set ({eval_n}) plus the initial set ({merged['initial_size']}) must fit in the pool ({n_pool} rows).")

    config = {
        "schema_version": SCHEMA_VERSION,
        "created_at": now_iso(),
        "pool": pool_value,
        "pool_key": pool_key(pool_value),  # tells this pool's tasks from another's in a shared labeling queue
        "model": None if model is None else str(pathlib.Path(model).resolve()),
        "id_column": id_column,
        "id_type": id_kind,
        "label_column": label_column,
        "classes": classes,
        "group_columns": list(group_columns),
        "pool_rows": n_pool,
        "evaluation": {"size": int(eval_n), "seed": int(merged["eval_seed"]), "file": "state/evaluation.parquet"},
        "stop_set": {"size": int(stop_n), "seed": int(merged["eval_seed"]), "file": "state/stopset.parquet"},
        "settings": merged,
    }
    return WorkspacePlan(path, config, ids, eval_ids, stop_ids)
