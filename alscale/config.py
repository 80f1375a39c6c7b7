"""Selection settings: one frozen dataclass, filled from defaults < config file < flags.

A config file (TOML or YAML) holds the same keys as ``alscale select``'s long options, with
dashes or underscores::

    pool = "data/pool/"
    model = "model.onnx"
    strategy = "entropy"
    k = 1000
    out = "batches/round-3"
    exclude = ["labeled.parquet"]
    actors = 8

    [strategy_params]
    oversampling = 2.0

Unknown keys are an error that suggests the closest known key.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alscale.checks import check_int  # re-exported: check_int is imported from here too
from alscale.exceptions import AlscaleError, ConfigError, first_line

__all__ = ["SelectSettings", "check_int", "check_path", "load_config_file", "make_settings", "read_settings_file"]

ON_INVALID = ("error", "skip")


@dataclass(frozen=True)
class SelectSettings:
    """Everything one selection run needs.

    Attributes
    ----------
    pool : str
        Parquet file, directory or glob (any filesystem pyarrow opens).
    model : tuple of str
        One ONNX model, or several (a committee).
    strategy : str
        A registered strategy name (``alscale.strategies.STRATEGIES``).
    k : int
        Batch size to select (>= 1).
    out : str or None
        Output directory of the manifest; None keeps the result in memory only.
    exclude : tuple of str
        Files of ids never to select (Parquet, CSV or one id per line).
    labeled : tuple of str
        Files of already-labeled ids (excluded; core-set uses them as initial centers).
    actors : int or None
        Shard actors; None = one per CPU of the Ray cluster.
    address : str or None
        Ray cluster address; None starts (or reuses) a local Ray.
    seed : int
    batch_size : int or "auto"
        Rows per model run.  ``"auto"`` (the default): each actor times its model on synthetic
        batches of 512, 1,024 and 2,048 rows when it starts, and keeps 2,048 unless a smaller
        batch is clearly cheaper per row (wide models, whose activations then stay in cache).
        Shards are read in record batches of a few model runs (about 1 MiB of features).  The
        selection is the same for every batch size.
    threads : int
        ONNX Runtime intra-op threads per actor.
    id_column : str
    features : tuple of str or None
        Feature column(s); None picks the one obvious feature column.
    probs_output, embedding_output : str or None
        ONNX output names; None detects them.
    on_invalid : {"error", "skip"}
        What to do with rows holding NaN/inf features.
    force : bool
        Replace an existing output directory.
    progress : bool
        Show a progress bar on stderr.
    strategy_params : dict
        Strategy-specific parameters.
    skip_bad_shards : bool
        Record and skip shards that fail deterministically instead of failing the run.
    checkpoint_dir : str or None
        Where finished shards are checkpointed for resume.  None: ``<out>.checkpoints`` when
        ``out`` is set, else no checkpoints.
    keep_checkpoints : bool
        Leave the checkpoints in place after the manifest is written (the manifest's
        ``checkpoints`` field says where): for a caller that copies the manifest elsewhere
        first and removes them after (``alscale.engine.checkpoint.remove_checkpoints``).
    """

    pool: str
    model: tuple[str, ...]
    strategy: str = "entropy"
    k: int = 100
    out: str | None = None
    exclude: tuple[str, ...] = ()
    labeled: tuple[str, ...] = ()
    actors: int | None = None
    address: str | None = None
    seed: int = 0
    batch_size: int | str = "auto"
    threads: int = 1
    id_column: str = "id"
    features: tuple[str, ...] | None = None
    probs_output: str | None = None
    embedding_output: str | None = None
    on_invalid: str = "error"
    force: bool = False
    progress: bool = False
    strategy_params: Mapping[str, Any] = field(default_factory=dict)
    skip_bad_shards: bool = False
    checkpoint_dir: str | None = None
    keep_checkpoints: bool = False

    def __post_init__(self) -> None:
        self._normalize()
        for name in ("pool", "strategy", "id_column"):
            _check_type(name, getattr(self, name), str, "a string")
        for name in ("out", "address", "probs_output", "embedding_output", "checkpoint_dir"):
            _check_type(name, getattr(self, name), (str, type(None)), "a string")
        for name in ("force", "progress", "skip_bad_shards", "keep_checkpoints"):
            _check_type(name, getattr(self, name), bool, "true or false")
        for name in ("model", "exclude", "labeled", "features"):
            value = getattr(self, name)
            if not (value is None and name == "features"):
                _check_type(name, value, tuple, "a list of strings")
                for item in value:
                    _check_type(name, item, str, "a list of strings", got=list(value))
        if not isinstance(self.strategy_params, Mapping):
            raise ConfigError(f"The 'strategy_params' setting must be a table. Got {type(self.strategy_params).__name__}.")
        # numpy integers are accepted and kept as int: manifest.json would record them as strings
        object.__setattr__(self, "k", check_int("k", self.k, 1))
        if self.batch_size != "auto":
            object.__setattr__(self, "batch_size", check_int("batch_size", self.batch_size, 1, or_text="'auto' or "))
        object.__setattr__(self, "threads", check_int("threads", self.threads, 1))
        object.__setattr__(self, "seed", check_int("seed", self.seed, 0))
        if self.actors is not None:
            object.__setattr__(self, "actors", check_int("actors", self.actors, 1))
        if self.on_invalid not in ON_INVALID:
            raise ConfigError(f"The 'on_invalid' parameter must be one of {list(ON_INVALID)}. Got {self.on_invalid!r} instead.")
        if not self.pool:
            raise ConfigError("The 'pool' parameter is required: a Parquet file, directory or glob.")
        if not self.model:
            raise ConfigError("The 'model' parameter is required: an ONNX file (repeat it for a committee).")
        _check_not_empty(self)

    def _normalize(self) -> None:
        """Accept what Python callers naturally pass (paths, one string or a list for the repeatable
        settings), and make local paths absolute: actors on a cluster run in another directory."""
        for name in _TUPLE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                value = (os.fspath(value),)
            elif isinstance(value, (list, tuple)):
                value = tuple(os.fspath(v) if isinstance(v, os.PathLike) else v for v in value)
            if name != "features" and isinstance(value, tuple):
                value = tuple(_absolute(v) for v in value)
            object.__setattr__(self, name, value)
        for name in ("pool", "out", "checkpoint_dir"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):
                value = os.fspath(value)
            object.__setattr__(self, name, _absolute(value))
        if isinstance(self.batch_size, str) and self.batch_size.strip().lower() == "auto":  # as --batch-size takes it
            object.__setattr__(self, "batch_size", "auto")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the settings."""
        data = dataclasses.asdict(self)
        data["strategy_params"] = dict(self.strategy_params)
        return json.loads(json.dumps(data, default=str))


