"""Devices, tf.distribute strategies and mixed precision.

``--strategy``: ``one`` trains on the first GPU (or the CPU); ``mirrored`` uses
``tf.distribute.MirroredStrategy`` over every visible GPU of this machine; ``multiworker`` uses
``tf.distribute.MultiWorkerMirroredStrategy`` across machines described by the ``TF_CONFIG``
environment variable; ``auto`` picks ``mirrored`` when more than one GPU is visible, else
``one``. ``--batch-size`` is always the global batch: each of N replicas gets batch/N windows
per step, so results do not depend on the number of devices.

``--precision mixed_float16|mixed_bfloat16`` computes in half precision on GPUs (variables stay
float32, and the output layer is kept in float32 for a stable softmax); it is refused on a CPU,
where it is slower.
"""

from __future__ import annotations

import json
import os

from .errors import ConfigError


def gpus() -> list:
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def make_strategy(name: str):
    import tensorflow as tf

    visible = gpus()
    if name == "auto":
        name = "mirrored" if len(visible) > 1 else "one"
    if name == "one":
        return tf.distribute.get_strategy()  # the default: TF places work on GPU 0 if there is one
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("--strategy multiworker needs the TF_CONFIG environment variable "
                              "(see the README: Training on a GPU cloud instance)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except ValueError:
            raise ConfigError("TF_CONFIG is not valid JSON") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"unknown strategy {name!r}")


SMALL_CPU = 2  # cores; the thread settings below were measured on a 2-core machine only


def _small_cpu(cores: int | None = None) -> int | None:
    """This machine's cores if it is CPU-only with at most ``SMALL_CPU`` of them, else None."""
    cores = cores or os.cpu_count() or 1
    return None if cores > SMALL_CPU or gpus() else cores


def set_threads(cores: int | None = None) -> tuple[int, int] | None:
    """On a CPU-only machine of at most ``SMALL_CPU`` cores: one thread per op (intra-op 1), and
    as many ops at once as there are cores (inter-op). An LSTM step's operations are too small
    to split across cores: bench/train_speed.py measures these settings against TensorFlow's
    own (which use every core in every op). Returns (intra, inter), or None where TensorFlow's
    defaults stay (a GPU, more cores, or TensorFlow already running in this process)."""
    import tensorflow as tf

    cores = _small_cpu(cores)
    if cores is None:
        return None
    threading = tf.config.threading
    if (threading.get_intra_op_parallelism_threads(),
            threading.get_inter_op_parallelism_threads()) == (1, cores):
        return 1, cores
    try:
        threading.set_intra_op_parallelism_threads(1)
        threading.set_inter_op_parallelism_threads(cores)
    except RuntimeError:  # TensorFlow has already started in this process: keep its settings
        return None
    return 1, cores


UNROLL_MAX = 200  # the longest window whose recurrent loop is unrolled (the graph grows with it)


def cpu_layout(window: int, steps: int, max_minutes: float | None = None) -> dict:
    """``build_model``'s ``chains``/``window`` for training on a CPU-only machine of at most
    ``SMALL_CPU`` cores; empty elsewhere (on a GPU the recurrent layers must stay eligible for
    cuDNN). One recurrent chain per core, always. The loop is unrolled only for a run long
    enough to repay building the unrolled graph: measured here, unrolling costs about 0.25-0.35
    s per window position once (10-15 s at window 40, 35 s at 100) and saves 10-16% per step,
    so it must train for about 3 s x window to break even; textgen asks for several times that:
    at least 50 x window planned steps and, with --max-minutes, at least window / 4 minutes."""
    cores = _small_cpu()
    if cores is None:
        return {}
    unroll = (window <= UNROLL_MAX and steps >= 50 * window
              and (max_minutes is None or max_minutes >= window / 4))
    return {"chains": cores, "window": window if unroll else None}


def set_precision(precision: str) -> None:
    import keras

    if precision == "float32":
        keras.config.set_dtype_policy("float32")
        return
    if not gpus():
        raise ConfigError(f"--precision {precision} needs a GPU; on a CPU it is slower than "
                          "float32, so textgen refuses it (drop --precision)")
    keras.config.set_dtype_policy(precision)


def describe_devices(cell: str | None = None) -> dict:
    """What TensorFlow sees, and whether LSTM/GRU layers will use the fused cuDNN kernel."""
    import tensorflow as tf

    visible = gpus()
    info = {
        "tensorflow": tf.__version__,
        "built_with_cuda": tf.test.is_built_with_cuda(),
        "cpus": [d.name for d in tf.config.list_physical_devices("CPU")],
        "gpus": [d.name for d in visible],
    }
    details = []
    for d in visible:
        try:
            details.append(tf.config.experimental.get_device_details(d).get("device_name", "?"))
        except Exception:  # noqa: BLE001 - details are best effort
            details.append("?")
    if details:
        info["gpu_names"] = details
    # textgen's LSTM/GRU layers keep every setting cuDNN needs (tanh/sigmoid, no recurrent
    # dropout, no unroll, biases, reset_after for GRU); it applies whenever a GPU is used.
    if cell in (None, "lstm", "gru"):
        info["cudnn_kernel"] = ("yes: LSTM/GRU layers run the fused cuDNN kernel" if visible
                                else "no: no GPU visible (the generic kernel runs on the CPU)")
    else:
        info["cudnn_kernel"] = f"no: the {cell} cell has no cuDNN kernel"
    return info


def _multi_worker(strategy) -> bool:
    return strategy.extended._in_multi_worker_mode()  # noqa: SLF001 - no public equivalent


def shard_options(strategy):
    """Across workers, split every global batch by elements (the data is in memory, not files)."""
    import tensorflow as tf

    if not _multi_worker(strategy):
        return None
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def adapt_to_strategy(model, strategy) -> None:
    """Work around two Keras 3 problems with tf.distribute (keras-team/keras#20585).

    1. Under any strategy, ``fit`` first takes one batch from the data iterator and reduces it
       across replicas to build the compiled metrics: that consumes a training batch, and under
       MultiWorkerMirroredStrategy the reduction fails. Our functional model is already built,
       so the metrics are built from a fixed dummy batch instead.
    2. Under MultiWorkerMirroredStrategy each step's scalar logs are reduced with
       ``strategy.reduce("MEAN", v, axis=0)``, which fails on 0-d tensors; the step functions
       return shape-(1,) logs so that reduction is the mean over replicas it was meant to be.
    """
    import types

    import tensorflow as tf

    if getattr(model, "_distribute_strategy", None) is None:
        return

    def symbolic_build(self, iterator=None, data_batch=None):
        dummy = tf.zeros((1, self.inputs[0].shape[1] or 2), tf.int32)  # fixed for unrolled
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=(dummy, dummy))

    model._maybe_symbolic_build = types.MethodType(symbolic_build, model)
    if _multi_worker(strategy):

        def vectorised(step):
            def run(data):
                return {k: tf.reshape(v, [1]) for k, v in step(data).items()}
            return run

        model.train_step = vectorised(model.train_step)
        model.test_step = vectorised(model.test_step)
