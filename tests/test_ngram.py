"""Modified Kneser-Ney, unigram cache and EM interpolation against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from neurorec.analysis.ngram import (
    KneserNey,
    cache_distribution,
    cache_token_prob,
    fit_interpolation,
    kn_discounts,
    perplexity,
)

A, B, C, E = 0, 1, 2, 3  # E (<eos>) is the start token
TOY = np.array([A, B, A, B, A, C])
TOY_D = np.array([[0.5, 0.8, 1.0], [0.4, 0.9, 1.2]])


def test_discounts_from_counts_of_counts():
    # n1=4, n2=2, n3=1, n4=1 -> Y=0.5, D1=1-2*.5*2/4, D2=2-3*.5*1/2, D3+=3-4*.5*1/1
    d = kn_discounts(np.array([1, 1, 1, 1, 2, 2, 3, 4, 0]))
    np.testing.assert_allclose(d, [0.5, 1.25, 1.0])
    with pytest.raises(ValueError, match="counts-of-counts"):
        kn_discounts(np.array([1, 2, 3]))


def test_toy_bigram_matches_hand_computation():
    kn = KneserNey(2, 4, discounts=TOY_D).fit(TOY, start_id=E)
    # continuation counts: a<-{e,b}=2, b<-{a}=1, c<-{a}=1, e=0; total 4, gamma=.5*2+.8*1=1.8
    p1 = np.array([(2 - .8 + 1.8 / 4) / 4, (1 - .5 + 1.8 / 4) / 4, (1 - .5 + 1.8 / 4) / 4,
                   (1.8 / 4) / 4])
    np.testing.assert_allclose(kn.distribution(np.array([], np.int64)), p1, rtol=1e-12)
    # context a: c(ab)=2, c(ac)=1, total 3, gamma = .9*1 + .4*1 = 1.3
    pa = np.array([1.3 * p1[A], 2 - .9 + 1.3 * p1[B], 1 - .4 + 1.3 * p1[C], 1.3 * p1[E]]) / 3
    np.testing.assert_allclose(kn.distribution(np.array([A])), pa, rtol=1e-12)
    np.testing.assert_allclose(pa, [0.17875, 0.4695833333333333, 0.3029166666666667, 0.04875])
    # context c never precedes anything: back off to the unigram unchanged
    np.testing.assert_allclose(kn.distribution(np.array([C])), p1, rtol=1e-12)
    # scoring the training stream: e->a, a->b, b->a, a->b, b->a, a->c
    pb = np.array([0, 0, 0, 0.0])
    pb[A] = (2 - .9 + .9 * p1[A]) / 2  # context b: c(ba)=2 (D2), gamma = .9
    got = kn.token_prob(TOY, start_id=E)
    pe_a = (1 - .4 + .4 * p1[A]) / 1  # context e: c(ea)=1, gamma = .4
    np.testing.assert_allclose(got, [pe_a, pa[B], pb[A], pa[B], pb[A], pa[C]], rtol=1e-12)


@pytest.fixture(scope="module")
def zipf_model():
    rng = np.random.default_rng(0)
    V = 300
    p = 1 / np.arange(1, V + 1)
    tokens = rng.choice(V, size=20000, p=p / p.sum())
    # some structure: after token 1 often comes token 2
    tokens[1:][tokens[:-1] == 1] = np.where(rng.random((tokens[:-1] == 1).sum()) < .6, 2,
                                            tokens[1:][tokens[:-1] == 1])
    d = np.array([[0.6, 1.1, 1.4], [0.7, 1.2, 1.5], [0.8, 1.3, 1.6]])
    return KneserNey(3, V, discounts=d).fit(tokens, start_id=0), tokens, V


@pytest.mark.parametrize("context", [[], [1], [5, 1], [3, 9, 1], [7, 7, 7], [299, 298, 297, 296]])
def test_distribution_sums_to_one(zipf_model, context):
    kn, _, V = zipf_model
    p = kn.distribution(np.array(context, np.int64))
    assert p.shape == (V,) and np.all(p > 0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)


def test_token_prob_agrees_with_distribution(zipf_model):
    kn, tokens, _ = zipf_model
    test = tokens[:300][::-1].copy()
    got = kn.token_prob(test, start_id=0)
    padded = np.concatenate([[0, 0, 0], test])
    for t in (0, 1, 2, 3, 50, 299):
        ctx = padded[t + 1:t + 3]
        assert got[t] == pytest.approx(kn.distribution(ctx)[test[t]], rel=1e-12)
    assert perplexity(kn.token_prob(tokens[:500], 0)) < perplexity(np.full(500, 1 / 300))


def test_cache_is_a_distribution():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 30, size=400)
    p = cache_token_prob(tokens, 30, window=50, alpha=2.0)
    for t in (0, 1, 49, 50, 51, 399):
        dist = cache_distribution(tokens[:t], 30, window=50, alpha=2.0)
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        assert p[t] == pytest.approx(dist[tokens[t]], rel=1e-12)
    # hand value: window holds 3 tokens [4, 4, 7], alpha=2, V=30 -> p(4) = (2 + 2/30) / 5
    assert cache_token_prob(np.array([4, 4, 7, 4]), 30, 50, 2.0)[3] == pytest.approx(
        (2 + 2 / 30) / 5)


def test_em_weights_maximise_likelihood():
    rng = np.random.default_rng(2)
    probs = rng.uniform(0.01, 1, size=(2, 500))
    lam = fit_interpolation(probs)
    res = minimize_scalar(lambda a: -np.log(a * probs[0] + (1 - a) * probs[1]).mean(),
                          bounds=(0, 1), method="bounded", options={"xatol": 1e-10})
    assert lam.sum() == pytest.approx(1.0)
    assert lam[0] == pytest.approx(res.x, abs=1e-3)
    mix_ll = np.log(lam @ probs).mean()
    assert mix_ll >= -res.fun - 1e-9
