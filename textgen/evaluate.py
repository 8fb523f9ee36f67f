"""How good is a run: held-out loss beside baselines, and how novel its samples are.

Held-out loss is measured with the NumPy network (sample.py), the state carried through the
text: the text is cut into 32 contiguous streams run as one batch, each stream's first
character only a context. Baselines are fitted on the run's training text (everything before
the validation split) and scored on the same characters:

* the untrained model (the run's initial weights, ``weights.init.h5``);
* a unigram model with add-one smoothing;
* an interpolated Kneser-Ney character n-gram model (default order 6), discounts
  D = n1 / (n1 + 2 n2) per order, interpolated down to a uniform distribution.

On corpora over 5 million characters the baselines (and the novelty index) are fitted on the
last 5 million training characters, which the output says.

Novelty (``--samples N``): for each generated sample, the TF-IDF (word) cosine distance to its
nearest training window of the same length, and the longest span copied verbatim from the
training text; the same two numbers for held-out real text of the same length are the
reference (real unseen text is what "not copying" looks like).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from .baselines import KneserNey, as_text, unigram_loss
from .errors import ConfigError
from .sample import Network
from .score import heldout_loss, model_loss

BASELINE_CHARS = 5_000_000  # baselines and novelty use at most this much training text (its end)


# ----------------------------------------------------------------------------- novelty

WORD_RE = re.compile(r"\w+")


@dataclass
class Novelty:
    tfidf_distance: float  # 1 - cosine similarity to the nearest training window
    longest_copy: int  # characters of the longest span found verbatim in the training text


class NoveltyIndex:
    """TF-IDF over word counts of the training text cut into windows of ``length`` chars."""

    def __init__(self, train_text: str, length: int, max_windows: int = 20000):
        self.text = train_text
        step = max(length, len(train_text) // max_windows)
        windows = [train_text[i : i + length]
                   for i in range(0, max(len(train_text) - length, 0) + 1, step)]
        bags = [Counter(WORD_RE.findall(w.lower())) for w in windows]
        df: Counter = Counter()
        for bag in bags:
            df.update(bag.keys())
        n = len(bags)
        self.idf = {w: math.log((1 + n) / (1 + d)) + 1 for w, d in df.items()}
        self.postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        self.norms = np.zeros(n)
        for j, bag in enumerate(bags):
            for w, c in bag.items():
                weight = c * self.idf[w]
                self.postings[w].append((j, weight))
                self.norms[j] += weight * weight
        self.norms = np.sqrt(self.norms)

    def measure(self, sample: str) -> Novelty:
        bag = Counter(WORD_RE.findall(sample.lower()))
        dots = np.zeros(len(self.norms))
        norm = 0.0
        for w, c in bag.items():
            if w not in self.idf:
                norm += (c * (math.log(len(self.norms) + 1) + 1)) ** 2  # unseen word: max idf
                continue
            weight = c * self.idf[w]
            norm += weight * weight
            for j, wj in self.postings[w]:
                dots[j] += weight * wj
        denom = math.sqrt(norm) * self.norms
        sims = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        return Novelty(tfidf_distance=float(1.0 - sims.max()) if len(sims) else 1.0,
                       longest_copy=longest_copied_span(sample, self.text))


def longest_copied_span(sample: str, corpus: str) -> int:
    """Length of the longest substring of ``sample`` that occurs in ``corpus``."""
    best = 0
    for i in range(len(sample)):
        while i + best < len(sample) and sample[i : i + best + 1] in corpus:
            best += 1
    return best


# ----------------------------------------------------------------------------- a run


def training_data(run, corpus_override: list[str] | None = None):
    """Re-read the run's training corpus (via the cache when possible); check the vocabulary."""
    from pathlib import Path

    from .data import prepare
    from .errors import RunError

    # Styles given as --style NAME=CORPUS are re-read as such; --style-field ones from the
    # corpus files, as in training.
    styles = None if run.config.clean.style_field else run.meta.get("styles") or None
    if styles and corpus_override:
        raise RunError(f"{run.path}: another training corpus does not apply to a run trained "
                       "with styles")
    paths = corpus_override or run.meta.get("corpus") or []
    if not paths or "-" in paths:
        raise RunError(f"{run.path}: the training corpus was stdin; give the training text",
                       cli_hint="--train-corpus FILE")
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise RunError(f"{run.path}: training corpus {missing[0]} is gone; give the text the "
                       "run was trained on", cli_hint="--train-corpus FILE")
    prep = prepare(list(paths), run.config, styles=styles, base_vocab=run.kept_vocab)
    recorded = run.meta.get("data")  # what the run trained on (runs before it lack this)
    if prep.vocab != run.vocab or (recorded is not None and prep.fingerprint() != recorded):
        raise RunError(f"{run.path}: the corpus at {paths[0]} is not the text the run was "
                       "trained on (was it changed?), so its validation split would be "
                       "another; give the original text", cli_hint="--train-corpus FILE")
    return prep.split


