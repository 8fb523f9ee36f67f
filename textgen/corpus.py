"""Corpus inputs -> cleaned documents -> one text, with a report of what every rule did.

Inputs are text files, directories (recursive, files matching ``clean.glob``), JSON files
(an array of records) and JSON Lines files (one record per line) whose ``clean.field`` holds
the text (a dotted path such as ``tweet.full_text`` reaches into nested records), and ``-`` for
standard input. Decoding is strict: a byte that does not decode is an error naming the file, the
byte offset and the fix (never ``errors='ignore'``).

A file (or a JSON record) is a document. Rules apply in this order, each only when enabled:

 1. decode; strip a byte-order mark; CRLF and lone CR -> LF; Unicode NFC   (always)
 2. ``strip_gutenberg``  cut a Project Gutenberg licence header and footer
 3. ``split_on``         split documents further at a regular expression
 4. ``drop_if``          drop whole documents matching a regular expression
 5. ``unescape_html``    ``&gt;`` -> ``>``, ``&amp;`` -> ``&``, ... (first: an entity may spell a link)
 6. ``remove_urls``      delete http(s)://... and www.... links
 7. ``ascii_fold``       strip accents (``á`` -> ``a``; compatibility forms too: ``🄰`` -> ``A``)
 8. ``lowercase``        (after folding, which can make capitals)
 9. ``charset``          keep only ``ascii`` or ``latin-1`` characters (drops emoji, ...)
10. ``collapse_spaces``  runs of spaces and tabs -> one space
11. ``min_doc_chars`` / ``max_doc_chars``  drop documents outside that length
12. ``pad_to``           pad (with ``pad_char``) or truncate each document to a fixed length
13. ``min_char_count``   characters seen fewer times are dropped, or mapped to ``rare_replacement``
14. documents are joined with ``doc_separator`` (part of the vocabulary)

Rules 5-10 and 13 are "character rules": ``clean_chars`` applies them to a prime text too.
Every rule but ``unescape_html`` (``&amp;gt;`` -> ``&gt;`` -> ``>``) is idempotent, and so is
cleaning as a whole without it.
"""

from __future__ import annotations

import html
import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .config import CleanConfig, check_glob
from .errors import CorpusError

URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
SPACES_RE = re.compile(r"[ \t]{2,}")
GUTENBERG_START = re.compile(
    r"^\*{3} ?START OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK.*$", re.IGNORECASE | re.MULTILINE)
GUTENBERG_END = re.compile(
    r"^(?:\*{3} ?END OF (?:THE|THIS) PROJECT GUTENBERG E-?BOOK|End of (?:the )?Project Gutenberg)",
    re.IGNORECASE | re.MULTILINE)
JSON_SUFFIXES = {".json", ".jsonl", ".ndjson"}
RARE_FLAG = 10  # characters seen fewer times than this are flagged in the report
EXAMPLES = 3


@dataclass
class RuleStat:
    """What one rule did: characters removed, documents dropped, a few examples."""

    chars_removed: int = 0
    docs_dropped: int = 0
    docs_changed: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, example: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(example[:80])


@dataclass
class CorpusReport:
    files: list[str] = field(default_factory=list)
    documents_read: int = 0
    documents: int = 0  # kept after all rules
    chars_read: int = 0  # after decoding, before any rule
    chars_kept: int = 0  # of the joined, cleaned text
    rules: dict[str, RuleStat] = field(default_factory=dict)
    char_counts: dict[str, int] = field(default_factory=dict)
    rare_chars: list[str] = field(default_factory=list)  # removed/mapped by min_char_count
    doc_lengths: list[int] = field(default_factory=list)  # of the kept documents (not saved)

    def rule(self, name: str) -> RuleStat:
        return self.rules.setdefault(name, RuleStat())

    def to_dict(self) -> dict:
        return {
            "files": self.files,
            "documents_read": self.documents_read,
            "documents": self.documents,
            "chars_read": self.chars_read,
            "chars_kept": self.chars_kept,
            "rules": {k: vars(v) for k, v in self.rules.items()},
            "char_counts": dict(sorted(self.char_counts.items())),
            "rare_chars": self.rare_chars,
            "flagged_rare": sorted(c for c, n in self.char_counts.items() if n < RARE_FLAG),
        }

    @staticmethod
    def describe_dict(report: dict) -> str:
        """A human-readable summary of ``to_dict()`` (cached reports are dicts too)."""
        lines = [
            f"read {len(report['files'])} file(s), {report['documents_read']} document(s), "
            f"{report['chars_read']:,} characters",
        ]
        for name, st in report["rules"].items():
            parts = []
            if st["docs_dropped"]:
                parts.append(f"dropped {st['docs_dropped']} document(s)")
            if st["chars_removed"]:
                parts.append(f"removed {st['chars_removed']:,} characters")
            if st["docs_changed"] and not parts:
                parts.append(f"changed {st['docs_changed']} document(s)")
            if not parts:
                parts.append("no change")
            ex = f" e.g. {', '.join(repr(e) for e in st['examples'])}" if st["examples"] else ""
            lines.append(f"  {name}: {'; '.join(parts)}{ex}")
        counts = report["char_counts"]
        rare = sorted(report["flagged_rare"], key=lambda c: counts[c])
        lines.append(f"kept {report['documents']} document(s), {report['chars_kept']:,} "
                     f"characters, {len(counts)} distinct")
        if rare:
            shown = ", ".join(f"{c!r} x{counts[c]}" for c in rare[:12])
            lines.append(f"  rare characters (seen < {RARE_FLAG} times): {shown}"
                         + (" ..." if len(rare) > 12 else ""))
        return "\n".join(lines)


