"""PyTorch: one device (Keras's PyTorch trainer has no data-parallel ``fit``), NumPy batches.

The input pipeline is windows.numpy_datasets; TensorFlow is never imported. On a GPU Keras runs
the recurrent layers of every cell whose ``cells.Cell.fused_on`` names torch on cuDNN.
"""

from __future__ import annotations

import contextlib

from ..windows import numpy_datasets
from .base import import_keras, keep_tensorflow_out

NAME = "torch"
STRATEGIES = ("auto", "one")
PACKAGE = "torch"


def load_keras():
    import warnings

    keras = import_keras()
    # Keras hands torch's fused recurrent kernels separate weight tensors, so torch copies them
    # into one block at every call and warns, once per run; a user can do nothing about it, and
    # for these models the copy is a few MB on the GPU.
    warnings.filterwarnings("ignore", message="RNN module weights are not part of single")
    keep_tensorflow_out()
    return keras


def gpus() -> list:
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())]


def set_determinism(seed: int) -> None:
    """Deterministic kernels; on a GPU some have no deterministic version: warn there instead
    of failing."""
    import torch

    torch.use_deterministic_algorithms(True, warn_only=bool(gpus()))


def set_threads(cores: int | None = None) -> None:
    return None


def cpu_layout(window: int, steps: int, max_minutes: float | None = None) -> dict:
    return {}


def fused_options(dtype: str) -> dict:
    return {}


def join_workers(strategy: str) -> None:
    """One device only: nothing to join."""


def make_distribution(name: str):
    return None  # "auto" and "one": the one device (STRATEGIES)


def distribution_scope(distribution):
    return contextlib.nullcontext()


def adapt_model(model, distribution) -> None:
    """Nothing to adapt on PyTorch."""


def data_shard() -> tuple[int, int, int]:
    return 0, 1, 1


def datasets(split, cfg, seed: int, epochs: int, spe: int, distribution):
    return numpy_datasets(split, cfg, seed, epochs, spe)


def device_report() -> dict:
    import torch

    info = {"torch": torch.__version__, "built_with_cuda": torch.version.cuda is not None,
            "cpus": ["cpu"], "gpus": gpus()}
    if info["gpus"]:
        info["gpu_names"] = [torch.cuda.get_device_name(i) for i in range(len(info["gpus"]))]
        info["cudnn"] = bool(torch.backends.cudnn.is_available())
    return info


def fused_note(cell) -> str:
    return f"yes: {cell.name} layers run the fused cuDNN kernel"


def float64_setup() -> None:
    """PyTorch computes in float64 when asked; nothing to switch on."""


def gradient_functions(forward):
    """(loss(values), gradients(values)) of ``forward`` through PyTorch's autograd."""
    import torch

    def torch_grad(values):
        tensors = [torch.tensor(v, requires_grad=True) for v in values]
        return [g.detach().cpu().numpy() for g in torch.autograd.grad(forward(tensors), tensors)]

    return (lambda values: float(forward([torch.tensor(v) for v in values])), torch_grad)
