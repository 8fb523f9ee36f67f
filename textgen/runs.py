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

Weight format (stable, read by h5py without TensorFlow): an HDF5 file with attribute
``format = "textgen-weights"`` and ``version = 1``, and one float32 dataset per tensor named
``embedding/embeddings`` (V x E), ``rnn_<i>/kernel`` (in x G*U), ``rnn_<i>/recurrent_kernel``
(U x G*U), ``rnn_<i>/bias`` (G*U, or 2 x 3U for GRU), ``logits/kernel`` (U x V), ``logits/bias``
(V), where G is 4 for LSTM (gates i, f, c, o), 3 for GRU (z, r, h; reset_after) and 1 for RNN.
Runs trained with styles add ``style/embeddings`` (S x D); the first layer's input is then the
token embedding followed by the style embedding (``rnn_0/kernel`` is (E + D) x G*U).

Every file is written atomically: a temp file in the same folder, flush, fsync, ``os.replace``.
A reader therefore sees either the old or the new version, never a truncated one.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import __version__
from .config import Config
from .errors import ConfigError, RunError
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
        _fsync_dir(path.parent)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
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


def write_text(path: Path, text: str) -> None:
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as e:
        raise RunError(f"{path}: cannot write ({e.strerror}); the previous version is intact") from None


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing; is this a textgen run folder?") from None
    except (ValueError, UnicodeDecodeError):
        raise RunError(f"{path}: not valid JSON; the run folder is damaged") from None


def write_weights(path: Path, named: dict[str, np.ndarray],
                  extra: dict[str, np.ndarray] | None = None,
                  attrs: dict[str, Any] | None = None) -> None:
    """Write named tensors (and optional ``extra`` ones, e.g. optimizer state) atomically."""
    import h5py

    try:
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                f.attrs["format"] = WEIGHTS_FORMAT
                f.attrs["version"] = 1
                for key, value in (attrs or {}).items():
                    f.attrs[key] = value
                for name, value in named.items():
                    f.create_dataset(name, data=value)
                for name, value in (extra or {}).items():
                    f.create_dataset(f"_extra/{name}", data=value)
    except OSError as e:
        raise RunError(
            f"{path}: cannot write weights ({e.strerror or e}); the previous checkpoint is intact"
        ) from None


def read_weights(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """Read (named tensors, extra tensors, attributes); RunError if missing or damaged."""
    import h5py

    named: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != WEIGHTS_FORMAT:
                raise RunError(f"{path}: not a textgen weights file")
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    target = extra if name.startswith("_extra/") else named
                    target[name.removeprefix("_extra/")] = obj[()]

            f.visititems(visit)
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except OSError as e:
        raise RunError(f"{path}: unreadable or truncated weights file ({e})") from None
    return named, extra, attrs


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
    def state(self) -> dict[str, Any]:
        p = self.file(STATE_FILE)
        return read_json(p) if p.exists() else {}


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
            f"{path}: run folder format {doc.get('version')!r} (textgen {doc.get('textgen')}) "
            f"is not supported by textgen {__version__} (format {RUN_FORMAT})"
        )
    try:
        config = Config.from_dict(doc.get("config", {}), str(path / CONFIG_FILE))
    except ConfigError as e:
        raise RunError(str(e)) from None
    vocab = Vocab.load(path / VOCAB_FILE) if (path / VOCAB_FILE).exists() else None
    if vocab is None:
        raise RunError(f"{path / VOCAB_FILE}: missing; is this a textgen run folder?")
    meta = {k: v for k, v in doc.items() if k != "config"}
    return Run(path=path, config=config, vocab=vocab, meta=meta)


def is_run(path: Path) -> bool:
    return (path / CONFIG_FILE).exists()


def prepare_new_run(path: Path) -> None:
    """Create an empty run folder, refusing to touch anything already there.

    A folder holding only ``train.log`` counts as empty: scripts/cloud/train.sh creates it
    before the first attempt.
    """
    if path.exists() and not path.is_dir():
        raise RunError(f"{path}: --out points at a file; give a folder path")
    if path.is_dir():
        if is_run(path):
            raise RunError(
                f"{path}: already holds a run; pass --resume to continue it, or choose another --out"
            )
        if any(p.name != SCRIPT_LOG for p in path.iterdir()):
            raise RunError(f"{path}: folder is not empty; choose a new or empty --out folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"{path}: cannot create run folder ({e.strerror})") from None
    if not os.access(path, os.W_OK):
        raise RunError(f"{path}: folder is not writable")


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
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def summarise(path: str | Path) -> dict[str, Any]:
    """What ``textgen info`` shows: config, vocabulary, parameter count, progress, best loss."""
    import h5py

    run = open_run(path)
    state = run.state
    params = None
    weights = run.file(BEST_WEIGHTS)
    if weights.exists():
        try:
            with h5py.File(weights, "r") as f:
                counts = []
                f.visititems(lambda n, o: counts.append(o.size) if isinstance(o, h5py.Dataset)
                             else None)
                params = int(sum(counts))
        except OSError:
            params = "unreadable weights.h5"
    return {
        "run": str(run.path.resolve()),
        "textgen": run.meta.get("textgen"),
        "corpus": ", ".join(run.meta.get("corpus", [])),
        "level": run.vocab.level,
        "vocab_size": len(run.vocab),
        **({"styles": ", ".join(run.styles)} if run.styles else {}),
        "parameters": params if params is not None else "no weights yet",
        "epochs_done": f"{state.get('epochs_done', 0)} of {run.config.train.epochs}",
        "steps_done": state.get("steps_done", 0),
        "best_loss": (None if state.get("best_loss") is None else
                      f"{state['best_loss']:.4f} nats/char ({state.get('best_monitor')})"),
        "seconds_trained": state.get("seconds", 0),
        **{section: values for section, values in run.config.to_dict().items()},
    }
