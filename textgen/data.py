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
import sys
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import cells
from ._version import __version__
from .config import Config
from .corpus import (RARE_FLAG, CorpusReport, document_bounds, find_files, nul_means_binary,
                     read_documents_by_field, read_documents_cleaned)
from .errors import CorpusError, TextgenError
from .vocab import Vocab, WordVocab, count_tokens, tokenize
from .windows import Split, combine_splits, split_ids

CACHE_FORMAT = 1
CACHE_META_MAX = 1 << 28  # bytes: meta.json holds the report and vocabulary, never this much


@dataclass
class Prepared:
    vocab: Vocab | WordVocab
    ids: np.ndarray
    split: Split | None  # None only when windows were not needed and the corpus is too short
    report: dict  # corpus report + window counts + memory estimate (saved as corpus.json)
    text: str | None = None  # the cleaned text, only when asked for
    cached: bool = False  # ids came from the cache
    styles: tuple[str, ...] = ()  # style names, in style-id order (empty: no styles)
    _fingerprint: dict | None = None

    def fingerprint(self) -> dict:
        """What a run trains on, recorded when it starts and compared when it resumes: a
        content hash of the ids, their count and the windows they make."""
        if self._fingerprint is None:
            digest = hashlib.sha256(str(self.ids.dtype).encode())
            ids = np.ascontiguousarray(self.ids)
            for start in range(0, len(ids), 1 << 24):  # a memory-mapped corpus, in pieces
                digest.update(memoryview(ids[start : start + (1 << 24)]).cast("B"))
            self._fingerprint = {"ids_sha256": digest.hexdigest()[:32], "ids": int(len(ids)),
                                 "train_windows": int(self.split.n_train_windows),
                                 "val_windows": int(len(self.split.val_starts))}
        return dict(self._fingerprint)

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


def build_vocab(doc_groups: list[list[str]], reports: list, config: Config,
                base_vocab: Vocab | WordVocab | None = None) -> Vocab | WordVocab:
    """The vocabulary of all documents: characters, or the most frequent words; with
    ``base_vocab`` (a run started from another, transfer.py), also every token of that."""
    sep = config.clean.doc_separator
    if config.tokens.level == "word":
        counts: Counter = Counter()
        for docs in doc_groups:
            counts.update(count_tokens(docs, sep))
        vocab = WordVocab.from_counts(counts, config.tokens.max_words)
        if base_vocab is not None:
            known = set(base_vocab.tokens)
            vocab = WordVocab((*base_vocab.tokens, *(t for t in vocab.tokens if t not in known)))
        return vocab
    chars: Counter = Counter()
    for report in reports:
        chars.update(report.char_counts)
    if sep and len(doc_groups) > 1:
        chars.update(sep * (len(doc_groups) - 1))  # styles are never joined, but keep it known
    if base_vocab is not None:
        chars.update(base_vocab.tokens)
    return Vocab.from_counts(chars)


def prepare(inputs: list[str], config: Config, keep_text: bool = False,
            need_windows: bool = True, use_cache: bool = True,
            styles: dict[str, list[str]] | None = None,
            base_vocab: Vocab | WordVocab | None = None) -> Prepared:
    """Read and clean the corpus, build the vocabulary, ids and train/validation windows.

    With ``styles`` ({name: inputs}) each style's text is read and split on its own (its own
    validation tail) under one shared vocabulary; ``inputs`` is then ignored. ``base_vocab``:
    see ``build_vocab``. With
    ``need_windows=False`` (``textgen clean``) a corpus too short for the window config is
    reported, not an error.
    """
    cfg = config.clean
    if styles:
        return _prepare_styles([(name, *read_documents_cleaned(paths, cfg))
                                for name, paths in styles.items()], config, base_vocab)
    if cfg.style_field:
        groups = read_documents_by_field(inputs, cfg, cfg.style_field)
        if len(groups) < 2:
            raise CorpusError(f"{', '.join(map(str, inputs))}: field {cfg.style_field!r} has "
                              f"one value ({', '.join(groups)}); styles need two or more")
        return _prepare_styles([(name, *g) for name, g in groups.items()], config, base_vocab)
    key = cache_key(inputs, config, base_vocab) if use_cache and not keep_text else None
    hit = load_cached(key, cfg) if key else None
    text = None
    if hit is not None:
        vocab, ids, report = hit
    else:
        docs, corpus = read_documents_cleaned(inputs, cfg)
        vocab = build_vocab([docs], [corpus], config, base_vocab)
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
                    config: Config, base_vocab=None) -> Prepared:
    """One cleaned corpus per style, a shared vocabulary, windows that never mix styles."""
    cfg = config.clean
    names = tuple(name for name, _, _ in styled)
    groups = [docs for _, docs, _ in styled]
    reports = [report for _, _, report in styled]
    vocab = build_vocab(groups, reports, config, base_vocab)
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


