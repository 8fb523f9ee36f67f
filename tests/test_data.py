"""data.prepare: document-by-document encoding and the encoded-corpus cache."""

import numpy as np

from textgen.config import CleanConfig, Config
from textgen.data import cache_dir, encode_documents, prepare
from textgen.vocab import Vocab

from .conftest import TINY_TEXT


def test_encode_documents_joins_with_separator():
    docs = ["ab", "", "ba"]
    vocab = Vocab.from_text("ab|")
    ids, lengths = encode_documents(list(docs), vocab, "|")
    assert vocab.decode(ids) == "ab||ba"
    assert lengths == [2, 0, 2]


def test_encode_word_documents_counts_tokens():
    from textgen.vocab import WordVocab, count_tokens

    docs = ["the cat.", "a dog sat"]
    vocab = WordVocab.from_counts(count_tokens(docs, "\n"), max_words=10)
    ids, lengths = encode_documents(list(docs), vocab, "\n")
    assert lengths == [3, 3]
    assert vocab.decode(ids) == "the cat.\na dog sat"


def test_second_prepare_uses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTGEN_CACHE_DIR", str(tmp_path / "cache"))
    corpus = tmp_path / "c.txt"
    corpus.write_text(TINY_TEXT)
    cfg = Config()
    cold = prepare([str(corpus)], cfg)
    warm = prepare([str(corpus)], cfg)
    assert not cold.cached and warm.cached
    assert np.array_equal(cold.ids, warm.ids) and cold.vocab == warm.vocab
    assert cold.report == warm.report
    assert cold.split.n_train_windows == warm.split.n_train_windows > 0
    assert len(list(cache_dir().iterdir())) == 1

    # Different rules or different content: a different entry.
    lower = Config(clean=CleanConfig(lowercase=True))
    assert not prepare([str(corpus)], lower).cached
    corpus.write_text(TINY_TEXT + "more")
    assert not prepare([str(corpus)], cfg).cached
    assert len(list(cache_dir().iterdir())) == 3


def test_damaged_or_disabled_cache_rebuilds(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXTGEN_CACHE_DIR", str(tmp_path / "cache"))
    corpus = tmp_path / "c.txt"
    corpus.write_text(TINY_TEXT)
    first = prepare([str(corpus)], Config())
    (entry,) = cache_dir().iterdir()
    (entry / "ids.npy").write_bytes(b"garbage")
    again = prepare([str(corpus)], Config())
    assert not again.cached and np.array_equal(first.ids, again.ids)

    monkeypatch.setenv("TEXTGEN_CACHE_DIR", "")
    assert cache_dir() is None
    assert not prepare([str(corpus)], Config()).cached
