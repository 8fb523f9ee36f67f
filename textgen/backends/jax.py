"""JAX: keras.distribution.DataParallel across devices and processes, NumPy batches.

``--strategy mirrored`` (and ``auto`` with several devices visible) is
``keras.distribution.DataParallel`` over this machine's devices, and ``multiworker`` first joins
the processes named by ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` / ``_NUM_PROCESSES`` /
``_PROCESS_ID`` (Keras's ``keras.distribution.initialize``, i.e. ``jax.distributed.initialize``),
then uses DataParallel over every process's devices; each process feeds its own part of every
global batch (``data_shard``). The input pipeline is windows.numpy_datasets. TensorFlow is never
imported (``load_keras`` keeps Keras from importing it for its own conveniences).

Keras runs ``keras.layers.LSTM`` on cuDNN through ``jax.experimental.rnn`` on a GPU, float32
only (``fused_options``).
"""

from __future__ import annotations

import contextlib
import os

from ..errors import ConfigError
from ..windows import numpy_datasets
from .base import import_keras, keep_tensorflow_out

NAME = "jax"
STRATEGIES = ("auto", "one", "mirrored", "multiworker")
PACKAGE = "jax"


def load_keras():
    keras = import_keras()
    keep_tensorflow_out()
    return keras


def gpus() -> list:
    import jax

    return [d for d in jax.devices() if d.platform != "cpu"]


def set_determinism(seed: int) -> None:
    """keras.utils.set_random_seed is all JAX needs (its kernels are deterministic)."""


def set_threads(cores: int | None = None) -> None:
    return None  # XLA's own thread pools stay


def cpu_layout(window: int, steps: int, max_minutes: float | None = None) -> dict:
    return {}  # the chains and unrolling were measured on TensorFlow only


def fused_options(dtype: str) -> dict:
    """``build_model``'s ``fused`` for layers computing in ``dtype``: JAX's cuDNN RNN lowers
    float32 only; on an H200 (jax 0.11.2, Keras 3.15) mixed_bfloat16 failed to compile
    ("Unknown output type bfloat16") and float64's backward (``textgen check-gradients``)
    failed XLA's verifier, and Keras falls back to its loop only when the kernel says it cannot
    run, not on such errors. So any dtype but float32 runs a lax.scan loop."""
    return {} if dtype == "float32" else {"fused": False}


def join_workers(strategy: str) -> None:
    """``--strategy multiworker``: join the other processes (before JAX computes anything)."""
    if strategy != "multiworker":
        return
    if "KERAS_DISTRIBUTION_JOB_ADDRESSES" not in os.environ:
        raise ConfigError("training across processes on JAX needs KERAS_DISTRIBUTION_JOB_"
                          "ADDRESSES (and _NUM_PROCESSES, _PROCESS_ID; see the docs: GPU cloud "
                          "instances and several machines)", cli_hint="--strategy multiworker")
    load_keras().distribution.initialize()


def make_distribution(name: str):
    """The keras.distribution set for this process; None on one device."""
    import jax

    keras = load_keras()
    devices = jax.devices() if name == "multiworker" else jax.local_devices()
    if name == "one" or (name == "auto" and len(devices) < 2):
        return None
    # textgen's batches are already split between processes (data_shard)
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    return distribution


def distribution_scope(distribution):
    return contextlib.nullcontext()  # set_distribution applies to every variable made after it


def adapt_model(model, distribution) -> None:
    """Nothing to adapt on JAX."""


def data_shard() -> tuple[int, int, int]:
    """(this process, processes, devices of this process) under a distribution; (0, 1, 1)
    otherwise."""
    import sys

    if "jax" not in sys.modules:
        return 0, 1, 1
    import jax

    if load_keras().distribution.distribution() is None:
        return 0, 1, 1
    return jax.process_index(), jax.process_count(), jax.local_device_count()


def datasets(split, cfg, seed: int, epochs: int, spe: int, distribution):
    return numpy_datasets(split, cfg, seed, epochs, spe, data_shard())


def device_report() -> dict:
    import jax

    devices = jax.devices()
    return {"jax": jax.__version__, "default_platform": jax.default_backend(),
            "cpus": [str(d) for d in jax.devices("cpu")],
            "gpus": [str(d) for d in devices if d.platform != "cpu"],
            "processes": jax.process_count()}


def fused_note(cell) -> str:
    return (f"yes: {cell.name} layers run cuDNN (jax.experimental.rnn) in float32; with "
            "--precision mixed_* they run a lax.scan loop (JAX's kernel is float32 only)")


def float64_setup() -> None:
    """JAX computes in float32 unless ``jax_enable_x64`` is on."""
    import jax

    jax.config.update("jax_enable_x64", True)


def gradient_functions(forward):
    """(loss(values), gradients(values)) of ``forward`` through ``jax.grad``."""
    import jax
    import numpy as np

    loss, grad = jax.jit(forward), jax.jit(jax.grad(forward))
    return (lambda values: float(loss(values)),
            lambda values: [np.asarray(g) for g in grad(values)])