# Peak RSS of the framework alone: a Python process that imports keras + tensorflow, builds and
# compiles a tiny model and fits it one step (VmHWM from /proc/self/status; Keras 3.15.1,
# TensorFlow 2.21.0, CPU, Linux x86-64) peaked at 594-713 MiB: ~295 MiB anonymous memory plus
# 300-420 MiB of TensorFlow's shared library pages (RssFile), more when the library is already
# in the page cache (as after any earlier TF run). ``textgen train`` of a 4-unit model on a 1 KB
# corpus peaked at 621 MiB (cold cache). The upper end is what repeated training sees.
FRAMEWORK_BYTES = 700 * 2**20
# Copies of the batch x window x vocab logits alive at the peak of a train step: the logits,
# the softmax the loss computes from them (and its temporaries), the loss's gradient with
# respect to the logits and the gradient back through the Dense layer. Measured: peak RSS rises
# by 0.109 MiB per vocabulary entry (34, 1501 and 3001 characters at batch 128 x window 40),
# 5.6 x batch x window float32s, of which the output layer's parameters take ~0.15.
LOGIT_COPIES = 5.5
# Floats kept per recurrent unit, time step and layer, in units of (gates + 2): an LSTM's gate
# pre-activations and activations, cell and hidden state, for the forward pass, their
# gradients and the scan's per-step copies. Measured for LSTM: ~28 floats per unit
# (peak RSS at 64 -> 256 units, 2 layers, batch 128 x window 40) = 4.6 x (4 + 2).
RECURRENT_COPIES = 4.6
# Floats kept per embedding unit at every position of a step: the embedding's output (and the
# style embedding's, concatenated), its gradient, the gather's gradient, the first layer's input
# projection's gradient back through it... Measured: peak RSS rose by 23.1 bytes (5.8 float32s)
# per position per embedding unit from --embedding-dim 64 to 4096 (--units 8 --window 200
# --batch-size 256, TensorFlow on a CPU: 905 MB to 5,462 MB), 6.2 from 64 to 1024.
EMBEDDING_COPIES = 6.0


def estimate_memory(config: Config, vocab_size: int, n_ids: int, n_windows: int) -> int:
    """Rough peak bytes of a training process (the whole process: resident set size on CPU).

    The sum of:

    * ``FRAMEWORK_BYTES``: TensorFlow + Keras themselves (~700 MB, measured; see above);
    * the ids (and their tensor copy) and the window starts (held about three times while
      shuffling);
    * parameters x 4: values, gradients, optimizer slots, clipped gradients;
    * recurrent activations: batch x window x layers x units x (gates + 2) floats, times
      ``RECURRENT_COPIES`` (values kept for backprop, their gradients, per-step copies);
    * the embedding's activations: batch x window x embedding_dim floats, times
      ``EMBEDDING_COPIES`` (a wide embedding dominates: --embedding-dim 4096 at batch 256 x
      window 200 needs about 4.8 GB for them alone);
    * the output (softmax) layer: it is ``vocab_size`` wide at every position of every window,
      so a step holds batch x window x vocab_size float32 logits ``LOGIT_COPIES`` times over
      (logits, their softmax inside the loss, the gradient into the logits, and the gradient
      through the Dense layer). This term grows with the vocabulary: at batch 128 x window 40,
      about 110 MB per 1,000 distinct characters (or words), and it dominates large
      vocabularies (3,000 characters: ~340 MB of ~1.2 GB).
    """
    m, w = config.model, config.window
    cell = cells.get(m.cell)
    params = vocab_size * m.embedding_dim + m.units * vocab_size + vocab_size
    inp = m.embedding_dim
    for _ in range(m.layers):
        params += cell.parameters(inp, m.units)
        inp = m.units
    positions = w.batch_size * w.window  # tokens per training step
    recurrent = positions * m.layers * cell.activation_floats * m.units * RECURRENT_COPIES
    embedded = positions * m.embedding_dim * EMBEDDING_COPIES
    logits = positions * vocab_size * LOGIT_COPIES  # the softmax-wide output, see above
    itemsize = 1 if vocab_size <= 256 else 2 if vocab_size <= 65536 else 4  # as Vocab.dtype
    start_size = 4 if n_ids < 2**31 else 8  # as windows.window_starts
    return int(FRAMEWORK_BYTES + n_ids * itemsize * 2 + n_windows * start_size * 3
               + params * 4 * 4 + (recurrent + logits + embedded) * 4)


# ----------------------------------------------------------------------------- cache


def cache_dir() -> Path | None:
    """Where encoded corpora are cached; TEXTGEN_CACHE_DIR="" turns caching off."""
    explicit = os.environ.get("TEXTGEN_CACHE_DIR")
    if explicit is not None:
        return Path(explicit) if explicit else None
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "textgen"


