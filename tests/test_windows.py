import numpy as np
import pytest

from textgen.config import WindowConfig
from textgen.errors import CorpusError
from textgen.backends.tensorflow import train_dataset, val_dataset
from textgen.windows import split_ids, steps_per_epoch, window_starts


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_targets_are_inputs_shifted_by_one():
    ids = np.arange(200, dtype=np.uint8)
    cfg = WindowConfig(window=10, step=3, batch_size=4, val_split=0.0)
    for x, y in _batches(train_dataset(ids, cfg, seed=1, epochs=1, steps=5)):
        assert x.shape == y.shape and x.shape[1] == 10
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # x[t+1] == y[t]
        np.testing.assert_array_equal(y, x + 1)  # ids are positions here


def test_every_window_once_per_epoch_and_reshuffled():
    ids = np.arange(100, dtype=np.uint8)
    cfg = WindowConfig(window=5, step=2, batch_size=10, val_split=0.0)
    n = len(window_starts(len(ids), 5, 2))
    assert n % 10  # so the epoch's last batch needs topping up
    spe = steps_per_epoch(n, cfg, None)
    ds = train_dataset(ids, cfg, seed=3, epochs=2, steps=spe)
    assert [tuple(s.shape) for s in ds.element_spec] == [(10, 5), (10, 5)]  # shapes known
    batches = _batches(ds)
    assert len(batches) == 2 * spe and all(x.shape == (10, 5) for x, _ in batches)
    expected = window_starts(len(ids), 5, 2)
    epochs = []
    for part in (batches[:spe], batches[spe:]):
        starts = np.concatenate([x[:, 0] for x, _ in part])
        # each window once, then the last batch topped up with the epoch's first windows
        np.testing.assert_array_equal(np.sort(starts[:n]), expected)
        np.testing.assert_array_equal(starts[n:], starts[: spe * 10 - n])
        epochs.append(starts[:n])
    assert not np.array_equal(*epochs)  # a new order each epoch
    assert max(e.max() for e in epochs) + 5 < len(ids)  # the last target is inside the text


def test_batches_shorter_than_batch_size_when_fewer_windows():
    ids = np.arange(30, dtype=np.uint8)
    cfg = WindowConfig(window=5, step=2, batch_size=64, val_split=0.0)
    n = len(window_starts(len(ids), 5, 2))
    batches = _batches(train_dataset(ids, cfg, seed=3, epochs=3, steps=10))
    assert len(batches) == 3
    for x, _ in batches:  # one batch per epoch, each window exactly once
        np.testing.assert_array_equal(np.sort(x[:, 0]), window_starts(len(ids), 5, 2))
        assert len(x) == n


def test_short_last_batch_without_full_batches():
    ids = np.arange(100, dtype=np.uint8)
    cfg = WindowConfig(window=5, step=2, batch_size=10, val_split=0.0)
    n = len(window_starts(len(ids), 5, 2))
    ds = train_dataset(ids, cfg, seed=3, epochs=1, steps=100, full_batches=False)
    assert ds.element_spec[0].shape[0] is None
    sizes = [len(x) for x, _ in _batches(ds)]
    assert sum(sizes) == n and sizes[-1] == n % 10


def test_order_depends_only_on_seed_and_skip_resumes_exactly():
    ids = np.arange(120, dtype=np.uint8)
    cfg = WindowConfig(window=6, step=1, batch_size=10, val_split=0.0)
    full = _batches(train_dataset(ids, cfg, seed=5, epochs=2, steps=11))
    again = _batches(train_dataset(ids, cfg, seed=5, epochs=2, steps=11))
    skipped = _batches(train_dataset(ids, cfg, seed=5, epochs=2, steps=11, skip=7))
    other = _batches(train_dataset(ids, cfg, seed=6, epochs=2, steps=11))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(full, again))
    assert len(skipped) == len(full) - 7
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(full[7:], skipped))
    assert not np.array_equal(full[0][0], other[0][0])


def test_validation_is_the_tail_and_never_overlaps_training():
    ids = np.arange(1000) % 251
    ids = ids.astype(np.uint8)
    cfg = WindowConfig(window=20, step=3, val_split=0.1, batch_size=16)
    split = split_ids(ids, cfg)
    assert len(split.val) == 100 and len(split.train) == 900
    np.testing.assert_array_equal(np.concatenate([split.train, split.val]), ids)
    train_positions = set()
    positions = np.arange(1000)
    spe = steps_per_epoch(split.n_train_windows, cfg, None)
    for x, y in _batches(train_dataset(positions[:900], cfg, seed=0, epochs=1, steps=spe)):
        train_positions.update(np.concatenate([x.ravel(), y.ravel()]).tolist())
    assert max(train_positions) < 900  # no training input or target from the validation tail
    val = _batches(val_dataset(positions[900:], cfg))
    val_targets = np.concatenate([y.ravel() for _, y in val])
    assert val_targets.min() > 900 - 1 and len(set(val_targets)) == len(val_targets)


def test_too_short_corpus_is_a_clear_error():
    cfg = WindowConfig(window=40, val_split=0.1)
    with pytest.raises(CorpusError, match="too short for a window of 40"):
        split_ids(np.zeros(300, np.uint8), cfg, source="small.txt")
    with pytest.raises(CorpusError, match="fewer than one window"):
        split_ids(np.zeros(30, np.uint8), WindowConfig(window=40, val_split=0.0))


def test_pipelines_prefetch_with_autotuning_off():
    ids = np.arange(200, dtype=np.uint8)
    cfg = WindowConfig(window=10, step=3, batch_size=4, val_split=0.0)
    for ds in (train_dataset(ids, cfg, seed=1, epochs=1, steps=5), val_dataset(ids, cfg)):
        assert ds.options().autotune.enabled is False
    tuned = train_dataset(ids, cfg, seed=1, epochs=1, steps=5, autotune=True)
    assert tuned.options().autotune.enabled is not False
    fixed = train_dataset(ids, cfg, seed=1, epochs=1, steps=5)
    for (x1, y1), (x2, y2) in zip(_batches(tuned), _batches(fixed), strict=True):
        np.testing.assert_array_equal(x1, x2)  # the same batches either way
        np.testing.assert_array_equal(y1, y2)
