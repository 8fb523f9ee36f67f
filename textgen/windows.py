"""Integer ids -> batches of (x, y) training windows, for every Keras backend.

A window starting at ``s`` is ``x = ids[s : s + window]`` and ``y = ids[s + 1 : s + window + 1]``:
every position is a target. Windows are gathered from the id array batch by batch; nothing of
size ``windows x window`` (let alone one-hot) is ever materialised.

The validation split is the last ``val_split`` of the ids; training windows only use ids before
it, so no training target is ever a validation character.

The training order is a pure function of (seed, epoch): epoch ``e`` visits the windows in the
order of the stateless permutation ``index_shuffle(seed=(seed, e))``, computed batch by batch.
A run resumed at global step ``k`` skips the first ``k`` (epoch, batch) pairs (no data is
touched) and sees exactly the batches it would have seen.

``TrainBatches`` / ``ValBatches`` gather with NumPy and feed JAX and PyTorch (any backend)
through ``keras.utils.PyDataset`` (``numpy_datasets``); ``index_shuffle`` is TensorFlow's
permutation re-implemented bit for bit, so they give exactly the batches of TensorFlow's tf.data
pipeline (backends/tensorflow.py; tests/test_backends.py compares them batch for batch).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .config import WindowConfig
from .errors import ConfigError, CorpusError


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    val: np.ndarray  # empty when val_split == 0
    n_train_windows: int
    # Window start offsets into ``train``; None when they are simply 0, step, 2*step, ... (windows
    # may cross documents): then the pipeline makes them in the graph instead of holding 4 bytes
    # per window (120 MB for 100 MB of text) and copies of them.
    train_starts: np.ndarray | None
    val_starts: np.ndarray  # non-overlapping window starts into ``val``
    # With styles: where each style's part of ``train`` / ``val`` begins (style id = index);
    # a window's style is that of the part its start lies in.
    train_segments: np.ndarray | None = None
    val_segments: np.ndarray | None = None

    def style_of(self, starts: np.ndarray, part: str = "train") -> np.ndarray:
        segments = self.train_segments if part == "train" else self.val_segments
        return np.searchsorted(segments, starts, side="right") - 1


def combine_splits(splits: list[Split], cfg: WindowConfig) -> tuple[Split, list[int]]:
    """One Split over several styles' splits (train parts joined, val parts joined).

    A smaller style's windows are listed ``repeat`` = round((largest / own window count) ^ A)
    times, A = ``cfg.style_balance``: with A = 1 each style is drawn about equally often, with
    A = 0 in proportion to its text. Returns the split and each style's repeat factor.
    """
    starts = [s.train_starts if s.train_starts is not None else
              window_starts(len(s.train), cfg.window, cfg.step) for s in splits]
    most = max(len(x) for x in starts)
    repeats = [max(1, round((most / len(x)) ** cfg.style_balance)) for x in starts]
    train_off = np.cumsum([0] + [len(s.train) for s in splits])
    val_off = np.cumsum([0] + [len(s.val) for s in splits])
    dtype = np.int32 if train_off[-1] < 2**31 else np.int64
    train_starts = np.concatenate([np.tile(x.astype(dtype) + off, r)
                                   for x, off, r in zip(starts, train_off, repeats)])
    val_starts = np.concatenate([s.val_starts.astype(dtype) + off
                                 for s, off in zip(splits, val_off)])
    split = Split(train=np.concatenate([s.train for s in splits]),
                  val=np.concatenate([s.val for s in splits]),
                  n_train_windows=len(train_starts), train_starts=train_starts,
                  val_starts=val_starts, train_segments=train_off[:-1].astype(np.int64),
                  val_segments=val_off[:-1].astype(np.int64))
    return split, repeats


def count_starts(length: int, cfg: WindowConfig) -> int:
    """How many windows start every ``cfg.step`` ids in ``length`` ids with no document
    bounds (each needs ``window + 1`` ids)."""
    return len(range(0, max(length - cfg.window, 0), cfg.step))


def split_ids(ids: np.ndarray, cfg: WindowConfig, source: str = "corpus",
              bounds: list[tuple[int, int]] | None = None) -> Split:
    """Cut the ids into a training head and a validation tail, checking both hold a window.

    With document ``bounds`` ((start, end) offsets), every window lies inside one document.
    """
    need = cfg.window + 1  # one window of inputs plus its shifted targets
    n_val = int(len(ids) * cfg.val_split)
    if cfg.val_split > 0:
        if n_val < need:
            minimum = math.ceil(need / cfg.val_split) + need
            raise CorpusError(
                f"{source}: {len(ids)} characters is too short for a window of {cfg.window} "
                f"with a validation split of {cfg.val_split} (needs about {minimum}); use a "
                "longer corpus, a smaller window or a larger validation split",
                cli_hint="--window, --val-split")
    train = ids[: len(ids) - n_val]
    if len(train) < need:
        raise CorpusError(
            f"{source}: {len(ids)} characters leaves {len(train)} for training, fewer than one "
            f"window of {cfg.window} + 1; use a longer corpus or a smaller window",
            cli_hint="--window")
    n_train = len(train)
    if bounds is None:
        train_starts, n_windows = None, count_starts(n_train, cfg)
    else:
        train_starts = window_starts(n_train, cfg.window, cfg.step, bounds, 0)
        n_windows = len(train_starts)
    val_starts = window_starts(n_val, cfg.window, cfg.window, bounds, n_train)
    if n_windows == 0:
        raise CorpusError(f"{source}: no training document is longer than the window of "
                          f"{cfg.window}; use a smaller window or allow windows across "
                          "documents", cli_hint="--window, --cross-docs")
    if n_val and len(val_starts) == 0:
        raise CorpusError(f"{source}: the validation split holds no document longer than "
                          f"--window {cfg.window}; use a larger --val-split or smaller --window")
    return Split(train=train, val=ids[n_train:], n_train_windows=n_windows,
                 train_starts=train_starts, val_starts=val_starts)


def window_starts(n_ids: int, window: int, step: int,
                  bounds: list[tuple[int, int]] | None = None, offset: int = 0) -> np.ndarray:
    """Start offsets of every full (x, y) window in ids[offset : offset + n_ids].

    Without ``bounds`` windows may span documents; with them, each lies inside one document.
    """
    dtype = np.int32 if n_ids < 2**31 else np.int64  # 30M windows of 100 MB: 120 MB, not 240
    if bounds is None:
        return np.arange(0, max(n_ids - window, 0), step, dtype=dtype)
    parts = []
    for a, b in bounds:
        a, b = max(a, offset) - offset, min(b, offset + n_ids) - offset
        if b - a > window:
            parts.append(np.arange(a, b - window, step, dtype=dtype))
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def steps_per_epoch(n_windows: int, cfg: WindowConfig, cap: int | None) -> int:
    steps = math.ceil(n_windows / cfg.batch_size)
    return min(steps, cap) if cap else steps


# ----------------------------------------------------------------------------- NumPy batches

SHUFFLE_KEY = 498247692  # the first key word TensorFlow's index_shuffle pads the seed with
SHUFFLE_ROUNDS = 4  # TensorFlow's choice for index_shuffle


def index_shuffle(index: np.ndarray, seed: int, epoch: int, max_index: int) -> np.ndarray:
    """Positions of ``index`` in the permutation of [0, max_index] that TensorFlow's
    ``tf.random.experimental.index_shuffle(index, seed=(seed, epoch), max_index)`` computes, bit
    for bit (tensorflow/core/kernels/random_index_shuffle.cc): a Simon-like Feistel cipher of 4
    rounds over the smallest even number of bits (at least 16) that ``ceil(log2(max_index))``
    gives, cycle-walked until the result is at most ``max_index``."""
    index = np.asarray(index, dtype=np.uint64)
    if max_index == 0:
        return np.zeros(index.shape, np.int64)
    bits = math.ceil(math.log2(max_index))
    w = max(bits + bits % 2, 16) // 2  # word size: half the block
    mask, width = np.uint64((1 << w) - 1), np.uint64(w)
    keys = _round_keys(w, seed, epoch)
    table = _feistel_table(w) if w <= TABLE_BITS else None

    def f(x):
        return table[x] if table is not None else _feistel(x, w)

    def encrypt(v):
        left, right = (v >> width) & mask, v & mask
        for i in range(0, SHUFFLE_ROUNDS, 2):
            left = left ^ f(right) ^ keys[i]
            right = right ^ f(left) ^ keys[i + 1]
        return (left << width) | right

    out = encrypt(index)
    walk = out > np.uint64(max_index)
    while walk.any():  # cycle-walking: re-encrypt what falls outside [0, max_index]
        out[walk] = encrypt(out[walk])
        walk = out > np.uint64(max_index)
    return out.astype(np.int64)


TABLE_BITS = 16  # words up to this size (corpora up to 2^32 windows) look F up in a table


def _rot(x, r: int, w: int, left: bool = True):
    """Rotate the ``w``-bit words ``x`` by ``r`` bits."""
    mask, r = np.uint64((1 << w) - 1), r if left else w - r
    return ((x << np.uint64(r)) & mask) | (x >> np.uint64(w - r))


def _feistel(x, w: int):
    """Simon's round function on ``w``-bit words: (x <<< 1 & x <<< 8) ^ x <<< 2."""
    return (_rot(x, 1, w) & _rot(x, 8, w)) ^ _rot(x, 2, w)