# ----------------------------------------------------------------------------- reading


def find_files(inputs: Iterable[str | Path], cfg: CleanConfig) -> list[Path | str]:
    """Expand files and directories (recursively, matching ``cfg.glob``); "-" is stdin.

    A directory yields only files inside it: a match that resolves outside (through ``..`` or
    a symbolic link) is refused, so a pattern never reads files the directory does not hold.
    """
    inputs = list(inputs)
    if not inputs:
        raise CorpusError("no corpus given; pass one or more text files or directories")
    check_glob(cfg.glob, CorpusError)
    found: list[Path | str] = []
    for item in inputs:
        if str(item) == "-":
            found.append("-")
            continue
        path = Path(item)
        if path.is_dir():
            root = path.resolve()
            matches = sorted(p for p in path.rglob(cfg.glob) if p.is_file())
            for match in matches:
                if not match.resolve().is_relative_to(root):
                    raise CorpusError(
                        f"{match}: resolves to {match.resolve()}, outside the directory "
                        f"{path}; give that file by its own path if it is meant to be read")
            if not matches:
                raise CorpusError(
                    f"{path}: directory holds no files matching {cfg.glob!r}; choose which "
                    "files to read with another pattern", cli_hint="--glob PATTERN")
            found.extend(matches)
        elif path.is_file():
            found.append(path)
        elif path.exists():
            raise CorpusError(f"{path}: not a regular file or directory")
        else:
            raise CorpusError(f"{path}: no such file or directory")
    return found


READ_BLOCK = 1 << 16  # bytes read at a time; a NUL in any block stops the read at once


def nul_means_binary(encoding: str) -> bool:
    """UTF-16/32 text holds NUL bytes; in any other encoding a NUL means a binary file."""
    return not encoding.lower().replace("-", "").replace("_", "").startswith(("utf16", "utf32"))


def read_input(item: Path | str, encoding: str) -> tuple[str, bytearray]:
    """(source name, bytes) of a file or of stdin ("-"), read block by block.

    A NUL byte (outside UTF-16/32) stops the read at the block holding it, with the binary-file
    error: ``/dev/zero`` on stdin or a huge sparse file is refused after its first block instead
    of being read whole into memory.
    """
    source = "<stdin>" if item == "-" else str(item)
    check_nul = nul_means_binary(encoding)
    data = bytearray()
    if item == "-" and sys.stdin is None:  # file descriptor 0 closed (`textgen clean - <&-`)
        raise CorpusError(f"{source}: standard input is closed; pipe a text in or name a file")
    try:
        f = sys.stdin.buffer if item == "-" else open(item, "rb")
    except OSError as e:
        raise CorpusError(f"{source}: cannot read: {e.strerror}") from None
    try:
        while True:
            block = f.read(READ_BLOCK)
            if not block:
                break
            if check_nul:
                nul = block.find(b"\x00")
                if nul != -1:
                    raise CorpusError(_binary_message(source, len(data) + nul))
            data += block
    except OSError as e:
        raise CorpusError(f"{source}: cannot read: {e.strerror}") from None
    finally:
        if item != "-":
            f.close()
    return source, data


def _binary_message(source: str, offset: int) -> str:
    return (f"{source}: looks like a binary file (NUL byte at offset {offset}); "
            "pass text files only")


SURROGATE_RE = re.compile("[\ud800-\udfff]")


