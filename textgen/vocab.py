"""Tokens (characters or words) <-> integer ids.

A ``Vocab`` (``--level char``) is the sorted set of characters in the training text. Ids are
stored in the smallest unsigned type that holds them (uint8 up to 256 symbols, then uint16, then
uint32), so a 100 MB corpus costs 100 MB of ids, never a one-hot array. Unknown characters are an
error, never silently mapped to some id.

A ``WordVocab`` (``--level word``) holds the ``max_words`` most frequent word tokens after
``<unk>`` (id 0), which stands for every other word. ``tokenize`` keeps punctuation marks and
newlines as tokens of their own and drops other whitespace; ``detokenize`` joins tokens with
natural spacing (no space before closing punctuation, none around newlines or hyphens), so text
with ordinary spacing survives a round trip. The sampler never draws ``<unk>``.

Both share what the rest of textgen uses: ``level``, ``tokens``, ``encode``, ``decode``,
``piece`` (one token as it joins the text so far), ``missing``, ``dtype``, JSON round trip.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import read_limited
from .errors import PrimeError, RunError

_CHUNK = 1 << 20  # characters encoded per NumPy batch (bounds temporary memory to ~8 MB)
# A vocab.json of every Unicode character takes ~5 MB, of a million words ~20 MB: a larger
# file is not a vocabulary, and is refused before it is read.
VOCAB_MAX_BYTES = 64_000_000


def _id_dtype(n: int) -> np.dtype:
    return np.dtype(np.uint8 if n <= 256 else np.uint16 if n <= 65536 else np.uint32)


@dataclass(frozen=True)
class Vocab:
    chars: tuple[str, ...]  # sorted by code point; id = index
    level = "char"

    @property
    def tokens(self) -> tuple[str, ...]:
        return self.chars

    @property
    def unk_id(self) -> int | None:
        return None  # characters have no unknown token

    def piece(self, previous: str | None, token: str) -> str:
        return token

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        return cls(tuple(sorted(set(text))))

    @classmethod
    def from_counts(cls, counts: dict[str, int]) -> "Vocab":
        return cls(tuple(sorted(c for c, n in counts.items() if n > 0)))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return ch in self.chars

    @property
    def dtype(self) -> np.dtype:
        return _id_dtype(len(self.chars))

    def missing(self, text: str) -> list[str]:
        """Characters of ``text`` that are not in the vocabulary, sorted."""
        return sorted(set(text) - set(self.chars))

    def encode(self, text: str) -> np.ndarray:
        """Text -> ids. Raises PrimeError listing any characters outside the vocabulary."""
        points = np.array([ord(c) for c in self.chars], dtype=np.uint32)
        out = np.empty(len(text), dtype=self.dtype)
        for start in range(0, len(text), _CHUNK):
            piece = text[start : start + _CHUNK]
            cp = np.frombuffer(piece.encode("utf-32-le"), dtype=np.uint32)
            ids = np.searchsorted(points, cp)
            ids_clipped = np.minimum(ids, len(points) - 1)
            bad = points[ids_clipped] != cp
            if bad.any():
                raise PrimeError(
                    "characters not in the vocabulary: " + describe_chars(self.missing(piece))
                )
            out[start : start + len(piece)] = ids
        return out

    def decode(self, ids) -> str:
        chars = self.chars
        return "".join(chars[int(i)] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"format": "textgen-vocab", "version": 1, "chars": list(self.chars)},
                          ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, source: str = "vocab.json") -> "Vocab | WordVocab":
        """Either kind of vocabulary, as its file says (``"level": "word"`` or characters)."""
        try:
            data = json.loads(text)
            if data.get("level") == "word":
                return WordVocab.from_dict(data, source)
            chars = data["chars"]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise RunError(f"{source}: not a textgen vocabulary file") from None
        if (not isinstance(chars, list)
                or not all(isinstance(c, str) and len(c) == 1 and not _SURROGATE(c)
                           for c in chars)
                or chars != sorted(set(chars))):
            raise RunError(f"{source}: vocabulary must be a sorted list of distinct characters")
        return cls(tuple(chars))

    @classmethod
    def load(cls, path: str | Path) -> "Vocab | WordVocab":
        """Read a vocab.json; anything that is not one (random bytes, not UTF-8, a directory,
        unreadable) is a one-line RunError naming the file."""
        path = Path(path)
        try:
            data = read_limited(path, VOCAB_MAX_BYTES, RunError, "; not a textgen vocabulary file")
        except OSError as e:
            raise RunError(f"{path}: cannot read the vocabulary file: {e.strerror}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RunError(f"{path}: not a textgen vocabulary file (byte 0x{data[e.start]:02x} "
                           f"at offset {e.start} is not UTF-8)") from None
        return Vocab.from_json(text, str(path))

    def digest(self) -> str:
        """A short content hash, to tell whether two runs share a vocabulary."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