@dataclass(frozen=True)
class EvalRequest:
    """What ``evaluate_run`` measures (the defaults are ``textgen evaluate``'s)."""

    corpus: str | None = None  # held-out text to score instead of the validation split
    order: int = 6  # of the Kneser-Ney n-gram baseline
    samples: int = 0  # novelty of this many generated samples (0: not measured)
    sample_chars: int = 500
    temperature: float = 1.0
    seed: int = 0
    train_corpus: list[str] | None = None  # the training text, if it moved since training
    style: str | None = None  # styled runs: the style to score ``corpus`` (and samples) under
    classify: bool = False  # styled runs: accuracy of telling held-out passages' styles apart
    passage_chars: int = 300
    passages: int = 100

    def __post_init__(self):
        """Whole numbers in range, each error naming its own setting (the command line's
        flags check the same before)."""
        for name, low, high in (("order", 1, 12), ("samples", 0, None), ("sample_chars", 1, None),
                                ("seed", 0, None), ("passage_chars", 10, None),
                                ("passages", 1, None)):
            value = getattr(self, name)
            if type(value) is not int or value < low or (high is not None and value > high):
                within = f">= {low}" if high is None else f"from {low} to {high}"
                raise ConfigError(f"evaluate: {name} must be a whole number {within}, "
                                  f"got {value!r}")


def evaluate_run(run_dir, req: EvalRequest = EvalRequest()) -> dict:
    """Held-out loss of the run's best weights beside baselines, and optional novelty.

    Losses are per token and per character (the same for character-level runs; for word-level
    runs the per-character figure divides a text's total by its characters, so the two levels
    compare). A styled run's validation text is scored style by style; ``req.corpus`` text
    under ``req.style``.
    """
    from . import runs
    from .sample import Generator

    gen = Generator(runs.open_run(run_dir))
    run, vocab = gen.run, gen.vocab
    split = training_data(run, req.train_corpus)
    # The n-gram tables are Python dicts: bound them on big corpora by fitting on the end of
    # the training text, the part next to the validation split.
    train_ids = split.train[-BASELINE_CHARS:]
    test_ids, source, segments = _heldout(gen, split, req.corpus)
    unit = "chars" if vocab.level == "char" else "tokens"
    rows = _scores(gen, train_ids, test_ids, segments, req)
    fitted = (f"baselines fitted on the last {len(train_ids):,} of {len(split.train):,} "
              f"training {unit}" if len(train_ids) < len(split.train) else
              f"baselines fitted on the {len(train_ids):,} training {unit}")
    chars_per_token = (1.0 if vocab.level == "char" else
                       len(vocab.decode(test_ids)) / max(len(test_ids), 1))
    result = {
        "run": str(run.path), "level": vocab.level, "heldout": source, "baselines": fitted,
        "chars_per_token": chars_per_token,
        "models": [{"model": name, "nats_per_token": loss_, "perplexity": math.exp(loss_),
                    "nats_per_char": loss_ / chars_per_token,
                    "bits_per_char": loss_ / chars_per_token / math.log(2)}
                   for name, loss_ in rows],
    }
    if req.classify:
        from .classify import classification_accuracy

        result["classify"] = classification_accuracy(gen, split, req.passage_chars,
                                                     req.passages)
    if req.samples:
        result["novelty"] = _novelty(gen, train_ids, test_ids, req)
    return result


def _heldout(gen, split, corpus: str | None):
    """(ids, description, style segments) of the text to score."""
    from .corpus import clean_chars, read_corpus
    from .errors import RunError
    from .vocab import describe_chars

    run, vocab = gen.run, gen.vocab
    if corpus is None:
        unit = "chars" if vocab.level == "char" else "tokens"
        if len(split.val) < 2:
            raise RunError(f"{run.path}: the run has no validation split; score a held-out "
                           "text file instead", cli_hint="--corpus FILE")
        return (split.val, f"the run's validation split ({len(split.val):,} {unit})",
                split.val_segments)
    text, _ = read_corpus([corpus], run.config.clean)
    text = clean_chars(text, run.config.clean, vocab.tokens if vocab.level == "char" else None)
    unknown = vocab.missing(text)
    if unknown:
        raise RunError(f"{corpus}: characters the model never saw: {describe_chars(unknown)}")
    return vocab.encode(text), f"{corpus} ({len(text):,} chars)", None


