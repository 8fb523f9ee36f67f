"""Corpus inputs -> cleaned documents -> vocabulary -> ids -> train/validation windows (no TF).

The pure-data half of training, shared by ``train`` and ``clean`` (whose report shows how many
windows a corpus makes and roughly how much memory training it takes).

Memory: documents are cleaned one at a time and kept apart (never joined into one string), then
encoded one by one into a preallocated id array (1 byte per character for up to 256 distinct
characters), each document released once encoded. A 100 MB single-file corpus peaks well under
1 GB (``bench/corpus_scale.py`` measures it).

Cache: the ids, vocabulary, report and document lengths are stored under a key made of the
inputs' paths and contents, the cleaning rules and the textgen version, in
``$TEXTGEN_CACHE_DIR`` (default ``$XDG_CACHE_HOME/textgen`` or ``~/.cache/textgen``). A second
``train`` on the same corpus memory-maps the ids instead of reading and cleaning again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ._version import __version__
from .config import Config
from .corpus import (RARE_FLAG, CorpusReport, document_bounds, find_files,
                     read_documents_by_field, read_documents_cleaned)
from .errors import CorpusError
from .vocab import Vocab, WordVocab, count_tokens, tokenize
from .windows import Split, combine_splits, split_ids

CACHE_FORMAT = 1


@dataclass
class Prepared:
    vocab: Vocab | WordVocab
    ids: np.ndarray
    split: Split | None  # None only when windows were not needed and the corpus is too short
    report: dict  # corpus report + window counts + memory estimate (saved as corpus.json)
    text: str | None = None  # the cleaned text, only when asked for
    cached: bool = False  # ids came from the cache
    styles: tuple[str, ...] = ()  # style names, in style-id order (empty: no styles)

    def describe(self) -> str:
        """The human-readable report: rules, characters, tokens, styles, windows, memory."""
        w = self.report["windows"]
        problem = f" ({w['problem']})" if "problem" in w else ""
        cache = " (ids from cache)" if self.cached else ""
        lines = [CorpusReport.describe_dict(self.report)]
        t = self.report.get("tokens")
        if t:
            lines.append(f"{t['count']:,} word tokens, vocabulary {t['vocab']:,} "
                         f"(<unk> for {t['unknown']:,} tokens, {t['unknown_rate']:.2%})")
        for name, st in self.report.get("styles", {}).items():
            lines.append(f"style {name}: {st['tokens']:,} tokens from {', '.join(st['files'])}; "
                         f"{st['train_windows']:,} training windows, drawn x{st['repeat']}")
        lines.append(f"{w['train']:,} training windows, {w['val']:,} validation windows"
                     f"{problem}; estimated training memory "
                     f"{self.report['estimated_training_memory_mb']:,} MB{cache}")
        return "\n".join(lines)


def encode_documents(docs: list[str], vocab: Vocab | WordVocab,
                     sep: str) -> tuple[np.ndarray, list[int]]:
    """Encode documents (joined by ``sep``) into one id array, releasing each as it goes.

    Returns the ids and each document's length in tokens.
    """
    sep_ids = vocab.encode(sep) if sep and len(docs) > 1 else np.zeros(0, vocab.dtype)
    if vocab.level == "word":  # lengths are known only after tokenizing
        parts, lengths = [], []
        for i in range(len(docs)):
            doc, docs[i] = docs[i], ""
            parts.append(vocab.encode(doc))
            lengths.append(len(parts[-1]))
        joined = [sep_ids] * (2 * len(parts) - 1)
        joined[::2] = parts
        return np.concatenate(joined) if joined else np.zeros(0, vocab.dtype), lengths
    lengths = [len(d) for d in docs]
    total = sum(lengths) + len(sep_ids) * max(len(docs) - 1, 0)
    ids = np.empty(total, dtype=vocab.dtype)
    pos = 0
    for i in range(len(docs)):
        if i and len(sep_ids):
            ids[pos : pos + len(sep_ids)] = sep_ids
            pos += len(sep_ids)
        doc, docs[i] = docs[i], ""  # drop our reference once encoded
        ids[pos : pos + len(doc)] = vocab.encode(doc)
        pos += len(doc)
    return ids, lengths


def build_vocab(doc_groups: list[list[str]], reports: list, config: Config) -> Vocab | WordVocab:
    """The vocabulary of all documents: characters, or the most frequent words."""
    sep = config.clean.doc_separator
    if config.tokens.level == "word":
        counts: Counter = Counter()
        for docs in doc_groups:
            counts.update(count_tokens(docs, sep))
        return WordVocab.from_counts(counts, config.tokens.max_words)
    chars: Counter = Counter()
    for report in reports:
        chars.update(report.char_counts)
    if sep and len(doc_groups) > 1:
        chars.update(sep * (len(doc_groups) - 1))  # styles are never joined, but keep it known
    return Vocab.from_counts(chars)


def prepare(inputs: list[str], config: Config, keep_text: bool = False,
            need_windows: bool = True, use_cache: bool = True,
            styles: dict[str, list[str]] | None = None) -> Prepared:
    """Read and clean the corpus, build the vocabulary, ids and train/validation windows.

    With ``styles`` ({name: inputs}) each style's text is read and split on its own (its own
    validation tail) under one shared vocabulary; ``inputs`` is then ignored. With
    ``need_windows=False`` (``textgen clean``) a corpus too short for the window config is
    reported, not an error.
    """
    cfg = config.clean
    if styles:
        return _prepare_styles([(name, *read_documents_cleaned(paths, cfg))
                                for name, paths in styles.items()], config)
    if cfg.style_field:
        groups = read_documents_by_field(inputs, cfg, cfg.style_field)
        if len(groups) < 2:
            raise CorpusError(f"{', '.join(map(str, inputs))}: field {cfg.style_field!r} has "
                              f"one value ({', '.join(groups)}); styles need two or more")
        return _prepare_styles([(name, *g) for name, g in groups.items()], config)
    key = cache_key(inputs, config) if use_cache and not keep_text else None
    hit = load_cached(key) if key else None
    text = None
    if hit is not None:
        vocab, ids, report = hit
    else:
        docs, corpus = read_documents_cleaned(inputs, cfg)
        vocab = build_vocab([docs], [corpus], config)
        if keep_text:
            text = cfg.doc_separator.join(docs)
        ids, lengths = encode_documents(docs, vocab, cfg.doc_separator)
        del docs
        report = corpus.to_dict()
        report["doc_lengths"] = lengths
        _token_report(report, vocab, ids)
        if key:
            store_cached(key, vocab, ids, report)

    bounds = None if cfg.cross_docs else document_bounds(report["doc_lengths"],
                                                         separator_length(vocab, cfg))
    try:
        split = split_ids(ids, config.window, ", ".join(report["files"][:3]), bounds)
    except CorpusError as e:
        if need_windows:
            raise
        split = None
        windows = {"train": 0, "val": 0, "problem": str(e)}
    else:
        windows = {"train": split.n_train_windows, "val": len(split.val_starts)}
    report = {k: v for k, v in report.items() if k != "doc_lengths"}
    _finish_report(report, windows, config, vocab, ids)
    return Prepared(vocab, ids, split, report, text, cached=hit is not None)


def separator_length(vocab, cfg) -> int:
    """Tokens in the document separator."""
    sep = cfg.doc_separator
    return len(sep) if vocab.level == "char" else len(tokenize(sep))


def _token_report(report: dict, vocab, ids: np.ndarray) -> None:
    if vocab.level == "word":
        unknown = int(np.count_nonzero(ids == vocab.unk_id))
        report["tokens"] = {"level": "word", "count": int(len(ids)), "vocab": len(vocab),
                            "unknown": unknown, "unknown_rate": unknown / max(len(ids), 1)}


def _finish_report(report: dict, windows: dict, config: Config, vocab, ids) -> None:
    report["windows"] = windows
    report["estimated_training_memory_mb"] = round(
        estimate_memory(config, len(vocab), len(ids), windows["train"]) / 2**20, 1)


def _prepare_styles(styled: list[tuple[str, list[str], CorpusReport]],
                    config: Config) -> Prepared:
    """One cleaned corpus per style, a shared vocabulary, windows that never mix styles."""
    cfg = config.clean
    names = tuple(name for name, _, _ in styled)
    groups = [docs for _, docs, _ in styled]
    reports = [report for _, _, report in styled]
    vocab = build_vocab(groups, reports, config)
    sep_len = separator_length(vocab, cfg)
    splits, style_rows, id_parts = [], {}, []
    for name, docs, corpus in zip(names, groups, reports):
        ids, lengths = encode_documents(docs, vocab, cfg.doc_separator)
        bounds = None if cfg.cross_docs else document_bounds(lengths, sep_len)
        splits.append(split_ids(ids, config.window, f"style {name} ({', '.join(corpus.files[:3])})",
                                bounds))
        id_parts.append(ids)
        style_rows[name] = {"files": corpus.files, "chars": corpus.chars_kept,
                            "tokens": int(len(ids))}
    split, repeats = combine_splits(splits, config.window)
    for (name, row), s, r in zip(style_rows.items(), splits, repeats):
        row.update(train_windows=s.n_train_windows, repeat=r)
    ids = np.concatenate(id_parts)
    report = merge_reports([r.to_dict() for r in reports])
    _token_report(report, vocab, ids)
    report["styles"] = style_rows
    _finish_report(report, {"train": split.n_train_windows, "val": len(split.val_starts)},
                   config, vocab, ids)
    return Prepared(vocab, ids, split, report, styles=names)


def merge_reports(reports: list[dict]) -> dict:
    """Several corpus reports as one: files listed, counts summed, examples pooled."""
    merged = dict(reports[0])
    merged["files"] = [f for r in reports for f in r["files"]]
    for key in ("documents_read", "documents", "chars_read", "chars_kept"):
        merged[key] = sum(r[key] for r in reports)
    rules: dict = {}
    for r in reports:
        for name, st in r["rules"].items():
            into = rules.setdefault(name, {k: ([] if k == "examples" else 0) for k in st})
            for k, v in st.items():
                into[k] = (into[k] + v)[:3] if k == "examples" else into[k] + v
    merged["rules"] = rules
    merged["rare_chars"] = sorted({c for r in reports for c in r["rare_chars"]})
    counts = sum((Counter(r["char_counts"]) for r in reports), Counter())
    merged["char_counts"] = dict(sorted(counts.items()))
    merged["flagged_rare"] = sorted(c for c, n in counts.items() if n < RARE_FLAG)
    return merged


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
    start_size = 4 if n_ids < 2**31 else 8  # as windows.window_starts
    return (n_ids * itemsize * 2 + n_windows * start_size * 3 + params * 4 * 4
            + activations * 4 * 2)


# ----------------------------------------------------------------------------- cache


def cache_dir() -> Path | None:
    """Where encoded corpora are cached; TEXTGEN_CACHE_DIR="" turns caching off."""
    explicit = os.environ.get("TEXTGEN_CACHE_DIR")
    if explicit is not None:
        return Path(explicit) if explicit else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "textgen"


def cache_key(inputs: list[str], config: Config) -> str | None:
    """A hash of the input files (paths and contents), the cleaning rules and the version."""
    if cache_dir() is None or any(str(i) == "-" for i in inputs):
        return None  # stdin cannot be re-read
    h = hashlib.sha256()
    h.update(json.dumps({"textgen": __version__, "format": CACHE_FORMAT,
                         "clean": asdict(config.clean), "tokens": asdict(config.tokens)},
                        sort_keys=True).encode())
    for path in find_files(inputs, config.clean):
        h.update(str(Path(path).resolve()).encode() + b"\0")
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    h.update(block)
        except OSError:
            return None  # let the real read report the problem
        h.update(b"\0\0")
    return h.hexdigest()[:32]


def load_cached(key: str):
    folder = cache_dir() / key
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        ids = np.load(folder / "ids.npy", mmap_mode="r")
        vocab = Vocab.from_json(json.dumps(meta["vocab"]))
        if meta.get("format") != CACHE_FORMAT or len(ids) != meta["n_ids"]:
            return None
        return vocab, ids, meta["report"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: rebuild


def store_cached(key: str, vocab: Vocab, ids: np.ndarray, report: dict) -> None:
    """Write the cache entry into a temp folder, then rename it into place (best effort)."""
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        np.save(tmp / "ids.npy", ids)
        meta = {"format": CACHE_FORMAT, "n_ids": int(len(ids)),
                "vocab": json.loads(vocab.to_json()), "report": report}
        (tmp / "meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        try:
            os.replace(tmp, root / key)
        except OSError:  # another process stored it first
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError:
        pass  # a cache that cannot be written only costs time
