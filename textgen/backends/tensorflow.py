"""TensorFlow: tf.distribute strategies, tf.data pipelines, and the CPU layout of small machines.

On TensorFlow, ``--strategy one`` trains on the first GPU (or the CPU), ``mirrored`` uses
``tf.distribute.MirroredStrategy`` over every visible GPU of this machine, ``multiworker`` uses
``tf.distribute.MultiWorkerMirroredStrategy`` across machines described by ``TF_CONFIG``, and
``auto`` picks ``mirrored`` when more than one GPU is visible, else ``one``.

The input pipeline is tf.data (``train_dataset``/``val_dataset``), measured faster here than
NumPy batches through a PyDataset (bench/train_speed.py); it gives the same batches as
windows.TrainBatches (tests/test_backends.py compares them batch for batch). Its settings are
fixed and small, with tf.data's autotuning off (``finish``): gathering a batch takes well under
a millisecond against a training step of tens, and on a 2-core machine the autotuner's threads
cut training throughput to half or less in some ``fit`` calls.

On a CPU-only machine of at most ``SMALL_CPU`` cores, TensorFlow alone gets textgen's CPU layout
(``cpu_layout``: every batch split into one chain per core, the loop unrolled for long runs; one
thread per op, ``set_threads``); bench/train_speed.py measures each choice.
"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np

from ..config import WindowConfig
from ..errors import ConfigError
from ..windows import count_starts, window_starts
from .base import import_keras, quiet_stderr

NAME = "tensorflow"
STRATEGIES = ("auto", "one", "mirrored", "multiworker")
PACKAGE = "tensorflow"  # the module whose presence means the backend can run


def load_keras():
    return import_keras()


def tf():
    load_keras()
    with quiet_stderr():
        import tensorflow
    return tensorflow


def gpus() -> list:
    return tf().config.list_physical_devices("GPU")


def set_determinism(seed: int) -> None:
    """After keras.utils.set_random_seed: TensorFlow's deterministic kernels."""
    tf().config.experimental.enable_op_determinism()


# ----------------------------------------------------------------------------- the CPU layout

SMALL_CPU = 2  # cores; the thread settings below were measured on a 2-core machine only
UNROLL_MAX = 200  # the longest window whose recurrent loop is unrolled (the graph grows with it)
CHAINS_MIN_STEPS = 500  # the shortest planned run that gets the chains (their graph costs ~1 s)


def small_cpu(cores: int | None = None) -> int | None:
    """This machine's cores if it is CPU-only with at most ``SMALL_CPU`` of them, else None."""
    cores = cores or os.cpu_count() or 1
    return None if cores > SMALL_CPU or gpus() else cores


def set_threads(cores: int | None = None) -> tuple[int, int] | None:
    """On a CPU-only machine of at most ``SMALL_CPU`` cores: one thread per op (intra-op 1),
    and as many ops at once as there are cores (inter-op). An LSTM step's operations are too
    small to split across cores: bench/train_speed.py measures these settings against
    TensorFlow's own (which use every core in every op). Returns (intra, inter), or None where
    TensorFlow's defaults stay (a GPU, more cores, or TensorFlow already running)."""
    t = tf()
    cores = small_cpu(cores)
    if cores is None:
        return None
    threading = t.config.threading
    if (threading.get_intra_op_parallelism_threads(),
            threading.get_inter_op_parallelism_threads()) == (1, cores):
        return 1, cores
    try:
        threading.set_intra_op_parallelism_threads(1)
        threading.set_inter_op_parallelism_threads(cores)
    except RuntimeError:  # TensorFlow has already started in this process: keep its settings
        return None
    return 1, cores


