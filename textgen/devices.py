"""Backend choice, devices, distribution and mixed precision: the one module that knows a
framework by name.

``--backend tensorflow|jax|torch`` (default: ``KERAS_BACKEND`` if set, else tensorflow) is
chosen by ``select_backend`` before Keras is imported; Keras then runs the same model on that
framework. On JAX and PyTorch, TensorFlow is never imported (``load_keras`` keeps Keras from
importing it for its own conveniences). Unless ``--verbose``, the frameworks' own log noise
(TensorFlow's C++ banners while it loads, absl/gRPC logs) is silenced.

``--strategy``: on TensorFlow, ``one`` trains on the first GPU (or the CPU), ``mirrored`` uses
``tf.distribute.MirroredStrategy`` over every visible GPU of this machine, ``multiworker`` uses
``tf.distribute.MultiWorkerMirroredStrategy`` across machines described by ``TF_CONFIG``, and
``auto`` picks ``mirrored`` when more than one GPU is visible, else ``one``. On JAX,
``mirrored`` (and ``auto`` with several devices visible) is ``keras.distribution.DataParallel``
over this machine's devices, and ``multiworker`` first joins the processes named by
``KERAS_DISTRIBUTION_JOB_ADDRESSES`` / ``_NUM_PROCESSES`` / ``_PROCESS_ID`` (Keras's
``keras.distribution.initialize``, i.e. ``jax.distributed.initialize``), then uses
DataParallel over every process's devices. PyTorch trains on one device (Keras's PyTorch
trainer has no data-parallel ``fit``). ``--batch-size`` is always the global batch: each of N
replicas gets batch/N windows per step, so results do not depend on the number of devices.

``--precision mixed_float16|mixed_bfloat16`` computes in half precision on GPUs, on every
backend (variables stay float32, and the output layer is kept in float32 for a stable softmax);
it is refused on a CPU, where it is slower.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile

from .config import BACKENDS
from .errors import ConfigError, TextgenError

# Set (unless already set) before a framework loads, unless --verbose: TensorFlow's C++ log
# level, gRPC's (multi-worker) and glog's (XLA, some wheels).
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "3"}
_settings = {"verbose": False}


def default_backend() -> str:
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def backend() -> str:
    """The backend Keras runs (or will run, once imported) in this process."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend"):
        return keras.backend.backend()
    return default_backend()


def select_backend(name: str | None = None, verbose: bool | None = None) -> str:
    """Choose Keras's backend for this process (before Keras is imported) and, unless
    ``verbose``, quieten the frameworks. Returns the backend's name."""
    name = name or default_backend()
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend") and keras.backend.backend() != name:
        raise ConfigError(f"Keras was already imported in this process with the "
                          f"{keras.backend.backend()} backend; the {name} backend must be chosen "
                          "before Keras is imported (run it in a new process)")
    os.environ["KERAS_BACKEND"] = name
    if verbose is not None:
        _settings["verbose"] = verbose
    if not _settings["verbose"]:
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
    return name