_SURROGATE = re.compile("[\ud800-\udfff]").search  # JSON allows "\\ud800"; no character


def describe_chars(chars) -> str:
    """A readable list of characters, e.g. "'é' (U+00E9), '\\n' (U+000A)"."""
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars)


# ----------------------------------------------------------------------------- words

UNK = "<unk>"
TOKEN_RE = re.compile(r"\w+(?:['\u2019]\w+)*|\n|[^\w\s]")
NO_SPACE_BEFORE = frozenset(".,;:!?)]}'\u2019%-")
NO_SPACE_AFTER = frozenset("([{-\n")


def tokenize(text: str) -> list[str]:
    """Words (with inner apostrophes: "don't"), single punctuation marks, and newlines."""
    return TOKEN_RE.findall(text)


def piece(previous: str | None, token: str) -> str:
    """``token`` as it is appended after ``previous``: with a leading space or not."""
    if previous is None or token == "\n" or previous in NO_SPACE_AFTER \
            or token in NO_SPACE_BEFORE:
        return token
    return " " + token


def detokenize(tokens) -> str:
    out, previous = [], None
    for token in tokens:
        out.append(piece(previous, token))
        previous = token
    return "".join(out)


@dataclass(frozen=True)
class WordVocab:
    tokens: tuple[str, ...]  # tokens[0] is <unk>; then by falling frequency
    level = "word"
    unk_id = 0

    @classmethod
    def from_counts(cls, counts: dict[str, int], max_words: int) -> "WordVocab":
        """<unk> plus the ``max_words`` most frequent tokens (a newline always kept)."""
        ranked = sorted((t for t, n in counts.items() if n > 0 and t != UNK),
                        key=lambda t: (-counts[t], t))
        kept = ranked[:max_words]
        if "\n" in counts and "\n" not in kept:
            kept[-1:] = ["\n"]
        return cls((UNK, *kept))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._index

    @property
    def _index(self) -> dict[str, int]:
        index = self.__dict__.get("_index_cache")
        if index is None:
            index = {t: i for i, t in enumerate(self.tokens)}
            object.__setattr__(self, "_index_cache", index)
        return index

    @property
    def dtype(self) -> np.dtype:
        return _id_dtype(len(self.tokens))

    def missing(self, text: str) -> list[str]:
        return []  # unknown words become <unk>

    def encode_tokens(self, tokens: list[str]) -> np.ndarray:
        index = self._index
        return np.fromiter((index.get(t, 0) for t in tokens), dtype=self.dtype, count=len(tokens))

    def encode(self, text: str) -> np.ndarray:
        return self.encode_tokens(tokenize(text))

    def decode(self, ids) -> str:
        return detokenize(self.tokens[int(i)] for i in ids)

    def piece(self, previous: str | None, token: str) -> str:
        return piece(previous, token)

    def to_json(self) -> str:
        return json.dumps({"format": "textgen-vocab", "version": 1, "level": "word",
                           "tokens": list(self.tokens)}, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "WordVocab":
        tokens = data.get("tokens")
        if (not isinstance(tokens, list) or not tokens or tokens[0] != UNK
                or not all(isinstance(t, str) and t and not _SURROGATE(t) for t in tokens)
                or len(set(tokens)) != len(tokens)):
            raise RunError(f"{source}: word vocabulary must be a list of distinct tokens "
                           f"starting with {UNK}")
        return cls(tuple(tokens))

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def count_tokens(docs, sep: str) -> Counter:
    counts: Counter = Counter()
    for doc in docs:
        counts.update(tokenize(doc))
    if sep and len(docs) > 1:
        for token in tokenize(sep):
            counts[token] += len(docs) - 1
    return counts