def cpu_layout(window: int, steps: int, max_minutes: float | None = None) -> dict:
    """``build_model``'s ``chains``/``window`` on a CPU-only machine of at most ``SMALL_CPU``
    cores; empty elsewhere (on a GPU the recurrent layers must stay eligible for cuDNN). One
    recurrent chain per core for a run of at least ``CHAINS_MIN_STEPS`` planned steps: the
    chains save about a tenth of each step's time and cost about 1 s more graph building
    (measured: a 6-step run of a tiny model took 2.45 s with them, 1.47 s without), so a
    shorter run (a smoke test, a quick look at a corpus) starts sooner without them. The loop is
    unrolled only for a run long enough to repay building the unrolled graph: measured here,
    unrolling costs about 0.25-0.35 s per window position once (10-15 s at window 40, 35 s at
    100) and saves 10-16% per step, so it must train for about 3 s x window to break even;
    textgen asks for several times that: at least 50 x window planned steps and, with
    --max-minutes, at least window / 4 minutes."""
    cores = small_cpu()
    if cores is None or steps < CHAINS_MIN_STEPS:
        return {}
    unroll = (window <= UNROLL_MAX and steps >= 50 * window
              and (max_minutes is None or max_minutes >= window / 4))
    return {"chains": cores, "window": window if unroll else None}