def _absolute(value: Any) -> Any:
    """A local path made absolute; URIs (``scheme://``), empty strings and non-strings as they are."""
    if isinstance(value, str) and value and "://" not in value and not os.path.isabs(value):
        return os.path.abspath(value)
    return value


_FIELDS = {f.name: f for f in dataclasses.fields(SelectSettings)}
_TUPLE_FIELDS = {"model", "exclude", "labeled", "features"}


def _check_type(name: str, value: Any, types: type | tuple[type, ...], expected: str, got: Any = None) -> None:
    if not isinstance(value, types):
        raise ConfigError(f"The {name!r} setting must be {expected}. Got {value if got is None else got!r}.")


#: What an optional setting means when it is left out, for the error about an empty value
#: (an empty shell variable passed as ``--out "$OUT"`` must not quietly mean "write nothing").
_LEFT_OUT = {
    "out": "nothing written",
    "address": "a private local Ray",
    "probs_output": "detected",
    "embedding_output": "detected",
    "checkpoint_dir": "OUT.checkpoints",
}


def _check_not_empty(settings: SelectSettings) -> None:
    """Refuse empty strings where a path, an address or a name is expected."""
    for name, default in _LEFT_OUT.items():
        if getattr(settings, name) == "":
            raise ConfigError(f"The {name!r} parameter must not be empty. Got ''; leave it out for the default ({default}).")
    for name in ("model", "exclude", "labeled", "features"):
        values = getattr(settings, name) or ()
        if any(v == "" for v in values):
            raise ConfigError(f"The {name!r} parameter must not hold an empty string. Got {list(values)!r}.")


