"""Gradient check: the framework's gradients against central differences, per weight tensor.

On a tiny float64 model (dropout off, so the loss is a deterministic function of the weights),
for a few random entries of every weight tensor, compare TensorFlow's gradient of the mean
cross-entropy with (L(w + eps) - L(w - eps)) / (2 eps), eps = 1e-4 (float64: truncation error
O(eps^2), round-off about 1e-12). The relative error
|g - n| / max(|g| + |n|, 1e-10) should be around 1e-7 or less in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ModelConfig
from .model import build_model, weight_names


@dataclass
class GradRow:
    name: str
    shape: tuple
    checked: int
    max_abs_grad: float
    max_rel_error: float


def check_gradients(cfg: ModelConfig, vocab_size: int = 7, batch: int = 3, length: int = 8,
                    entries: int = 8, eps: float = 1e-4, seed: int = 0) -> list[GradRow]:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    try:
        model = build_model(cfg, vocab_size)
    finally:
        keras.config.set_dtype_policy(previous)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, vocab_size, size=(batch, length)).astype("int32")
    y = rng.integers(0, vocab_size, size=(batch, length)).astype("int32")
    # Non-zero biases, so every term of every cell takes part.
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([w + rng.normal(0, 0.3, w.shape) for w in layer.get_weights()])

    def loss_value():
        logits = model(x, training=False)
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            y, logits, from_logits=True))

    with tf.GradientTape() as tape:
        loss = loss_value()
    variables = _named_variables(model, cfg)
    grads = tape.gradient(loss, [v for _, v in variables])
    rows = []
    for (name, var), grad in zip(variables, grads):
        grad = tf.convert_to_tensor(grad).numpy()
        value = var.numpy()
        flat = rng.choice(value.size, size=min(entries, value.size), replace=False)
        worst = 0.0
        for i in flat:
            idx = np.unravel_index(i, value.shape)
            original = value[idx]
            value[idx] = original + eps
            var.assign(value)
            plus = float(loss_value())
            value[idx] = original - eps
            var.assign(value)
            minus = float(loss_value())
            value[idx] = original
            var.assign(value)
            numeric = (plus - minus) / (2 * eps)
            analytic = float(grad[idx])
            worst = max(worst, abs(analytic - numeric) / max(abs(analytic) + abs(numeric), 1e-10))
        rows.append(GradRow(name, tuple(value.shape), len(flat), float(np.abs(grad).max()), worst))
    return rows


def _named_variables(model, cfg: ModelConfig):
    out = []
    for name in weight_names(cfg):
        layer_name, weight = name.split("/")
        layer = model.get_layer(layer_name)
        cell = getattr(layer, "cell", layer)
        attr = {"embeddings": "embeddings", "kernel": "kernel",
                "recurrent_kernel": "recurrent_kernel", "bias": "bias"}[weight]
        out.append((name, getattr(cell, attr)))
    return out


def format_rows(rows: list[GradRow], tolerance: float) -> str:
    lines = [f"{'tensor':<24} {'shape':<12} {'checked':>7} {'max |grad|':>11} "
             f"{'max rel error':>14}  ok"]
    for r in rows:
        ok = "yes" if r.max_rel_error <= tolerance else "NO"
        lines.append(f"{r.name:<24} {'x'.join(map(str, r.shape)):<12} {r.checked:>7} "
                     f"{r.max_abs_grad:>11.3e} {r.max_rel_error:>14.3e}  {ok}")
    return "\n".join(lines)