def check_surrogates(text: str, where: str) -> None:
    """A lone surrogate (JSON "\\ud800", UTF-7 ...) is not a character: it cannot be written
    or encoded, so it is refused where it is read."""
    bad = SURROGATE_RE.search(text)
    if bad:
        raise CorpusError(f"{where}: lone surrogate U+{ord(bad.group()):04X} at character "
                          f"{bad.start()} is not a character; fix or remove that text")


def decode(data: bytes | bytearray, source: str, encoding: str) -> str:
    """Bytes -> str, strictly; errors name the file, the offset and what to do."""
    nul = data.find(b"\x00")
    if nul != -1 and nul_means_binary(encoding):
        raise CorpusError(_binary_message(source, nul))
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        bad = data[e.start : e.start + 1]
        hint, flag = "decode it as cp1252 (or its real encoding)", "--encoding cp1252"
        if encoding.lower().replace("-", "").replace("_", "") != "utf8":
            hint, flag = "decode it with its real encoding (utf-8 is the default)", "--encoding"
        raise CorpusError(
            f"{source}: byte 0x{bad.hex()} at offset {e.start} is not valid {encoding}; {hint}",
            cli_hint=flag) from None
    except LookupError as e:  # not a text encoding (CleanConfig.validate refuses those)
        raise CorpusError(f"{source}: cannot decode as {encoding!r} ({e})") from None
    if encoding.lower().replace("-", "").replace("_", "") != "utf8":
        check_surrogates(text, source)  # strict UTF-8 never yields one
    return text


def normalise(text: str) -> str:
    """Rule 1: BOM, line endings, NFC."""
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return unicodedata.normalize("NFC", text)


def _field(record, path: str, where: str):
    value = record
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            keys = ", ".join(sorted(record)) if isinstance(record, dict) else type(record).__name__
            raise CorpusError(f"{where}: no field {path!r} (fields: {keys}); name the field that "
                              "holds the text", cli_hint="--field NAME")
        value = value[key]
    if not isinstance(value, str):
        raise CorpusError(f"{where}: field {path!r} is {type(value).__name__}, not text")
    check_surrogates(value, f"{where}: field {path!r}")  # JSON allows "\\ud800"
    return value


def _json_documents(text: str, source: str, cfg: CleanConfig, lines: bool) -> Iterator[str]:
    for where, record in _json_records(text, source, lines):
        yield _field(record, cfg.field or "text", where)


def _json_records(text: str, source: str, lines: bool) -> Iterator[tuple[str, object]]:
    """(where, record) for each record of a JSON array or JSON Lines text."""
    if lines:
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as e:
                raise CorpusError(f"{source}: line {n} is not JSON ({e.msg})") from None
            except RecursionError:
                raise CorpusError(f"{source}: line {n} nests JSON too deeply to read; "
                                  "records should be flat objects") from None
            yield f"{source}: line {n}", record
        return
    try:
        data = json.loads(text)
    except ValueError as e:
        raise CorpusError(f"{source}: not valid JSON ({e.msg} at line {e.lineno}); "
                          "for one record per line name the file .jsonl") from None
    except RecursionError:
        raise CorpusError(f"{source}: JSON nested too deeply to read; expected an array of "
                          "flat records") from None
    if isinstance(data, dict):  # e.g. {"tweets": [...]}: the one list inside
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise CorpusError(f"{source}: expected a JSON array of records")
        data = lists[0]
    if not isinstance(data, list):
        raise CorpusError(f"{source}: expected a JSON array of records")
    for n, record in enumerate(data):
        yield f"{source}: record {n}", record


def read_documents_by_field(inputs: Iterable[str | Path], cfg: CleanConfig, label: str,
                            ) -> dict[str, tuple[list[str], CorpusReport]]:
    """JSON/JSONL records grouped by the value of their ``label`` field (e.g. a style), each
    group cleaned by the rules like a corpus of its own: {value: (documents, report)}."""
    groups: dict[str, list[str]] = {}
    files: dict[str, list[str]] = {}
    for item in find_files(inputs, cfg):
        source = "<stdin>" if item == "-" else str(item)
        if item != "-" and item.suffix.lower() not in JSON_SUFFIXES:
            raise CorpusError(f"{source}: a style field is read from JSON or JSONL records; "
                              "name the file .json/.jsonl or give each style its own corpus",
                              cli_hint="--style NAME=FILE")
        source, data = read_input(item, cfg.encoding)
        text = decode(data, source, cfg.encoding)
        del data
        text = normalise(text)
        lines = item == "-" or item.suffix.lower() != ".json"
        for where, record in _json_records(text, source, lines and
                                           not text.lstrip().startswith("[")):
            value = _field(record, label, where)
            groups.setdefault(value, []).append(normalise(_field(record, cfg.field or "text",
                                                                 where)))
            if source not in files.setdefault(value, []):
                files[value].append(source)
    if not groups:
        raise CorpusError(f"{', '.join(map(str, inputs))}: no records to read")
    out = {}
    for value in sorted(groups):
        report = CorpusReport(files=files[value], documents_read=len(groups[value]),
                              chars_read=sum(map(len, groups[value])))
        out[value] = clean_corpus(groups[value], cfg, report)
    return out


