"""One module per Keras backend, behind one small interface; devices.py is their front.

Each of ``tensorflow``, ``jax`` and ``torch`` defines every name of ``INTERFACE``:

================================  ===========================================================
``NAME``, ``PACKAGE``             the backend's name; the module whose presence means it can run
``STRATEGIES``                    the ``--strategy`` values it supports
``load_keras()``                  import Keras on it, quietly, with what the framework needs
``gpus()``                        the accelerators it sees
``set_determinism(seed)``         deterministic kernels (after keras.utils.set_random_seed)
``set_threads(cores)``            thread pools for a small CPU (None: the framework's own)
``cpu_layout(window, steps, m)``  build_model's ``chains``/``window`` on a small CPU ({}: none)
``fused_options(dtype)``          build_model's ``fused`` where its kernel cannot run ``dtype``
``join_workers(strategy)``        join other processes before computing (multi-process runs)
``make_distribution(strategy)``   the strategy / distribution object (None: one device)
``distribution_scope(d)``         where the model and optimizer must be built
``adapt_model(model, d)``         adjustments a distribution needs (TensorFlow only)
``data_shard()``                  (this process, processes, devices of this process)
``datasets(split, cfg, ...)``     the input pipeline: (make(skip), validation batches)
``device_report()``               what ``textgen info --devices`` shows of the framework
``fused_note(cell)``              whether a cell's layers run a fused kernel on its GPU
``float64_setup()``               what float64 computation needs (the gradient check)
``gradient_functions(forward)``   (loss, gradients) of a function by its autodiff
================================  ===========================================================

Only these modules import a framework by name (tests/test_layout.py checks it).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..config import BACKENDS

INTERFACE = ("NAME", "PACKAGE", "STRATEGIES", "load_keras", "gpus", "set_determinism",
             "set_threads", "cpu_layout", "fused_options", "join_workers", "make_distribution",
             "distribution_scope", "adapt_model", "data_shard", "datasets", "device_report",
             "fused_note", "float64_setup", "gradient_functions")


def get(name: str) -> ModuleType:
    """The module of backend ``name`` (one of config.BACKENDS)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def available(name: str) -> bool:
    """Whether the framework of backend ``name`` is installed (nothing is imported)."""
    import importlib.util

    return importlib.util.find_spec(get(name).PACKAGE) is not None
