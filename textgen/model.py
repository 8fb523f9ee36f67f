"""ModelConfig + vocabulary size -> a compiled Keras model, and textgen's named weights.

Embedding -> ``layers`` x (RNN cell -> Dropout) -> Dense logits. Softmax lives in the loss
(``from_logits=True``) and in the sampler. LSTM/GRU settings stay eligible for the fused cuDNN
kernel on GPU: default tanh/sigmoid activations, no recurrent dropout, no unroll, biases on.

``get_named_weights``/``set_named_weights`` map the model to textgen's own weight names (see
runs.py); run folders never store Keras model files, so loading never deserialises code.
"""

from __future__ import annotations

import numpy as np

from .config import ModelConfig, TrainConfig
from .errors import RunError

RNN_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


def build_model(cfg: ModelConfig, vocab_size: int, n_styles: int = 0):
    """With ``n_styles``, a second input gives each position's style id; its learned embedding
    (``style_dim``) is concatenated to the token embedding at every step."""
    import keras

    layer_cls = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU,
                 "rnn": keras.layers.SimpleRNN}[cfg.cell]
    inputs = keras.Input(shape=(None,), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocab_size, cfg.embedding_dim, name="embedding")(inputs)
    if n_styles:
        style_in = keras.Input(shape=(None,), dtype="int32", name="style_ids")
        style = keras.layers.Embedding(n_styles, cfg.style_dim, name="style")(style_in)
        x = keras.layers.Concatenate(name="with_style")([x, style])
        inputs = [inputs, style_in]
    for i in range(cfg.layers):
        x = layer_cls(cfg.units, return_sequences=True, name=f"rnn_{i}")(x)
        if cfg.dropout > 0:
            x = keras.layers.Dropout(cfg.dropout, name=f"dropout_{i}")(x)
    # Under a mixed-precision policy the logits stay float32, for a stable softmax/cross-entropy.
    mixed = keras.config.dtype_policy().name.startswith("mixed")
    logits = keras.layers.Dense(vocab_size, name="logits",
                                dtype="float32" if mixed else None)(x)
    return keras.Model(inputs, logits, name="textgen")


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
