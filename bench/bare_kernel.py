"""The bare-kernel reference: textgen's model and training step written directly in a backend.

    python bench/bare_kernel.py --check torch      # same loss as textgen's Keras step? (JSON)

For one shape of textgen's model (``Shape``: vocabulary, embedding, layers x LSTM units,
dropout, batch x window, optimizer, learning rate, clipnorm), the same network and the same
update without Keras, with the weights of a textgen model ported in (``port``), so that a step
of each computes the same function:

* PyTorch (``TorchBare``): ``torch.nn.Embedding`` -> ``torch.nn.LSTM`` (one module of
  ``layers`` layers, cuDNN on a GPU; ``per_layer=True``: one module per layer, as Keras calls
  it) -> Dropout -> ``torch.nn.Linear``, cross-entropy, then per-variable gradient clipping
  (Keras's ``clipnorm`` clips each gradient on its own) and ``torch.optim.Adam`` (``adam``:
  "foreach", "fused" or "loop") or RMSprop written with ``torch._foreach_*`` as Keras computes
  it (torch's RMSprop adds epsilon outside the square root, Keras inside). Keras's LSTM has one
  bias, cuDNN two: ``bias_hh`` is held at zero (not trained). Mixed precision: ``torch.autocast``
  in bfloat16 with the logits in float32, as Keras's mixed_bfloat16 policy does.
* JAX (``JaxBare``): embedding -> per layer ``jax.experimental.rnn.lstm`` (cuDNN; on a GPU in
  float32) or a ``lax.scan`` LSTM (``unroll``) -> dropout -> dense, cross-entropy, per-variable
  clipping and Keras's Adam/RMSprop formulas, all in one ``jax.jit`` step whose parameters and
  optimizer state are donated (updated in place).
* TensorFlow (``TfBare``, CPU): the same step as one ``tf.function``, its LSTM loop unrolled
  over the window (as textgen's CPU layout unrolls Keras's), Keras's optimizer formulas.

Each bare object has ``step(x, y)`` (one training step; returns the loss, on the device, not
synchronised), ``loss(x, y)`` (the loss without dropout, a float), ``to_device(batch)`` and
``sync()``. bench/gpu.py times them beside textgen's Keras step; tests/test_gpu_bench.py checks
``--check``: the same loss as Keras at step 0 and over a few steps without dropout.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}  # Keras's defaults
RMSPROP = {"rho": 0.9, "epsilon": 1e-7}


@dataclass(frozen=True)
class Shape:
    """What a training step computes, read off a textgen Config."""

    vocab: int
    embedding: int
    units: int
    layers: int
    dropout: float
    batch: int
    window: int
    optimizer: str
    lr: float
    clipnorm: float

    @classmethod
    def of(cls, cfg, vocab: int) -> "Shape":
        if cfg.model.cell != "lstm" or cfg.train.optimizer not in ("adam", "rmsprop"):
            raise ValueError("the bare kernel covers LSTM models trained with Adam or RMSprop")
        return cls(vocab, cfg.model.embedding_dim, cfg.model.units, cfg.model.layers,
                   cfg.model.dropout, cfg.window.batch_size, cfg.window.window,
                   cfg.train.optimizer, cfg.train.lr, cfg.train.clipnorm)

    @property
    def targets(self) -> int:
        """Characters trained per step."""
        return self.batch * self.window

    def label(self) -> str:
        return (f"{self.layers} x LSTM {self.units}, batch {self.batch} x {self.window}")

    def with_batch(self, batch: int, lr: float | None = None) -> "Shape":
        return replace(self, batch=batch, lr=self.lr if lr is None else lr)


def port(named: dict[str, np.ndarray], shape: Shape) -> dict:
    """textgen's named weights (model.get_named_weights) -> the bare layout: embedding (V, E),
    per layer (kernel (in, 4u), recurrent (u, 4u), bias (4u,)) in Keras's gate order
    [i, f, c, o], which is cuDNN's and PyTorch's too; dense kernel (u, V) and bias (V,)."""
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return {"embedding": f32(named["embedding/embeddings"]),
            "layers": [(f32(named[f"rnn_{i}/kernel"]), f32(named[f"rnn_{i}/recurrent_kernel"]),
                        f32(named[f"rnn_{i}/bias"])) for i in range(shape.layers)],
            "dense": (f32(named["logits/kernel"]), f32(named["logits/bias"]))}


def random_weights(shape: Shape, seed: int = 0) -> dict:
    """Weights in ``port``'s layout drawn like Keras's initialisers (scaled uniform), for
    timing a bare step without building a Keras model."""
    rng = np.random.default_rng(seed)

    def uniform(*dims):
        limit = math.sqrt(6 / (dims[0] + dims[-1]))
        return rng.uniform(-limit, limit, dims).astype(np.float32)

    layers, inp, u = [], shape.embedding, shape.units
    for _ in range(shape.layers):
        bias = np.zeros(4 * u, np.float32)
        bias[u:2 * u] = 1.0  # unit_forget_bias
        layers.append((uniform(inp, 4 * u), uniform(u, 4 * u), bias))
        inp = u
    return {"embedding": rng.uniform(-0.05, 0.05, (shape.vocab, shape.embedding))
            .astype(np.float32), "layers": layers,
            "dense": (uniform(u, shape.vocab), np.zeros(shape.vocab, np.float32))}


def batches(shape: Shape, count: int, seed: int = 0, ids: np.ndarray | None = None) -> list:
    """``count`` (x, y) int32 batches: windows of ``ids`` (real text) at seeded random starts,
    or seeded random ids when ``ids`` is None."""
    rng = np.random.default_rng(seed)
    if ids is None:
        ids = rng.integers(0, shape.vocab, 200_000, dtype=np.int32)
    ids = np.asarray(ids, dtype=np.int32)
    out = []
    for _ in range(count):
        starts = rng.integers(0, len(ids) - shape.window - 1, shape.batch)
        seq = ids[starts[:, None] + np.arange(shape.window + 1)]
        out.append((np.ascontiguousarray(seq[:, :-1]), np.ascontiguousarray(seq[:, 1:])))
    return out


# ----------------------------------------------------------------------------- PyTorch

class TorchBare:
    """The bare PyTorch step. ``adam``: "foreach" (torch's default on a GPU), "fused" or "loop"
    (``foreach=False``); ``compile``: ``torch.compile`` the whole step."""

    def __init__(self, shape: Shape, weights: dict, device: str = "cpu", precision="float32",
                 per_layer: bool = False, adam: str = "foreach", compile: bool = False):
        import torch

        self.torch, self.shape, self.device = torch, shape, torch.device(device)
        self.net = _torch_net(shape, per_layer).to(self.device)
        _torch_load(self.net, weights, shape, per_layer)
        self.params = [p for p in self.net.parameters() if p.requires_grad]
        self.mixed = precision != "float32"
        self.optimizer = _torch_optimizer(self.params, shape, adam)
        self._step = torch.compile(self._eager_step) if compile else self._eager_step

    def _logits(self, x):
        torch = self.torch
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.mixed):
            return self.net(x)

    def _eager_step(self, x, y):
        torch = self.torch
        self.net.train()
        logits = self._logits(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, self.shape.vocab),
                                                 y.reshape(-1).long())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.shape.clipnorm > 0:
            _torch_clip_each(torch, self.params, self.shape.clipnorm)
        self.optimizer.step()
        return loss.detach()

    def step(self, x, y):
        return self._step(x, y)

    def loss(self, x, y) -> float:
        torch = self.torch
        self.net.eval()
        with torch.no_grad():
            logits = self._logits(self.to_device((x, y))[0])
            y = torch.as_tensor(np.asarray(y), device=self.device).long()
            return float(torch.nn.functional.cross_entropy(
                logits.reshape(-1, self.shape.vocab), y.reshape(-1)))

    def to_device(self, batch):
        return tuple(self.torch.as_tensor(np.asarray(a), device=self.device) for a in batch)

    def sync(self, value=None) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()


def _torch_net(shape: Shape, per_layer: bool):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(shape.vocab, shape.embedding)
            dims = [shape.embedding] + [shape.units] * (shape.layers - 1)
            self.rnns = nn.ModuleList(
                [nn.LSTM(d, shape.units, batch_first=True) for d in dims] if per_layer else
                [nn.LSTM(shape.embedding, shape.units, num_layers=shape.layers,
                         dropout=shape.dropout if shape.layers > 1 else 0.0, batch_first=True)])
            self.drop = nn.Dropout(shape.dropout)
            self.logits = nn.Linear(shape.units, shape.vocab)

        def forward(self, x):
            h = self.embedding(x.long())
            for rnn in self.rnns:  # between nn.LSTM's own layers it drops out itself
                h = self.drop(rnn(h)[0])
            with torch.autocast(h.device.type, enabled=False):  # logits in float32, as Keras
                return self.logits(h.float())

    return Net()


def _torch_load(net, weights: dict, shape: Shape, per_layer: bool) -> None:
    import torch

    with torch.no_grad():
        net.embedding.weight.copy_(torch.from_numpy(weights["embedding"]))
        for i, (kernel, recurrent, bias) in enumerate(weights["layers"]):
            rnn, k = (net.rnns[i], 0) if per_layer else (net.rnns[0], i)
            getattr(rnn, f"weight_ih_l{k}").copy_(torch.from_numpy(kernel.T.copy()))
            getattr(rnn, f"weight_hh_l{k}").copy_(torch.from_numpy(recurrent.T.copy()))
            getattr(rnn, f"bias_ih_l{k}").copy_(torch.from_numpy(bias))
            hh = getattr(rnn, f"bias_hh_l{k}")
            hh.zero_()
            hh.requires_grad_(False)  # Keras's LSTM has one bias
        kernel, bias = weights["dense"]
        net.logits.weight.copy_(torch.from_numpy(kernel.T.copy()))
        net.logits.bias.copy_(torch.from_numpy(bias))


def _torch_clip_each(torch, params, clipnorm: float) -> None:
    """Keras's ``clipnorm``: each gradient scaled by clipnorm / max(its norm, clipnorm)."""
    grads = [p.grad for p in params]
    norms = torch.stack(torch._foreach_norm(grads))
    scales = clipnorm / torch.clamp(norms, min=clipnorm)
    for g, s in zip(grads, scales.unbind()):
        g.mul_(s)


def _torch_optimizer(params, shape: Shape, adam: str):
    import torch

    if shape.optimizer == "rmsprop":
        return KerasRMSprop(params, shape.lr)
    kind = {"foreach": {"foreach": True}, "fused": {"fused": True},
            "loop": {"foreach": False}}[adam]
    return torch.optim.Adam(params, lr=shape.lr, betas=(ADAM["beta_1"], ADAM["beta_2"]),
                            eps=ADAM["epsilon"], **kind)


class KerasRMSprop:
    """RMSprop as Keras computes it (v = rho v + (1 - rho) g^2; p -= lr g / sqrt(v + eps)),
    with ``torch._foreach_*`` ops as Keras's own PyTorch optimizer does."""

    def __init__(self, params, lr: float):
        import torch

        self.torch, self.params, self.lr = torch, params, lr
        self.velocity = [torch.zeros_like(p) for p in params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        torch, rho, eps = self.torch, RMSPROP["rho"], RMSPROP["epsilon"]
        grads = [p.grad for p in self.params]
        with torch.no_grad():
            torch._foreach_mul_(self.velocity, rho)
            torch._foreach_addcmul_(self.velocity, grads, grads, value=1 - rho)
            denom = torch._foreach_sqrt(torch._foreach_add(self.velocity, eps))
            torch._foreach_addcdiv_(self.params, grads, denom, value=-self.lr)


# ----------------------------------------------------------------------------- JAX

class JaxBare:
    """The bare JAX step: one jitted function, parameters and optimizer state donated.
    ``cudnn``: None picks jax.experimental.rnn (cuDNN) on a GPU in float32, else the lax.scan
    LSTM; ``unroll``: lax.scan's unroll factor; ``donate``: False keeps fresh buffers."""

    def __init__(self, shape: Shape, weights: dict, precision: str = "float32",
                 cudnn: bool | None = None, unroll: int = 1, donate: bool = True, seed: int = 0):
        import jax
        import jax.numpy as jnp

        self.jax, self.shape = jax, shape
        on_gpu = jax.default_backend() == "gpu"
        self.cudnn = (on_gpu and precision == "float32") if cudnn is None else cudnn
        self.compute = jnp.bfloat16 if precision != "float32" else jnp.float32
        self.params = jax.device_put(_jax_params(weights))
        zeros = lambda: jax.tree_util.tree_map(jnp.zeros_like, self.params)  # noqa: E731
        self.state = {"t": jnp.zeros((), jnp.int32),
                      "m": zeros() if shape.optimizer == "adam" else None, "v": zeros()}
        self.key = jax.random.PRNGKey(seed)
        forward = _jax_forward(shape, self.cudnn, unroll, self.compute)
        self._eval = jax.jit(lambda p, x, y: _jax_loss(forward(p, x, None), y))
        self._step = jax.jit(_jax_train_step(shape, forward),
                             donate_argnums=(0, 1) if donate else ())

    def step(self, x, y):
        self.params, self.state, loss = self._step(self.params, self.state, x, y, self.key)
        return loss

    def loss(self, x, y) -> float:
        return float(self._eval(self.params, *self.to_device((x, y))))

    def to_device(self, batch):
        return tuple(self.jax.device_put(np.asarray(a)) for a in batch)

    def sync(self, value=None) -> None:
        self.jax.block_until_ready(self.params if value is None else value)


def _jax_params(weights: dict) -> dict:
    return {"embedding": weights["embedding"],
            "layers": [{"kernel": k, "recurrent": r, "bias": b} for k, r, b in weights["layers"]],
            "dense": {"kernel": weights["dense"][0], "bias": weights["dense"][1]}}


def _jax_lstm_scan(x, layer, unroll: int, dtype):
    """One LSTM layer over (batch, time, in) as a lax.scan over time; the input projections of
    every step in one matrix product first, as Keras does."""
    import jax
    import jax.numpy as jnp

    kernel, recurrent = layer["kernel"].astype(dtype), layer["recurrent"].astype(dtype)
    projected = jnp.einsum("bti,ig->tbg", x, kernel) + layer["bias"].astype(dtype)
    units = recurrent.shape[0]
    zeros = jnp.zeros((x.shape[0], units), dtype)

    def cell(carry, z_x):
        h, c = carry
        i, f, g, o = jnp.split(z_x + h @ recurrent, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    _, hs = jax.lax.scan(cell, (zeros, zeros), projected, unroll=unroll)
    return jnp.swapaxes(hs, 0, 1)


def _jax_lstm_cudnn(x, layer):
    """One LSTM layer through jax.experimental.rnn.lstm (cuDNN), float32 only."""
    import jax.numpy as jnp
    from jax.experimental import rnn

    kernel, recurrent, bias = layer["kernel"], layer["recurrent"], layer["bias"]
    units = recurrent.shape[0]
    flat = jnp.concatenate([kernel.T.ravel(), recurrent.T.ravel(), bias, jnp.zeros_like(bias)])
    zeros = jnp.zeros((1, x.shape[0], units), x.dtype)
    lengths = jnp.full((x.shape[0],), x.shape[1], jnp.int32)
    y, _, _ = rnn.lstm(x, zeros, zeros, flat, lengths, input_size=kernel.shape[0],
                       hidden_size=units, num_layers=1, dropout=0.0, bidirectional=False)
    return y


def _jax_forward(shape: Shape, cudnn: bool, unroll: int, dtype):
    """(params, x, key or None) -> float32 logits; ``key`` None: no dropout."""
    import jax
    import jax.numpy as jnp

    def forward(params, x, key):
        h = params["embedding"].astype(dtype)[x]
        for i, layer in enumerate(params["layers"]):
            h = _jax_lstm_cudnn(h, layer) if cudnn else _jax_lstm_scan(h, layer, unroll, dtype)
            if key is not None and shape.dropout > 0:
                keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1 - shape.dropout,
                                            h.shape)
                h = jnp.where(keep, h / (1 - shape.dropout), 0).astype(h.dtype)
        dense = params["dense"]
        return h.astype(jnp.float32) @ dense["kernel"] + dense["bias"]

    return forward


def _jax_loss(logits, y):
    import jax
    import jax.numpy as jnp

    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, y[..., None].astype(jnp.int32), axis=-1))


