"""Query-by-committee scores against plain formulas, and the import structure of the pure cores."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from alscale.exceptions import StrategyError
from alscale.rowrandom import id_keys
from alscale.strategies import ScoringBatch, get_strategy
from alscale.strategies.committee import kl_to_consensus, vote_entropy


def _members(m=4, n=60, c=5, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(c) * 0.5, size=(m, n))
    p[0, 0] = np.eye(c)[1]  # zeros in a member
    return p.astype(np.float32)


def test_vote_entropy_matches_formula():
    p = _members()
    m, n, _ = p.shape
    got = vote_entropy(p)
    for i in range(n):
        votes = [int(np.argmax(p[j, i])) for j in range(m)]
        ent = -sum((votes.count(v) / m) * math.log(votes.count(v) / m) for v in set(votes))
        assert got[i] == pytest.approx(ent, abs=1e-6)


def test_kl_to_consensus_matches_formula():
    p = _members().astype(np.float64)
    m, n, c = p.shape
    got = kl_to_consensus(p)
    for i in range(n):
        mean = p[:, i].mean(0)
        kl = np.mean([sum(p[j, i, t] * math.log(p[j, i, t] / mean[t]) for t in range(c) if p[j, i, t] > 0) for j in range(m)])
        assert got[i] == pytest.approx(kl, rel=1e-5, abs=1e-7)
    same = np.repeat(p[:1], 3, axis=0)
    np.testing.assert_allclose(kl_to_consensus(same), 0.0, atol=1e-7)
    np.testing.assert_allclose(vote_entropy(same), 0.0)


def test_float32_committees_score_like_float64_ones():
    """Members' float32 outputs are scored in float32: within float32 rounding of float64."""
    p = _members(m=3, n=500, c=10, seed=4)
    np.testing.assert_allclose(kl_to_consensus(p), kl_to_consensus(p.astype(np.float64)), atol=2e-6)
    np.testing.assert_array_equal(vote_entropy(p), vote_entropy(p.astype(np.float64)))
    assert kl_to_consensus(p).dtype == vote_entropy(p).dtype == np.float32


@pytest.mark.parametrize("name", ["qbc-vote", "qbc-kl"])
def test_registered_scorers_need_a_committee(name):
    strategy = get_strategy(name)
    assert strategy.kind == "topk" and strategy.needs_committee
    p = _members()
    batch = ScoringBatch(p.mean(0), id_keys(np.arange(p.shape[1])), 0, member_probs=p)
    expected = vote_entropy(p) if name == "qbc-vote" else kl_to_consensus(p)
    np.testing.assert_array_equal(strategy.score(batch), expected)
    # scores are per row, so any split into batches gives the same scores
    halves = [strategy.score(ScoringBatch(p[:, s].mean(0), batch.keys[s], 0, member_probs=p[:, s])) for s in (slice(0, 25), slice(25, None))]
    np.testing.assert_array_equal(np.concatenate(halves), expected)
    with pytest.raises(StrategyError, match="committee"):
        strategy.score(ScoringBatch(p[0], batch.keys, 0))


def test_importing_pure_cores_leaves_ray_out():
    code = "import sys, alscale.strategies, alscale.reduce, alscale.reduce.kcenter, alscale.reduce.cluster_margin; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_members_that_nearly_agree_keep_their_order_in_float32():
    """Divergences of 1e-7 survive float32: ranked as the exact float64 sum ranks them."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1, 4000, 10)) + 1e-3 * rng.normal(size=(5, 4000, 10))
    p = np.exp(z - z.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).astype(np.float32)
    q64 = p.astype(np.float64)
    exact = (q64 * np.log(q64 / q64.mean(0))).sum(-1).mean(0)
    got = kl_to_consensus(p)
    np.testing.assert_allclose(got, exact, rtol=1e-3)
    top = lambda s: set(np.argsort(-s)[:200].tolist())  # noqa: E731
    assert len(top(got) & top(exact)) >= 195


def test_zero_probabilities_add_nothing():
    p = np.array([[[0.0, 0.5, 0.5]], [[0.0, 1.0, 0.0]]], np.float32)  # class 0: no member; class 2: one member
    expected = np.mean([0.5 * np.log(0.5 / 0.75) + 0.5 * np.log(0.5 / 0.25), 1.0 * np.log(1.0 / 0.75)])
    np.testing.assert_allclose(kl_to_consensus(p), [expected], rtol=1e-6)
