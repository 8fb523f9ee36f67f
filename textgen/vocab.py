"""Characters <-> integer ids.

A ``Vocab`` is the sorted set of characters in the training text. Ids are stored in the
smallest unsigned type that holds them (uint8 up to 256 symbols, then uint16, then uint32), so a
100 MB corpus costs 100 MB of ids, never a one-hot array. Unknown characters are an error, never
silently mapped to some id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import PrimeError, RunError

_CHUNK = 1 << 20  # characters encoded per NumPy batch (bounds temporary memory to ~8 MB)


@dataclass(frozen=True)
class Vocab:
    chars: tuple[str, ...]  # sorted by code point; id = index

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
        n = len(self.chars)
        return np.dtype(np.uint8 if n <= 256 else np.uint16 if n <= 65536 else np.uint32)

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
    def from_json(cls, text: str, source: str = "vocab.json") -> "Vocab":
        try:
            data = json.loads(text)
            chars = data["chars"]
        except (ValueError, KeyError, TypeError):
            raise RunError(f"{source}: not a textgen vocabulary file") from None
        if (not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars)
                or chars != sorted(set(chars))):
            raise RunError(f"{source}: vocabulary must be a sorted list of distinct characters")
        return cls(tuple(chars))

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        path = Path(path)
        return cls.from_json(path.read_text(encoding="utf-8"), str(path))

    def digest(self) -> str:
        """A short content hash, to tell whether two runs share a vocabulary."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def describe_chars(chars) -> str:
    """A readable list of characters, e.g. "'é' (U+00E9), '\\n' (U+000A)"."""
    return ", ".join(f"{c!r} (U+{ord(c):04X})" for c in chars)
