"""Gradient check: the framework's gradients against central differences, per weight tensor.

On a tiny float64 model (dropout off, so the loss is a deterministic function of the weights),
for a few random entries of every weight tensor, compare the backend's gradient (TensorFlow's
GradientTape, ``jax.grad`` or PyTorch's autograd, through ``devices.loss_function``) of the
mean cross-entropy with (L(w + eps) - L(w - eps)) / (2 eps), eps = 1e-4 (float64: truncation
error O(eps^2), round-off about 1e-12). The relative error |g - n| / max(|g| + |n|, 1e-10) should be
around 1e-7 or less in float64.
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
    from .devices import float64_scope, fused_kernel_options, load_keras, loss_function

    keras = load_keras()
    keras.utils.set_random_seed(seed)
    with float64_scope():
        model = build_model(cfg, vocab_size, **fused_kernel_options("float64"))
        rng = np.random.default_rng(seed)
        x = rng.integers(0, vocab_size, size=(batch, length)).astype("int32")
        y = rng.integers(0, vocab_size, size=(batch, length)).astype("int32")
        # The same weights on every backend (their initialisers draw differently), with
        # non-zero biases, so every term of every cell takes part.
        for layer in model.layers:
            if layer.weights:
                layer.set_weights([rng.normal(0, 0.5, w.shape) for w in layer.get_weights()])

        def mean_loss(logits):  # cross-entropy in the logits' own dtype
            logp = keras.ops.log_softmax(logits, axis=-1)
            return -keras.ops.mean(keras.ops.take_along_axis(logp, y[..., None], axis=-1))

        loss, gradients = loss_function(model, mean_loss, x)
        values = [np.array(keras.ops.convert_to_numpy(v), np.float64)
                  for v in model.trainable_variables]
        grads = gradients(values)
        index = {id(v): i for i, v in enumerate(model.trainable_variables)}
        rows = []
        for name, var in _named_variables(model, cfg):
            k = index[id(var)]
            rows.append(_check_tensor(name, values, k, grads[k], loss, rng, entries, eps))
    return rows


def _check_tensor(name, values, k, grad, loss, rng, entries, eps) -> GradRow:
    """Central differences at ``entries`` random entries of ``values[k]``."""
    value = values[k]
    flat = rng.choice(value.size, size=min(entries, value.size), replace=False)
    worst = 0.0
    for i in flat:
        idx = np.unravel_index(i, value.shape)
        original = value[idx]
        value[idx] = original + eps
        plus = loss(values)
        value[idx] = original - eps
        minus = loss(values)
        value[idx] = original
        numeric = (plus - minus) / (2 * eps)
        analytic = float(grad[idx])
        worst = max(worst, abs(analytic - numeric) / max(abs(analytic) + abs(numeric), 1e-10))
    return GradRow(name, tuple(value.shape), len(flat), float(np.abs(grad).max()), worst)


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