def _jax_train_step(shape: Shape, forward):
    """(params, state, x, y, key) -> (params, state, loss): gradients, Keras's per-variable
    clipnorm, Keras's Adam or RMSprop."""
    import jax
    import jax.numpy as jnp

    tree = jax.tree_util.tree_map

    def train_step(params, state, x, y, key):
        key = jax.random.fold_in(key, state["t"])
        loss, grads = jax.value_and_grad(lambda p: _jax_loss(forward(p, x, key), y))(params)
        if shape.clipnorm > 0:
            c = shape.clipnorm
            grads = tree(lambda g: g * (c / jnp.maximum(jnp.sqrt(jnp.sum(g * g)), c)), grads)
        t = state["t"] + 1
        if shape.optimizer == "adam":
            b1, b2, eps = ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"]
            m = tree(lambda m, g: m + (g - m) * (1 - b1), state["m"], grads)
            v = tree(lambda v, g: v + (g * g - v) * (1 - b2), state["v"], grads)
            tf = t.astype(jnp.float32)
            alpha = shape.lr * jnp.sqrt(1 - b2 ** tf) / (1 - b1 ** tf)
            params = tree(lambda p, m, v: p - alpha * m / (jnp.sqrt(v) + eps), params, m, v)
            return params, {"t": t, "m": m, "v": v}, loss
        rho, eps = RMSPROP["rho"], RMSPROP["epsilon"]
        v = tree(lambda v, g: rho * v + (1 - rho) * g * g, state["v"], grads)
        params = tree(lambda p, g, v: p - shape.lr * g / jnp.sqrt(v + eps), params, grads, v)
        return params, {"t": t, "m": None, "v": v}, loss

    return train_step


