"""Count-based language-model baselines: modified Kneser-Ney n-grams, a unigram cache, and
linear interpolation of per-token probabilities with weights fitted by EM.

Modified Kneser-Ney (Chen & Goodman 1998, interpolated, three discounts per order):

    p_k(w | h) = max(c_k(h w) − D_k(c_k(h w)), 0) / c_k(h·)  +  γ_k(h) p_{k−1}(w | h')
    γ_k(h)     = (D_k1 N1(h·) + D_k2 N2(h·) + D_k3+ N3+(h·)) / c_k(h·)
    p_0(w)     = 1 / V

``c_n`` are raw counts at the highest order and ``c_k`` (k < n) continuation counts, the
number of distinct words seen before ``h w``; ``h'`` drops the oldest word of ``h``; a context
never seen at order k (``c_k(h·) = 0``) passes ``p_{k−1}`` through. Discounts from the
counts-of-counts ``n_r`` of each order: ``Y = n1 / (n1 + 2 n2)``, ``D1 = 1 − 2Y n2/n1``,
``D2 = 2 − 3Y n3/n2``, ``D3+ = 3 − 4Y n4/n3``.

The corpus is one token stream (sentences joined by ``<eos>``, contexts crossing sentence
ends, as the recurrent models read it) preceded by one ``<eos>``. Every k-gram gets an integer
id through ``key = id(prefix (k−1)-gram) · V + word``, so counting and scoring are numpy
``unique`` / ``searchsorted`` passes (PTB: fit ~10 s, score the test set in ~1 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class _Order:
    keys: np.ndarray      # (n_k,) sorted keys of the k-grams seen: prefix_id * V + word
    count: np.ndarray     # (n_k,) raw (k = n) or continuation counts
    ctx_total: np.ndarray  # (n_{k-1},) c_k(h·) per context id (order k-1 id)
    ctx_gamma: np.ndarray  # (n_{k-1},) D1 N1 + D2 N2 + D3 N3+ per context
    discounts: np.ndarray  # (3,) D1, D2, D3+


def kn_discounts(counts: np.ndarray) -> np.ndarray:
    """Chen & Goodman's modified-KN discounts (D1, D2, D3+) from one order's counts."""
    n = np.array([np.sum(counts == r) for r in (1, 2, 3, 4)], dtype=float)
    if np.any(n == 0):
        raise ValueError(f"counts-of-counts n1..n4 = {n.astype(int).tolist()}: a zero makes "
                         "the discounts undefined (corpus too small; pass discounts=)")
    y = n[0] / (n[0] + 2 * n[1])
    return np.array([1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1],
                     3 - 4 * y * n[3] / n[2]])


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in ``sorted_keys``, −1 where absent (negative keys are absent)."""
    pos = np.searchsorted(sorted_keys, keys)
    pos = np.minimum(pos, len(sorted_keys) - 1)
    found = (keys >= 0) & (sorted_keys[pos] == keys)
    return np.where(found, pos, -1)


