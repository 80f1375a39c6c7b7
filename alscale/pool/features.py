"""Feature layouts: which pool column(s) feed the model, and zero-copy decoding to numpy.

Three layouts are understood:

* ``list``    - one ``fixed_size_list<float32>`` column (``list<float>`` works, slower);
* ``binary``  - one ``fixed_size_binary`` column whose values are float32 rows (fastest);
* ``columns`` - several numeric columns, one feature each.

Features are decoded to float32, or to float64 for a model whose input is ``tensor(double)``
(:func:`feature_dtype`), so such a model sees a float64 pool's values exactly.  A
``fixed_size_binary`` column holds float32 rows by definition: a double model gets them upcast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from alscale.exceptions import PoolSchemaError

__all__ = ["FeatureSpec", "decode_features", "detect_features", "feature_dtype"]

_PREFERRED_NAMES = ("features", "feature", "x", "embedding", "embeddings", "vector")


@dataclass(frozen=True)
class FeatureSpec:
    """How one model input is read from the pool.

    Attributes
    ----------
    kind : {"list", "binary", "columns"}
    columns : tuple of str
    width : int
        Features per row (d).
    """

    kind: str
    columns: tuple[str, ...]
    width: int


def _column_spec(schema: pa.Schema, name: str) -> FeatureSpec:
    typ = schema.field(name).type
    if pa.types.is_fixed_size_list(typ):
        if not (pa.types.is_floating(typ.value_type) or pa.types.is_integer(typ.value_type)):
            raise PoolSchemaError(f"Feature column {name!r} must hold numbers. Got {typ}.")
        return FeatureSpec("list", (name,), typ.list_size)
    if pa.types.is_fixed_size_binary(typ):
        if typ.byte_width % 4:
            raise PoolSchemaError(
                f"Feature column {name!r} is fixed_size_binary[{typ.byte_width}]; expected float32 rows (a multiple of 4 bytes)."
            )
        return FeatureSpec("binary", (name,), typ.byte_width // 4)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        if not (pa.types.is_floating(typ.value_type) or pa.types.is_integer(typ.value_type)):
            raise PoolSchemaError(f"Feature column {name!r} must hold numbers. Got {typ}.")
        return FeatureSpec("list", (name,), -1)  # width known only from the data
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ):
        return FeatureSpec("columns", (name,), 1)
    raise PoolSchemaError(f"Column {name!r} of type {typ} cannot be used as features.")


def detect_features(schema: pa.Schema, id_column: str, features: Sequence[str] | None = None) -> FeatureSpec:
    """Pick the feature column(s) of a pool.

    Parameters
    ----------
    schema : pyarrow.Schema
    id_column : str
    features : sequence of str, optional
        Column names chosen by the user (one vector column, or several numeric columns).

    Returns
    -------
    FeatureSpec
    """
    names = schema.names
    if features:
        repeated = sorted({c for c in features if list(features).count(c) > 1})
        if repeated:  # a typo for another column: that one would silently not feed the model
            raise PoolSchemaError(f"Expected each feature column once. Got {repeated} more than once in {list(features)}.")
        missing = [c for c in features if c not in names]
        if missing:
            raise PoolSchemaError(f"Feature column(s) {missing} not in the pool; its columns are {names}.")
        if len(features) == 1:
            return _column_spec(schema, features[0])
        specs = [_column_spec(schema, c) for c in features]
        if any(s.kind != "columns" for s in specs):
            raise PoolSchemaError("Several feature columns must each be numeric scalars; give one vector column alone.")
        return FeatureSpec("columns", tuple(features), len(features))
    vectors = [n for n in names if n != id_column and _is_vector(schema.field(n).type)]
    if len(vectors) == 1:
        return _column_spec(schema, vectors[0])
    preferred = [n for n in vectors if n.lower() in _PREFERRED_NAMES]
    if len(preferred) == 1:
        return _column_spec(schema, preferred[0])
    if vectors:
        raise PoolSchemaError(f"Several vector columns could be the features: {vectors}; choose one with features= (--features).")
    numeric = [n for n in names if n != id_column and _is_number(schema.field(n).type)]
    if not numeric:
        raise PoolSchemaError(f"The pool has no feature column: expected a vector column or numeric columns besides {id_column!r}; columns are {names}.")
    non_numeric = [n for n in names if n != id_column and n not in numeric]
    if non_numeric:
        raise PoolSchemaError(
            f"Cannot tell the feature columns apart: numeric {numeric} and other {non_numeric}; choose them with features= (--features)."
        )
    return FeatureSpec("columns", tuple(numeric), len(numeric))


def _is_vector(typ: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(typ) or pa.types.is_fixed_size_binary(typ) or pa.types.is_list(typ) or pa.types.is_large_list(typ)


def _is_number(typ: pa.DataType) -> bool:
    return pa.types.is_integer(typ) or pa.types.is_floating(typ)


def feature_dtype(spec: FeatureSpec, input_types: Sequence[str]) -> np.dtype:
    """The dtype a shard's features are decoded to, decided once per shard for its model(s).

    float64 where a model's input is ``tensor(double)`` and the layout can hold more than float32
    (numeric columns, list columns); float32 otherwise, the common case.

    Parameters
    ----------
    spec : FeatureSpec
    input_types : sequence of str
        Each model's input type, as onnxruntime names it (``"tensor(float)"``, ``"tensor(double)"``).

    Returns
    -------
    numpy.dtype
    """
    if spec.kind != "binary" and any("double" in t for t in input_types):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def decode_features(batch: pa.RecordBatch, spec: FeatureSpec, ids: np.ndarray | None = None, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
    """Turn a record batch's feature column(s) into an array of shape (n, d) of ``dtype``.

    Zero-copy where Arrow allows it (a ``fixed_size_binary`` column, or a ``fixed_size_list``
    column of ``dtype`` without nulls).  Null rows come back as NaN rows, so the caller's validity
    check catches them.  ``ids`` (n,) only name a row in an error.  ``dtype`` is float32, or
    float64 for a double-input model (:func:`feature_dtype`); a ``binary`` column is always
    float32 rows.

    Raises
    ------
    PoolSchemaError
        A ``list`` column whose rows differ in length, or from ``spec.width`` when it is set
        (the engine sets it to the model's input width for a ``list<>`` column: the row named is
        then one that differs from the model, not from the batch's first row).
    """
    n = batch.num_rows
    if spec.kind == "binary":
        col = batch.column(spec.columns[0])
        width = col.type.byte_width
        buf = col.buffers()[1]
        out = np.frombuffer(buf, dtype=np.float32, count=n * spec.width, offset=col.offset * width).reshape(n, spec.width)
        if col.null_count:
            out = out.copy()
            out[np.asarray(col.is_null())] = np.nan
        return out
    if spec.kind == "list":
        col = batch.column(spec.columns[0])
        width = spec.width if spec.width > 0 else _list_width(col, spec.columns[0], ids)
        if col.null_count:
            return _list_with_nulls(col, width, dtype, spec.columns[0], ids)
        values = col.flatten().to_numpy(zero_copy_only=False)
        if len(values) != n * width:
            _list_width(col, spec.columns[0], ids, expected=width)  # names the first row of another length
        return values.astype(dtype, copy=False).reshape(n, width)
    out = np.empty((n, spec.width), dtype=dtype)
    for j, name in enumerate(spec.columns):
        out[:, j] = batch.column(name).to_numpy(zero_copy_only=False)
    return out


def _list_width(col: pa.Array, name: str, ids: np.ndarray | None, expected: int | None = None) -> int:
    """The one length of a list column's non-null rows; PoolSchemaError naming a row that differs."""
    import pyarrow.compute as pc  # here, not at the top: it costs every actor memory, and only list columns need it

    lengths = pc.list_value_length(col).fill_null(-1).to_numpy(zero_copy_only=False)
    present = np.flatnonzero(lengths >= 0)
    if present.size == 0:
        return max(expected or 0, 0)
    width = int(lengths[present[0]]) if expected is None else expected
    odd = present[lengths[present] != width]
    if odd.size:
        row = int(odd[0])
        which = f"id {ids[row : row + 1].tolist()[0]!r}" if ids is not None else f"row {row} of a batch"
        if expected is None:
            raise PoolSchemaError(f"Feature column {name!r} must hold {width} values in every row. Got {int(lengths[row])} in {which}.")
        if odd.size == present.size and (lengths[odd] == lengths[row]).all():  # one other width throughout
            raise PoolSchemaError(f"Feature width does not match the model: column {name!r} holds {int(lengths[row])} values per row "
                                  f"({which}); the model takes {width}.")
        raise PoolSchemaError(f"Feature column {name!r} must hold {width} values in every row, as the model's input does. "
                              f"Got {int(lengths[row])} in {which}.")
    return width


def _list_with_nulls(col: pa.Array, width: int, dtype: npt.DTypeLike = np.float32, name: str = "", ids: np.ndarray | None = None) -> np.ndarray:
    out = np.full((len(col), width), np.nan, dtype=dtype)
    valid = ~np.asarray(col.is_null())
    values = col.filter(pa.array(valid)).flatten().to_numpy(zero_copy_only=False)
    if len(values) != int(valid.sum()) * width:
        _list_width(col, name, ids, expected=width)  # names the first row of another length
    out[valid] = values.reshape(-1, width)
    return out
