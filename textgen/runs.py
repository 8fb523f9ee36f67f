"""The run folder: what it holds, how each file is written, and how it is read back.

A run folder is self-contained; ``sample`` needs nothing else::

    RUN/
      config.json      fully resolved Config + textgen version + format version (+ style
                       names, in style-id order, for runs trained with --style)
      vocab.json       the characters (or, at word level, the word tokens), in id order
      weights.h5       best weights so far (lowest val loss), textgen's weight format (below)
      last.h5          weights at the last save, plus optimizer state, for resuming
      state.json       epochs/steps done, best val loss, seconds trained
      log.csv          one row per epoch: loss, val_loss, bits per char, learning rate
      corpus.json      the corpus report (files, characters, character counts)
      prime-text.txt   the first 100,000 characters of the training text (for --prime random)
      last.prev.h5     the checkpoint before last.h5 (used if last.h5 cannot be read)
      steps.csv        one row per step: the batch's loss and its exponential smoothing
      samples.txt      samples written during training, by epoch and temperature
      weights.init.h5  the untrained weights, the baseline ``evaluate`` reports

This module alone names these files and defines the CSV logs' fields.

Weight format (stable, read by h5py without TensorFlow): an HDF5 file with attribute
``format = "textgen-weights"`` and ``version = 1``, and one float32 dataset per tensor named
``embedding/embeddings`` (V x E), ``rnn_<i>/kernel`` (in x G*U), ``rnn_<i>/recurrent_kernel``
(U x G*U), ``rnn_<i>/bias`` (G*U, or R x G*U for a cell with R bias rows), ``logits/kernel``
(U x V), ``logits/bias`` (V), where G is the cell's gate count (cells.py: 4 for LSTM, gates i,
f, c, o).
Runs trained with styles add ``style/embeddings`` (S x D); the first layer's input is then the
token embedding followed by the style embedding (``rnn_0/kernel`` is (E + D) x G*U).

Every file is written atomically: a temp file in the same folder, flush, fsync, ``os.replace``.
A reader therefore sees either the old or the new version, never a truncated one.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import cells
from ._version import __version__
from .config import Config, ModelConfig, read_limited
from .errors import ConfigError, DiskFull, RunError
from .vocab import Vocab, WordVocab

RUN_FORMAT = 1
WEIGHTS_FORMAT = "textgen-weights"
DEFAULT_ROOT = Path("checkpoints")
LATEST = "latest"

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
BEST_WEIGHTS = "weights.h5"
LAST_WEIGHTS = "last.h5"
STATE_FILE = "state.json"
LOG_FILE = "log.csv"
CORPUS_REPORT = "corpus.json"
SCRIPT_LOG = "train.log"  # scripts/cloud/train.sh appends textgen's output here
PRIME_TEXT = "prime-text.txt"  # a slice of the training text, for --prime random
PRIME_TEXT_CHARS = 100_000
PREV_LAST = "last.prev.h5"  # the checkpoint before last.h5, used if last.h5 is unreadable
STEPS_FILE = "steps.csv"  # per-step training loss and its exponential smoothing
SAMPLES_FILE = "samples.txt"  # samples written during training
INIT_WEIGHTS = "weights.init.h5"  # the untrained model, the baseline `evaluate` reports
TENSORBOARD_DIR = "tensorboard"
LOCK_FILE = ".lock"  # held (flock) by the process training the run; holds its PID
# What a new run writes before config.json (written last): a folder holding only these is a
# run that never started, and may be trained anew.
UNSTARTED_FILES = {SCRIPT_LOG, LOCK_FILE, VOCAB_FILE, CORPUS_REPORT, PRIME_TEXT}

# The most bytes textgen reads of each file a run folder holds, far above what a run writes
# (config.json lists a run's corpus files; steps.csv takes ~40 bytes a step): anything larger
# is damaged or crafted, and refused before it is read.
MAX_BYTES = {CONFIG_FILE: 16_000_000, STATE_FILE: 1_000_000, CORPUS_REPORT: 64_000_000,
             LOG_FILE: 64_000_000, STEPS_FILE: 256_000_000,
             PRIME_TEXT: 4 * PRIME_TEXT_CHARS}

LOG_FIELDS = ["epoch", "step", "loss", "val_loss", "bpc", "val_bpc", "lr", "seconds"]
STEP_FIELDS = ["step", "epoch", "loss", "smooth_loss"]


# Fault injection for the tests that stop a process at a deterministic point (tests/test_train.py,
# tests/test_faults.py): TEXTGEN_FAULT="SIGNAL@PHASE@WHERE[,...]" makes the process send itself
# SIGNAL (KILL, TERM, INT or STOP) at PHASE of WHERE: a checkpoint's save (start, written,
# rotated, saved) of global step WHERE (checkpoint.py); an output file complete in its temp file,
# before it is renamed (write@FILE NAME); a command, once started (command@NAME, cli.py);
# train, its corpus read and Keras loaded, before the run folder is touched (prepared@train).
FAULT_ENV = "TEXTGEN_FAULT"


def fault(phase: str, where: object) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    import signal

    for item in spec.split(","):
        name, _, rest = item.partition("@")
        if rest == f"{phase}@{where}":
            os.kill(os.getpid(), getattr(signal, f"SIG{name}"))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success fsync it and move it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _mount_point(path: Path) -> str:
    path = Path(os.path.abspath(path))
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return str(path)


def write_error(path: Path, e: OSError, resumable: bool = True) -> RunError:
    """The one-line error for a failed write of ``path`` (whose previous version is intact).
    ``resumable``: a run folder's file (resume once fixed), else a command's output file (run
    the command again)."""
    kept = ("the previous version is intact" if resumable else
            "nothing was written")
    then = "resume" if resumable else "run the command again"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"no space left on {_mount_point(Path(path).parent)} while writing "
                        f"{path}; {kept}: free some space, then {then}")
    return RunError(f"{path}: cannot write ({e.strerror or e}); {kept}")


def write_bytes(path: Path, data: bytes, resumable: bool = True) -> None:
    """Write ``data`` to ``path`` atomically; a full disk is a ``DiskFull`` error (see
    ``write_error`` for ``resumable``)."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            write_file(tmp, data)
            fault("write", path.name)
    except OSError as e:
        raise write_error(path, e, resumable) from None