def _scores(gen, train_ids, test_ids, segments, req: EvalRequest) -> list[tuple[str, float]]:
    """(name, nats per token) for the model and each baseline, on the same tokens."""
    from . import runs

    run, vocab = gen.run, gen.vocab
    style_id = gen.style_id(req.style) if req.corpus is not None and gen.styles else None

    def loss(net):
        if style_id is not None:
            return heldout_loss(net, test_ids, style=style_id)
        return model_loss(net, test_ids, segments)

    rows = [("textgen model (weights.h5)", loss(gen.network))]
    init = run.file(runs.INIT_WEIGHTS)
    if init.exists():
        named = run.read_weights(runs.INIT_WEIGHTS)
        rows.append(("untrained model", loss(Network(run.config.model, named))))
    rows.append(("unigram", unigram_loss(train_ids, test_ids, len(vocab))))
    test_text = as_text(test_ids, vocab)
    kn = KneserNey(as_text(train_ids, vocab), req.order, vocab_size=len(vocab))
    # Like the model's streams, the n-gram sees no context before the held-out text's start.
    rows.append((f"{req.order}-gram Kneser-Ney" + ("" if vocab.level == "char" else " (words)"),
                 kn.loss(test_text[1:], context=test_text[:1])))
    return rows


def _novelty(gen, train_ids, test_ids, req: EvalRequest) -> dict:
    """Novelty of generated samples beside held-out real text of the same length."""
    from .sampling import SampleRequest

    vocab, chars = gen.vocab, req.sample_chars
    index = NoveltyIndex(vocab.decode(train_ids), chars)
    plain_test = vocab.decode(test_ids)
    sreq = SampleRequest(chars=chars, temperature=req.temperature, n=req.samples, seed=req.seed,
                         style=req.style if req.style is not None else
                         (gen.styles[0] if gen.styles else None))
    generated = [s.text[:chars] for s in gen.sample(sreq)]
    rng = np.random.default_rng(req.seed)
    starts = rng.integers(0, max(len(plain_test) - chars, 1), size=req.samples)
    real = [plain_test[s : s + chars] for s in starts]
    return {"samples": req.samples, "chars": chars, "temperature": req.temperature,
            "style": sreq.style,
            "generated": _novelty_summary([index.measure(t) for t in generated]),
            "heldout_real_text": _novelty_summary([index.measure(t) for t in real])}


def _novelty_summary(measures: list[Novelty]) -> dict:
    copies = [m.longest_copy for m in measures]
    return {"mean_tfidf_distance": float(np.mean([m.tfidf_distance for m in measures])),
            "mean_longest_copy": float(np.mean(copies)), "max_longest_copy": int(max(copies))}


def format_result(result: dict) -> str:
    word = result.get("level") == "word"
    lines = [f"held-out text: {result['heldout']}; {result['baselines']}", ""]
    if word:
        lines[-1:] = [f"word-level run: {result['chars_per_token']:.3f} characters per token", ""]
        lines.append(f"{'model':<34} {'nats/token':>10} {'perplexity':>11} {'nats/char':>10} "
                     f"{'bits/char':>10}")
        for row in result["models"]:
            lines.append(f"{row['model']:<34} {row['nats_per_token']:>10.4f} "
                         f"{row['perplexity']:>11.3f} {row['nats_per_char']:>10.4f} "
                         f"{row['bits_per_char']:>10.4f}")
    else:
        lines.append(f"{'model':<28} {'nats/char':>10} {'bits/char':>10} {'perplexity':>11}")
        for row in result["models"]:
            lines.append(f"{row['model']:<28} {row['nats_per_char']:>10.4f} "
                         f"{row['bits_per_char']:>10.4f} {row['perplexity']:>11.3f}")
    nov = result.get("novelty")
    if nov:
        style = f", style {nov['style']}" if nov.get("style") else ""
        lines += ["", f"novelty of {nov['samples']} samples of {nov['chars']} chars "
                      f"(temperature {nov['temperature']:g}{style}) vs held-out real text:",
                  f"{'':<28} {'TF-IDF distance':>16} {'longest copy':>13} {'max copy':>9}"]
        for name, key in (("generated", "generated"), ("held-out real text", "heldout_real_text")):
            m = nov[key]
            lines.append(f"{name:<28} {m['mean_tfidf_distance']:>16.3f} "
                         f"{m['mean_longest_copy']:>13.1f} {m['max_longest_copy']:>9}")
    cls = result.get("classify")
    if cls:
        from .classify import format_accuracy

        lines += ["", format_accuracy(cls)]
    return "\n".join(lines)