@contextlib.contextmanager
def _quiet_stderr():
    """Hide what C++ code writes to file descriptor 2 (TensorFlow's banners while it loads:
    "All log messages before absl::InitializeLog() ...", "oneDNN custom operations are on
    ..."), which no environment variable silences in TensorFlow 2.21; replayed on an error."""
    if _settings["verbose"]:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.buffer.write(sink.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def load_keras():
    """Import Keras on the selected backend, quietly; on JAX or PyTorch, keep Keras from
    importing TensorFlow (it would for ``set_random_seed`` and some data adapters, if
    installed)."""
    if "keras" not in sys.modules:
        select_backend(None)
        try:
            with _quiet_stderr():
                import keras  # noqa: F401
        except ModuleNotFoundError as e:  # an incomplete install: say what to add, not a traceback
            raise _missing_module(e) from None
    import keras

    if keras.backend.backend() == "torch":
        import warnings

        # Keras hands torch's fused LSTM/GRU kernel separate weight tensors, so torch copies them
        # into one block at every call and warns, once per run; a user can do nothing about it,
        # and for these models the copy is a few MB on the GPU.
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single")
    if keras.backend.backend() != "tensorflow" and "tensorflow" not in sys.modules:
        try:
            from keras.src.utils import module_utils

            module_utils.tensorflow._available = False  # noqa: SLF001 - Keras's lazy TF import
        except (ImportError, AttributeError):  # another Keras version: nothing to switch off
            pass
    return keras


# How to add what a failed ``import keras`` lacked, by top-level module.
INSTALL = {"keras": 'pip install "keras>=3.15,<3.16"',
           "tensorflow": "pip install textgen (TensorFlow is its default backend), or choose "
                         "--backend jax or torch",
           "jax": 'pip install "textgen[jax]"', "torch": 'pip install "textgen[torch]"'}
PACKAGE = {"absl": "absl-py", "ml_dtypes": "ml-dtypes"}  # Keras's needs named unlike their module


def _missing_module(e: ModuleNotFoundError) -> TextgenError:
    top = (e.name or "?").split(".")[0]
    how = INSTALL.get(top, f"pip install {PACKAGE.get(top, top)}")
    return TextgenError(f"Keras cannot start on the {default_backend()} backend: no module named "
                        f"{top!r} in {sys.executable}; {how}")


def _tf():
    load_keras()
    with _quiet_stderr():
        import tensorflow as tf
    return tf


def set_determinism(seed: int) -> None:
    """Same seed, same run: seeds Python, NumPy and the backend; deterministic kernels."""
    keras = load_keras()
    keras.utils.set_random_seed(seed)
    name = keras.backend.backend()
    if name == "tensorflow":
        _tf().config.experimental.enable_op_determinism()
    elif name == "torch":
        import torch

        # On a GPU some kernels have no deterministic version: warn there instead of failing.
        torch.use_deterministic_algorithms(True, warn_only=bool(gpus()))


def gpus() -> list:
    """The accelerators the backend sees (empty on a CPU-only machine)."""
    name = backend()
    if name == "jax":
        import jax

        return [d for d in jax.devices() if d.platform != "cpu"]
    if name == "torch":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return _tf().config.list_physical_devices("GPU")


STRATEGIES_ON = {"tensorflow": ("auto", "one", "mirrored", "multiworker"),
                 "jax": ("auto", "one", "mirrored", "multiworker"),
                 "torch": ("auto", "one")}


def join_workers(name: str) -> None:
    """JAX ``--strategy multiworker``: join the other processes (before JAX computes
    anything); elsewhere nothing."""
    if name != "multiworker" or backend() != "jax":
        return
    if "KERAS_DISTRIBUTION_JOB_ADDRESSES" not in os.environ:
        raise ConfigError("training across processes on JAX needs KERAS_DISTRIBUTION_JOB_"
                          "ADDRESSES (and _NUM_PROCESSES, _PROCESS_ID; see the README: Training "
                          "on a GPU cloud instance)", cli_hint="--strategy multiworker")
    keras = load_keras()
    keras.distribution.initialize()


def make_distribution(name: str):
    """The tf.distribute strategy (TensorFlow), the keras.distribution set for this process
    (JAX; None on one device), or None (PyTorch)."""
    current = backend()
    if name not in STRATEGIES_ON[current]:
        raise ConfigError(f"strategy {name!r} is not available on the {current} backend "
                          f"(choose {' or '.join(STRATEGIES_ON[current])}): Keras's PyTorch "
                          "trainer fits on one device", cli_hint="--strategy")
    if current == "tensorflow":
        return _tf_strategy(name)
    if current == "torch":
        return None
    import jax

    keras = load_keras()
    devices = jax.devices() if name == "multiworker" else jax.local_devices()
    if name == "one" or (name == "auto" and len(devices) < 2):
        return None
    # textgen's batches are already split between processes (data_shard)
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    keras.distribution.set_distribution(distribution)
    return distribution


def _tf_strategy(name: str):
    tf = _tf()
    visible = gpus()
    if name == "auto":
        name = "mirrored" if len(visible) > 1 else "one"
    if name == "one":
        return tf.distribute.get_strategy()  # the default: TF places work on GPU 0 if there is one
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if "TF_CONFIG" not in os.environ:
        raise ConfigError("training across machines on TensorFlow needs the TF_CONFIG "
                          "environment variable (see the README: Training on a GPU cloud "
                          "instance)", cli_hint="--strategy multiworker")
    try:
        json.loads(os.environ["TF_CONFIG"])
    except ValueError:
        raise ConfigError("TF_CONFIG is not valid JSON") from None
    return tf.distribute.MultiWorkerMirroredStrategy()


def distribution_scope(distribution):
    """Where the model and optimizer must be built: a tf.distribute strategy's scope."""
    return distribution.scope() if backend() == "tensorflow" else contextlib.nullcontext()


def data_shard() -> tuple[int, int, int]:
    """(this process, processes, devices of this process) under a JAX distribution: each
    process feeds its own part of every global batch, split again over its devices;
    (0, 1, 1) elsewhere (tf.distribute shards the data itself)."""
    if backend() != "jax" or "jax" not in sys.modules:
        return 0, 1, 1
    import jax

    keras = load_keras()
    if keras.distribution.distribution() is None:
        return 0, 1, 1
    return jax.process_index(), jax.process_count(), jax.local_device_count()


SMALL_CPU = 2  # cores; the thread settings below were measured on a 2-core machine only


def _small_cpu(cores: int | None = None) -> int | None:
    """This machine's cores if it is CPU-only with at most ``SMALL_CPU`` of them, else None."""
    cores = cores or os.cpu_count() or 1
    return None if cores > SMALL_CPU or gpus() else cores


def set_threads(cores: int | None = None) -> tuple[int, int] | None:
    """TensorFlow on a CPU-only machine of at most ``SMALL_CPU`` cores: one thread per op
    (intra-op 1), and as many ops at once as there are cores (inter-op). An LSTM step's
    operations are too small to split across cores: bench/train_speed.py measures these
    settings against TensorFlow's own (which use every core in every op). Returns (intra,
    inter), or None where the framework's defaults stay (another backend, a GPU, more cores, or
    TensorFlow already running in this process)."""
    if backend() != "tensorflow":
        return None
    tf = _tf()
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
CHAINS_MIN_STEPS = 500  # the shortest planned run that gets the chains (their graph costs ~1 s)


def cpu_layout(window: int, steps: int, max_minutes: float | None = None) -> dict:
    """``build_model``'s ``chains``/``window`` for training with TensorFlow on a CPU-only
    machine of at most ``SMALL_CPU`` cores; empty elsewhere (on a GPU the recurrent layers must
    stay eligible for cuDNN; the chains are TensorFlow ops). One recurrent chain per core for a
    run of at least ``CHAINS_MIN_STEPS`` planned steps: the chains save about a tenth of each
    step's time and cost about 1 s more graph building (measured: a 6-step run of a tiny model
    took 2.45 s with them, 1.47 s without), so a shorter run (a smoke test, a quick look at a
    corpus) starts sooner without them. The loop is unrolled only for a run long enough to
    repay building the unrolled graph: measured here, unrolling costs about 0.25-0.35 s per
    window position once (10-15 s at window 40, 35 s at 100) and saves 10-16% per step, so it
    must train for about 3 s x window to break even; textgen asks for several times that: at
    least 50 x window planned steps and, with --max-minutes, at least window / 4 minutes."""
    if backend() != "tensorflow":
        return {}
    cores = _small_cpu()
    if cores is None or steps < CHAINS_MIN_STEPS:
        return {}
    unroll = (window <= UNROLL_MAX and steps >= 50 * window
              and (max_minutes is None or max_minutes >= window / 4))
    return {"chains": cores, "window": window if unroll else None}


def fused_kernel_options(dtype: str) -> dict:
    """``build_model``'s ``fused`` for layers computing in ``dtype`` ("float32", "float64" or a
    mixed policy such as "mixed_bfloat16"): empty, except on JAX for anything but float32, where
    the LSTM layers run a lax.scan loop instead of cuDNN. JAX's cuDNN RNN lowers float32 only;
    on an H200 (jax 0.11.2, Keras 3.15) mixed_bfloat16 failed to compile ("Unknown output type
    bfloat16") and float64's backward (``textgen check-gradients``) failed XLA's verifier, and
    Keras falls back to the loop only when the kernel says it cannot run, not on such errors."""
    return {"fused": False} if backend() == "jax" and dtype != "float32" else {}


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
    """What the backend sees, and whether the LSTM/GRU layers will run a fused cuDNN kernel.

    textgen's LSTM/GRU layers keep every setting cuDNN needs whenever the CPU layout is off
    (tanh/sigmoid, no recurrent dropout, no unroll, biases, no mask, reset_after for GRU)."""
    keras = load_keras()
    name = keras.backend.backend()
    info = {"backend": name, "keras": keras.__version__,
            **{"tensorflow": _tf_devices, "jax": _jax_devices,
               "torch": _torch_devices}[name]()}
    visible = info["gpus"]
    if cell not in (None, "lstm", "gru"):
        info["cudnn_kernel"] = f"no: the {cell} cell has no cuDNN kernel"
    elif not visible:
        info["cudnn_kernel"] = "no: no GPU visible (the generic kernel runs on the CPU)"
    elif name == "jax":
        info["cudnn_kernel"] = {
            "lstm": "yes: LSTM layers run cuDNN (jax.experimental.rnn) in float32; with "
                    "--precision mixed_* they run a lax.scan loop (JAX's kernel is float32 only)",
            "gru": "no: Keras has no cuDNN GRU on JAX (a lax.scan loop runs on the GPU)",
        }.get(cell, "LSTM layers yes in float32 (cuDNN through jax.experimental.rnn); GRU "
                    "layers no (Keras has no cuDNN GRU on JAX)")
    else:
        info["cudnn_kernel"] = "yes: LSTM/GRU layers run the fused cuDNN kernel"
    return info


def _tf_devices() -> dict:
    tf = _tf()
    visible = gpus()
    info = {"tensorflow": tf.__version__, "built_with_cuda": tf.test.is_built_with_cuda(),
            "cpus": [d.name for d in tf.config.list_physical_devices("CPU")],
            "gpus": [d.name for d in visible]}
    details = []
    for d in visible:
        try:
            details.append(tf.config.experimental.get_device_details(d).get("device_name", "?"))
        except Exception:  # noqa: BLE001 - details are best effort
            details.append("?")
    if details:
        info["gpu_names"] = details
    return info


def _jax_devices() -> dict:
    import jax

    devices = jax.devices()
    return {"jax": jax.__version__, "default_platform": jax.default_backend(),
            "cpus": [str(d) for d in jax.devices("cpu")],
            "gpus": [str(d) for d in devices if d.platform != "cpu"],
            "processes": jax.process_count()}


def _torch_devices() -> dict:
    import torch

    info = {"torch": torch.__version__, "built_with_cuda": torch.version.cuda is not None,
            "cpus": ["cpu"], "gpus": gpus()}
    if info["gpus"]:
        info["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(len(info["gpus"]))]
        info["cudnn"] = bool(torch.backends.cudnn.is_available())
    return info


@contextlib.contextmanager
def float64_scope():
    """Compute in float64 throughout, for the gradient check. JAX computes in float32 unless
    ``jax_enable_x64`` is on, and Keras 3.15's type promotion on JAX and PyTorch narrows float64
    results to float32 (``BIT64_TO_BIT32_DTYPE`` in keras/src/backend/common/dtypes.py: tanh and
    the losses would compute in float32); both are widened for the duration."""
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
    if backend() == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
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
    import numpy as np

    fixed = [v.value for v in model.non_trainable_variables]

    def forward(values):
        logits, _ = model.stateless_call(values, fixed, x, training=False)
        return loss_of_logits(logits)

    name = backend()
    if name == "jax":
        import jax

        loss, grad = jax.jit(forward), jax.jit(jax.grad(forward))
        return (lambda values: float(loss(values)),
                lambda values: [np.asarray(g) for g in grad(values)])
    if name == "torch":
        import torch

        def torch_grad(values):
            tensors = [torch.tensor(v, requires_grad=True) for v in values]
            return [g.detach().cpu().numpy() for g in
                    torch.autograd.grad(forward(tensors), tensors)]

        return (lambda values: float(forward([torch.tensor(v) for v in values])), torch_grad)
    tf = _tf()

    @tf.function
    def tf_grad(tensors):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value = forward(tensors)
        return [tf.convert_to_tensor(g) for g in tape.gradient(value, tensors)]

    tf_loss = tf.function(forward)
    return (lambda values: float(tf_loss([tf.constant(v) for v in values])),
            lambda values: [g.numpy() for g in tf_grad([tf.constant(v) for v in values])])


def _multi_worker(strategy) -> bool:
    return strategy.extended._in_multi_worker_mode()  # noqa: SLF001 - no public equivalent


def shard_options(strategy):
    """TensorFlow across workers: split every global batch by elements (the data is in
    memory, not files); None otherwise."""
    if backend() != "tensorflow" or strategy is None or not _multi_worker(strategy):
        return None
    tf = _tf()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def adapt_to_strategy(model, strategy) -> None:
    """Work around two Keras 3 problems with tf.distribute (keras-team/keras#20585); nothing
    on other backends.

    1. Under any strategy, ``fit`` first takes one batch from the data iterator and reduces it
       across replicas to build the compiled metrics: that consumes a training batch, and under
       MultiWorkerMirroredStrategy the reduction fails. Our functional model is already built,
       so the metrics are built from a fixed dummy batch instead.
    2. Under MultiWorkerMirroredStrategy each step's scalar logs are reduced with
       ``strategy.reduce("MEAN", v, axis=0)``, which fails on 0-d tensors; the step functions
       return shape-(1,) logs so that reduction is the mean over replicas it was meant to be.
    """
    import types

    if backend() != "tensorflow" or getattr(model, "_distribute_strategy", None) is None:
        return
    tf = _tf()

    def symbolic_build(self, iterator=None, data_batch=None):
        dummies = [tf.zeros((1, i.shape[1] or 2), tf.int32) for i in self.inputs]  # fixed for
        x = dummies[0] if len(dummies) == 1 else tuple(dummies)  # unrolled; a styled model
        with self.distribute_strategy.scope():  # has two inputs
            self._symbolic_build(data_batch=(x, dummies[0]))

    model._maybe_symbolic_build = types.MethodType(symbolic_build, model)
    if _multi_worker(strategy):

        def vectorised(step):
            def run(data):
                return {k: tf.reshape(v, [1]) for k, v in step(data).items()}
            return run

        model.train_step = vectorised(model.train_step)
        model.test_step = vectorised(model.test_step)