def check_path(name: str, value: Any, error: type[AlscaleError] = ConfigError) -> str:
    """``value`` (a str or an ``os.PathLike``) as a str, or ``error`` naming the parameter and what it got."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise error(f"The {name!r} parameter must be a path (str or os.PathLike). Got {value!r} instead.")
    return value


def read_settings_file(path: str | os.PathLike, what: str = "config file") -> dict[str, Any]:
    """Parse a TOML (default) or YAML (``.yaml``/``.yml``) file that must hold a table.

    Raises
    ------
    ConfigError
        The path is not a path, the file cannot be read, does not parse, or is not a table.
    """
    path = Path(check_path("path", path))
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"Cannot read {what} {str(path)!r}: {exc.strerror or exc}.") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
    except Exception as exc:  # the parsers raise several unrelated types
        kind = "YAML" if path.suffix.lower() in (".yaml", ".yml") else "TOML"
        mark = getattr(exc, "problem_mark", None)  # YAML's errors keep the line in a mark (TOML's say it in the first line)
        problem = getattr(exc, "problem", None) or first_line(exc)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{what[0].upper() + what[1:]} {str(path)!r} is not valid {kind}: {problem}{where}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what[0].upper() + what[1:]} {str(path)!r} must hold a table of settings. Got {type(data).__name__}.")
    return data


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file into a dict.

    Relative paths in ``pool``, ``model``, ``out``, ``exclude`` and ``labeled`` are resolved
    against the config file's folder.

    Parameters
    ----------
    path : str or path
        The file; its keys are :class:`SelectSettings` fields (dashes or underscores).

    Returns
    -------
    dict
        The settings it holds.

    Raises
    ------
    ConfigError
        The file cannot be read or parsed, or holds an unknown key (with the close match).
    """
    path = Path(check_path("config", path))
    raw = read_settings_file(path, what="config file")
    data = {str(key).replace("-", "_"): value for key, value in raw.items()}
    _reject_unknown(data, source=f"config file {str(path)!r}", spelled={str(key).replace("-", "_"): str(key) for key in raw})
    base = path.parent
    for key in ("pool", "out", "checkpoint_dir"):
        if isinstance(data.get(key), str):
            data[key] = _resolve(base, data[key])
    for key in ("model", "exclude", "labeled"):
        if key in data:
            values = [data[key]] if isinstance(data[key], str) else data[key]
            if isinstance(values, list):  # anything else is refused, with its value, by SelectSettings
                data[key] = [_resolve(base, v) if isinstance(v, str) else v for v in values]
    return data


def _resolve(base: Path, value: str) -> str:
    """``value`` relative to the config file's folder ``base``; an empty (or blank) value stays as it is.

    ``base / ""`` is the folder itself: an empty ``pool`` would read every file beside the
    config, an empty ``model`` make a committee of the models there.  Left empty, the value
    meets the same refusal as an empty flag.
    """
    if not value.strip() or "://" in value or os.path.isabs(value):
        return value
    return str(base / value)


def _reject_unknown(data: Mapping[str, Any], *, source: str, spelled: Mapping[str, str] | None = None) -> None:
    """ConfigError for a key that is no setting (``spelled``: each key as the user wrote it, dashes and all)."""
    for key in data:
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, _FIELDS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else f" Expected one of {sorted(_FIELDS)}."
            if key == "param":
                hint = " Strategy parameters go in a [strategy_params] table."
            elif key in ("quiet", "json"):
                hint = f" --{key} says how one run prints, not what it selects: give it as a flag."
            raise ConfigError(f"Unknown setting {(spelled or {}).get(key, key)!r} in {source}.{hint}")


def make_settings(config: str | os.PathLike | None = None, **overrides: Any) -> SelectSettings:
    """Build :class:`SelectSettings` from a config file and keyword overrides.

    Overrides whose value is None (or an empty sequence for repeatable options) leave the
    config file's value in place, so CLI flags that were not given do not erase it.  The id
    files of ``exclude`` and ``labeled`` are added to the file's (a flag never lets labeled
    rows be selected again); ``strategy_params`` are merged key by key; a ``strategy`` other
    than the one the file names leaves out the file's ``strategy_params``, which were for it.

    Parameters
    ----------
    config : str or path, optional
        A TOML/YAML file (:func:`load_config_file`).
    **overrides
        :class:`SelectSettings` fields.

    Returns
    -------
    SelectSettings

    Raises
    ------
    ConfigError
        An unknown key, a missing ``pool`` or ``model``, or a value of the wrong type.
    """
    data: dict[str, Any] = load_config_file(config) if config else {}
    given = {k.replace("-", "_"): v for k, v in overrides.items()}
    _reject_unknown(given, source="the arguments")
    if given.get("strategy") is not None and data.get("strategy") is not None and given["strategy"] != data["strategy"]:
        data.pop("strategy_params", None)  # the file's parameters were for the strategy it names
    for key, value in given.items():
        if value is None or (key in _TUPLE_FIELDS and isinstance(value, (list, tuple)) and not value):
            continue
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}  # --param beta=1 adds to the file's [strategy_params], key by key
        elif key in ("exclude", "labeled") and isinstance(data.get(key), list):
            more = [value] if isinstance(value, (str, os.PathLike)) else list(value) if isinstance(value, (list, tuple)) else value
            data[key] = [*data[key], *more] if isinstance(more, list) else more  # a wrong type is refused by SelectSettings
        else:
            data[key] = value
    for key in ("pool", "model"):
        if key not in data:
            raise ConfigError(f"The {key!r} setting is required ({key}=, the flag --{key} or the config file).")
    return SelectSettings(**data)
