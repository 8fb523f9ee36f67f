"""ModelConfig + vocabulary size -> a compiled Keras model, and textgen's named weights.

Embedding -> ``layers`` x (RNN cell -> Dropout) -> Dense logits. Softmax lives in the loss
(``from_logits=True``) and in the sampler. The recurrent layers (cells.py) keep the settings a
fused cuDNN kernel needs on a GPU: default tanh/sigmoid activations, no recurrent dropout, no
unroll, biases on.

Two options change how the model runs, not what it computes (the same weights and names, the
same outputs): ``window`` fixes the sequence length and unrolls the recurrent loop, and
``chains`` splits every batch into that many parts that go through the recurrent layers as
independent chains of operations, which TensorFlow runs at the same time on different cores.
Training uses both with TensorFlow on a small CPU-only machine (backends/tensorflow.py's
``cpu_layout`` and ``chain_layers``; bench/train_speed.py measures them); with them
the recurrent layers no longer qualify for cuDNN, so never on a GPU. ``fused_kernel_blockers``
lists what would keep a built model's recurrent layers off the fused cuDNN kernel.

Everything else is ``keras`` layers only, so the same model runs on TensorFlow, JAX and PyTorch.

``get_named_weights``/``set_named_weights`` map the model to textgen's own weight names (see
runs.py); run folders never store Keras model files, so loading never deserialises code.
"""

from __future__ import annotations

import random

import numpy as np

from . import cells
from .backends import tensorflow
from .config import ModelConfig, TrainConfig
from .errors import RunError

RNN_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


def build_model(cfg: ModelConfig, vocab_size: int, n_styles: int = 0, *,
                window: int | None = None, chains: int = 1, fused: bool = True):
    """With ``n_styles``, a second input gives each position's style id; its learned embedding
    (``style_dim``) is concatenated to the token embedding at every step. ``window`` and
    ``chains``: see the module's docstring. ``fused=False`` keeps the recurrent layers off the
    fused cuDNN kernel (Keras's ``use_cudnn=False``) where a backend's kernel cannot run the
    dtype (``devices.fused_kernel_options``)."""
    import keras

    if chains > 1 and keras.backend.backend() != "tensorflow":
        raise ValueError("chains (the CPU layout) need the TensorFlow backend")
    split, join = tensorflow.chain_layers(chains) if chains > 1 else (None, None)
    cell = cells.get(cfg.cell)
    inputs = keras.Input(shape=(window,), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocab_size, cfg.embedding_dim, name="embedding")(inputs)
    if n_styles:
        style_in = keras.Input(shape=(window,), dtype="int32", name="style_ids")
        style = keras.layers.Embedding(n_styles, cfg.style_dim, name="style")(style_in)
        x = keras.layers.Concatenate(name="with_style")([x, style])
        inputs = [inputs, style_in]
    parts = split(x) if split else [x]
    rows = x
    for i in range(cfg.layers):
        rnn = cell.layer(cfg.units, name=f"rnn_{i}", unroll=window is not None, fused=fused)
        drop = None
        if cfg.dropout:  # an explicit seed, drawn as Keras would draw it: on PyTorch only a
            # seeded Dropout keeps its RNG state in a variable, which the checkpoint saves
            drop = keras.layers.Dropout(cfg.dropout, seed=random.randint(1, int(1e9)),
                                        name=f"dropout_{i}")
        parts = [rnn(p) for p in parts]
        parts = [drop(p) for p in parts] if drop else parts
    x = join([*parts, rows]) if join else parts[0]
    # Under a mixed-precision policy the logits stay float32, for a stable softmax/cross-entropy.
    mixed = keras.config.dtype_policy().name.startswith("mixed")
    logits = keras.layers.Dense(vocab_size, name="logits",
                                dtype="float32" if mixed else None)(x)
    return keras.Model(inputs, logits, name="textgen")