def read_documents(inputs: Iterable[str | Path], cfg: CleanConfig,
                   report: CorpusReport) -> Iterator[str]:
    """Decoded, normalised documents (rule 1), one per file or JSON record."""
    for item in find_files(inputs, cfg):
        suffix = "" if item == "-" else item.suffix.lower()
        source, data = read_input(item, cfg.encoding)
        text = decode(data, source, cfg.encoding)
        del data  # the bytes are not needed once decoded
        report.files.append(source)
        is_json = suffix in JSON_SUFFIXES or (item == "-" and cfg.field is not None)
        if is_json:
            text = normalise(text)
            docs = _json_documents(text, source, cfg, lines=suffix != ".json"
                                   and not text.lstrip().startswith("["))
            for doc in docs:
                report.chars_read += len(doc)
                yield normalise(doc)
        else:
            report.chars_read += len(text)
            yield normalise(text)


# ----------------------------------------------------------------------------- rules


def strip_gutenberg(doc: str) -> str:
    start = GUTENBERG_START.search(doc)
    if start:
        doc = doc[start.end():].lstrip("\n")
    end = GUTENBERG_END.search(doc)
    if end:
        doc = doc[: end.start()].rstrip("\n") + "\n"
    return doc


def ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed
                                                if not unicodedata.combining(c)))


def keep_charset(text: str, charset: str) -> str:
    limit = 128 if charset == "ascii" else 256
    return "".join(c for c in text if ord(c) < limit)


def _char_rules(cfg: CleanConfig):
    """(name, function) for rules 5-10, in order."""
    rules = []
    if cfg.unescape_html:
        rules.append(("unescape_html", html.unescape))
    if cfg.remove_urls:
        rules.append(("remove_urls", lambda t: URL_RE.sub("", t)))
    if cfg.ascii_fold:
        rules.append(("ascii_fold", ascii_fold))
    if cfg.lowercase:
        rules.append(("lowercase", lambda t: unicodedata.normalize("NFC", t.lower())))
    if cfg.charset:
        rules.append(("charset", lambda t: keep_charset(t, cfg.charset)))
    if cfg.collapse_spaces:
        rules.append(("collapse_spaces", lambda t: SPACES_RE.sub(" ", t)))
    return rules


def _examples(name: str, before: str, after: str) -> list[str]:
    if name == "remove_urls":
        return URL_RE.findall(before)
    if name == "unescape_html":
        return re.findall(r"&#?\w+;", before)
    if name in ("charset", "ascii_fold"):
        return sorted(set(before) - set(after))
    return []


def apply_char_rules(doc: str, cfg: CleanConfig, report: CorpusReport | None = None) -> str:
    for name, fn in _char_rules(cfg):
        new = fn(doc)
        if report is not None:
            st = report.rule(name)
            if new != doc:
                st.docs_changed += 1
                st.chars_removed += max(len(doc) - len(new), 0)
                for ex in _examples(name, doc, new):
                    st.note(ex)
        doc = new
    return doc


def clean_chars(text: str, cfg: CleanConfig, vocab_chars=None) -> str:
    """The character rules a prime text gets: normalisation, rules 5-10, rare mapping."""
    text = apply_char_rules(normalise(text), cfg)
    if vocab_chars is not None and cfg.rare_replacement:
        known = set(vocab_chars)
        text = "".join(c if c in known else cfg.rare_replacement for c in text)
    return text


