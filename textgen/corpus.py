"""Corpus files -> cleaned documents.

Reading is strict: every file is decoded with the configured encoding and a byte that does not
decode is an error naming the file, the byte offset and the fix (never ``errors='ignore'``).
Normalisation, in this order, for every document:

1. strip a leading byte-order mark;
2. CRLF and lone CR -> LF;
3. Unicode NFC;
4. lowercase (if ``clean.lowercase``).

Documents (one per file) are joined with ``clean.doc_separator``.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .config import CleanConfig
from .errors import CorpusError


@dataclass
class CorpusReport:
    files: list[str] = field(default_factory=list)
    documents: int = 0
    chars_read: int = 0  # characters after decoding, before any normalisation
    chars_kept: int = 0  # characters of the joined, cleaned text
    char_counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "documents": self.documents,
            "chars_read": self.chars_read,
            "chars_kept": self.chars_kept,
            "char_counts": dict(sorted(self.char_counts.items())),
        }


def find_files(inputs: list[str | Path], cfg: CleanConfig) -> list[Path]:
    """Expand files and directories (recursively, matching ``cfg.glob``) in the order given."""
    if not inputs:
        raise CorpusError("no corpus given; pass one or more text files or directories")
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            matches = sorted(p for p in path.rglob(cfg.glob) if p.is_file())
            if not matches:
                raise CorpusError(
                    f"{path}: directory holds no files matching {cfg.glob!r}; "
                    "pass --glob to choose which files to read"
                )
            found.extend(matches)
        elif path.is_file():
            found.append(path)
        elif path.exists():
            raise CorpusError(f"{path}: not a regular file or directory")
        else:
            raise CorpusError(f"{path}: no such file or directory")
    return found


def decode(data: bytes, source: str, encoding: str) -> str:
    """Bytes -> str, strictly; errors name the file, the offset and what to do."""
    nul = data.find(b"\x00")
    if nul != -1 and not encoding.lower().replace("-", "").startswith(("utf16", "utf32")):
        raise CorpusError(
            f"{source}: looks like a binary file (NUL byte at offset {nul}); "
            "pass text files only"
        )
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1]
        hint = "pass --encoding cp1252 (or the file's real encoding)"
        if encoding.lower().replace("-", "").replace("_", "") != "utf8":
            hint = "pass --encoding with the file's real encoding (utf-8 is the default)"
        raise CorpusError(
            f"{source}: byte 0x{bad.hex()} at offset {e.start} is not valid {encoding}; {hint}"
        ) from None


def normalise(text: str, cfg: CleanConfig) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = unicodedata.normalize("NFC", text)
    if cfg.lowercase:
        text = text.lower()
    return text


def read_corpus(inputs: list[str | Path], cfg: CleanConfig) -> tuple[str, CorpusReport]:
    """Read, decode and normalise every input; return the joined text and a report."""
    report = CorpusReport()
    docs = []
    for path in find_files(inputs, cfg):
        try:
            data = path.read_bytes()
        except OSError as e:
            raise CorpusError(f"{path}: cannot read: {e.strerror}") from None
        raw = decode(data, str(path), cfg.encoding)
        report.files.append(str(path))
        report.chars_read += len(raw)
        docs.append(normalise(raw, cfg))
    text = cfg.doc_separator.join(docs)
    report.documents = len(docs)
    report.chars_kept = len(text)
    if not text.strip():
        names = ", ".join(report.files[:3]) + (" ..." if len(report.files) > 3 else "")
        raise CorpusError(f"{names}: corpus is empty or only whitespace; give a text to train on")
    report.char_counts = dict(Counter(text))
    return text, report
