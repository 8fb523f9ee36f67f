"""Corpus inputs -> cleaned text -> vocabulary -> ids -> train/validation windows (no TF).

The pure-data half of training, shared by ``train`` and ``clean`` (whose report shows how many
windows a corpus makes and roughly how much memory training it takes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Config
from .corpus import CorpusReport, document_bounds, read_corpus
from .errors import CorpusError
from .vocab import Vocab
from .windows import Split, split_ids


@dataclass
class Prepared:
    vocab: Vocab
    ids: np.ndarray
    split: Split | None  # None only when windows were not needed and the corpus is too short
    corpus: CorpusReport
    report: dict  # corpus report + window counts + memory estimate (saved as corpus.json)
    text: str | None = None  # the cleaned text, only when asked for


def prepare(inputs: list[str], config: Config, keep_text: bool = False,
            need_windows: bool = True) -> Prepared:
    """Read and clean the corpus, build the vocabulary, ids and train/validation windows.

    With ``need_windows=False`` (``textgen clean``) a corpus too short for the window config is
    reported, not an error.
    """
    text, corpus = read_corpus(inputs, config.clean)
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    bounds = (None if config.clean.cross_docs else
              document_bounds(corpus.doc_lengths, len(config.clean.doc_separator)))
    report = corpus.to_dict()
    try:
        split = split_ids(ids, config.window, ", ".join(corpus.files[:3]), bounds)
    except CorpusError as e:
        if need_windows:
            raise
        split = None
        report["windows"] = {"train": 0, "val": 0, "problem": str(e)}
    else:
        report["windows"] = {"train": len(split.train_starts), "val": len(split.val_starts)}
    n_windows = report["windows"]["train"]
    report["estimated_training_memory_mb"] = round(
        estimate_memory(config, len(vocab), len(ids), n_windows) / 2**20, 1)
    return Prepared(vocab, ids, split, corpus, report, text if keep_text else None)


def describe(prep: Prepared) -> str:
    """The human-readable report: rules, characters, windows, memory."""
    w = prep.report["windows"]
    problem = f" ({w['problem']})" if "problem" in w else ""
    return (prep.corpus.describe()
            + f"\n{w['train']:,} training windows, {w['val']:,} validation windows{problem}; "
              f"estimated training memory {prep.report['estimated_training_memory_mb']:,} MB")


def estimate_memory(config: Config, vocab_size: int, n_ids: int, n_windows: int) -> int:
    """Rough bytes for training: ids (and their tensor copy), window starts (held about three
    times while shuffling), parameters with gradients and optimizer slots, and one batch's
    activations kept for backprop."""
    m, w = config.model, config.window
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[m.cell]
    params = vocab_size * m.embedding_dim + m.units * vocab_size + vocab_size
    inp = m.embedding_dim
    for _ in range(m.layers):
        params += gates * m.units * (inp + m.units + 2)
        inp = m.units
    activations = w.batch_size * w.window * (m.layers * (gates + 2) * m.units + 2 * vocab_size)
    itemsize = 1 if vocab_size <= 256 else 2 if vocab_size <= 65536 else 4  # as Vocab.dtype
    return n_ids * itemsize * 2 + n_windows * 8 * 3 + params * 4 * 4 + activations * 4 * 2