def clean_documents(docs: Iterable[str], cfg: CleanConfig, report: CorpusReport) -> list[str]:
    """Rules 2-12 over the documents; returns the kept documents."""
    split_re = re.compile(cfg.split_on) if cfg.split_on else None
    drop_re = re.compile(cfg.drop_if) if cfg.drop_if else None
    kept: list[str] = []
    for doc in docs:
        report.documents_read += 1
        if cfg.strip_gutenberg:
            new = strip_gutenberg(doc)
            st = report.rule("strip_gutenberg")
            if new != doc:
                st.docs_changed += 1
                st.chars_removed += len(doc) - len(new)
                st.note(doc[: len(doc) - len(doc.lstrip())] or doc[:60])
            doc = new
        pieces = [p for p in split_re.split(doc) if p] if split_re else [doc]
        if split_re and len(pieces) > 1:
            report.rule("split_on").docs_changed += 1
        for piece in pieces:
            if drop_re and drop_re.search(piece):
                st = report.rule("drop_if")
                st.docs_dropped += 1
                st.chars_removed += len(piece)
                st.note(piece)
                continue
            piece = apply_char_rules(piece, cfg, report)
            n = len(piece)
            if n < cfg.min_doc_chars or (cfg.max_doc_chars and n > cfg.max_doc_chars):
                st = report.rule("doc_length")
                st.docs_dropped += 1
                st.chars_removed += n
                st.note(piece)
                continue
            if cfg.pad_to:
                st = report.rule("pad_to")
                if n > cfg.pad_to:
                    st.chars_removed += n - cfg.pad_to
                    st.docs_changed += 1
                    piece = piece[: cfg.pad_to]
                elif n < cfg.pad_to:
                    st.docs_changed += 1
                    piece = piece + cfg.pad_char * (cfg.pad_to - n)
            kept.append(piece)
    return kept


def drop_rare(docs: list[str], cfg: CleanConfig, report: CorpusReport) -> list[str]:
    """Rule 13: characters seen fewer than ``min_char_count`` times."""
    if cfg.min_char_count <= 1:
        return docs
    counts = Counter()
    for d in docs:
        counts.update(d)
    counts.update(cfg.doc_separator * max(len(docs) - 1, 0))
    rare = sorted(c for c, n in counts.items() if n < cfg.min_char_count)
    report.rare_chars = rare
    if not rare:
        return docs
    st = report.rule("min_char_count")
    table = str.maketrans({c: (cfg.rare_replacement or None) for c in rare})
    out = []
    for d in docs:
        new = d.translate(table)
        if new != d:
            st.docs_changed += 1
            st.chars_removed += len(d) - len(new) if not cfg.rare_replacement else 0
        out.append(new)
    for c in rare[:EXAMPLES]:
        st.note(c)
    return out


def read_documents_cleaned(inputs: Iterable[str | Path],
                           cfg: CleanConfig) -> tuple[list[str], CorpusReport]:
    """Read and clean every input (rules 1-13); documents are kept apart, not joined."""
    report = CorpusReport()
    return clean_corpus(read_documents(inputs, cfg, report), cfg, report)


def clean_corpus(raw_docs: Iterable[str], cfg: CleanConfig,
                 report: CorpusReport) -> tuple[list[str], CorpusReport]:
    """Rules 2-13 over decoded documents, and the character counts of what is kept."""
    docs = clean_documents(raw_docs, cfg, report)
    docs = drop_rare(docs, cfg, report)
    report.documents = len(docs)
    report.doc_lengths = [len(d) for d in docs]
    sep = cfg.doc_separator
    report.chars_kept = sum(report.doc_lengths) + len(sep) * max(len(docs) - 1, 0)
    counts: Counter = Counter()
    for d in docs:
        counts.update(d)  # C-accelerated per document; no joined copy of the corpus
    if sep and len(docs) > 1:
        counts.update(sep * (len(docs) - 1))
    nonblank = sum(n for c, n in counts.items() if not c.isspace())
    if nonblank == 0:
        names = ", ".join(report.files[:3]) + (" ..." if len(report.files) > 3 else "")
        emptied = " after cleaning" if report.chars_read and report.rules else ""
        raise CorpusError(
            f"{names}: corpus is empty or only whitespace{emptied}; give a text to train on"
            + (" or relax the cleaning rules" if emptied else "")
        )
    report.char_counts = dict(counts)
    return docs, report


def read_corpus(inputs: Iterable[str | Path], cfg: CleanConfig) -> tuple[str, CorpusReport]:
    """Read, decode, clean and join every input; return the text and a report."""
    docs, report = read_documents_cleaned(inputs, cfg)
    return cfg.doc_separator.join(docs), report


def document_bounds(doc_lengths: list[int], sep_len: int) -> list[tuple[int, int]]:
    """(start, end) offsets of each document in the joined text."""
    bounds, pos = [], 0
    for n in doc_lengths:
        bounds.append((pos, pos + n))
        pos += n + sep_len
    return bounds