# ----------------------------------------------------------------------------- TensorFlow

class TfBare:
    """The bare TensorFlow step (CPU): one ``tf.function``, the LSTM loop unrolled over the
    window (a Python loop while tracing), Keras's optimizer formulas on tf.Variables."""

    def __init__(self, shape: Shape, weights: dict, seed: int = 0):
        import tensorflow as tf

        self.tf, self.shape = tf, shape
        flat = [weights["embedding"], *[w for layer in weights["layers"] for w in layer],
                *weights["dense"]]
        self.vars = [tf.Variable(w) for w in flat]
        self.slots = [[tf.Variable(tf.zeros_like(w)) for w in flat]
                      for _ in range(2 if shape.optimizer == "adam" else 1)]
        self.t = tf.Variable(0, dtype=tf.int64)
        self.rng = tf.random.Generator.from_seed(seed)
        self._step = tf.function(self._train_step)
        self._eval = tf.function(lambda x, y: self._loss(x, y, False))

    def _logits(self, x, training: bool):
        tf, s = self.tf, self.shape
        h = tf.gather(self.vars[0], x)
        for i in range(s.layers):
            kernel, recurrent, bias = self.vars[1 + 3 * i: 4 + 3 * i]
            projected = tf.einsum("bti,ig->btg", h, kernel) + bias
            hs, c = [], tf.zeros((tf.shape(x)[0], s.units))
            h_t = c
            for t in range(s.window):
                i_, f, g, o = tf.split(projected[:, t] + h_t @ recurrent, 4, axis=-1)
                c = tf.sigmoid(f) * c + tf.sigmoid(i_) * tf.tanh(g)
                h_t = tf.sigmoid(o) * tf.tanh(c)
                hs.append(h_t)
            h = tf.stack(hs, axis=1)
            if training and s.dropout > 0:
                keep = self.rng.uniform(tf.shape(h)) >= s.dropout
                h = tf.where(keep, h / (1 - s.dropout), 0.0)
        return h @ self.vars[-2] + self.vars[-1]

    def _loss(self, x, y, training: bool):
        tf = self.tf
        logits = self._logits(x, training)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(y, tf.int32), logits=logits))

    def _train_step(self, x, y):
        tf, s = self.tf, self.shape
        with tf.GradientTape() as tape:
            loss = self._loss(x, y, True)
        # the embedding's gradient comes as IndexedSlices: dense, for the formulas below
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, self.vars)]
        if s.clipnorm > 0:
            grads = [tf.clip_by_norm(g, s.clipnorm) for g in grads]
        self.t.assign_add(1)
        if s.optimizer == "adam":
            b1, b2, eps = ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"]
            t = tf.cast(self.t, tf.float32)
            alpha = s.lr * tf.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            for p, m, v, g in zip(self.vars, *self.slots, grads):
                m.assign_add((g - m) * (1 - b1))
                v.assign_add((g * g - v) * (1 - b2))
                p.assign_sub(alpha * m / (tf.sqrt(v) + eps))
        else:
            rho, eps = RMSPROP["rho"], RMSPROP["epsilon"]
            for p, v, g in zip(self.vars, self.slots[0], grads):
                v.assign(rho * v + (1 - rho) * g * g)
                p.assign_sub(s.lr * g / tf.sqrt(v + eps))
        return loss

    def step(self, x, y):
        return self._step(x, y)

    def loss(self, x, y) -> float:
        return float(self._eval(*self.to_device((x, y))))

    def to_device(self, batch):
        return tuple(self.tf.constant(np.asarray(a)) for a in batch)

    def sync(self, value=None) -> None:
        if value is not None:
            value.numpy()