def fused_kernel_blockers(model, cell: str) -> dict[str, list[str]]:
    """For each recurrent layer of ``model`` (built for ``cell``), what keeps it off the fused
    cuDNN kernel on a GPU (empty lists: every layer qualifies): the cell must have such a kernel
    on this backend (cells.Cell.fused_on), and Keras's conditions on every backend are
    tanh/sigmoid activations, no recurrent dropout, no unrolling, biases, no mask (and
    ``reset_after`` where the layer has it); the layer must see whole batches (no chains) and
    not be switched off (``build_model(fused=False)``)."""
    import keras

    found = {}
    name = keras.backend.backend()
    chained = any(layer.name == "chains" for layer in model.layers)
    masked = any(getattr(layer, "mask_zero", False) or type(layer).__name__ == "Masking"
                 for layer in model.layers)
    for layer in model.layers:
        cfg = layer.get_config()
        if "recurrent_dropout" not in cfg:  # not a recurrent layer
            continue
        rules = {f"the {cell} cell has no fused kernel on {name}":
                     name not in cells.get(cell).fused_on,
                 "activation is not tanh": cfg.get("activation") != "tanh",
                 "recurrent_activation is not sigmoid":
                     cfg.get("recurrent_activation", "sigmoid") != "sigmoid",
                 "recurrent_dropout is not 0": cfg.get("recurrent_dropout") != 0,
                 "unrolled": cfg.get("unroll", False),
                 "no bias": not cfg.get("use_bias", True),
                 "reset_after is off": cfg.get("reset_after", True) is False,
                 "split into chains": chained,
                 "masked input": masked,
                 "fused kernel switched off (use_cudnn=False)":
                     getattr(layer, "use_cudnn", "auto") is False}
        found[layer.name] = [reason for reason, hit in rules.items() if hit]
    return found


def make_optimizer(cfg: TrainConfig, learning_rate=None):
    """The config's optimizer, with gradient clipping; ``learning_rate`` (a number or a Keras
    LearningRateSchedule) instead of ``cfg.lr`` when given."""
    import keras

    clip = {"clipnorm": cfg.clipnorm} if cfg.clipnorm > 0 else {}
    return {
        "rmsprop": keras.optimizers.RMSprop,
        "adam": keras.optimizers.Adam,
        "adagrad": keras.optimizers.Adagrad,
        "sgd": keras.optimizers.SGD,
    }[cfg.optimizer](learning_rate=cfg.lr if learning_rate is None else learning_rate, **clip)


def compile_model(model, cfg: TrainConfig, optimizer=None) -> None:
    """Compile with cross-entropy on the logits and ``optimizer`` (default: the config's)."""
    import keras

    model.compile(
        optimizer=optimizer if optimizer is not None else make_optimizer(cfg),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def weight_names(cfg: ModelConfig, styled: bool = False) -> list[str]:
    names = ["embedding/embeddings"] + (["style/embeddings"] if styled else [])
    for i in range(cfg.layers):
        names += [f"rnn_{i}/{w}" for w in RNN_WEIGHTS]
    return names + ["logits/kernel", "logits/bias"]


def is_styled(model) -> bool:
    return any(layer.name == "style" for layer in model.layers)


def get_named_weights(model, cfg: ModelConfig) -> dict[str, np.ndarray]:
    names = weight_names(cfg, is_styled(model))
    out = {}
    for name in names:
        layer, _ = name.split("/")
        out.setdefault(layer, model.get_layer(layer).get_weights())
    named = {}
    for name in names:
        layer, _ = name.split("/")
        named[name] = np.asarray(out[layer].pop(0))
    return named


def set_named_weights(model, cfg: ModelConfig, named: dict[str, np.ndarray]) -> None:
    by_layer: dict[str, list[np.ndarray]] = {}
    for name in weight_names(cfg, is_styled(model)):
        if name not in named:
            raise RunError(f"weights file lacks {name!r}; it does not match this model config")
        by_layer.setdefault(name.split("/")[0], []).append(named[name])
    for layer, values in by_layer.items():
        target = model.get_layer(layer)
        expected = [tuple(w.shape) for w in target.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise RunError(f"weights for {layer} have shapes {got}, the model expects {expected}")
        target.set_weights(values)
