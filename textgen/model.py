"""ModelConfig + vocabulary size -> a compiled Keras model, and textgen's named weights.

Embedding -> ``layers`` x (RNN cell -> Dropout) -> Dense logits. Softmax lives in the loss
(``from_logits=True``) and in the sampler. LSTM/GRU settings stay eligible for the fused cuDNN
kernel on GPU: default tanh/sigmoid activations, no recurrent dropout, no unroll, biases on.

Two options change how the model runs, not what it computes (the same weights and names, the
same outputs): ``window`` fixes the sequence length and unrolls the recurrent loop, and
``chains`` splits every batch into that many parts that go through the recurrent layers as
independent chains of operations, which TensorFlow runs at the same time on different cores.
Training uses both with TensorFlow on a small CPU-only machine (``devices.cpu_layout``;
bench/train_speed.py measures them; the chains are TensorFlow ops, so TensorFlow only); with them
the recurrent layers no longer qualify for cuDNN, so never on a GPU. ``fused_kernel_blockers``
lists what would keep a built model's recurrent layers off the fused cuDNN kernel.

Everything else is ``keras`` layers only, so the same model runs on TensorFlow, JAX and PyTorch.

``get_named_weights``/``set_named_weights`` map the model to textgen's own weight names (see
runs.py); run folders never store Keras model files, so loading never deserialises code.
"""

from __future__ import annotations

import random

import numpy as np

from .config import ModelConfig, TrainConfig
from .errors import RunError

RNN_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


def build_model(cfg: ModelConfig, vocab_size: int, n_styles: int = 0, *,
                window: int | None = None, chains: int = 1, fused: bool = True):
    """With ``n_styles``, a second input gives each position's style id; its learned embedding
    (``style_dim``) is concatenated to the token embedding at every step. ``window`` and
    ``chains``: see the module's docstring. ``fused=False`` keeps LSTM/GRU layers off the fused
    cuDNN kernel (Keras's ``use_cudnn=False``) where a backend's kernel cannot run the dtype
    (``devices.fused_kernel_options``)."""
    import keras

    if chains > 1 and keras.backend.backend() != "tensorflow":
        raise ValueError("chains (the CPU layout) need the TensorFlow backend")
    layer_cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU,
                 "rnn": keras.layers.SimpleRNN}[cfg.cell]
    inputs = keras.Input(shape=(window,), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocab_size, cfg.embedding_dim, name="embedding")(inputs)
    if n_styles:
        style_in = keras.Input(shape=(window,), dtype="int32", name="style_ids")
        style = keras.layers.Embedding(n_styles, cfg.style_dim, name="style")(style_in)
        x = keras.layers.Concatenate(name="with_style")([x, style])
        inputs = [inputs, style_in]
    parts = SplitBatch(chains, name="chains")(x) if chains > 1 else [x]
    rows = x
    for i in range(cfg.layers):
        kernel = {} if cfg.cell == "rnn" or fused else {"use_cudnn": False}
        rnn = layer_cls(cfg.units, return_sequences=True, unroll=window is not None,
                        name=f"rnn_{i}", **kernel)
        drop = None
        if cfg.dropout:  # an explicit seed, drawn as Keras would draw it: on PyTorch only a
            # seeded Dropout keeps its RNG state in a variable, which the checkpoint saves
            drop = keras.layers.Dropout(cfg.dropout, seed=random.randint(1, int(1e9)),
                                        name=f"dropout_{i}")
        parts = [rnn(p) for p in parts]
        parts = [drop(p) for p in parts] if drop else parts
    x = JoinBatch(name="joined")([*parts, rows]) if chains > 1 else parts[0]
    # Under a mixed-precision policy the logits stay float32, for a stable softmax/cross-entropy.
    mixed = keras.config.dtype_policy().name.startswith("mixed")
    logits = keras.layers.Dense(vocab_size, name="logits",
                                dtype="float32" if mixed else None)(x)
    return keras.Model(inputs, logits, name="textgen")


def SplitBatch(parts: int, name: str):  # noqa: N802 - a layer factory; Keras imported lazily
    """A layer that splits a batch into ``parts`` near-equal parts. A batch of fewer rows than
    ``parts`` is first padded with copies of its first row, so that no part is empty;
    ``JoinBatch`` drops the padding again."""
    import keras
    import tensorflow as tf

    class _SplitBatch(keras.layers.Layer):
        def call(self, x):
            pad = tf.maximum(parts - tf.shape(x)[0], 0)
            x = tf.concat([x, tf.repeat(x[:1], pad, axis=0)], axis=0)
            b = tf.shape(x)[0]
            sizes = [(b + parts - 1 - k) // parts for k in range(parts)]
            return tf.split(x, tf.stack(sizes), axis=0, num=parts)

        def compute_output_shape(self, shape):
            return [(None, *shape[1:])] * parts

    return _SplitBatch(name=name)


def JoinBatch(name: str):  # noqa: N802
    """Concatenates ``SplitBatch``'s parts (inputs: the parts, then the unsplit batch) and
    keeps as many rows as the unsplit batch had."""
    import keras
    import tensorflow as tf

    class _JoinBatch(keras.layers.Layer):
        def call(self, inputs):
            *parts, rows = inputs
            return tf.concat(parts, axis=0)[:tf.shape(rows)[0]]

        def compute_output_shape(self, shapes):
            return (None, *shapes[0][1:])

    return _JoinBatch(name=name)


def fused_kernel_blockers(model) -> dict[str, list[str]]:
    """For each recurrent layer of ``model``, what keeps it off the fused cuDNN kernel on a GPU
    (empty lists: every layer qualifies): Keras's conditions on every backend are tanh/sigmoid
    activations, no recurrent dropout, no unrolling, biases, no mask (and ``reset_after`` for
    GRU); and the layer must see whole batches (no ``SplitBatch`` chains) and not be switched
    off (``build_model(fused=False)``)."""
    found = {}
    chained = any(layer.name == "chains" for layer in model.layers)
    masked = any(getattr(layer, "mask_zero", False) or type(layer).__name__ == "Masking"
                 for layer in model.layers)
    for layer in model.layers:
        cfg = layer.get_config()
        if "recurrent_dropout" not in cfg:  # not a recurrent layer
            continue
        rules = {"activation is not tanh": cfg.get("activation") != "tanh",
                 "recurrent_activation is not sigmoid":
                     cfg.get("recurrent_activation", "sigmoid") != "sigmoid",
                 "recurrent_dropout is not 0": cfg.get("recurrent_dropout") != 0,
                 "unrolled": cfg.get("unroll", False),
                 "no bias": not cfg.get("use_bias", True),
                 "GRU without reset_after": cfg.get("reset_after", True) is False,
                 "split into chains": chained,
                 "masked input": masked,
                 "fused kernel switched off (use_cudnn=False)":
                     getattr(layer, "use_cudnn", "auto") is False,
                 "vanilla RNN cell (no cuDNN kernel)": type(layer).__name__ == "SimpleRNN"}
        found[layer.name] = [reason for reason, hit in rules.items() if hit]
    return found


def compile_model(model, cfg: TrainConfig) -> None:
    import keras

    clip = {"clipnorm": cfg.clipnorm} if cfg.clipnorm > 0 else {}
    optimizer = {
        "rmsprop": keras.optimizers.RMSprop,
        "adam": keras.optimizers.Adam,
        "adagrad": keras.optimizers.Adagrad,
        "sgd": keras.optimizers.SGD,
    }[cfg.optimizer](learning_rate=cfg.lr, **clip)
    model.compile(
        optimizer=optimizer,
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