def write_file(path: Path, data: bytes) -> None:
    """The one place a run folder's bytes reach the disk (tests inject a full disk here)."""
    with open(path, "wb") as f:
        f.write(data)


def write_text(path: Path, text: str, resumable: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), resumable)


def json_bytes(data: Any) -> bytes:
    """JSON as UTF-8, indented. A file name that is not UTF-8 (Python holds its bytes as lone
    surrogates, e.g. b"x\\xff.txt" as "x\\udcff.txt") is written as JSON's own escape
    (\\udcff), which reads back as the same name."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return text.encode("utf-8", "backslashreplace")


def write_json(path: Path, data: Any, resumable: bool = True) -> None:
    write_bytes(path, json_bytes(data), resumable)


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """A run folder's file, read only if it is a regular file within its ``MAX_BYTES``."""
    path = Path(path)
    limit = limit or MAX_BYTES.get(path.name, MAX_BYTES[CONFIG_FILE])
    try:
        return read_limited(path, limit, RunError, "; the run folder is damaged")
    except FileNotFoundError:
        raise RunError(f"{path}: missing; is this a textgen run folder?") from None


def read_json(path: Path) -> Any:
    data = read_bytes(path)
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RunError(f"{path}: not valid JSON; the run folder is damaged") from None
    except RecursionError:
        raise RunError(f"{path}: nested too deeply to read; the run folder is damaged") from None


def read_csv(path: Path) -> list[dict]:
    """The rows of a CSV log as dicts of strings ([] if the file does not exist yet)."""
    if not path.exists():
        return []
    try:
        text = read_bytes(path).decode("utf-8")
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except (UnicodeDecodeError, csv.Error):
        raise RunError(f"{path}: damaged log (not UTF-8 CSV text); restore it or delete it to "
                       "start the log afresh") from None


def read_log_upto(path: Path, key: str, last: int) -> tuple[list[dict], int]:
    """(The rows of a CSV log whose ``key`` column is at most ``last``, how many rows came
    after them): rows past a checkpoint are dropped on resume, that training is redone."""
    rows = read_csv(path)
    try:
        kept = [r for r in rows if int(r[key]) <= last]
        return kept, len(rows) - len(kept)
    except (KeyError, TypeError, ValueError):
        raise RunError(f"{path}: damaged log (a row without a valid {key}); restore it or "
                       "delete it to start the log afresh") from None


