"""The CPU training layout (unrolled loop, batch split into chains) computes the same model."""

import numpy as np
import pytest

from textgen import cells, devices
from textgen.backends import tensorflow as tensorflow_backend
from textgen.config import ModelConfig
from textgen.runs import read_weights

from .conftest import TINY_FLAGS, invoke


def _grads(model, inputs):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(model(inputs, training=False)))
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_variables)]


@pytest.mark.parametrize("cell", cells.names())
@pytest.mark.parametrize("rows", [1, 2, 5, 8])
def test_layouts_give_the_same_outputs_and_gradients(cell, rows):
    import keras

    from textgen.model import build_model, get_named_weights, set_named_weights

    keras.utils.set_random_seed(rows)  # the initial weights too: a seeded test
    cfg = ModelConfig(cell=cell, layers=2, units=6, embedding_dim=3, dropout=0.2, style_dim=2)
    plain = build_model(cfg, 11, n_styles=2)
    named = get_named_weights(plain, cfg)
    rng = np.random.default_rng(rows)
    inputs = [rng.integers(0, 11, (rows, 7)), rng.integers(0, 2, (rows, 7))]
    for layout in ({"chains": 2}, {"chains": 3, "window": 7}, {"window": 7}):
        other = build_model(cfg, 11, n_styles=2, **layout)
        assert [w.name for w in other.trainable_variables] == \
            [w.name for w in plain.trainable_variables]
        set_named_weights(other, cfg, named)
        np.testing.assert_allclose(other(inputs), plain(inputs), atol=1e-6)
        for a, b in zip(_grads(other, inputs), _grads(plain, inputs), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_cpu_layout_rule(monkeypatch):
    monkeypatch.setattr(tensorflow_backend, "gpus", lambda: [])
    monkeypatch.setattr(tensorflow_backend.os, "cpu_count", lambda: 2)
    assert devices.cpu_layout(40, 50 * 40) == {"chains": 2, "window": 40}
    assert devices.cpu_layout(40, 50 * 40 - 1) == {"chains": 2, "window": None}  # too short
    assert devices.cpu_layout(40, 10**6, max_minutes=9) == {"chains": 2, "window": None}
    assert devices.cpu_layout(40, 10**6, max_minutes=10) == {"chains": 2, "window": 40}
    assert devices.cpu_layout(201, 10**9) == {"chains": 2, "window": None}  # too long to unroll
    assert devices.cpu_layout(5, 500) == {"chains": 2, "window": 5}
    assert devices.cpu_layout(5, 499) == {}  # too short to repay the chains' graph
    monkeypatch.setattr(tensorflow_backend.os, "cpu_count", lambda: 16)
    assert devices.cpu_layout(40, 10**6) == {}  # not measured on larger machines
    monkeypatch.setattr(tensorflow_backend.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(tensorflow_backend, "gpus", lambda: ["GPU:0"])
    assert devices.cpu_layout(40, 10**6) == {}  # cuDNN needs the plain layers


def test_training_in_the_cpu_layout_matches_the_plain_one(tiny_corpus, tmp_path, monkeypatch):
    flags = [*TINY_FLAGS, "--dropout", "0", "--epochs", "1", "--sample-every", "0"]
    weights = {}
    for name, layout in (("plain", {}), ("cpu", {"chains": 2, "window": 16})):
        monkeypatch.setattr(devices, "cpu_layout", lambda *a, layout=layout, **k: layout)
        result = invoke(["train", tiny_corpus, "--out", tmp_path / name, *flags])
        assert result.exit_code == 0, result.output
        extra = read_weights(tmp_path / name / "last.h5")[1]  # model variables after training
        weights[name] = {k: v for k, v in extra.items() if k.startswith("model/")}
    assert len(weights["plain"]) >= 9 and weights["plain"].keys() == weights["cpu"].keys()
    for key, value in weights["plain"].items():
        np.testing.assert_allclose(weights["cpu"][key], value, atol=1e-5, err_msg=key)
