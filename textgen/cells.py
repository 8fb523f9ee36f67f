"""The recurrent cells textgen trains, one declaration each, and the registry they live in.

A ``Cell`` says everything the rest of textgen needs to know about a cell type:

* ``gates``, ``states`` and ``bias_rows``: the weight blocks per unit, the state tensors per
  layer (the hidden state first) and the rows of the bias, from which ``weight_shapes`` gives
  the datasets of a weights file (runs.py checks files against them) and the memory estimate
  (data.py) its activations;
* ``layer``: the Keras layer that trains it (model.py builds the network from it);
* ``numpy_step``: one time step in NumPy, for the sampler, scoring and the server (sample.py);
* ``js_step``: the name of its step in the exported page's JavaScript (export_page.html holds the
  built-in cells' steps; ``js_source`` carries the step of a cell registered from outside);
* ``fused_on``: the Keras backends with a fused (cuDNN) kernel for its layer on a GPU.

The built-in cells are Keras's own LSTM, GRU (``reset_after``) and SimpleRNN, with Keras's cell
equations. ``register`` adds another (a test registers one of its own: nothing else in textgen
has to change). The config's and the command line's choices, the weight-shape checks, the memory
estimate, the model, the NumPy network and the page all read this registry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError

# One time step of a layer in NumPy: (input x (B, I), state tuple (each (B, U)), kernel (I, G*U),
# recurrent_kernel (U, G*U), bias (G*U,) or (rows, G*U), units, mm) -> the new state tuple, whose
# first element is the layer's output. ``mm(a, b)`` is the matrix product to use (sample.py's
# computes every row the same way whatever the batch holds, so a sample does not depend on the
# samples generated beside it); everything else must be elementwise or per row.
NumpyStep = Callable[..., tuple]  # see above


@dataclass(frozen=True)
class Cell:
    name: str
    gates: int  # weight blocks per unit (LSTM: input, forget, cell, output)
    layer: Callable[..., Any]  # (units, *, name, unroll, fused) -> a Keras recurrent layer
    numpy_step: NumpyStep
    js_step: str  # the name of its step function in the page's JavaScript
    help: str = ""
    states: int = 1  # state tensors per layer, the hidden state first
    bias_rows: int = 1  # 2: separate input and recurrent biases (Keras GRU, reset_after)
    fused_on: frozenset[str] = frozenset()  # backends with a fused cuDNN kernel on a GPU
    js_source: str | None = None  # JavaScript defining STEPS[js_step], for a cell not built in

    def weight_shapes(self, inputs: int, units: int) -> dict[str, tuple[int, ...]]:
        """The tensors of one layer, as Keras orders them, with their shapes."""
        width = self.gates * units
        return {"kernel": (inputs, width), "recurrent_kernel": (units, width),
                "bias": (width,) if self.bias_rows == 1 else (self.bias_rows, width)}

    def parameters(self, inputs: int, units: int) -> int:
        return sum(math.prod(s) for s in self.weight_shapes(inputs, units).values())

    @property
    def activation_floats(self) -> int:
        """Floats a training step keeps per unit and time step, in the units data.py's memory
        estimate was calibrated in (gate pre-activations and activations, cell and hidden
        state: gates + 2)."""
        return self.gates + 2


_REGISTRY: dict[str, Cell] = {}


def register(cell: Cell) -> Cell:
    """Add ``cell`` to the registry (a new name, or replacing one of the same name)."""
    if not cell.name or not cell.name.isidentifier() or cell.name == "all":
        raise ValueError(f"cell name {cell.name!r}: use letters, digits and _ (not 'all')")
    _REGISTRY[cell.name] = cell
    return cell


def unregister(name: str) -> None:
    """Remove a cell registered with ``register`` (tests use it to clean up)."""
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> Cell:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"model.cell must be one of {', '.join(_REGISTRY)}, "
                          f"got {name!r}") from None


# ----------------------------------------------------------------------------- built-in cells
# The NumPy steps import NumPy when first called: ``textgen --help`` reads the registry's names
# and must not pay for NumPy.


def _sigmoid(x):
    import numpy as np

    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # = 1 / (1 + exp(-x)), without overflow warnings


def _keras_layer(class_name: str, cudnn: bool) -> Callable[..., Any]:
    def build(units: int, *, name: str, unroll: bool = False, fused: bool = True):
        import keras

        kernel = {} if not cudnn or fused else {"use_cudnn": False}
        return getattr(keras.layers, class_name)(units, return_sequences=True, unroll=unroll,
                                                 name=name, **kernel)
    return build


def _lstm_step(x, state, kernel, rec, bias, u, mm=None):
    import numpy as np

    mm = mm or np.matmul
    h, c = state
    z = mm(x, kernel) + mm(h, rec) + bias
    gates = _sigmoid(z)  # i, f and o (g's slice is wasted: cheaper than three calls)
    i, f, o = gates[:, :u], gates[:, u : 2 * u], gates[:, 3 * u :]
    g = np.tanh(z[:, 2 * u : 3 * u])
    c = f * c + i * g
    return o * np.tanh(c), c


def _gru_step(x, state, kernel, rec, bias, u, mm=None):
    import numpy as np

    mm = mm or np.matmul
    (h,) = state
    xz = mm(x, kernel) + bias[0]
    hz = mm(h, rec) + bias[1]
    zt = _sigmoid(xz[:, :u] + hz[:, :u])
    r = _sigmoid(xz[:, u : 2 * u] + hz[:, u : 2 * u])
    hh = np.tanh(xz[:, 2 * u :] + r * hz[:, 2 * u :])
    return (zt * h + (1.0 - zt) * hh,)


def _rnn_step(x, state, kernel, rec, bias, u, mm=None):
    import numpy as np

    mm = mm or np.matmul
    (h,) = state
    return (np.tanh(mm(x, kernel) + mm(h, rec) + bias),)


LSTM = register(Cell(
    "lstm", gates=4, states=2, layer=_keras_layer("LSTM", cudnn=True), numpy_step=_lstm_step,
    js_step="lstm", fused_on=frozenset({"tensorflow", "jax", "torch"}),
    help="long short-term memory (Keras LSTM; gates i, f, c, o)"))
GRU = register(Cell(
    "gru", gates=3, bias_rows=2, layer=_keras_layer("GRU", cudnn=True), numpy_step=_gru_step,
    js_step="gru", fused_on=frozenset({"tensorflow", "torch"}),
    help="gated recurrent unit (Keras GRU, reset_after; gates z, r, h)"))
RNN = register(Cell(
    "rnn", gates=1, layer=_keras_layer("SimpleRNN", cudnn=False), numpy_step=_rnn_step,
    js_step="rnn", help="vanilla tanh RNN (Keras SimpleRNN)"))
