"""The model contract: detection, skl2onnx outputs, ZipMap refusal, probability checks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from alscale.exceptions import ModelContractError, ModelError
from alscale.model import ModelRunner, inspect_model
from alscale.model.export import sklearn_to_onnx


def _skl(tmp_path, zipmap: bool):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    y = np.array(["cat", "dog", "eel"])[np.arange(60) % 3]
    clf = LogisticRegression(max_iter=300).fit(X, y)
    onx = to_onnx(clf, X[:1], options={id(clf): {"zipmap": zipmap}}, target_opset=17)
    path = tmp_path / f"skl-{zipmap}.onnx"
    path.write_bytes(onx.SerializeToString())
    return path, clf, X


def test_skl2onnx_label_and_probabilities(tmp_path):
    path, clf, X = _skl(tmp_path, zipmap=False)
    c = inspect_model(path)
    assert c.class_output == "probabilities" and c.output_kind == "probabilities"
    assert c.classes == ("cat", "dog", "eel") and c.input_width == 5 and c.embedding_output is None
    probs = ModelRunner([c])(X).probs
    np.testing.assert_allclose(probs, clf.predict_proba(X), atol=1e-5)


def test_zipmap_is_refused_with_the_fix(tmp_path):
    path, _, _ = _skl(tmp_path, zipmap=True)
    with pytest.raises(ModelContractError, match="zipmap"):
        inspect_model(path)


@pytest.mark.parametrize("value", ["cat,dog,eel", "3", '{"cat": 0}', '["cat", "cat", "eel"]', '[["cat"], "dog", "eel"]'])
def test_class_metadata_that_is_not_a_list_of_names_is_refused(tmp_path, value):
    """``alscale.classes`` set by hand: inspect-model and the loop's class check say what it must be."""
    from alscale.loop.train import model_classes

    path, _, _ = _skl(tmp_path, zipmap=False)
    model = onnx.load(str(path))
    helper.set_model_props(model, {"alscale.classes": value})
    onnx.save(model, str(path))
    for read in (inspect_model, model_classes):
        with pytest.raises(ModelContractError, match=r"'alscale.classes' metadata .* JSON list of distinct class names"):
            read(path)


def test_class_metadata_names_the_classes(tmp_path):
    from alscale.loop.train import model_classes

    path, _, _ = _skl(tmp_path, zipmap=False)
    model = onnx.load(str(path))
    helper.set_model_props(model, {"alscale.classes": '["ant", "bee", 3]'})
    onnx.save(model, str(path))
    assert inspect_model(path).classes == ("ant", "bee", "3") and model_classes(path) == ["ant", "bee", 3]


def test_an_embedding_output_that_is_not_a_float_matrix_is_refused(tmp_path):
    path, _, _ = _skl(tmp_path, zipmap=False)
    # skl2onnx's 'label' is a vector (n,) of class names, not an (n, d) embedding
    with pytest.raises(ModelContractError, match=r"Output 'label' must be a float tensor \(n, d\).*tensor\(string\)"):
        inspect_model(path, embedding_output="label")


def test_logits_are_softmaxed(model_factory):
    probs_model, logits_model = model_factory(1), model_factory(1, output="logits")
    c = inspect_model(logits_model)
    assert c.output_kind == "logits" and c.embedding_output == "embedding"
    X = np.random.default_rng(1).normal(size=(50, 8)).astype(np.float32)
    a = ModelRunner([c])(X).probs
    b = ModelRunner([inspect_model(probs_model)])(X).probs
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_sklearn_mlp_export_has_embedding(tmp_path):
    from sklearn.neural_network import MLPClassifier

    X = np.random.default_rng(0).normal(size=(80, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    clf = MLPClassifier((5,), max_iter=2000, random_state=0).fit(X, y)
    (tmp_path / "m.onnx").write_bytes(sklearn_to_onnx(clf))
    c = inspect_model(tmp_path / "m.onnx")
    out = ModelRunner([c], want_embeddings=True)(X)
    np.testing.assert_allclose(out.probs, clf.predict_proba(X), atol=1e-5)
    hidden = np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0)
    np.testing.assert_allclose(out.embeddings, hidden, atol=1e-5)


def _raw_model(tmp_path, name, output_name, nodes, inits=()):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["n", 3])],
        initializer=list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_outputs_that_are_not_probabilities(tmp_path):
    relu = _raw_model(tmp_path, "relu.onnx", "probabilities", [helper.make_node("Relu", ["features"], ["probabilities"])])
    with pytest.raises(ModelContractError, match="sum to"):  # caught at load time by the probe
        inspect_model(relu)
    third = onnx.numpy_helper.from_array(np.full(3, 1 / 3, np.float32), "third")
    shifted = _raw_model(tmp_path, "shift.onnx", "probabilities", [helper.make_node("Add", ["features", "third"], ["probabilities"])], [third])
    c = inspect_model(shifted)  # a distribution on the zeros probe ...
    with pytest.raises(ModelContractError, match="sum to"):  # ... but not on real rows
        ModelRunner([c])(np.full((4, 3), 0.1, np.float32))
    with pytest.raises(ModelContractError, match="not a probability"):
        ModelRunner([c])(np.full((4, 3), 5.0, np.float32))
    nothing = _raw_model(tmp_path, "none.onnx", "out", [helper.make_node("Relu", ["features"], ["out"])])
    with pytest.raises(ModelContractError, match="no class probability.*a name holding 'logit' is read as logits"):
        inspect_model(nothing)


