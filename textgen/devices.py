"""Backend choice, devices, distribution and mixed precision: the front of backends/.

Training, the gradient check and ``textgen info`` call these functions; each hands the part
that depends on the framework to the module of the backend this process runs
(backends/tensorflow.py, jax.py, torch.py: one small interface, listed in backends/__init__.py).

``--backend tensorflow|jax|torch`` (default: ``KERAS_BACKEND`` if set, else tensorflow) is chosen
by ``select_backend`` before Keras is imported. ``--strategy auto|one|mirrored|multiworker``
picks the devices (each backend's module says what its strategies mean); ``--batch-size`` is
always the global batch: each of N replicas gets batch/N windows per step, so results do not
depend on the number of devices.

``--precision mixed_float16|mixed_bfloat16`` computes in half precision on GPUs, on every
backend (variables stay float32, and the output layer is kept in float32 for a stable softmax);
it is refused on a CPU, where it is slower.
"""

from __future__ import annotations

import contextlib

from . import backends, cells
from .backends.base import backend, default_backend, select_backend, verbose  # noqa: F401
from .config import BACKENDS
from .errors import ConfigError, TextgenError


def current():
    """The module of the backend this process runs (backends/)."""
    return backends.get(backend())


def load_keras():
    """Import Keras on the selected backend, quietly, with what its framework needs."""
    return current().load_keras()


def check_available(name: str) -> None:
    """TextgenError saying what to install when backend ``name``'s framework is missing
    (checked before a run writes anything; nothing is imported)."""
    if name in BACKENDS and not backends.available(name):
        from .backends.base import INSTALL

        package = backends.get(name).PACKAGE
        raise TextgenError(f"the {name} backend needs {package}, which is not installed; "
                           f"{INSTALL[package]}")


def set_determinism(seed: int) -> None:
    """Same seed, same run: seeds Python, NumPy and the backend; deterministic kernels."""
    keras = load_keras()
    keras.utils.set_random_seed(seed)
    current().set_determinism(seed)


def gpus() -> list:
    """The accelerators the backend sees (empty on a CPU-only machine)."""
    return current().gpus()


def set_threads(cores: int | None = None) -> tuple[int, int] | None:
    """The backend's thread pools for a small CPU-only machine (TensorFlow only), or None."""
    return current().set_threads(cores)


def cpu_layout(window: int, steps: int, max_minutes: float | None = None) -> dict:
    """``build_model``'s ``chains``/``window`` for training on this machine ({}: none)."""
    return current().cpu_layout(window, steps, max_minutes)


def fused_kernel_options(dtype: str) -> dict:
    """``build_model``'s ``fused`` for layers computing in ``dtype`` on this backend."""
    return current().fused_options(dtype)


def join_workers(strategy: str) -> None:
    """Join the other processes of a multi-process run (JAX), before anything computes."""
    current().join_workers(strategy)


def make_distribution(strategy: str):
    """The strategy / distribution object for ``--strategy`` on this backend (None: one
    device); ConfigError for a strategy the backend lacks."""
    module = current()
    if strategy not in module.STRATEGIES:
        raise ConfigError(f"strategy {strategy!r} is not available on the {module.NAME} backend "
                          f"(choose {' or '.join(module.STRATEGIES)}): Keras's PyTorch trainer "
                          "fits on one device", cli_hint="--strategy")
    return module.make_distribution(strategy)


def distribution_scope(distribution):
    """Where the model and optimizer must be built."""
    return current().distribution_scope(distribution)


def adapt_to_strategy(model, distribution) -> None:
    current().adapt_model(model, distribution)


def data_shard() -> tuple[int, int, int]:
    """(this process, processes, devices of this process)."""
    return current().data_shard()


def datasets(split, cfg, seed: int, epochs: int, spe: int, distribution):
    """(make(skip): the training batches from global step ``skip``, validation batches or
    None): the same batches on every backend (tests/test_backends.py), through each backend's
    own input pipeline."""
    return current().datasets(split, cfg, seed, epochs, spe, distribution)


def set_precision(precision: str) -> None:
    keras = load_keras()
    if precision == "float32":
        keras.config.set_dtype_policy("float32")
        return
    if not gpus():
        raise ConfigError(f"precision {precision} needs a GPU; on a CPU it is slower than "
                          "float32, so textgen refuses it; train in float32",
                          cli_hint="drop --precision")
    keras.config.set_dtype_policy(precision)


def describe_devices(cell: str | None = None) -> dict:
    """What the backend sees, and whether the recurrent layers will run a fused cuDNN kernel.

    textgen's recurrent layers keep every setting cuDNN needs whenever the CPU layout is off
    (tanh/sigmoid, no recurrent dropout, no unroll, biases, no mask); whether a cell has such a
    kernel on a backend is the cell's ``fused_on`` (cells.py)."""
    keras = load_keras()
    module = current()
    info = {"backend": module.NAME, "keras": keras.__version__, **module.device_report()}
    names = [cell] if cell else list(cells.names())
    notes = {}
    for name in names:
        if module.NAME not in cells.get(name).fused_on:
            notes[name] = f"no: the {name} cell has no fused kernel on {module.NAME}"
        elif not info["gpus"]:
            notes[name] = "no: no GPU visible (the generic kernel runs on the CPU)"
        else:
            notes[name] = module.fused_note(cells.get(name))
    info["cudnn_kernel"] = notes[cell] if cell else notes
    return info


@contextlib.contextmanager
def float64_scope():
    """Compute in float64 throughout, for the gradient check. Keras 3.15's type promotion on
    JAX and PyTorch narrows float64 results to float32 (``BIT64_TO_BIT32_DTYPE`` in
    keras/src/backend/common/dtypes.py: tanh and the losses would compute in float32), and JAX
    computes in float32 unless told otherwise (its module's ``float64_setup``); both are widened
    for the duration."""
    keras = load_keras()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    narrowing, saved = None, None
    try:
        from keras.src.backend.common import dtypes

        narrowing = dtypes.BIT64_TO_BIT32_DTYPE
        saved = dict(narrowing)
        narrowing["float64"] = "float64"
    except (ImportError, AttributeError):  # another Keras version
        pass
    current().float64_setup()
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
        if narrowing is not None:
            narrowing.clear()
            narrowing.update(saved)


def loss_function(model, loss_of_logits, x):
    """(loss(values), gradients(values)) for ``loss_of_logits(model(x))`` as functions of the
    values of ``model.trainable_variables`` (NumPy arrays, in that order): the model runs
    statelessly, and gradients come from the backend's own automatic differentiation
    (TensorFlow's GradientTape, ``jax.grad``, PyTorch's autograd). Both return NumPy."""
    fixed = [v.value for v in model.non_trainable_variables]

    def forward(values):
        logits, _ = model.stateless_call(values, fixed, x, training=False)
        return loss_of_logits(logits)

    return current().gradient_functions(forward)