def cache_key(inputs: list[str], config: Config, base_vocab=None) -> str | None:
    """A hash of the input files (paths and contents), the cleaning rules, the version and any
    base vocabulary the ids are encoded with."""
    if cache_dir() is None or any(str(i) == "-" for i in inputs):
        return None  # stdin cannot be re-read
    h = hashlib.sha256()
    h.update(json.dumps({"textgen": __version__, "format": CACHE_FORMAT,
                         "clean": asdict(config.clean), "tokens": asdict(config.tokens),
                         "base_vocab": base_vocab.digest() if base_vocab else None},
                        sort_keys=True).encode())
    check_nul = nul_means_binary(config.clean.encoding)
    for path in find_files(inputs, config.clean):
        h.update(os.fsencode(Path(path).resolve()) + b"\0")  # a name may not be UTF-8
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    if check_nul and b"\0" in block:
                        return None  # binary: the real read stops at its first block and says so
                    h.update(block)
        except OSError:
            return None  # let the real read report the problem
        h.update(b"\0\0")
    return h.hexdigest()[:32]


def load_cached(key: str, clean=None):
    """(vocab, ids, report) of a cache entry, or None when there is none.

    An entry is checked before use: meta.json well-formed, the ids a 1-D array of the
    vocabulary's id type whose length is the recorded one (with ``clean``, the CleanConfig, also
    the documents' lengths plus separators), and every id inside the vocabulary. A damaged entry
    is deleted with a one-line warning on stderr, and the corpus is read again.
    """
    folder = cache_dir() / key
    if not (folder / "meta.json").exists() and not (folder / "ids.npy").exists():
        return None  # not cached (yet)
    try:
        entry = _check_entry(folder, clean)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError,
            TextgenError) as e:  # TextgenError: the RunError of a bad vocabulary in meta.json
        entry = (str(e).splitlines() or [type(e).__name__])[0]
    if isinstance(entry, tuple):
        return entry
    problem = entry
    print(f"warning: corpus cache entry {folder} is damaged ({problem}); deleted it and "
          "reading the corpus again", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    return None


def _check_entry(folder: Path, clean):
    """(vocab, ids, report) of a sound entry, else a string saying what is wrong."""
    with open(folder / "meta.json", "rb") as f:
        raw = f.read(CACHE_META_MAX + 1)
    if len(raw) > CACHE_META_MAX:
        return "meta.json too large"
    meta = json.loads(raw.decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        return "meta.json is not a cache entry of this format"
    n_ids, report = meta.get("n_ids"), meta.get("report")
    if not isinstance(n_ids, int) or isinstance(n_ids, bool) or n_ids < 0:
        return "meta.json: bad n_ids"
    if not isinstance(report, dict) or not isinstance(report.get("files"), list):
        return "meta.json: bad report"
    lengths = report.get("doc_lengths")
    if not isinstance(lengths, list) or not all(isinstance(n, int) and n >= 0 for n in lengths):
        return "meta.json: bad doc_lengths"
    vocab = Vocab.from_json(json.dumps(meta["vocab"]), "meta.json vocab")
    if clean is not None:
        sep_len = separator_length(vocab, clean)
        if sum(lengths) + sep_len * max(len(lengths) - 1, 0) != n_ids:
            return "meta.json: document lengths do not add up to the ids"
    ids = np.load(folder / "ids.npy", mmap_mode="r", allow_pickle=False)
    if ids.ndim != 1 or ids.dtype != vocab.dtype:
        return f"ids.npy holds {ids.dtype} {ids.shape}, expected {vocab.dtype} ids"
    if len(ids) != n_ids:
        return f"ids.npy holds {len(ids):,} ids, meta.json says {n_ids:,}"
    if n_ids and int(ids.max()) >= len(vocab):
        return f"ids.npy holds id {int(ids.max())}, outside the vocabulary of {len(vocab)}"
    return vocab, ids, report


STALE_TEMP_SECONDS = 30 * 60  # a writer's temp folder untouched this long was left behind


def store_cached(key: str, vocab: Vocab, ids: np.ndarray, report: dict) -> None:
    """Write the cache entry into a temp folder, then rename it into place (best effort: a
    cache that cannot be written only costs time). The temp folder never outlives a failed
    write; ones that writers killed left behind are removed here once they are stale."""
    root = cache_dir()
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(root)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
        np.save(tmp / "ids.npy", ids)
        meta = {"format": CACHE_FORMAT, "n_ids": int(len(ids)),
                "vocab": json.loads(vocab.to_json()), "report": report}
        # a file name that is not UTF-8 is stored as JSON's \udcXX escape (runs.json_bytes)
        text = json.dumps(meta, ensure_ascii=False)
        (tmp / "meta.json").write_bytes(text.encode("utf-8", "backslashreplace"))
        os.replace(tmp, root / key)  # fails if another process stored it first
        tmp = None
    except OSError:
        pass
    finally:  # also on a signal (Signalled) or any error: no temp folder stays
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(root: Path, now: float | None = None) -> list[str]:
    """Delete the cache's temp folders that nothing has written to for ``STALE_TEMP_SECONDS``
    (a live writer's are fresher); returns their names."""
    import time

    now = time.time() if now is None else now
    removed = []
    for folder in root.glob(".tmp-*"):
        try:
            newest = max([folder.stat().st_mtime] + [p.stat().st_mtime
                                                    for p in folder.iterdir()])
        except OSError:  # removed meanwhile, or not a folder
            continue
        if now - newest > STALE_TEMP_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed
