"""Built-in trainers for pools of feature vectors, and ONNX export with an embedding output.

Two scikit-learn trainers:

* ``"logistic"`` - multinomial :class:`~sklearn.linear_model.LogisticRegression`; the embedding
  output is the input features.
* ``"mlp"`` - :class:`~sklearn.neural_network.MLPClassifier` with one hidden layer; the
  embedding output is the hidden layer.

Features are standardised for training and the scaling is folded into the first layer, so the
exported model takes the pool's raw features.  Classes missing from a small labeled set get an
output column with a very low logit, so every round's model has one output per known class and
the engine, the strategies and the metrics see the same class order.  Export goes through
:func:`alscale.model.export.sklearn_to_onnx`: outputs ``probabilities`` (n, c), ``label`` (n,)
and ``embedding`` (n, h); class names in the ``alscale.classes`` metadata.

Bringing your own deep model
----------------------------
Teams with a PyTorch classifier export one ONNX file per round with two outputs, the logits and
the penultimate embedding, and pass it to ``alscale round --model``::

    class WithEmbedding(torch.nn.Module):
        def __init__(self, backbone, head):
            super().__init__()
            self.backbone, self.head = backbone, head
        def forward(self, features):
            emb = self.backbone(features)          # (n, h) penultimate layer
            return self.head(emb), emb             # logits (n, c), embedding (n, h)

    torch.onnx.export(
        WithEmbedding(backbone, head).eval(), torch.zeros(1, d), "model.onnx",
        input_names=["features"], output_names=["logits", "embedding"],
        dynamic_axes={"features": {0: "n"}, "logits": {0: "n"}, "embedding": {0: "n"}},
        opset_version=17,
    )
    m = onnx.load("model.onnx")
    onnx.helper.set_model_props(m, {"alscale.classes": json.dumps(class_names)})
    onnx.save(m, "model.onnx")

The class names must equal the workspace's classes, in output order; a mismatch is refused
with a :class:`~alscale.exceptions.ModelContractError`.  A scikit-learn classifier exported with
skl2onnx (``to_onnx(model, X, options={'zipmap': False})``) needs no metadata: its class labels
are read from the graph, as ``alscale inspect-model`` shows them.  A model naming no classes is
refused when the workspace is created with it, or at the round given it.
"""

from __future__ import annotations

import pathlib
import warnings
from collections.abc import Sequence

import numpy as np

from alscale.exceptions import ConfigError, ModelContractError, ModelError, WorkspaceError
from alscale.loop._io import atomic_write_bytes

__all__ = ["TRAINERS", "check_model_classes", "export_model", "model_classes", "predict_onnx", "train_model"]

TRAINERS = ("logistic", "mlp")
_MISSING_CLASS_LOGIT = -30.0


def _fold_scaling(weights: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray):
    """Return (W', b') with ``((x - mean)/scale) @ W + b == x @ W' + b'``; W of shape (d, h)."""
    w = weights / scale[:, None]
    return w, bias - mean @ w


def train_model(X: np.ndarray, y: np.ndarray, classes: Sequence, *, trainer: str = "logistic", seed: int = 0,
                hidden: int = 64, max_iter: int = 500):
    """Fit a built-in trainer on raw features.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
        Class indices into ``classes``.
    classes : sequence of length c
        Every known class; absent ones get a near-zero probability.
    trainer : {"logistic", "mlp"}
    seed : int
    hidden : int
        Hidden units of the MLP.
    max_iter : int

    Returns
    -------
    estimator
        A fitted scikit-learn estimator whose ``classes_`` are ``classes`` and whose first
        layer takes raw (unscaled) features.

    Raises
    ------
    ConfigError
        For an unknown trainer.
    WorkspaceError
        If fewer than two classes are labeled.
    """
    if trainer not in TRAINERS:
        raise ConfigError(f"The trainer must be one of {list(TRAINERS)}. Got {trainer!r} instead.")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    present = np.unique(y)
    if len(present) < 2:
        raise WorkspaceError(f"Expected training labels of at least 2 classes. Got {len(present)} class(es) in {len(y)} labels.")
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-12] = 1.0
    Xs = (X - mean) / scale
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if trainer == "logistic":
            from sklearn.linear_model import LogisticRegression

            est = LogisticRegression(C=1.0, max_iter=max_iter, random_state=seed).fit(Xs, y)
            coef, intercept = est.coef_, est.intercept_
            if coef.shape[0] == 1:  # binary: logits (0, z)
                coef = np.vstack([np.zeros_like(coef), coef])
                intercept = np.concatenate([[0.0], intercept])
            w, b = _fold_scaling(coef.T, intercept, mean, scale)
            w, b = _expand(w, b, est.classes_, len(classes))
            est.coef_, est.intercept_ = w.T.copy(), b
        else:
            from sklearn.neural_network import MLPClassifier

            est = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=max_iter, random_state=seed, early_stopping=False).fit(Xs, y)
            coefs, intercepts = list(est.coefs_), list(est.intercepts_)
            coefs[0], intercepts[0] = _fold_scaling(coefs[0], intercepts[0], mean, scale)
            if est.out_activation_ == "logistic":
                coefs[-1] = np.hstack([np.zeros_like(coefs[-1]), coefs[-1]])
                intercepts[-1] = np.concatenate([np.zeros_like(intercepts[-1]), intercepts[-1]])
                est.out_activation_ = "softmax"
            coefs[-1], intercepts[-1] = _expand(coefs[-1], intercepts[-1], est.classes_, len(classes))
            est.coefs_, est.intercepts_ = coefs, intercepts
            est.n_outputs_ = len(classes)
    est.classes_ = np.asarray(list(classes), dtype=object if any(isinstance(c, str) for c in classes) else None)
    return est


