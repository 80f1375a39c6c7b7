from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from alscale.exceptions import ConfigError, ModelContractError, PoolExhaustedError, WorkspaceError
from alscale.loop.evalset import SEED_STREAM
from alscale.loop.seedset import allocate, seed_by_hint, seed_kmeans, seed_random
from alscale.loop.train import check_model_classes, export_model, model_classes, predict_onnx, train_model
from alscale.rowrandom import id_keys, row_uniform


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    return d.data.astype(np.float32), d.target


@pytest.mark.parametrize("trainer", ["logistic", "mlp"])
def test_exported_model_matches_sklearn_on_scaled_features(tmp_path, digits, trainer):
    X, y = digits
    Xtr, ytr = X[:300], y[:300]
    est = train_model(Xtr, ytr, list(range(10)), trainer=trainer, seed=0, max_iter=200)
    path = export_model(est, tmp_path / "m.onnx")
    probs, emb = predict_onnx(path, X[300:400])
    assert model_classes(path) == list(range(10))
    # independent reference: fit the same estimator on standardised features with sklearn
    sc = StandardScaler().fit(Xtr.astype(np.float64))
    if trainer == "logistic":
        ref = LogisticRegression(C=1.0, max_iter=200, random_state=0).fit(sc.transform(Xtr), ytr)
        ref_p = ref.predict_proba(sc.transform(X[300:400]))
        np.testing.assert_allclose(probs, ref_p, atol=1e-4)
        np.testing.assert_allclose(emb, X[300:400], atol=1e-6)
    else:
        ref = MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=0, early_stopping=False)
        with warnings.catch_warnings():  # the same 200 iterations as train_model
            warnings.simplefilter("ignore", ConvergenceWarning)
            ref.fit(sc.transform(Xtr), ytr)
        Xs = sc.transform(X[300:400])
        np.testing.assert_allclose(probs, ref.predict_proba(Xs), atol=1e-4)
        # the embedding is the hidden layer, computed on standardised features
        np.testing.assert_allclose(emb, np.maximum(Xs @ ref.coefs_[0] + ref.intercepts_[0], 0), atol=5e-3)


def test_missing_class_gets_near_zero_probability(tmp_path, digits):
    X, y = digits
    keep = y < 5
    est = train_model(X[keep][:200], y[keep][:200], list(range(10)), trainer="logistic")
    probs, _ = predict_onnx(export_model(est, tmp_path / "m.onnx"), X[:50])
    assert probs.shape == (50, 10)
    assert probs[:, 5:].max() < 1e-6
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_bad_trainer_and_one_class(digits):
    X, y = digits
    with pytest.raises(ConfigError, match="trainer"):
        train_model(X[:10], y[:10], list(range(10)), trainer="svm")
    with pytest.raises(WorkspaceError, match="at least 2 classes"):
        train_model(X[:5], np.zeros(5, int), list(range(10)))


def test_model_classes_mismatch(tmp_path, digits):
    X, y = digits
    est = train_model(X[:100], y[:100], list(range(10)))
    path = export_model(est, tmp_path / "m.onnx")
    check_model_classes(model_classes(path), list(range(10)))
    with pytest.raises(ModelContractError, match="Expected the model"):
        check_model_classes(model_classes(path), ["cat", "dog"], ["cat"], path=path)


def test_seed_random_and_exhaustion():
    ids = np.arange(100, 200)
    a = seed_random(ids, 10, seed=1)
    b = seed_random(ids[::-1], 10, seed=1)
    # reference: the 10 ids with the smallest draws of the seed stream, ties broken on the key
    keys = id_keys(ids)
    expected = ids[np.lexsort((keys, row_uniform(keys, 1, SEED_STREAM)))[:10]]
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(b, expected)  # independent of the pool's order
    with pytest.raises(PoolExhaustedError, match="100 available / 101 requested"):
        seed_random(ids, 101)


def test_allocate_exact_and_capped():
    assert allocate(np.array([50, 30, 20]), 10).tolist() == [5, 3, 2]
    assert allocate(np.array([1, 100, 100]), 9, proportional=False).tolist() == [1, 4, 4]
    take = allocate(np.array([3, 3, 3]), 9, proportional=False)
    assert take.tolist() == [3, 3, 3]


def test_seed_kmeans_covers_small_clusters():
    rng = np.random.default_rng(0)
    # 3 clusters of size 900, 90, 10: a random 10 often misses the last; k-means strata cannot
    centers = np.array([[0, 0], [50, 0], [0, 50]])
    sizes = [900, 90, 10]
    X = np.concatenate([centers[i] + rng.normal(size=(s, 2)) for i, s in enumerate(sizes)])
    ids = np.arange(len(X))
    chosen = seed_kmeans(ids, X, 10, seed=0, n_clusters=3)
    groups = np.repeat([0, 1, 2], sizes)[chosen]
    assert len(chosen) == 10 and set(groups.tolist()) == {0, 1, 2}


def test_seed_by_hint_spreads():
    ids = np.arange(100)
    hints = ["a"] * 90 + ["b"] * 8 + ["c"] * 2
    chosen = seed_by_hint(ids, hints, 12, seed=3)
    got = np.array(hints)[chosen]
    assert sorted((v, int((got == v).sum())) for v in "abc") == [("a", 5), ("b", 5), ("c", 2)]


@pytest.mark.parametrize(("output", "class_name", "embedding_name"), [("probabilities", "probs", "penultimate"), ("logits", "logit", "hidden")])
def test_predict_onnx_finds_the_outputs_select_finds_under_their_other_names(tmp_path, output, class_name, embedding_name):
    import onnx

    from alscale.model.export import mlp_to_onnx
    from tests.conftest import mlp_weights

    w, b = mlp_weights(3)
    m = onnx.load_from_string(mlp_to_onnx(w, b, output=output))
    renames = {output: class_name, "embedding": embedding_name}
    for node in m.graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
    for out in m.graph.output:
        out.name = renames.get(out.name, out.name)
    path = tmp_path / "renamed.onnx"
    onnx.save(m, path)
    X = np.random.default_rng(0).normal(size=(20, w[0].shape[0])).astype(np.float32)
    probs, emb = predict_onnx(path, X)
    hidden = np.maximum(X @ w[0] + b[0], 0)  # independent reference: the same MLP in numpy
    logits = hidden @ w[1] + b[1]
    ref = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, ref / ref.sum(1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(emb, hidden, atol=1e-5)
