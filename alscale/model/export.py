"""Build ONNX classifiers with the outputs alscale understands.

scikit-learn's exporters (skl2onnx) give ``label`` and ``probabilities`` but no penultimate
embedding, which the diversity strategies need.  These builders write the same dense networks
directly with :mod:`onnx.helper`, adding an ``embedding`` output:

* :func:`mlp_to_onnx` - a ReLU/tanh/logistic MLP; the embedding is the last hidden layer.
* :func:`linear_to_onnx` - a (multinomial) linear model; the embedding is the input itself.
* :func:`sklearn_to_onnx` - either builder from a fitted ``MLPClassifier`` or
  ``LogisticRegression``.

Every model has one float32 input ``features`` of shape (n, d) and outputs ``probabilities``
(n, c) (or ``logits`` (n, c) with ``output="logits"``), ``label`` (n,) int64 class index and
``embedding`` (n, h).  The class names travel in the model metadata (``alscale.classes``, a
JSON list), so a manifest can name predicted classes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from alscale.exceptions import ModelError

__all__ = ["linear_to_onnx", "mlp_to_onnx", "sklearn_to_onnx"]

OPSET = 17
_ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "logistic": "Sigmoid", "identity": "Identity"}


def mlp_to_onnx(
    weights: Sequence[np.ndarray],
    biases: Sequence[np.ndarray],
    *,
    activation: str = "relu",
    classes: Sequence | None = None,
    output: str = "probabilities",
    embedding: bool = True,
) -> bytes:
    """Serialize a dense network as an ONNX model.

    Parameters
    ----------
    weights : sequence of ndarray
        Layer matrices, ``weights[i]`` of shape (d_i, d_{i+1}); the last maps to the classes.
    biases : sequence of ndarray
        Layer offsets, ``biases[i]`` of shape (d_{i+1},).
    activation : {"relu", "tanh", "logistic", "identity"}
        Hidden-layer activation.
    classes : sequence, optional
        Class names in output order; defaults to ``range(c)``.
    output : {"probabilities", "logits"}
        Whether the class output is softmax-normalised or raw.
    embedding : bool
        Add an ``embedding`` output: the last hidden layer (or the input for a linear model).

    Returns
    -------
    bytes
        The serialized ``onnx.ModelProto``.
    """
    if len(weights) != len(biases) or not weights:
        raise ModelError(f"Expected as many bias vectors as weight matrices (>= 1). Got {len(weights)} and {len(biases)}.")
    if activation not in _ACTIVATIONS:
        raise ModelError(f"Unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}.")
    if output not in ("probabilities", "logits"):
        raise ModelError(f"The 'output' parameter must be 'probabilities' or 'logits'. Got {output!r} instead.")
    n_in = int(np.asarray(weights[0]).shape[0])
    n_classes = int(np.asarray(weights[-1]).shape[1])
    classes = list(range(n_classes)) if classes is None else [_jsonable(c) for c in classes]
    if len(classes) != n_classes:
        raise ModelError(f"Expected {n_classes} class names for the output layer. Got {len(classes)}.")

    nodes, inits = [], []
    current = "features"
    for i, (w, b) in enumerate(zip(weights, biases)):
        w = np.asarray(w, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32).reshape(-1)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        nodes += [
            helper.make_node("MatMul", [current, f"W{i}"], [f"mm{i}"]),
            helper.make_node("Add", [f"mm{i}", f"B{i}"], [f"z{i}"]),
        ]
        last = i == len(weights) - 1
        if not last:
            nodes.append(helper.make_node(_ACTIVATIONS[activation], [f"z{i}"], [f"h{i}"]))
            current = f"h{i}"
        else:
            if embedding:
                nodes.append(helper.make_node("Identity", [current], ["embedding"]))
            emb_dim = int(w.shape[0])
            class_out = "logits" if output == "logits" else "probabilities"
            if output == "logits":
                nodes.append(helper.make_node("Identity", [f"z{i}"], ["logits"]))
            else:
                nodes.append(helper.make_node("Softmax", [f"z{i}"], ["probabilities"], axis=1))
            nodes.append(helper.make_node("ArgMax", [f"z{i}"], ["label"], axis=1, keepdims=0))

    outputs = [
        helper.make_tensor_value_info(class_out, TensorProto.FLOAT, ["n", n_classes]),
        helper.make_tensor_value_info("label", TensorProto.INT64, ["n"]),
    ]
    if embedding:
        outputs.append(helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", emb_dim]))
    graph = helper.make_graph(
        nodes,
        "alscale_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", n_in])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="alscale")
    model.ir_version = 8
    helper.set_model_props(model, {"alscale.classes": json.dumps(classes)})
    onnx.checker.check_model(model)
    return model.SerializeToString()


def linear_to_onnx(
    coef: np.ndarray,
    intercept: np.ndarray,
    *,
    classes: Sequence | None = None,
    output: str = "probabilities",
    embedding: bool = True,
) -> bytes:
    """Serialize a multinomial linear model; its embedding output is the input features.

    Parameters
    ----------
    coef : ndarray of shape (c, d)
        Class weights as in scikit-learn's ``coef_`` (a binary model's (1, d) is expanded).
    intercept : ndarray of shape (c,)
        Class offsets.
    """
    coef = np.asarray(coef, dtype=np.float32)
    intercept = np.asarray(intercept, dtype=np.float32).reshape(-1)
    if coef.shape[0] == 1:  # binary logistic regression: logit for class 1 only
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros(1, np.float32), intercept])
    return mlp_to_onnx([coef.T], [intercept], classes=classes, output=output, embedding=embedding)


def sklearn_to_onnx(estimator, *, output: str = "probabilities") -> bytes:
    """Export a fitted ``MLPClassifier`` or ``LogisticRegression`` with an embedding output."""
    name = type(estimator).__name__
    classes = list(getattr(estimator, "classes_", []))
    if name == "MLPClassifier":
        if estimator.out_activation_ == "logistic":  # binary: one sigmoid unit -> two softmax logits
            w_last, b_last = estimator.coefs_[-1], estimator.intercepts_[-1]
            weights = list(estimator.coefs_[:-1]) + [np.hstack([np.zeros_like(w_last), w_last])]
            biases = list(estimator.intercepts_[:-1]) + [np.concatenate([np.zeros_like(b_last), b_last])]
        else:
            weights, biases = estimator.coefs_, estimator.intercepts_
        return mlp_to_onnx(weights, biases, activation=estimator.activation, classes=classes, output=output)
    if name == "LogisticRegression":
        return linear_to_onnx(estimator.coef_, estimator.intercept_, classes=classes, output=output)
    raise ModelError(f"Expected a fitted MLPClassifier or LogisticRegression. Got {name}.")


def _jsonable(value):
    return value.item() if isinstance(value, np.generic) else value
