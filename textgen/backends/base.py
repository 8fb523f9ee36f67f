"""What every backend module shares: this process's choice of Keras backend, and importing Keras
(and its framework) quietly, with one line saying what to install when something is missing.

``--backend tensorflow|jax|torch`` (default: ``KERAS_BACKEND`` if set, else tensorflow) is
chosen by ``select_backend`` before Keras is imported; Keras then runs the same model on that
framework. Unless ``--verbose``, the frameworks' own log noise (TensorFlow's C++ banners while it
loads, absl/gRPC logs) is silenced.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from ..config import BACKENDS
from ..errors import ConfigError, TextgenError

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


def verbose() -> bool:
    return _settings["verbose"]


def set_verbose(on: bool) -> None:
    """Show (or hide, the default) the frameworks' own log messages when they load."""
    _settings["verbose"] = on


@contextlib.contextmanager
def quiet_stderr():
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


def import_keras():
    """Import Keras on the selected backend, quietly (the backend modules' ``load_keras`` add
    what their framework needs after it)."""
    if "keras" not in sys.modules:
        select_backend(None)
        try:
            with quiet_stderr():
                import keras  # noqa: F401
        except ModuleNotFoundError as e:  # an incomplete install: say what to add, not a traceback
            raise missing_module(e) from None
    import keras

    return keras


def keep_tensorflow_out() -> None:
    """Keras imports TensorFlow for ``set_random_seed`` and some data adapters when it is
    installed; on JAX and PyTorch it must not (it costs seconds and memory)."""
    import sys

    if "tensorflow" in sys.modules:
        return
    try:
        from keras.src.utils import module_utils

        module_utils.tensorflow._available = False  # noqa: SLF001 - Keras's lazy TF import
    except (ImportError, AttributeError):  # another Keras version: nothing to switch off
        pass


# How to add what a failed ``import keras`` lacked, by top-level module.
INSTALL = {"keras": 'pip install "keras>=3.15,<3.16"',
           "tensorflow": "pip install textgen (TensorFlow is its default backend), or choose "
                         "--backend jax or torch",
           "jax": 'pip install "textgen[jax]"', "torch": 'pip install "textgen[torch]"'}
PACKAGE = {"absl": "absl-py", "ml_dtypes": "ml-dtypes"}  # Keras's needs named unlike their module


def missing_module(e: ModuleNotFoundError) -> TextgenError:
    top = (e.name or "?").split(".")[0]
    how = INSTALL.get(top, f"pip install {PACKAGE.get(top, top)}")
    return TextgenError(f"Keras cannot start on the {default_backend()} backend: no module named "
                        f"{top!r} in {sys.executable}; {how}")
