"""Baselines a run is measured against, fitted on its training text: a unigram model, an
interpolated Kneser-Ney n-gram model (scores), and a naive Bayes n-gram classifier (styles).

Kneser-Ney: discounts D = n1 / (n1 + 2 n2) per order, interpolated down to a uniform
distribution. Word-level ids are counted as text with one private code point per token
(``as_text``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np


def as_text(ids, vocab) -> str:
    """Ids as a string the n-gram baseline can count: the characters themselves, or one
    private code point per word token (U+10000 + id)."""
    if vocab.level == "char":
        chars = vocab.tokens
        return "".join(chars[i] for i in ids)
    return "".join(map(chr, np.asarray(ids, np.int64) + 0x10000))


def unigram_loss(train: np.ndarray, test: np.ndarray, vocab_size: int) -> float:
    counts = np.bincount(np.asarray(train, np.int64), minlength=vocab_size).astype(np.float64)
    probs = (counts + 1) / (counts.sum() + vocab_size)
    return float(-np.log(probs[np.asarray(test, np.int64)]).mean())


class KneserNey:
    """Interpolated Kneser-Ney over characters (strings of ids as text)."""

    def __init__(self, text: str, order: int = 6, vocab_size: int | None = None):
        self.order = order
        self.vocab_size = vocab_size or len(set(text))
        # counts[order]: raw n-gram counts. counts[k], k < order: continuation counts, the
        # number of distinct characters seen before each k-gram (from the distinct k+1-grams).
        self.counts: list[dict[str, int]] = [dict() for _ in range(order + 1)]
        self.counts[order] = dict(Counter(text[i : i + order]
                                          for i in range(len(text) - order + 1)))
        for k in range(order - 1, 0, -1):
            cont: Counter = Counter()
            for g in self.counts[k + 1]:
                cont[g[1:]] += 1
            self.counts[k] = dict(cont)
        self.totals: list[dict[str, int]] = [dict() for _ in range(order + 1)]
        self.follow: list[dict[str, int]] = [dict() for _ in range(order + 1)]
        self.discount = [0.0] * (order + 1)
        for k in range(1, order + 1):
            totals: defaultdict = defaultdict(int)
            follow: defaultdict = defaultdict(int)
            n1 = n2 = 0
            for g, c in self.counts[k].items():
                totals[g[:-1]] += c
                follow[g[:-1]] += 1
                n1 += c == 1
                n2 += c == 2
            self.totals[k], self.follow[k] = dict(totals), dict(follow)
            self.discount[k] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.75

    def prob(self, context: str, ch: str) -> float:
        p = 1.0 / self.vocab_size
        for k in range(1, self.order + 1):
            h = context[len(context) - (k - 1):] if k > 1 else ""
            if len(h) < k - 1:
                break
            total = self.totals[k].get(h, 0)
            if total == 0:
                continue  # unseen context: keep the lower order's estimate
            d = self.discount[k]
            c = self.counts[k].get(h + ch, 0)
            p = (max(c - d, 0.0) + d * self.follow[k][h] * p) / total
        return p

    def loss(self, text: str, context: str = "") -> float:
        """Mean cross-entropy (nats/char) of ``text``; ``context`` precedes it."""
        full = context[-(self.order - 1):] + text if self.order > 1 else text
        offset = len(full) - len(text)
        total = 0.0
        for i in range(offset, len(full)):
            total -= math.log(self.prob(full[max(0, i - self.order + 1) : i], full[i]))
        return total / len(text)


class NaiveBayes:
    """Multinomial naive Bayes over character n-grams (add-one smoothing, uniform prior)."""

    def __init__(self, texts: dict[str, str], order: int = 3):
        self.order = order
        self.counts = {name: Counter(self.grams(t)) for name, t in texts.items()}
        self.totals = {name: sum(c.values()) for name, c in self.counts.items()}
        self.space = len(set().union(*self.counts.values())) + 1  # seen n-grams + "unseen"

    def grams(self, text: str) -> list[str]:
        n = self.order
        return [text[i : i + n] for i in range(len(text) - n + 1)]

    def logliks(self, text: str) -> dict[str, float]:
        grams = Counter(self.grams(text))
        return {name: sum(k * math.log((counts.get(g, 0) + 1) / (self.totals[name] + self.space))
                          for g, k in grams.items())
                for name, counts in self.counts.items()}

    def predict(self, text: str) -> str:
        scores = self.logliks(text)
        return max(scores, key=scores.get)
