"""Which style wrote a passage: the style under which a style-conditioned run finds it likeliest.

``classify_text`` scores a passage under every style of a run in one batch (row ``s`` is fed
style ``s``) and picks the highest log-likelihood; the first token is context only, so every
style is scored on the same tokens. ``classification_accuracy`` does this for held-out passages
of each style (cut from each style's validation tail, never seen in training) and reports the
accuracy beside a character n-gram naive Bayes baseline fitted on each style's training text.
NumPy only, like sampling.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .errors import RunError
from .baselines import NaiveBayes
from .score import row_logliks


def classify_text(gen, text: str) -> dict:
    """{"style": best, "logliks": {style: nats}, "tokens": scored tokens} for one passage."""
    styles = gen.styles
    if not styles:
        raise RunError(f"{gen.run.path}: this run was trained without styles; train one on "
                       "two or more styles to classify",
                       cli_hint="textgen train --style NAME=CORPUS --style NAME=CORPUS")
    ids = gen.check_prime(text)
    if len(ids) < 2:
        raise RunError("the passage is too short to classify; give at least two tokens")
    logliks = row_logliks(gen.network, np.tile(ids, (len(styles), 1)), np.arange(len(styles)))
    best = int(np.argmax(logliks))
    return {"style": styles[best], "tokens": int(len(ids) - 1),
            "logliks": {name: float(x) for name, x in zip(styles, logliks)}}


def format_classification(result: dict) -> str:
    lines = [result["style"], "",
             f"{'style':<20} {'log-likelihood (nats)':>22} {'nats/token':>11}"]
    for name, ll in sorted(result["logliks"].items(), key=lambda kv: -kv[1]):
        lines.append(f"{name:<20} {ll:>22.2f} {-ll / result['tokens']:>11.4f}")
    return "\n".join(lines)


def heldout_passages(split, vocab, styles: list[str], passage_chars: int, limit: int,
                     ) -> dict[str, list[np.ndarray]]:
    """Up to ``limit`` non-overlapping passages of about ``passage_chars`` characters from
    each style's validation tail, spread evenly over it."""
    if split.val_segments is None or not len(split.val):
        raise RunError("classification needs a run trained with styles and a validation split")
    chars_per_token = 1.0
    if vocab.level == "word":
        chars_per_token = len(vocab.decode(split.val)) / len(split.val)
    length = max(2, round(passage_chars / chars_per_token))
    bounds = [*map(int, split.val_segments), len(split.val)]
    out = {}
    for name, a, b in zip(styles, bounds, bounds[1:]):
        n = (b - a) // length
        if n == 0:
            raise RunError(f"style {name}: its validation text is shorter than one passage of "
                           f"{passage_chars} characters; use shorter passages",
                           cli_hint="--passage-chars")
        picks = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int))
        out[name] = [split.val[a + i * length : a + (i + 1) * length] for i in picks]
    return out


def classification_accuracy(gen, split, passage_chars: int = 300, limit: int = 100,
                            order: int = 3) -> dict:
    """Accuracy of the run, and of naive Bayes, on held-out passages of every style."""
    styles, vocab = gen.styles, gen.vocab
    passages = heldout_passages(split, vocab, styles, passage_chars, limit)
    bounds = [*map(int, split.train_segments), len(split.train)]
    train_texts = {name: vocab.decode(split.train[a:b])
                   for name, a, b in zip(styles, bounds, bounds[1:])}
    nb = NaiveBayes(train_texts, order)
    model_right: Counter = Counter()
    nb_right: Counter = Counter()
    for truth, items in passages.items():
        grid = np.stack(items)
        scores = np.stack([row_logliks(gen.network, grid, s) for s in range(len(styles))], 1)
        model_right[truth] = int((scores.argmax(axis=1) == styles.index(truth)).sum())
        nb_right[truth] = sum(nb.predict(vocab.decode(p)) == truth for p in items)

    def summary(right: Counter) -> dict:
        per_style = {name: right[name] / len(passages[name]) for name in styles}
        total = sum(len(v) for v in passages.values())
        return {"accuracy": sum(right.values()) / total,
                "balanced_accuracy": float(np.mean(list(per_style.values()))),
                "per_style": per_style}

    return {"passage_chars": passage_chars,
            "passages": {name: len(items) for name, items in passages.items()},
            "model": summary(model_right),
            f"naive_bayes_{order}gram": summary(nb_right)}


def format_accuracy(result: dict) -> str:
    counts = ", ".join(f"{n} {name}" for name, n in result["passages"].items())
    styles = list(result["passages"])
    lines = [f"style classification of held-out passages of about {result['passage_chars']} "
             f"characters ({counts}):",
             f"{'classifier':<28} {'accuracy':>9} {'balanced':>9} "
             + " ".join(f"{s[:12]:>12}" for s in styles)]
    for key, label in (("model", "textgen model (likelihood)"),
                       *[(k, k.replace("naive_bayes_", "naive Bayes char ").replace("gram",
                                                                                    "-grams"))
                         for k in result if k.startswith("naive_bayes")]):
        r = result[key]
        lines.append(f"{label:<28} {r['accuracy']:>9.1%} {r['balanced_accuracy']:>9.1%} "
                     + " ".join(f"{r['per_style'][s]:>12.1%}" for s in styles))
    return "\n".join(lines)