def chain_layers(parts: int) -> tuple:
    """(split, join): layers that split a batch into ``parts`` near-equal parts, which go
    through the recurrent layers as independent chains of operations (TensorFlow runs them at
    once on different cores), and join the parts again. A batch of fewer rows than ``parts``
    is first padded with copies of its first row, so that no part is empty; the join drops the
    padding again (its inputs: the parts, then the unsplit batch)."""
    import keras

    t = tf()

    class SplitBatch(keras.layers.Layer):
        def call(self, x):
            pad = t.maximum(parts - t.shape(x)[0], 0)
            x = t.concat([x, t.repeat(x[:1], pad, axis=0)], axis=0)
            b = t.shape(x)[0]
            sizes = [(b + parts - 1 - k) // parts for k in range(parts)]
            return t.split(x, t.stack(sizes), axis=0, num=parts)

        def compute_output_shape(self, shape):
            return [(None, *shape[1:])] * parts

    class JoinBatch(keras.layers.Layer):
        def call(self, inputs):
            *pieces, rows = inputs
            return t.concat(pieces, axis=0)[:t.shape(rows)[0]]

        def compute_output_shape(self, shapes):
            return (None, *shapes[0][1:])

    return SplitBatch(name="chains"), JoinBatch(name="joined")


def fused_options(dtype: str) -> dict:
    return {}


# ----------------------------------------------------------------------------- distribution


def join_workers(strategy: str) -> None:
    """Across machines, tf.distribute joins the workers when the strategy is made."""


def make_distribution(name: str):
    """The tf.distribute strategy for ``--strategy name``."""
    t = tf()
    visible = gpus()
    if name == "auto":
        name = "mirrored" if len(visible) > 1 else "one"
    if name == "one":
        return t.distribute.get_strategy()  # the default: TF places work on GPU 0 if there is one
    if name == "mirrored":
        return t.distribute.MirroredStrategy()
    if "TF_CONFIG" not in os.environ:
        raise ConfigError("training across machines on TensorFlow needs the TF_CONFIG "
                          "environment variable (see the docs: GPU cloud instances and several "
                          "machines)", cli_hint="--strategy multiworker")
    try:
        json.loads(os.environ["TF_CONFIG"])
    except ValueError:
        raise ConfigError("TF_CONFIG is not valid JSON") from None
    return t.distribute.MultiWorkerMirroredStrategy()


def distribution_scope(distribution):
    """The model and optimizer are built in the strategy's scope."""
    return distribution.scope() if distribution is not None else contextlib.nullcontext()


def data_shard() -> tuple[int, int, int]:
    return 0, 1, 1  # tf.distribute shards the data itself


def _multi_worker(strategy) -> bool:
    return strategy.extended._in_multi_worker_mode()  # noqa: SLF001 - no public equivalent


def adapt_model(model, strategy) -> None:
    """Work around two Keras 3 problems with MultiWorkerMirroredStrategy
    (keras-team/keras#20585); models under any other strategy are left as they are.

    1. ``fit`` first builds the model's loss and metrics symbolically from a batch it takes from
       the training data (``TensorFlowTrainer._maybe_symbolic_build``), reducing that batch
       across replicas; across workers the reduction of our integer ids fails. No public Keras
       seam skips that build or gives it another batch (``fit`` calls it unconditionally), so
       on our own model instance (nothing global) it is replaced by a build from a fixed dummy
       batch: our functional model is already built. tests/test_backends.py pins the Keras
       behaviour around it (under one worker the build takes no training batch, so nothing is
       replaced there) and tests/test_cloud.py trains two workers with the replacement.
    2. Each step's scalar logs are reduced with ``strategy.reduce("MEAN", v, axis=0)``, which
       fails on 0-d tensors; the step functions (``train_step``/``test_step``, Keras's public
       seam for a custom step) return shape-(1,) logs so that reduction is the mean over
       replicas it was meant to be.
    """
    import types

    if getattr(model, "_distribute_strategy", None) is None or not _multi_worker(strategy):
        return
    t = tf()

    def symbolic_build(self, iterator=None, data_batch=None):
        dummies = [t.zeros((1, i.shape[1] or 2), t.int32) for i in self.inputs]  # fixed for
        x = dummies[0] if len(dummies) == 1 else tuple(dummies)  # unrolled; a styled model
        with self.distribute_strategy.scope():  # has two inputs
            self._symbolic_build(data_batch=(x, dummies[0]))

    def vectorised(step):
        def run(data):
            return {k: t.reshape(v, [1]) for k, v in step(data).items()}
        return run

    model._maybe_symbolic_build = types.MethodType(symbolic_build, model)
    model.train_step = vectorised(model.train_step)
    model.test_step = vectorised(model.test_step)


def shard_options(strategy):
    """Across workers: split every global batch by elements (the data is in memory, not
    files); None otherwise."""
    if strategy is None or not _multi_worker(strategy):
        return None
    t = tf()
    options = t.data.Options()
    options.experimental_distribute.auto_shard_policy = t.data.experimental.AutoShardPolicy.DATA
    return options


# ----------------------------------------------------------------------------- tf.data


def datasets(split, cfg: WindowConfig, seed: int, epochs: int, spe: int, distribution):
    """(make(skip): the training batches from global step ``skip``, the validation batches or
    None), as tf.data pipelines (sharded by elements across workers)."""
    shard = shard_options(distribution)

    def make(skip: int):
        ds = train_dataset(split.train, cfg, seed, epochs, spe, skip=skip,
                           starts=split.train_starts, segments=split.train_segments)
        return ds.with_options(shard) if shard is not None else ds

    val = (val_dataset(split.val, cfg, split.val_starts, split.val_segments)
           if len(split.val) else None)
    return make, (val.with_options(shard) if val is not None and shard is not None else val)


def _gather(ids_v, starts, window: int, segments=None):
    """Windows at ``starts``: (x, y), or ((x, style), y) with style segments (style ids repeated
    at every position, the model's second input)."""
    t = tf()
    starts = t.cast(starts, t.int64)
    positions = starts[:, None] + t.range(window + 1, dtype=t.int64)[None, :]
    seq = t.cast(t.gather(ids_v, positions), t.int32)
    x, y = seq[:, :-1], seq[:, 1:]
    if segments is None:
        return x, y
    style = t.searchsorted(segments, starts, side="right") - 1
    return (x, t.broadcast_to(t.cast(style, t.int32)[:, None], t.shape(x))), y


def _held(array: np.ndarray):
    """A tf.Variable holding ``array``: pipelines capture its handle, not a copy of the data
    (a captured constant is copied into the dataset graph, twice over for 100 MB of ids)."""
    return tf().Variable(array, trainable=False, name="ids")


def train_dataset(ids: np.ndarray, cfg: WindowConfig, seed: int, epochs: int,
                  steps: int, skip: int = 0, starts: np.ndarray | None = None,
                  segments: np.ndarray | None = None, autotune: bool = False,
                  full_batches: bool = True):
    """Batches for ``epochs`` epochs of ``steps`` steps each, reshuffled per epoch, after ``skip``.

    ``starts=None`` means every ``cfg.step``-th offset. Epoch ``e`` visits the windows in the
    order of ``index_shuffle`` with seed (seed, e): a pseudorandom permutation computed batch by
    batch, so no array of windows (4 bytes per window, 120 MB for 100 MB of text) or of its
    shuffled copy is ever made, and skipping to a step costs nothing.

    Every batch holds ``min(batch_size, windows)`` windows: an epoch's last batch is topped up
    with the first windows of the same epoch's order (fewer than one batch are seen twice). A
    fixed batch shape lets TensorFlow plan the training step's graph with every shape known
    (bench/train_speed.py measures it against ``full_batches=False``, a short last batch).
    """
    t = tf()
    ids_v = _held(ids)
    if starts is None:
        n = count_starts(len(ids), cfg)

        def window_start(i):
            return i * cfg.step
    else:
        n = len(starts)
        starts_v = _held(starts)

        def window_start(i):
            return t.cast(t.gather(starts_v, i), t.int64)

    batch = cfg.batch_size
    per_epoch = min(steps, -(-n // batch))  # batches of one pass, capped at steps
    seed_t = t.constant(seed, t.int64)
    rows = min(batch, n) if full_batches else None

    def batch_starts(epoch, b):
        first = b * batch
        if full_batches:  # an epoch's last batch wraps round to the epoch's first windows
            index = (first + t.range(rows, dtype=t.int64)) % n
        else:
            index = t.range(first, t.minimum(first + batch, n), dtype=t.int64)
        order = t.random.experimental.index_shuffle(
            index, seed=t.stack([seed_t, epoch]), max_index=n - 1)
        return window_start(order)

    ds = t.data.Dataset.range(epochs).flat_map(
        lambda e: t.data.Dataset.range(per_epoch).map(lambda b: (e, b)))
    ds = ds.skip(skip).map(batch_starts)
    seg = None if segments is None else t.constant(segments, t.int64)
    return finish(ds.map(lambda s: _gather(ids_v, s, cfg.window, seg)), autotune)


def val_dataset(ids: np.ndarray, cfg: WindowConfig, starts: np.ndarray | None = None,
                segments: np.ndarray | None = None):
    """Non-overlapping windows over the validation tail, in order (each target scored once)."""
    t = tf()
    if starts is None:
        starts = window_starts(len(ids), cfg.window, cfg.window)
    ids_v = _held(ids)
    seg = None if segments is None else t.constant(segments, t.int64)
    ds = t.data.Dataset.from_tensor_slices(starts).batch(cfg.batch_size)
    return finish(ds.map(lambda s: _gather(ids_v, s, cfg.window, seg)))


PREFETCH = 2  # batches gathered ahead of the training step


def finish(ds, autotune: bool = False):
    """Prefetch ``PREFETCH`` batches with tf.data's autotuning off; ``autotune=True`` gives
    tf.data's own default instead (bench/train_speed.py compares the two)."""
    t = tf()
    if autotune:
        return ds.prefetch(t.data.AUTOTUNE)
    options = t.data.Options()
    options.autotune.enabled = False
    return ds.prefetch(PREFETCH).with_options(options)


# ----------------------------------------------------------------------------- reports, gradients


def device_report() -> dict:
    t = tf()
    visible = gpus()
    info = {"tensorflow": t.__version__, "built_with_cuda": t.test.is_built_with_cuda(),
            "cpus": [d.name for d in t.config.list_physical_devices("CPU")],
            "gpus": [d.name for d in visible]}
    details = []
    for d in visible:
        try:
            details.append(t.config.experimental.get_device_details(d).get("device_name", "?"))
        except Exception:  # noqa: BLE001 - details are best effort
            details.append("?")
    if details:
        info["gpu_names"] = details
    return info


def fused_note(cell) -> str:
    """Whether ``cell``'s layers run a fused kernel on this backend's GPU, in words."""
    return f"yes: {cell.name} layers run the fused cuDNN kernel"


def float64_setup() -> None:
    """TensorFlow computes in float64 when asked; nothing to switch on."""


def gradient_functions(forward):
    """(loss(values), gradients(values)) of ``forward`` through TensorFlow's GradientTape."""
    t = tf()

    @t.function
    def tf_grad(tensors):
        with t.GradientTape() as tape:
            tape.watch(tensors)
            value = forward(tensors)
        return [t.convert_to_tensor(g) for g in tape.gradient(value, tensors)]

    tf_loss = t.function(forward)
    return (lambda values: float(tf_loss([t.constant(v) for v in values])),
            lambda values: [g.numpy() for g in tf_grad([t.constant(v) for v in values])])
