"""What alscale needs from an ONNX classifier, and how it is found in a model file.

The contract: one float input of shape (n, d); an output of class probabilities or logits of
shape (n, c); optionally an embedding output (n, h) (the penultimate layer) for the diversity
strategies.  Outputs are found by name (``probabilities``, ``output_probability``, ``probs``,
``logits``, ``embedding``, ...) or named in the settings.  A skl2onnx ZipMap output (a
sequence of maps) is refused with the export option that avoids it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from alscale.config import check_path
from alscale.exceptions import ModelContractError, ModelError

__all__ = ["ModelContract", "error_detail", "expand_model_dirs", "inspect_model", "load_session", "parse_class_names", "read_model_uri",
           "sha256_file"]

PROBS_NAMES = ("probabilities", "output_probability", "probs", "probability", "prob", "proba", "softmax", "scores")
LOGITS_NAMES = ("logits", "logit", "output_logits")
EMBEDDING_NAMES = ("embedding", "embeddings", "penultimate", "hidden", "features_out", "pooled_output")


@dataclass(frozen=True)
class ModelContract:
    """The detected contract of one ONNX model.

    Attributes
    ----------
    path, sha256 : str
    input_name : str
    input_width : int or None
        d, when the model fixes it.
    input_type : str
    class_output : str
        The probabilities or logits output.
    output_kind : {"probabilities", "logits"}
    n_classes : int
    classes : tuple of str
        Class names in output order.
    embedding_output : str or None
    embedding_dim : int or None
    outputs : tuple of (name, type, shape)
        Every output, for ``inspect-model``.
    class_names_found : bool
        Whether the model names its classes (``alscale.classes`` metadata, or skl2onnx's class
        labels); False: ``classes`` are the output indices.
    """

    path: str
    sha256: str
    input_name: str
    input_width: int | None
    input_type: str
    class_output: str
    output_kind: str
    n_classes: int
    classes: tuple[str, ...]
    embedding_output: str | None
    embedding_dim: int | None
    outputs: tuple[tuple[str, str, tuple], ...] = field(default=())
    class_names_found: bool = True

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "input": {"name": self.input_name, "width": self.input_width, "type": self.input_type},
            "class_output": self.class_output,
            "output_kind": self.output_kind,
            "n_classes": self.n_classes,
            "classes": list(self.classes),
            "embedding_output": self.embedding_output,
            "embedding_dim": self.embedding_dim,
        }


def _is_uri(path: str | Path) -> bool:
    return "://" in str(path)


def read_model_uri(uri: str) -> bytes:
    """The bytes of a model at a filesystem URI (``s3://``, ``gs://``, ``hdfs://``, ``file://``)."""
    from pyarrow import fs as pafs

    try:
        filesystem, path = pafs.FileSystem.from_uri(uri)
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise ModelError(f"Model file {uri!r} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read model {uri!r}: {error_detail(exc)}") from None


def sha256_file(path: str | Path) -> str:
    """sha256 of a model file, local or at a filesystem URI."""
    if _is_uri(path):
        return hashlib.sha256(read_model_uri(str(path))).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_session(path: str | Path, threads: int = 1, data: bytes | None = None) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and sequential execution.

    ``path`` is a local file or a filesystem URI (read into memory: every actor of a cluster
    reads the model where it is, with no shared volume).  ``data``: the URI's bytes, already read.
    """
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 4  # fatal only: every error reaches the caller as an exception, with its message
    if _is_uri(path):
        data = read_model_uri(str(path)) if data is None else data
        try:
            return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"Cannot load ONNX model {str(path)!r}: {error_detail(exc)}") from None
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except FileNotFoundError:
        raise ModelError(f"Model file {str(path)!r} does not exist.") from None
    except Exception as exc:  # onnxruntime raises its own untyped errors
        if not Path(path).exists():
            raise ModelError(f"Model file {str(path)!r} does not exist.") from None
        raise ModelError(f"Cannot load ONNX model {str(path)!r}: {error_detail(exc)}") from None


def _dim(value) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def parse_class_names(value: str, path: Path | str) -> list:
    """The class names a model's ``alscale.classes`` metadata holds: a JSON list of names.

    Parameters
    ----------
    value : str
        The metadata's value, e.g. ``'["cat", "dog"]'``.
    path : str or path
        The model, for the message.

    Returns
    -------
    list of str or int

    Raises
    ------
    ModelContractError
        ``value`` is not a JSON list of distinct strings or integers.
    """
    try:
        names = json.loads(value)
    except ValueError:
        names = None
    if not (isinstance(names, list) and all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in names)
            and len({str(c) for c in names}) == len(names)):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise ModelContractError(f"Expected the 'alscale.classes' metadata of model {str(path)!r} to be a JSON list of distinct "
                                 f"class names, e.g. [\"cat\", \"dog\"]. Got {shown!r}.")
    return names


def _class_names(session: ort.InferenceSession, path: Path | str, n_classes: int, data: bytes | None = None) -> tuple[str, ...] | None:
    """The model's ``n_classes`` class names: its ``alscale.classes`` metadata, else skl2onnx's class labels; None if neither."""
    meta = session.get_modelmeta().custom_metadata_map
    if "alscale.classes" in meta:
        names = parse_class_names(meta["alscale.classes"], path)
        if len(names) == n_classes:
            return tuple(str(c) for c in names)
    try:  # skl2onnx keeps class labels as node attributes
        import onnx

        model = onnx.load_from_string(data) if data is not None else onnx.load(str(path), load_external_data=False)
        for node in model.graph.node:
            for attr in node.attribute:
                # LinearClassifier names its integer labels classlabels_ints, the tree and SVM classifiers classlabels_int64s
                if attr.name in ("classlabels_ints", "classlabels_int64s") and len(attr.ints) == n_classes:
                    return tuple(str(v) for v in attr.ints)
                if attr.name == "classlabels_strings" and len(attr.strings) == n_classes:
                    return tuple(v.decode() for v in attr.strings)
        for init in model.graph.initializer:
            if init.name.startswith("classes") and init.dims and init.dims[0] == n_classes:
                values = onnx.numpy_helper.to_array(init)
                return tuple(str(v.decode() if isinstance(v, bytes) else v) for v in values.tolist())
    except Exception:  # class names are a nicety; the caller falls back to indices
        pass
    return None


def inspect_model(
    path: str | Path,
    *,
    probs_output: str | None = None,
    embedding_output: str | None = None,
    session: ort.InferenceSession | None = None,
) -> ModelContract:
    """Load a model and work out its contract; probe it once on zeros.

    Parameters
    ----------
    path : str or path
        An ONNX file with one input of shape (n, d).
    probs_output, embedding_output : str, optional
        Output names to use; by default they are found by name (:data:`PROBS_NAMES`,
        :data:`LOGITS_NAMES`, :data:`EMBEDDING_NAMES`) or by shape.
    session : onnxruntime.InferenceSession, optional
        An already loaded session of ``path``.

    Returns
    -------
    ModelContract
        Input name and width, class output and whether it holds probabilities or logits,
        the class names, the embedding output, and the model's sha256.

    Raises
    ------
    ModelError
        ``path`` is not a path, or the file is missing or not ONNX.
    ModelContractError
        No usable class output, a ZipMap output, several inputs, or an output that is not a
        probability distribution.
    """
    path = check_path("path", path, ModelError)
    path = path if _is_uri(path) else Path(path)  # Path() would fold the '//' of a URI
    data = read_model_uri(path) if _is_uri(path) else None  # read once: for the session, the sha256 and the class names
    session = session or load_session(path, data=data)
    try:
        return _contract(path, session, data, probs_output, embedding_output)
    except ModelContractError as exc:  # in a committee (a folder of models) the message must say which one
        if str(path) in str(exc):
            raise
        raise ModelContractError(f"Model {str(path)!r}: {exc}") from None


def _contract(path, session: ort.InferenceSession, data: bytes | None, probs_output: str | None,
              embedding_output: str | None) -> ModelContract:
    """:func:`inspect_model` once the session is loaded; its errors need not name the model."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ModelContractError(f"Expected a model with one input (n, d). Got {len(inputs)} inputs: {names}.")
    inp = inputs[0]
    if "float" not in inp.type and "double" not in inp.type:
        raise ModelContractError(f"Expected a float input. Got {inp.name!r} of type {inp.type}.")
    shape = list(inp.shape)
    width = _dim(shape[1]) if len(shape) == 2 else None
    if len(shape) != 2:
        raise ModelContractError(f"Expected input {inp.name!r} of rank 2 (n, d). Got shape {shape}.")

    outputs = session.get_outputs()
    described = tuple((o.name, o.type, tuple(o.shape)) for o in outputs)
    by_name = {o.name: o for o in outputs}
    for o in outputs:
        if o.type.startswith("seq(map"):
            if probs_output in (None, o.name):
                raise ModelContractError(
                    f"Output {o.name!r} is a ZipMap (a sequence of maps), which cannot be scored in bulk. "
                    "Re-export with skl2onnx's zipmap disabled, e.g. to_onnx(model, X, options={'zipmap': False}), "
                    "so probabilities come as a float tensor."
                )

    def _tensor_2d(o) -> bool:
        return o.type.startswith("tensor(") and ("float" in o.type or "double" in o.type) and len(o.shape) == 2

    if probs_output is not None:
        if probs_output not in by_name:
            raise ModelContractError(f"The model has no output {probs_output!r}; its outputs are {list(by_name)}.")
        class_out = by_name[probs_output]
        if not _tensor_2d(class_out):
            raise ModelContractError(f"Output {probs_output!r} must be a float tensor (n, c). Got {class_out.type} {class_out.shape}.")
    else:
        candidates = [o for o in outputs if _tensor_2d(o) and o.name.lower() in PROBS_NAMES + LOGITS_NAMES]
        if not candidates:
            raise ModelContractError(
                f"Found no class probability or logit output among {[o.name for o in outputs]}; "
                "expected one named like 'probabilities' or 'logits' (or set probs_output; a name holding 'logit' is read as logits)."
            )
        class_out = candidates[0]
    kind = "logits" if class_out.name.lower() in LOGITS_NAMES or "logit" in class_out.name.lower() else "probabilities"

    emb = None
    if embedding_output is not None:
        if embedding_output not in by_name:
            raise ModelContractError(f"The model has no output {embedding_output!r}; its outputs are {list(by_name)}.")
        emb = by_name[embedding_output]
        if not _tensor_2d(emb):
            raise ModelContractError(f"Output {embedding_output!r} must be a float tensor (n, d) to serve as the embedding. Got {emb.type} {emb.shape}.")
    else:
        emb = next((o for o in outputs if _tensor_2d(o) and o.name.lower() in EMBEDDING_NAMES), None)

    # probe: run two rows of zeros to learn c and check the output is a distribution
    probe_width = width or 1
    dtype = np.float64 if "double" in inp.type else np.float32
    fetch = [class_out.name] + ([emb.name] if emb is not None else [])
    try:
        results = session.run(fetch, {inp.name: np.zeros((2, probe_width), dtype=dtype)})
    except Exception as exc:
        if width is None:  # unknown width: cannot probe, trust the declared shape
            results = None
        else:
            fixed = _dim(inp.shape[0]) if inp.shape else None
            hint = f" Its input takes exactly {fixed} row(s) at a time: export it with a dynamic batch dimension." if fixed not in (None, 2) else ""
            raise ModelError(f"Model {str(path)!r} failed on a probe input of 2 rows: {error_detail(exc)}.{hint}") from None
    if results is not None:
        values = np.asarray(results[0])
        n_classes = int(values.shape[1])
        if kind == "probabilities":
            check_probabilities(values, class_out.name, where=f"the load-time probe of model {str(path)!r} (2 rows of zeros, not pool rows)")
        emb_dim = int(np.asarray(results[1]).shape[1]) if emb is not None else None
    else:
        n_classes = _dim(class_out.shape[1]) or 0
        emb_dim = _dim(emb.shape[1]) if emb is not None else None
    if n_classes < 2:
        raise ModelContractError(f"Output {class_out.name!r} must have >= 2 classes. Got {n_classes}.")
    names = _class_names(session, path, n_classes, data)
    return ModelContract(
        path=str(path),
        sha256=hashlib.sha256(data).hexdigest() if data is not None else sha256_file(path),
        input_name=inp.name,
        input_width=width,
        input_type=inp.type,
        class_output=class_out.name,
        output_kind=kind,
        n_classes=n_classes,
        classes=tuple(str(i) for i in range(n_classes)) if names is None else names,
        embedding_output=emb.name if emb is not None else None,
        embedding_dim=emb_dim,
        outputs=described,
        class_names_found=names is not None,
    )


def check_probabilities(probs: np.ndarray, name: str, tol: float = 1e-3, sample: int | None = None, where: str | None = None) -> None:
    """Raise :class:`ModelContractError` unless every row is a finite distribution.

    Parameters
    ----------
    probs : ndarray of shape (n, c)
    name : str
        The output's name, for the message.
    tol : float
        Allowed deviation of a row sum from 1 (and of values outside [0, 1]).
    sample : int, optional
        Check about this many evenly spaced rows only: the scan checks every batch this way, which
        catches an output that is not a distribution at all (logits, unnormalised scores) at a
        fraction of the cost, and checks that every row's score is finite on its own.
    where : str, optional
        What the rows are, for the message ("the load-time probe of model 'm.onnx' ...").
    """
    if probs.size == 0:
        return
    rows = probs if sample is None or probs.shape[0] <= sample else probs[:: -(-probs.shape[0] // sample)]
    lo, hi = float(rows.min()), float(rows.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):  # min/max propagate NaN and inf
        bad = int((~np.isfinite(rows)).any(axis=1).sum())
        raise ModelContractError(f"Output {name!r} holds NaN or inf in {bad} row(s){' of ' + where if where else ''}; expected finite probabilities.")
    if lo < -tol or hi > 1 + tol:
        raise ModelContractError(
            f"Output {name!r} is not a probability: values range {lo:.4g}..{hi:.4g}, expected [0, 1]. {_NOT_A_DISTRIBUTION}"
        )
    sums = rows.sum(axis=1, dtype=np.float64)
    if np.abs(sums - 1).max() > tol:
        raise ModelContractError(
            f"Output {name!r} rows sum to {sums.min():.4g}..{sums.max():.4g}; expected 1 within {tol:g}. {_NOT_A_DISTRIBUTION}"
        )


#: What to do about a class output that is not a distribution (said after what was found).
_NOT_A_DISTRIBUTION = ("If it holds logits (no softmax applied), export the output with a name holding 'logit' (e.g. "
                       "torch.onnx.export(..., output_names=['logits'])), which alscale passes through a softmax; decision "
                       "scores (skl2onnx's LinearSVC, RidgeClassifier) are neither: use a classifier with predict_proba.")


def error_detail(exc: BaseException, limit: int = 400) -> str:
    """An exception's whole message on one line, cut at ``limit`` characters.

    onnxruntime puts the useful part of its errors (the shapes it got and expected) after the
    first line, so messages quote all of it rather than ``splitlines()[0]``.
    """
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


def expand_model_dirs(models: Sequence[str]) -> tuple[str, ...]:
    """The model files: a directory given as a model means every ``*.onnx`` in it, sorted (a committee).

    Raises
    ------
    ModelError
        A directory holds no ``*.onnx`` file.
    """
    out: list[str] = []
    for m in models:
        if os.path.isdir(m):
            found = sorted(str(p) for p in Path(m).glob("*.onnx"))
            if not found:
                raise ModelError(f"Model directory {m!r} holds no *.onnx files.")
            out.extend(found)
        else:
            out.append(m)
    return tuple(out)