def test_logits_under_another_name_are_told_how_to_be_read_as_logits(tmp_path):
    """A PyTorch export's ``output``: named with --probs-output it is taken as probabilities, and refused with the way out."""
    bias = onnx.numpy_helper.from_array(np.array([0.0, 0.0, 0.0], np.float32), "bias")
    logits = _raw_model(tmp_path, "output.onnx", "output", [helper.make_node("Add", ["features", "bias"], ["output"])], [bias])
    with pytest.raises(ModelContractError, match=r"Output 'output' rows sum to 0\.\.0; expected 1 within 0\.001\. If it holds logits "
                                                 r"\(no softmax applied\), export the output with a name holding 'logit'"):
        inspect_model(logits, probs_output="output")


def test_a_model_with_a_fixed_batch_of_one_says_so(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["features"], ["probabilities"], axis=1)], "g",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "one.onnx")
    with pytest.raises(ModelError) as err:
        inspect_model(tmp_path / "one.onnx")
    message = str(err.value)
    assert "\n" not in message and "Got: 2 Expected: 1" in message  # onnxruntime's detail, past its first line
    assert "takes exactly 1 row(s) at a time: export it with a dynamic batch dimension" in message


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        inspect_model(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    with pytest.raises(ModelError, match="Cannot load"):
        inspect_model(tmp_path / "junk.onnx")


def test_every_row_of_every_batch_is_checked(tmp_path):
    # rows 0..1999 are fine; one row far from the sampled ones is not: the batch check still sees it
    third = onnx.numpy_helper.from_array(np.full(3, 1 / 3, np.float32), "third")
    shifted = _raw_model(tmp_path, "shift.onnx", "probabilities", [helper.make_node("Add", ["features", "third"], ["probabilities"])], [third])
    runner = ModelRunner([inspect_model(shifted)])
    X = np.zeros((2000, 3), np.float32)
    assert runner(X).probs.shape == (2000, 3)
    for bad, message in ((np.nan, r"from model '.*shift\.onnx'\. Got NaN or inf in output 'probabilities' for 1 of 2000 rows of the first batch "
                                  r"where one was found \(row 1001 of the batch\)"), (2.0, "not a probability")):
        Y = X.copy()
        Y[1001, 1] = bad
        with pytest.raises(ModelContractError, match=message):
            runner(Y)


def _softmax_with_embedding(path, op: str):
    """A 3-feature model: probabilities = softmax(features), embedding = op(features); saved at ``path``."""
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["features"], ["probabilities"], axis=1), helper.make_node(op, ["features"], ["embedding"])],
        "g",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["n", 3]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_nan_in_the_embedding_output_is_refused(tmp_path):
    """Probabilities fine, embeddings NaN on some rows (sqrt of a negative): core-set picked the same rows again."""
    contract = inspect_model(_softmax_with_embedding(tmp_path / "m.onnx", "Sqrt"), embedding_output="embedding")
    runner = ModelRunner([contract], want_embeddings=True)
    X = np.abs(np.random.default_rng(0).normal(size=(500, 3))).astype(np.float32)
    np.testing.assert_allclose(runner(X).embeddings, np.sqrt(X), rtol=1e-6)
    X[[7, 300], 2] = -1.0
    with pytest.raises(ModelContractError, match=r"finite values in the embedding output 'embedding' .* Got NaN or inf in 2 of 500 rows"):
        runner(X)
    assert ModelRunner([contract])(X).embeddings is None  # not asked for (top-K strategies): not checked



def test_embedding_rows_too_large_for_float32_distances_are_refused(tmp_path):
    """Finite hidden units of ~1e20: squared distances overflowed, core-set picked one row k times with NaN
    scores, BADGE found one candidate, and Cluster-Margin's FAISS k-means aborted the process."""
    runner = ModelRunner([inspect_model(_softmax_with_embedding(tmp_path / "m.onnx", "Identity"), embedding_output="embedding")],
                         want_embeddings=True)
    limit = float(np.finfo(np.float32).max) / 16
    # each row's squared norm just within the limit, the batch's sum of squares far above it: accepted
    fits = np.full((10, 3), np.sqrt(limit / 3) * 0.999, np.float32)
    assert np.einsum("ij,ij->i", fits.astype(np.float64), fits.astype(np.float64)).max() <= limit
    runner._check_embeddings(fits)
    X = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    runner(X)
    X[[4, 9], 0] = 1e20  # finite; softmax still gives finite probabilities
    ids = np.arange(1000, 1500)
    with pytest.raises(ModelContractError, match=r"^Expected rows of the embedding output 'embedding' of model '.*m\.onnx' whose squared "
                                                 r"norm is at most 2\.1e\+37, .* Got 2 of 500 rows of a batch above it \(e\.g\. id 1004: 1e\+40\)\.$"):
        runner(X, ids)


def test_a_contract_error_names_the_model_file(tmp_path):
    """In a committee (a folder of models) "Output 'output_probability' is a ZipMap" did not say which file."""
    path, _, _ = _skl(tmp_path, zipmap=True)
    with pytest.raises(ModelContractError) as err:
        inspect_model(path)
    assert str(err.value).startswith(f"Model {str(path)!r}: Output 'output_probability' is a ZipMap"), err.value
    with pytest.raises(ModelContractError) as err:  # named once, in front
        inspect_model(_skl(tmp_path, zipmap=False)[0], probs_output="nope")
    assert str(err.value).count(str(tmp_path)) == 1