def write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Write a whole CSV log atomically (None values as empty cells)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in fields})
    write_text(path, buf.getvalue())


def append_text(path: Path, text: str) -> None:
    """Append ``text`` to a text file, atomically (the file is rewritten whole)."""
    previous = path.read_text(encoding="utf-8") if path.exists() else ""
    write_text(path, previous + text)


def write_weights(path: Path, named: dict[str, np.ndarray],
                  extra: dict[str, np.ndarray] | None = None,
                  attrs: dict[str, Any] | None = None) -> None:
    """Write named tensors (and optional ``extra`` ones, e.g. optimizer state) atomically."""
    import h5py

    # The HDF5 file is built in memory and written with plain file I/O: HDF5's own writes on a
    # full disk crashed the process (exit 139) and left temp files behind.
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["format"] = WEIGHTS_FORMAT
        f.attrs["version"] = 1
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        for name, value in named.items():
            f.create_dataset(name, data=value)
        for name, value in (extra or {}).items():
            f.create_dataset(f"_extra/{name}", data=value)
    write_bytes(path, buf.getvalue())


def weight_shapes(model: ModelConfig, vocab_size: int, n_styles: int = 0
                  ) -> dict[str, tuple[int, ...]]:
    """The datasets of a weights file for this model and vocabulary, with their shapes."""
    cell, u = cells.get(model.cell), model.units
    shapes = {"embedding/embeddings": (vocab_size, model.embedding_dim)}
    if n_styles:
        shapes["style/embeddings"] = (n_styles, model.style_dim)
    inputs = model.embedding_dim + (model.style_dim if n_styles else 0)
    for i in range(model.layers):
        for name, shape in cell.weight_shapes(inputs if i == 0 else u, u).items():
            shapes[f"rnn_{i}/{name}"] = shape
    shapes["logits/kernel"] = (u, vocab_size)
    shapes["logits/bias"] = (vocab_size,)
    return shapes