class KneserNey:
    """Interpolated modified Kneser-Ney n-gram model.

    Args:
        order: n (5 for KN5).
        vocab_size: V; token ids are in ``0..V-1``.
        discounts: optional (order, 3) array of (D1, D2, D3+) for orders 1..n, replacing the
            counts-of-counts estimates (for tiny corpora and hand-checked tests).
    """

    def __init__(self, order: int, vocab_size: int, discounts: np.ndarray | None = None):
        if order < 1:
            raise ValueError("order must be >= 1")
        self.order = order
        self.vocab_size = vocab_size
        self.discounts = None if discounts is None else np.asarray(discounts, float)

    def fit(self, tokens: np.ndarray, start_id: int) -> KneserNey:
        """Count the k-grams of ``[start_id] + tokens``.

        Args:
            tokens: int token ids, shape (n,).
            start_id: the token assumed before the first one (``<eos>``).
        """
        V = self.vocab_size
        s = np.concatenate([[start_id], np.asarray(tokens, np.int64)])
        L = len(s)
        # ids[k][i]: id (in order k's sorted unique list) of the k-gram ending at position i
        ids: list[np.ndarray] = [np.zeros(L, np.int64)]  # order 0: the empty gram, id 0
        uniq: list[np.ndarray] = [np.zeros(1, np.int64)]
        raw: list[np.ndarray] = [np.array([L])]
        for k in range(1, self.order + 1):
            key = np.full(L, -1, np.int64)
            key[k - 1:] = ids[k - 1][k - 2:L - 1] * V + s[k - 1:] if k > 1 else s
            u, inv, cnt = np.unique(key[k - 1:], return_inverse=True, return_counts=True)
            idk = np.full(L, -1, np.int64)
            idk[k - 1:] = inv
            ids.append(idk)
            uniq.append(u)
            raw.append(cnt)
        self.orders_: list[_Order] = []
        for k in range(1, self.order + 1):
            if k == self.order:
                count = raw[k].astype(float)
            else:  # continuation count: distinct (k+1)-grams whose suffix is this k-gram
                first = np.full(len(uniq[k + 1]), -1, np.int64)
                pos = np.arange(k, L)  # (k+1)-grams end at positions >= k
                first[ids[k + 1][pos]] = ids[k][pos]  # any occurrence gives the suffix id
                count = np.bincount(first, minlength=len(uniq[k])).astype(float)
            ctx = uniq[k] // V if k > 1 else np.zeros(len(uniq[k]), np.int64)
            n_ctx = len(uniq[k - 1])
            if self.discounts is not None:
                D = self.discounts[k - 1]
            else:
                D = kn_discounts(count)
            total = np.bincount(ctx, weights=count, minlength=n_ctx)
            bucket = np.clip(count, 0, 3).astype(int)  # 0 (absent), 1, 2, 3+
            dvec = np.array([0.0, *D])
            gamma = np.bincount(ctx, weights=dvec[bucket], minlength=n_ctx)
            self.orders_.append(_Order(uniq[k], count, total, gamma, D))
        return self

    # ------------------------------------------------------------------ scoring
    def _context_ids(self, ctx_tokens: np.ndarray) -> list[np.ndarray]:
        """For windows of the last (n−1) tokens, shape (m, n−1) oldest first, the id of the
        context of every order k = 2..n (as an order k−1 gram), −1 where unseen."""
        V = self.vocab_size
        m = ctx_tokens.shape[0]
        out = []
        for j in range(1, self.order):  # the last j tokens, looked up oldest word first
            if j > ctx_tokens.shape[1]:  # a shorter history: no context of this length
                out.append(np.full(m, -1, np.int64))
                continue
            words = ctx_tokens[:, ctx_tokens.shape[1] - j:]
            prev = np.zeros(m, np.int64)
            for i in range(j):
                key = words[:, 0] if i == 0 else np.where(prev >= 0, prev * V + words[:, i], -1)
                prev = _lookup(self.orders_[i].keys, key)
            out.append(prev)
        return out

    def _prob(self, ctx_ids: list[np.ndarray], words: np.ndarray) -> np.ndarray:
        """p(word | context) given the per-order context ids of :meth:`_context_ids`."""
        V = self.vocab_size
        p = np.full(len(words), 1.0 / V)
        for k in range(1, self.order + 1):
            o = self.orders_[k - 1]
            if k == 1:
                c_id = np.zeros(len(words), np.int64)
                key = words
            else:
                c_id = ctx_ids[k - 2]
                key = np.where(c_id >= 0, c_id * V + words, -1)
            seen = c_id >= 0
            safe = np.where(seen, c_id, 0)
            total = np.where(seen, o.ctx_total[safe], 0.0)
            seen &= total > 0
            g = _lookup(o.keys, key)
            c = np.where(g >= 0, o.count[np.maximum(g, 0)], 0.0)
            d = np.array([0.0, *o.discounts])[np.clip(c, 0, 3).astype(int)]
            with np.errstate(divide="ignore", invalid="ignore"):
                new = (np.maximum(c - d, 0) + o.ctx_gamma[safe] * p) / total
            p = np.where(seen, new, p)
        return p

    def token_prob(self, tokens: np.ndarray, start_id: int) -> np.ndarray:
        """p(token_t | the n−1 tokens before it) for every token of ``[start_id] + tokens``
        after the first (positions before the start are padded with ``start_id``).

        Returns:
            float64 array, shape (len(tokens),).
        """
        s = np.concatenate([np.full(self.order - 1, start_id), [start_id],
                            np.asarray(tokens, np.int64)])
        n = len(tokens)
        # window of the n-1 tokens before token t (stream index order-1+1+t)
        idx = np.arange(n)[:, None] + np.arange(1, self.order)[None, :]
        ctx = s[idx] if self.order > 1 else np.zeros((n, 0), np.int64)
        return self._prob(self._context_ids(ctx), s[self.order:])

    def distribution(self, context: np.ndarray) -> np.ndarray:
        """p(w | context) for every word w (shape (V,)); ``context`` oldest first, any length
        (only the last n−1 tokens matter)."""
        V = self.vocab_size
        ctx = np.asarray(context, np.int64)[max(0, len(context) - (self.order - 1)):] \
            if self.order > 1 else np.zeros(0, np.int64)
        ctx_ids = self._context_ids(np.tile(ctx, (V, 1)))
        return self._prob(ctx_ids, np.arange(V))