def make_bare(backend: str, shape: Shape, weights: dict, precision: str = "float32",
              **options):
    """The bare step for ``backend`` on its default device (a GPU where there is one)."""
    if backend == "torch":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return TorchBare(shape, weights, device, precision, **options)
    if backend == "jax":
        return JaxBare(shape, weights, precision, **options)
    if precision != "float32" or options:
        raise ValueError("the TensorFlow bare step is float32 and has no options")
    return TfBare(shape, weights)


# ----------------------------------------------------------------------------- the check

CHECK_CONFIG = {"model": {"units": 32, "layers": 2, "embedding_dim": 16, "dropout": 0.2},
                "window": {"window": 12, "batch_size": 8},
                "train": {"optimizer": "adam", "lr": 0.01, "clipnorm": 0.5}}


def check(backend: str, optimizer: str = "adam", steps: int = 3, seed: int = 0) -> dict:
    """textgen's Keras model on ``backend`` (built and compiled as `textgen train` does) and
    the bare step with its weights ported: the loss of one batch without dropout, then the
    training losses of ``steps`` steps with dropout off on both (so both see the same
    function). A small clipnorm makes the clipping act."""
    from textgen.config import Config
    from textgen.devices import load_keras, select_backend

    select_backend(backend)
    keras = load_keras()
    from textgen.model import build_model, compile_model, get_named_weights, set_named_weights

    data = json.loads(json.dumps(CHECK_CONFIG))
    data["train"]["optimizer"] = optimizer
    cfg = Config.from_dict(data)
    shape = Shape.of(cfg, vocab=23)
    keras.utils.set_random_seed(seed)
    model = build_model(cfg.model, shape.vocab)
    compile_model(model, cfg.train)
    # weights far from the initialisers' (whose logits are all near 0, so that any model's
    # loss is near log(vocab)): a wrong port shows as another loss
    rng = np.random.default_rng(seed)
    named = {k: (v + rng.normal(0, 0.3, v.shape)).astype(np.float32)
             for k, v in get_named_weights(model, cfg.model).items()}
    set_named_weights(model, cfg.model, named)
    weights = port(named, shape)
    (x, y), *train = batches(shape, steps + 1, seed)
    logits = model(x, training=False)
    keras_eval = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, logits))
    bare_eval = make_bare(backend, shape, weights).loss(x, y)
    unported = make_bare(backend, shape, random_weights(shape, seed + 1)).loss(x, y)
    # the training sequence without dropout: Keras's Dropout layers are switched off
    cfg0 = Config.from_dict({**data, "model": {**data["model"], "dropout": 0.0}})
    keras.utils.set_random_seed(seed)
    model0 = build_model(cfg0.model, shape.vocab)
    compile_model(model0, cfg0.train)
    set_named_weights(model0, cfg0.model, named)
    keras_losses = [float(model0.train_on_batch(bx, by)) for bx, by in train]
    bare = make_bare(backend, replace(shape, dropout=0.0), weights)
    bare_losses = []
    for batch in train:
        loss = bare.step(*bare.to_device(batch))
        bare_losses.append(float(np.asarray(loss)))
    return {"backend": backend, "optimizer": optimizer, "shape": asdict(shape),
            "eval_loss": {"keras": keras_eval, "bare": bare_eval}, "unported_eval": unported,
            "train_losses": {"keras": keras_losses, "bare": bare_losses}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", choices=("torch", "jax", "tensorflow"), required=True,
                        help="compare the bare step with textgen's Keras step on this backend")
    parser.add_argument("--optimizer", nargs="+", choices=("adam", "rmsprop"), default=["adam"])
    args = parser.parse_args()
    for optimizer in args.optimizer:  # one JSON line each
        print(json.dumps(check(args.check, optimizer)), flush=True)


if __name__ == "__main__":
    main()
