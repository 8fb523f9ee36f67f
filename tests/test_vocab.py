import numpy as np
import pytest

from textgen.errors import PrimeError, RunError
from textgen.vocab import Vocab


def test_round_trip_and_sorted_ids():
    text = "hello, world\nÉté 🙂"
    vocab = Vocab.from_text(text)
    assert list(vocab.chars) == sorted(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == np.uint8
    assert vocab.decode(ids) == text
    assert ids[0] == vocab.chars.index("h")


def test_json_round_trip_and_digest():
    vocab = Vocab.from_text("abc\n\t🙂")
    again = Vocab.from_json(vocab.to_json())
    assert again == vocab
    assert again.digest() == vocab.digest()
    assert Vocab.from_text("abd").digest() != vocab.digest()


def test_unknown_characters_are_an_error_not_id_zero():
    vocab = Vocab.from_text("abc")
    with pytest.raises(PrimeError, match=r"'z' \(U\+007A\)"):
        vocab.encode("abz")
    assert vocab.missing("abzzy") == ["y", "z"]


def test_large_vocabulary_uses_wider_ids():
    text = "".join(chr(0x4E00 + i) for i in range(300))  # 300 CJK characters
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert ids.dtype == np.uint16
    assert vocab.decode(ids) == text


def test_encode_spans_chunks(monkeypatch):
    import textgen.vocab as v

    monkeypatch.setattr(v, "_CHUNK", 5)
    text = "abcabcabcabcab"
    vocab = Vocab.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text


@pytest.mark.parametrize("bad", ['{"chars": ["b", "a"]}', "not json", '{"chars": ["ab"]}'])
def test_bad_vocab_file(bad):
    with pytest.raises(RunError):
        Vocab.from_json(bad)