def _expand(w: np.ndarray, b: np.ndarray, fitted: np.ndarray, n_classes: int):
    """Put the fitted classes' columns at their indices; absent classes get a very low logit."""
    W = np.zeros((w.shape[0], n_classes))
    B = np.full(n_classes, float(np.min(b)) + _MISSING_CLASS_LOGIT if len(fitted) < n_classes else 0.0)
    W[:, fitted] = w
    B[fitted] = b
    return W, B


def export_model(estimator, path) -> pathlib.Path:
    """Write ``estimator`` as ONNX (probabilities, label, embedding) to ``path`` atomically.

    Parameters
    ----------
    estimator : LogisticRegression or MLPClassifier
        Fitted by :func:`train_model` (its ``classes_`` become the model's class names).
    path : str or path

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ModelError
        ``estimator`` is not a fitted estimator of a built-in trainer.
    """
    from alscale.model.export import sklearn_to_onnx

    return atomic_write_bytes(path, sklearn_to_onnx(estimator))


def model_classes(path) -> list | None:
    """Class names of an ONNX model, in output order; None where it names none.

    Its ``alscale.classes`` metadata as written (names keep their JSON type), else the names
    :func:`alscale.model.contract.inspect_model` finds (skl2onnx's class labels, as text), which
    ``alscale inspect-model`` shows.

    Raises
    ------
    ModelError
        The file is not an ONNX model.
    ModelContractError
        The metadata is not a JSON list of distinct class names, or (without it) the model
        breaks the output contract.
    """
    import onnx

    from alscale.model.contract import inspect_model, parse_class_names

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a model error
        raise ModelError(f"Cannot read the ONNX model {path}: {exc}") from None
    for prop in model.metadata_props:
        if prop.key == "alscale.classes":
            return parse_class_names(prop.value, path)
    contract = inspect_model(path)
    return list(contract.classes) if contract.class_names_found else None


def check_model_classes(model_cls: Sequence | None, classes: Sequence, labels: Sequence = (), *, path=None) -> None:
    """Refuse a model without class names, or whose classes are not the workspace's, in the same order.

    Parameters
    ----------
    model_cls : sequence or None
        The model's class names (:func:`model_classes`).
    classes : sequence
        The workspace's (or round's) classes; compared as text.
    labels : sequence, optional
        Training labels, to name those the model has no output for.
    path : str or path, optional
        The model, for the message.

    Raises
    ------
    ModelContractError
    """
    where = f" {path}" if path else ""
    if model_cls is None:
        raise ModelContractError(
            f"Expected class names in the model{where} (metadata 'alscale.classes', or a skl2onnx classifier's class labels). "
            "Got none; add them in output order: onnx.helper.set_model_props(m, {'alscale.classes': json.dumps(class_names)}).")
    got, want = [str(c) for c in model_cls], [str(c) for c in classes]
    if got != want:
        unknown = sorted({str(v) for v in labels} - set(got))
        extra = f"; labels {unknown[:5]} have no output" if unknown else ""
        raise ModelContractError(f"Expected the model{where} to have classes {want}. Got {got}{extra}.")


def predict_onnx(path, X: np.ndarray, *, batch_size: int = 8192) -> tuple[np.ndarray, np.ndarray | None]:
    """Run an ONNX classifier on features.

    Parameters
    ----------
    path : str or path
    X : ndarray of shape (n, d)
    batch_size : int, default 8192
        Rows per model run.

    Returns
    -------
    probs : ndarray of shape (n, c), float64
        The class output :func:`alscale.model.contract.inspect_model` finds (softmax applied to
        logits), as ``alscale select`` reads it.
    embedding : ndarray of shape (n, h) or None

    Raises
    ------
    ModelError
        ``path`` is not a path, or the model cannot be loaded.
    ModelContractError
        The model has no probabilities or logits output, or cannot score ``X`` (a feature
        width it does not take).
    ConfigError
        ``batch_size`` is not an int >= 1.
    """
    import onnxruntime as ort

    from alscale.config import check_int, check_path
    from alscale.model.contract import error_detail, inspect_model

    path = check_path("path", path, ModelError)
    batch_size = check_int("batch_size", batch_size, 1)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"Cannot load the ONNX model {path}: {exc}") from None
    contract = inspect_model(path, session=sess)  # the outputs select uses: probabilities or logits, and the embedding, by any of their names
    wanted = [contract.class_output] + ([contract.embedding_output] if contract.embedding_output else [])
    input_name = sess.get_inputs()[0].name
    X = np.asarray(X, dtype=np.float32)

    def run(rows: np.ndarray) -> list:
        try:
            return sess.run(wanted, {input_name: rows})
        except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own types: InvalidArgument, Fail, ...)
            raise ModelContractError(
                f"Model {str(path)!r} cannot score rows of {rows.shape[1]} features: {error_detail(exc, 300)}"
            ) from None

    outs = [run(X[i:i + batch_size]) for i in range(0, len(X), batch_size)] or [run(X[:0])]
    scores = np.concatenate([o[0] for o in outs]).astype(np.float64)
    if contract.output_kind == "logits":
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    emb = np.concatenate([o[1] for o in outs]) if len(wanted) > 1 else None
    return scores, emb