def cache_token_prob(tokens: np.ndarray, vocab_size: int, window: int = 500,
                     alpha: float = 1.0) -> np.ndarray:
    """Unigram cache (Kuhn & De Mori 1990): p(w_t) from the last ``window`` tokens.

    ``p(w | history) = (c_window(w) + alpha / V) / (n_window + alpha)``, with ``c_window`` the
    count of ``w`` among the (up to) ``window`` tokens before t: a proper distribution over the
    vocabulary at every t (uniform before the first token).

    Returns:
        float64 array, shape (len(tokens),).
    """
    tokens = np.asarray(tokens, np.int64)
    counts = np.zeros(vocab_size)
    out = np.empty(len(tokens))
    for t, w in enumerate(tokens):
        n = min(t, window)
        out[t] = (counts[w] + alpha / vocab_size) / (n + alpha)
        counts[w] += 1
        if t >= window:
            counts[tokens[t - window]] -= 1
    return out


def cache_distribution(history: np.ndarray, vocab_size: int, window: int = 500,
                       alpha: float = 1.0) -> np.ndarray:
    """The cache's full distribution (V,) after reading ``history`` (for checks)."""
    h = np.asarray(history, np.int64)[-window:] if len(history) else np.zeros(0, np.int64)
    return (np.bincount(h, minlength=vocab_size) + alpha / vocab_size) / (len(h) + alpha)


def fit_interpolation(probs: np.ndarray, n_iter: int = 500, tol: float = 1e-10) -> np.ndarray:
    """Mixture weights λ (sum 1) maximising Σ_t log Σ_m λ_m p_m(t), by EM.

    Args:
        probs: (n_models, n_tokens) each model's probability of the observed token.

    Returns:
        (n_models,) weights.
    """
    probs = np.asarray(probs, float)
    lam = np.full(probs.shape[0], 1.0 / probs.shape[0])
    prev = -np.inf
    for _ in range(n_iter):
        mix = lam[:, None] * probs
        tot = mix.sum(0)
        ll = np.log(tot).mean()
        lam = (mix / tot).mean(1)
        if ll - prev < tol:
            break
        prev = ll
    return lam


def perplexity(probs: np.ndarray) -> float:
    """exp(−mean log p) of per-token probabilities."""
    return float(np.exp(-np.mean(np.log(probs))))