@functools.lru_cache(maxsize=4)
def _feistel_table(w: int) -> np.ndarray:
    return _feistel(np.arange(1 << w, dtype=np.uint64), w)


def _round_keys(w: int, seed: int, epoch: int) -> list:
    """Simon's key schedule from the key words (SHUFFLE_KEY, seed, epoch), cut to ``w`` bits."""
    mask = (1 << w) - 1
    keys = [np.uint64(k & 0xFFFFFFFF & mask) for k in (SHUFFLE_KEY, seed, epoch)]
    z = 0x7369F885192C0EF5 & mask
    for i in range(3, SHUFFLE_ROUNDS):
        keys.append(np.uint64(0xFFFFFFFC & mask) ^ np.uint64(z & 1) ^ keys[i - 3]
                    ^ _rot(keys[i - 1], 3, w, left=False) ^ _rot(keys[i - 1], 4, w, left=False))
        z >>= 1
    return keys


def _gather_np(ids: np.ndarray, starts: np.ndarray, window: int, segments=None):
    """NumPy twin of ``_gather``: (x, y), or ((x, style), y) with style segments."""
    positions = starts.astype(np.int64)[:, None] + np.arange(window + 1, dtype=np.int64)
    seq = ids[positions].astype(np.int32)
    x, y = seq[:, :-1], seq[:, 1:]
    if segments is None:
        return x, y
    style = (np.searchsorted(segments, starts, side="right") - 1).astype(np.int32)
    return (x, np.broadcast_to(style[:, None], x.shape).copy()), y


