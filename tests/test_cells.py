"""Every registered recurrent cell (textgen/cells.py), the built-in ones and one defined here:
NumPy against Keras, exact resume, and the exported page against NumPy. A cell is one
declaration; nothing else in textgen names it."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

import textgen
from textgen import cells
from textgen.config import ModelConfig
from textgen.sample import Network
from textgen.sampling import probabilities

from .conftest import TINY_FLAGS, TINY_TEXT, invoke
from .test_export import run_page
from .test_train import _assert_same_final_state

PACKAGE = Path(textgen.__file__).parent


def numpy_matches_keras(cell: str) -> None:
    """The NumPy network's next-token distributions equal the Keras model's (1e-5) over 300
    steps, with the same weights (non-zero biases, so every term takes part)."""
    import keras

    from textgen.model import build_model, get_named_weights

    keras.utils.set_random_seed(1)
    cfg = ModelConfig(cell=cell, layers=2, units=16, embedding_dim=8, dropout=0.2)
    model = build_model(cfg, 11)
    rng = np.random.default_rng(2)
    # Weights stay at the initialiser's scale: much larger ones make a tanh RNN chaotic, and
    # then float32 rounding differences (Keras vs NumPy) grow exponentially over 300 steps.
    for layer in model.layers:
        layer.set_weights([w + rng.normal(0, 0.3, w.shape) * (w.ndim == 1 or "bias" in v.path)
                           for w, v in zip(layer.get_weights(), layer.weights)])
    ids = np.random.default_rng(0).integers(0, 11, size=300)
    keras_probs = probabilities(model(ids[None, :].astype("int32"), training=False).numpy()[0])
    net = Network(cfg, get_named_weights(model, cfg))
    state, ours = net.initial_state(1), []
    for i in ids:
        logits, state = net.step(np.array([i]), state)
        ours.append(probabilities(logits)[0])
    diff = np.abs(np.array(ours) - keras_probs).max()
    assert diff < 1e-5, f"{cell}: max abs diff {diff}"


def resume_is_exact(cell: str, root: Path) -> Path:
    """A run stopped after an epoch and resumed ends bit-identical to one that was not;
    returns the finished run."""
    corpus = root / "tiny.txt"
    corpus.write_text(TINY_TEXT)
    flags = [*TINY_FLAGS, "--cell", cell, "--epochs", "2", "--steps-per-epoch", "3",
             "--sample-every", "0"]
    full, part = root / "full", root / "part"
    assert invoke(["train", corpus, "--out", full, *flags]).exit_code == 0
    first = invoke(["train", corpus, "--out", part, *flags, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    again = invoke(["train", corpus, "--out", part, "--resume", "--epochs", "2"])
    assert again.exit_code == 0, again.output
    _assert_same_final_state(full, part)
    return full


def page_matches_numpy(run: Path, browser: str, root: Path) -> None:
    """The exported page's next-token distributions after each prime token equal NumPy's
    (1e-4), on both of the page's engines."""
    page = root / "page.html"
    assert invoke(["export", run, "-o", page]).exit_code == 0
    gen = textgen.load(run)
    prime = "the cat sat on"
    state, ours = gen.network.initial_state(1), []
    for i in gen.check_prime(prime):
        logits, state = gen.network.step(np.array([i]), state)
        ours.append(probabilities(logits)[0])
    for engine in ("wasm", "js"):
        text, attrs, error = run_page(browser, page, prime=prime, debug="probs", engine=engine)
        assert error == "" and attrs["data-engine"] == engine, error
        diff = np.abs(np.array(json.loads(text)["probs"]) - np.array(ours)).max()
        assert diff < 1e-4, f"{engine}: max abs difference {diff}"


@pytest.mark.parametrize("cell", cells.names())
def test_every_registered_cell(cell, tmp_path, browser):
    numpy_matches_keras(cell)
    run = resume_is_exact(cell, tmp_path)
    page_matches_numpy(run, browser, tmp_path)


# ----------------------------------------------------------------------------- a new cell
# A forget-gate RNN (one gate, as JANET): f = sigmoid(x Wf + h Uf + bf), c = tanh(x Wc + h Uc
# + bc), h = f h + (1 - f) c. Defined here only, registered through cells.register.

def _forget_layer(units, *, name, unroll=False, fused=True):
    import keras
    from keras import ops

    class ForgetCell(keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units, self.state_size, self.output_size = units, units, units

        def build(self, input_shape):
            u = self.units
            self.kernel = self.add_weight(shape=(input_shape[-1], 2 * u), name="kernel",
                                          initializer="glorot_uniform")
            self.recurrent_kernel = self.add_weight(shape=(u, 2 * u), name="recurrent_kernel",
                                                    initializer="orthogonal")
            self.bias = self.add_weight(shape=(2 * u,), name="bias", initializer="zeros")

        def call(self, x, states, training=False):
            h = states[0] if isinstance(states, (list, tuple)) else states
            z = ops.matmul(x, self.kernel) + ops.matmul(h, self.recurrent_kernel) + self.bias
            f, c = ops.sigmoid(z[:, : self.units]), ops.tanh(z[:, self.units :])
            h = f * h + (1.0 - f) * c
            return h, [h]

    return keras.layers.RNN(ForgetCell(units), return_sequences=True, unroll=unroll, name=name)


def _forget_step(x, state, kernel, rec, bias, u, mm):
    (h,) = state
    z = mm(x, kernel) + mm(h, rec) + bias
    f = 0.5 * (np.tanh(0.5 * z[:, :u]) + 1.0)
    return (f * h + (1.0 - f) * np.tanh(z[:, u:]),)


FORGET_JS = """
STEPS.forget = function (F, pre, rec, h, extra, U) {
  for (let j = 0; j < U; j++) {
    const f = sigmoid(F[pre + j] + F[rec + j]), c = Math.tanh(F[pre + U + j] + F[rec + U + j]);
    F[h + j] = f * F[h + j] + (1.0 - f) * c;
  }
};
"""


@pytest.fixture
def forget_cell():
    cell = cells.register(cells.Cell("forget", gates=2, layer=_forget_layer,
                                     numpy_step=_forget_step, js_step="forget",
                                     js_source=FORGET_JS, help="forget-gate RNN (a test's)"))
    yield cell
    cells.unregister("forget")


def test_a_cell_defined_in_a_test_trains_samples_and_exports(forget_cell, tmp_path, browser):
    assert "forget" in cells.names()
    numpy_matches_keras("forget")
    run = resume_is_exact("forget", tmp_path)
    assert textgen.load(run).generate("the", 40, seed=1)  # NumPy sampling of the new cell
    page_matches_numpy(run, browser, tmp_path)
    info = json.loads(invoke(["info", run, "--json"]).stdout)
    assert info["model"]["cell"] == "forget" and isinstance(info["parameters"], int)


def test_only_the_registry_and_the_page_name_a_built_in_cell():
    """grep for a cell's name in textgen/ finds the registry and the page's JavaScript step."""
    for name in ("gru",):
        found = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*")
                       if p.suffix in (".py", ".html")
                       and re.search(rf"\b{name}\b", p.read_text(encoding="utf-8"), re.I))
        assert found == ["cells.py", "export_page.html"], found
        page = (PACKAGE / "export_page.html").read_text(encoding="utf-8")
        assert [m.start() for m in re.finditer(rf"\b{name}\b", page, re.I)] == [
            page.index(f"    {name}(F, pre, rec, h, extra, U) {{")  + 4]