def read_weights(path: Path, expected: dict[str, tuple[int, ...]] | None = None,
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """Read (named tensors, extra tensors, attributes); RunError if missing or damaged.

    With ``expected`` ({dataset: shape}; extras as ``_extra/NAME``) the file must hold exactly
    those datasets, with those shapes, as floating-point data stored in the file itself; all of
    that is checked before a byte of data is read, and the values must be finite.
    """
    import h5py
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block HDF5's open
            raise RunError(f"{path}: not a regular file; not a textgen weights file")
        with h5py.File(path, "r") as f:
            attrs = _attributes(f, path)
            if attrs.get("format") != WEIGHTS_FORMAT:
                raise RunError(f"{path}: not a textgen weights file")
            datasets = _datasets(f, path)
            if expected is not None:
                _check_layout(path, datasets, expected)
            values = {name: ds[()] for name, ds in datasets.items()}
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise RunError(f"{path}: unreadable or truncated weights file ({e})") from None
    if expected is not None:
        for name, value in values.items():
            if not np.isfinite(value).all():
                raise RunError(f"{path}: {name} holds NaN or infinite values; the weights are "
                               "damaged")
    named = {k: v for k, v in values.items() if not k.startswith("_extra/")}
    extra = {k.removeprefix("_extra/"): v for k, v in values.items() if k.startswith("_extra/")}
    return named, extra, attrs


ATTRIBUTE_MAX_BYTES = 65_536  # textgen's attributes are numbers and short strings


def _attributes(f, path: Path) -> dict:
    """The file's attributes, each checked for size before it is read."""
    attrs = {}
    for name in f.attrs:
        if f.attrs.get_id(name).get_storage_size() > ATTRIBUTE_MAX_BYTES:
            raise RunError(f"{path}: attribute {name!r} is over {ATTRIBUTE_MAX_BYTES:,} bytes; "
                           "not a textgen weights file")
        value = f.attrs[name]
        attrs[name] = value.item() if hasattr(value, "item") and np.size(value) == 1 else value
    return attrs


def _datasets(f, path: Path) -> dict:
    import h5py

    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found[name] = obj

    f.visititems(visit)
    return found


def _check_layout(path: Path, datasets: dict, expected: dict[str, tuple[int, ...]]) -> None:
    unknown = sorted(set(datasets) - set(expected))
    if unknown:
        raise RunError(f"{path}: unexpected dataset {unknown[0]!r} (this model has "
                       f"{len(expected)} tensors); the file is not this run's weights")
    missing = [name for name in expected if name not in datasets]
    if missing:
        raise RunError(f"{path}: dataset {missing[0]!r} is missing; the weights do not match "
                       "config.json")
    for name, shape in expected.items():
        ds = datasets[name]
        if tuple(ds.shape) != tuple(shape):
            raise RunError(f"{path}: {name} has shape {tuple(ds.shape)}, config.json implies "
                           f"{tuple(shape)}; the weights do not match the config")
        if ds.dtype.kind != "f" and not name.startswith("_extra/"):
            raise RunError(f"{path}: {name} holds {ds.dtype}, not floating-point numbers")
        if ds.external or ds.is_virtual or ds.compression is not None:
            raise RunError(f"{path}: {name} is stored outside the file, virtual or compressed; "
                           "textgen writes plain datasets only")
        need = math.prod(shape) * ds.dtype.itemsize
        stored = ds.id.get_storage_size()
        if stored < need:  # e.g. chunks never written: reading would conjure `need` bytes
            raise RunError(f"{path}: {name} holds {stored:,} bytes in the file, its shape needs "
                           f"{need:,}; the file is damaged or crafted")


@dataclass(frozen=True)
class Run:
    """A run folder read back: everything sampling and info need."""

    path: Path
    config: Config
    vocab: Vocab | WordVocab
    meta: dict[str, Any]  # config.json's other keys: textgen version, format, corpus paths

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def styles(self) -> list[str]:
        """Style names in style-id order ([] for a run trained without --style)."""
        return list(self.meta.get("styles") or {})

    @property
    def kept_vocab(self) -> Vocab | WordVocab | None:
        """What preparing this run's corpus again must keep besides the corpus's own tokens:
        a run started from another (--init-from, transfer.py) keeps that run's, so its own
        vocabulary; None for any other run."""
        return self.vocab if self.meta.get("init_from") else None

    def read_weights(self, name: str = BEST_WEIGHTS) -> dict[str, np.ndarray]:
        """A weights file of this run, checked against config.json, vocab.json and the styles
        before it is used (see ``read_weights``); RunError says what does not match."""
        path = self.file(name)
        named, _, attrs = read_weights(path, weight_shapes(self.config.model, len(self.vocab),
                                                          len(self.styles)))
        for key, value in identity(self.vocab, self.styles).items():
            if key in attrs and attrs[key] != value:  # runs before this check lack the attrs
                what = "vocab.json" if key == "vocab_sha256" else "the styles in config.json"
                raise RunError(f"{path}: these weights were trained with another vocabulary or "
                               f"styles than {what} holds; the run folder is mixed up")
        return named

    @property
    def state(self) -> dict[str, Any]:
        """state.json ({} before the first epoch end), each field checked (``STATE_FIELDS``)."""
        p = self.file(STATE_FILE)
        if not p.exists():
            return {}
        state = read_json(p)
        problem = _state_problem(state)
        if problem:
            raise RunError(f"{p}: damaged ({problem}); delete it to have it rewritten at the "
                           "run's next epoch end")
        return state


def is_count(v) -> bool:
    """An integer >= 0 read from JSON (not a bool)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# What state.json may hold (callbacks.StateFile writes it): a field that is there has this kind.
STATE_FIELDS = {
    "stopped": ("text or null", lambda v: v is None or isinstance(v, str)),
    "epochs_done": ("a count", is_count), "steps_done": ("a count", is_count),
    "epochs_planned": ("a count", is_count), "steps_per_epoch": ("a count", is_count),
    "best_loss": ("a number or null", lambda v: v is None or _number(v)),
    "best_monitor": ("text or null", lambda v: v is None or isinstance(v, str)),
    "seconds": ("a number", lambda v: _number(v) and v >= 0),
}


def _state_problem(state: Any) -> str | None:
    if not isinstance(state, dict):
        return f"a JSON {type(state).__name__}, not an object"
    for key, (kind, ok) in STATE_FIELDS.items():
        if key in state and not ok(state[key]):
            return f"{key} is {_short(state[key])}, not {kind}"
    return None


def _short(value: Any) -> str:
    """A value of a damaged file, as JSON, cut short for a one-line message."""
    try:
        return _clip(json.dumps(value, ensure_ascii=False))
    except ValueError:  # e.g. an integer of more digits than Python prints
        return type(value).__name__


def _clip(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _is_paths(v) -> bool:
    return isinstance(v, list) and all(isinstance(p, str) for p in v)


# config.json's keys besides the config (trainer.py writes them): a key that is there has this kind.
META_FIELDS = {
    "textgen": ("text", lambda v: isinstance(v, str)),
    "corpus": ("a list of paths", _is_paths),
    "styles": ("an object of style names and their corpus paths", lambda v: v is None or (
        isinstance(v, dict) and all(_is_paths(p) for p in v.values()))),
    "rare_chars": ("a list of characters", lambda v: isinstance(v, list) and all(
        isinstance(c, str) for c in v)),
    "init_from": ("an object", lambda v: v is None or isinstance(v, dict)),
    "data": ("an object", lambda v: isinstance(v, dict)),
}


def weights_digest(named: dict[str, np.ndarray]) -> str:
    """A short content hash of named tensors (names and values), e.g. to tell weights apart."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(named):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(named[name]).tobytes())
    return digest.hexdigest()[:16]


def identity(vocab: Vocab | WordVocab, styles: list[str]) -> dict[str, str]:
    """Attributes stored with weights: what vocabulary and styles they were trained with."""
    return {"vocab_sha256": vocab.digest(), "styles": json.dumps(list(styles))}


def config_document(config: Config, extra: dict[str, Any]) -> dict[str, Any]:
    return {"format": "textgen-run", "version": RUN_FORMAT, "textgen": __version__,
            **extra, "config": config.to_dict()}


def open_run(path: str | Path) -> Run:
    """Read a run folder's config and vocab; clear errors for anything missing or incompatible."""
    path = Path(path)
    if not path.exists():
        hint = " (train a model first: textgen train CORPUS)" if path.name == LATEST else ""
        raise RunError(f"{path}: no such run folder{hint}")
    if not path.is_dir():
        raise RunError(f"{path}: not a run folder (it is a file)")
    doc = read_json(path / CONFIG_FILE)
    if not isinstance(doc, dict) or doc.get("format") != "textgen-run":
        raise RunError(f"{path / CONFIG_FILE}: not a textgen run config")
    if doc.get("version") != RUN_FORMAT:
        raise RunError(
            f"{path}: run folder format {_clip(repr(doc.get('version')))} (textgen "
            f"{_clip(str(doc.get('textgen')))}) is not supported by textgen {__version__} "
            f"(format {RUN_FORMAT})"
        )
    _check_meta(doc, path / CONFIG_FILE)
    try:
        config = Config.from_dict(doc.get("config", {}), str(path / CONFIG_FILE))
    except ConfigError as e:
        raise RunError(str(e)) from None
    vocab = Vocab.load(path / VOCAB_FILE) if (path / VOCAB_FILE).exists() else None
    if vocab is None:
        raise RunError(f"{path / VOCAB_FILE}: missing; is this a textgen run folder?")
    meta = {k: v for k, v in doc.items() if k != "config"}
    return Run(path=path, config=config, vocab=vocab, meta=meta)


def _check_meta(doc: dict, where: Path) -> None:
    if not isinstance(doc.get("config", {}), dict):
        raise RunError(f"{where}: 'config' must be a table of settings; the run folder is damaged")
    for key, (kind, ok) in META_FIELDS.items():
        if key in doc and not ok(doc[key]):
            raise RunError(f"{where}: {key!r} must be {kind}, not {_short(doc[key])}; the run "
                           "folder is damaged")


def open_for_resume(path: Path) -> Run | None:
    """The run to resume at ``path``; None for a run stopped before it wrote config.json (it
    then starts anew, as a resume from no checkpoint would)."""
    if path.is_dir() and not is_run(path) and all(p.name in UNSTARTED_FILES
                                                  for p in path.iterdir()):
        return None
    return open_run(path)


def is_run(path: Path) -> bool:
    return (path / CONFIG_FILE).exists()


def check_new_run(path: Path, locked: bool = False) -> None:
    """Refuse a new run's folder that would overwrite anything: it must be missing or empty.

    A folder holding only ``train.log`` (scripts/cloud/train.sh creates it before the first
    attempt), or what a run stopped before writing config.json left, counts as empty.
    Writes nothing. ``locked``: this process holds the folder's training lock.
    """
    if path.exists() and not path.is_dir():
        raise RunError(f"{path}: the run folder path points at a file; give a folder path")
    if path.is_dir():
        if not locked:
            check_not_training(path)
        if is_run(path):
            raise RunError(f"{path}: already holds a run; resume it, or choose another folder",
                           cli_hint="add --resume, or give another --out")
        if any(p.name not in UNSTARTED_FILES for p in path.iterdir()):
            raise RunError(f"{path}: folder is not empty; choose a new or empty run folder")
    if not os.access(path if path.exists() else _existing_parent(path), os.W_OK):
        raise RunError(f"{path}: folder is not writable")


def _existing_parent(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists():
        path = path.parent
    return path


@contextmanager
def training_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on run folder ``path`` (created if missing) while training.

    The kernel releases it when the process ends, however it ends, so a killed run never
    blocks its own resume. A second trainer gets a ``RunError`` naming the PID holding it.
    Readers (sample, evaluate, info) take no lock: every file is replaced atomically.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunError(f"{path}: cannot create run folder ({e.strerror})") from None
    try:
        _take_lock(fd, path)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:  # e.g. a full disk: the PID is only for the message above
            pass
        remove_stale_temps(path)
        yield
    finally:
        os.close(fd)  # releases the lock


def _take_lock(fd: int, path: Path) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        raise RunError(f"{path}: another textgen process (PID {holder}) is training this "
                       "run; wait for it to finish or stop it first") from None


def check_not_training(path: Path) -> None:
    """RunError if a process holds ``path``'s training lock (the lock is only probed)."""
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return
    try:
        _take_lock(fd, path)
    finally:
        os.close(fd)


def remove_stale_temps(path: Path) -> list[str]:
    """Delete temp files a killed writer left in a run folder (only under the training lock)."""
    removed = []
    for p in path.iterdir():
        if p.name.startswith(".") and (p.name.endswith(".tmp") or p.name.endswith(".new")):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def default_run_path(corpus_name: str, root: Path = DEFAULT_ROOT) -> Path:
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "".join(c if c.isalnum() or c in "-_" else "-" for c in corpus_name)[:40] or "run"
    path = root / f"{name}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{name}-{stamp}-{n}"
    return path


def point_latest(run_path: Path, root: Path = DEFAULT_ROOT) -> None:
    """Make ``root/latest`` a symlink to ``run_path`` (replaced atomically)."""
    root.mkdir(parents=True, exist_ok=True)
    run_abs = run_path.resolve()
    try:
        target = run_abs.relative_to(root.resolve())
    except ValueError:
        target = run_abs
    link = root / LATEST
    if link.exists() and not link.is_symlink():
        return  # a real folder named "latest" belongs to the user; leave it alone
    tmp = root / f".{LATEST}.{os.getpid()}.tmp"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def shown_path(path: str | Path) -> str:
    """A path as shown to a reader: bytes of a name that is not UTF-8 (held as lone
    surrogates) escaped as \\xff, so any terminal or JSON reader can print it."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def summarise(path: str | Path) -> dict[str, Any]:
    """What ``textgen info`` shows: config, vocabulary, parameter count, progress, best loss."""
    run = open_run(path)
    state = run.state
    unit = "char" if run.vocab.level == "char" else "token"
    params: int | str = "no weights yet"
    if run.file(BEST_WEIGHTS).exists():
        try:
            params = int(sum(v.size for v in run.read_weights().values()))
        except RunError as e:
            params = f"unreadable ({e})"
    return {
        "run": shown_path(run.path.resolve()),
        "textgen": run.meta.get("textgen"),
        "corpus": ", ".join(map(shown_path, run.meta.get("corpus", []))),
        "level": run.vocab.level,
        "vocab_size": len(run.vocab),
        **({"styles": ", ".join(run.styles)} if run.styles else {}),
        **({"init_from": run.meta["init_from"]} if run.meta.get("init_from") else {}),
        "parameters": params,
        "epochs_done": f"{state.get('epochs_done', 0)} of {run.config.train.epochs}",
        "steps_done": state.get("steps_done", 0),
        "best_loss": (None if state.get("best_loss") is None else
                      f"{state['best_loss']:.4f} nats/{unit} ({state.get('best_monitor')})"),
        "seconds_trained": state.get("seconds", 0),
        **{section: values for section, values in run.config.to_dict().items()},
    }