class TrainBatches:
    """The batches of ``train_dataset``, gathered with NumPy: item ``i`` is global batch
    ``skip + i`` of ``epochs`` epochs of ``steps`` batches (the same arguments, the same
    batches). ``shard=(k, n)``: only the k-th of n equal parts of every batch's rows (each of n
    processes feeds its own part of the global batch)."""

    def __init__(self, ids: np.ndarray, cfg: WindowConfig, seed: int, epochs: int, steps: int,
                 skip: int = 0, starts: np.ndarray | None = None,
                 segments: np.ndarray | None = None, full_batches: bool = True,
                 shard: tuple[int, int] = (0, 1)):
        self.ids, self.cfg, self.seed, self.skip = ids, cfg, seed, skip
        self.starts, self.segments, self.full_batches = starts, segments, full_batches
        self.n = count_starts(len(ids), cfg) if starts is None else len(starts)
        self.per_epoch = min(steps, -(-self.n // cfg.batch_size))
        self.length = max(epochs * self.per_epoch - skip, 0)
        rows = min(cfg.batch_size, self.n)
        k, parts = shard
        if rows % parts:
            raise ValueError(f"a batch of {rows} windows does not split into {parts} equal parts")
        self.rows = slice(k * rows // parts, (k + 1) * rows // parts)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        if not 0 <= i < self.length:
            raise IndexError(i)
        epoch, b = divmod(self.skip + i, self.per_epoch)
        batch, first = self.cfg.batch_size, b * self.cfg.batch_size
        if self.full_batches:  # an epoch's last batch wraps round to the epoch's first windows
            index = (first + np.arange(min(batch, self.n), dtype=np.int64)) % self.n
        else:
            index = np.arange(first, min(first + batch, self.n), dtype=np.int64)
        order = index_shuffle(index[self.rows], self.seed, epoch, self.n - 1)
        starts = order * self.cfg.step if self.starts is None else self.starts[order]
        return _gather_np(self.ids, starts, self.cfg.window, self.segments)


class ValBatches:
    """The batches of ``val_dataset``, gathered with NumPy. ``copies``: every batch's rows
    repeated that many times, so that any batch splits evenly over that many devices; each
    batch's mean loss, and its weight in the epoch's (its rows), scale alike, so the
    validation loss is the same."""

    def __init__(self, ids: np.ndarray, cfg: WindowConfig, starts: np.ndarray | None = None,
                 segments: np.ndarray | None = None, copies: int = 1):
        self.ids, self.cfg, self.segments, self.copies = ids, cfg, segments, copies
        self.starts = window_starts(len(ids), cfg.window, cfg.window) if starts is None else starts

    def __len__(self) -> int:
        return -(-len(self.starts) // self.cfg.batch_size)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        size = self.cfg.batch_size
        starts = np.tile(self.starts[i * size:(i + 1) * size], self.copies)
        return _gather_np(self.ids, starts, self.cfg.window, self.segments)


def py_dataset(batches):
    """``batches`` (``TrainBatches``/``ValBatches``) as a ``keras.utils.PyDataset``, which
    ``fit`` reads on every backend, in order, in the training process (one worker: gathering
    a batch costs far less than a step)."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)

        @property
        def num_batches(self):
            return len(batches)

        def __getitem__(self, i):
            return batches[i]

    return Batches()


def numpy_datasets(split: Split, cfg: WindowConfig, seed: int, epochs: int, spe: int,
                   shard: tuple[int, int, int] = (0, 1, 1)):
    """(make(skip): the training batches from global step ``skip``, validation batches or
    None) as PyDatasets (the JAX and PyTorch pipelines). ``shard`` = (this process, processes,
    devices of this process): each process feeds its own rows of every global batch; every
    process scores whole validation batches, repeated once per device of its own (the mean
    over copies is the mean, and every batch splits evenly)."""
    index, processes, local = shard
    rows = min(cfg.batch_size, split.n_train_windows)
    if rows % (processes * local):
        raise ConfigError(f"a batch of {rows} windows does not split evenly over the "
                          f"{processes * local} devices; use a batch size that is a multiple "
                          f"of {processes * local}", cli_hint="--batch-size")

    def make(skip: int):
        return py_dataset(TrainBatches(split.train, cfg, seed, epochs, spe, skip=skip,
                                       starts=split.train_starts, segments=split.train_segments,
                                       shard=(index, processes)))

    val = (py_dataset(ValBatches(split.val, cfg, split.val_starts, split.val_segments,
                                 copies=local)) if len(split.val) else None)
    return make, val
