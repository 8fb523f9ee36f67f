"""The public Python API (textgen/__init__.py, api.py): train -> evaluate -> sample -> export ->
resume after an interrupt, in a fresh process, on TensorFlow and on JAX."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import TINY_TEXT

ROOT = Path(__file__).resolve().parents[1]

# A fresh Python process drives textgen through its public names only (the assertions read
# back what it printed to a JSON file; its stdout must stay empty: the library prints nothing).
SCRIPT = textwrap.dedent('''
    import json, os, signal, sys
    import textgen

    work, backend = sys.argv[1], sys.argv[2]
    out = {"frameworks_at_import": [m for m in ("tensorflow", "jax", "torch") if m in sys.modules]}
    tiny = dict(units=8, embedding_dim=4, style_dim=2, window=16, step=4, batch_size=8,
                epochs=3, steps_per_epoch=4, seed=7, sample_every=0, progress="quiet",
                backend=backend)
    styles = {"a": [f"{work}/a.txt"], "b": [f"{work}/b.txt"]}
    handler = signal.getsignal(signal.SIGINT)

    run = textgen.train(styles=styles, out=f"{work}/full", **tiny)
    out["repr"] = repr(run)
    out["history"] = run.history
    out["best"] = [run.best.loss, run.best.epoch, run.best.monitor]
    ev = run.evaluate()
    out["evaluation"] = [ev.nats_per_char, sorted(ev.baselines), type(ev).__name__,
                         "<table>" in ev._repr_html_(), "nats/char" in repr(ev)]
    gen = run.generator()
    out["texts"] = gen.generate(prime="the", chars=30, style="a", n=3, seed=1)
    out["stream"] = "".join(gen.stream(prime="the", chars=30, style="b", seed=2))
    out["page"] = str(run.export(f"{work}/page.html"))

    import keras

    class Interrupt(keras.callbacks.Callback):  # the kernel's interrupt, mid-epoch 2
        def __init__(self):
            super().__init__()
            self.steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            if self.steps == 6:
                os.kill(os.getpid(), signal.SIGINT)

    try:
        textgen.train(styles=styles, out=f"{work}/cut", recipe=textgen.Recipe(
            callbacks=(Interrupt(),)), **tiny)
        out["interrupted"] = None
    except textgen.Interrupted as e:
        out["interrupted"] = [type(e).__name__, e.exit_code, str(e)]
    out["handler_restored"] = signal.getsignal(signal.SIGINT) is handler
    resumed = textgen.train(out=f"{work}/cut", resume=True, progress="quiet")
    again = resumed.generator().generate(prime="the", chars=30, style="a", n=3, seed=1)
    def log(r):  # the epoch log without the wall-clock seconds
        return {k: v for k, v in r.history.items() if k != "seconds"}

    out["resumed"] = [log(resumed) == log(run), again == out["texts"]]
    try:
        textgen.train(f"{work}/a.txt", out=f"{work}/bad", layers=0)
    except textgen.ConfigError as e:
        out["bad_setting"] = str(e)
    other = "torch" if backend != "torch" else "jax"
    try:
        textgen.train(f"{work}/a.txt", out=f"{work}/other", backend=other, epochs=1)
    except textgen.TextgenError as e:
        out["other_backend"] = str(e)
    with open(f"{work}/result.json", "w") as f:
        json.dump(out, f)
''')


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_the_public_api_end_to_end_in_a_fresh_process(backend, tmp_path):
    pytest.importorskip(backend)
    (tmp_path / "a.txt").write_text(TINY_TEXT)
    (tmp_path / "b.txt").write_text(TINY_TEXT.upper().replace("\n", " !\n"))
    script = tmp_path / "drive.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), backend], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout == ""  # the library prints nothing to stdout
    out = json.loads((tmp_path / "result.json").read_text())
    assert out["frameworks_at_import"] == []
    assert out["history"]["epoch"] == [1, 2, 3] and len(out["history"]["val_loss"]) == 3
    assert out["best"][2] == "val_loss" and out["best"][0] == min(out["history"]["val_loss"])
    nats, baselines, kind, html, text = out["evaluation"]
    assert kind == "Evaluation" and html and text and nats > 0
    assert "6-gram Kneser-Ney" in baselines and "unigram" in baselines
    assert len(out["texts"]) == 3 and all(len(t) >= 30 for t in out["texts"])
    assert len(out["stream"]) >= 30 and Path(out["page"]).stat().st_size > 10_000
    assert out["interrupted"][:2] == ["Interrupted", 130], out["interrupted"]
    assert "SIGINT" in out["interrupted"][2] and out["handler_restored"]
    assert out["resumed"] == [True, True]  # resumed exactly: the same log, the same texts
    assert "model.layers must be a positive integer" in out["bad_setting"]
    assert "already imported" in out["other_backend"] and backend in out["other_backend"]


def test_importing_textgen_imports_no_framework():
    code = ("import sys, textgen; textgen.Run; textgen.SampleRequest; textgen.Recipe;"
            "print([m for m in ('tensorflow', 'keras', 'jax', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_open_run_reads_a_trained_run(trained_run):
    import textgen

    run = textgen.open_run(trained_run)
    assert run.config.model.units == 8 and run.history["epoch"] == [1, 2]
    assert set(run.steps) == {"step", "epoch", "loss", "smooth_loss"}
    assert repr(run).startswith(f"Run({str(trained_run)!r}: 2 x LSTM 8, 2 epochs, best ")
    assert run.summary()["vocab_size"] == len(run.generator().vocab)
    fig = run.plot()
    assert type(fig).__name__ == "Figure" and len(fig.axes) == 2


def test_unknown_settings_are_named(tiny_corpus, tmp_path):
    import textgen

    with pytest.raises(textgen.ConfigError, match="unknown setting.*colour"):
        textgen.train(tiny_corpus, out=tmp_path / "run", colour="blue")
    with pytest.raises(textgen.ConfigError, match="progress must be one of"):
        textgen.train(tiny_corpus, out=tmp_path / "run", progress="loud", epochs=1)
    assert not (tmp_path / "run").exists()


def test_plot_and_export_refuse_what_they_would_break(trained_run, tmp_path):
    """Run.plot(path) once replaced an existing file; Run.export('x.txt') was a ValueError."""
    import textgen

    run = textgen.open_run(trained_run)
    mine = tmp_path / "notes.html"
    mine.write_text("mine")
    with pytest.raises(textgen.RunError, match="already exists; pass overwrite=True"):
        run.plot(mine)
    assert mine.read_text() == "mine"
    run.plot(mine, overwrite=True)
    assert mine.read_bytes().startswith(b"\x89PNG")
    for name in ("model.txt", "folder"):
        with pytest.raises(textgen.RunError, match="name it .html, .htm or .keras"):
            run.export(tmp_path / name)


def test_generate_takes_every_declared_setting(trained_run):
    """generate() once listed its settings by hand and lacked min_p; None meant greedy."""
    import textgen

    gen = textgen.load(trained_run)
    texts = gen.generate("the", chars=30, n=2, min_p=0.2, seed=4)
    assert len(texts) == 2 and all(len(t) == 30 for t in texts)
    assert gen.generate("the", chars=30, seed=4, temperature=None, n=None) == \
        gen.generate("the", chars=30, seed=4)  # None: the default (1.0 and 1), not greedy
    assert gen.generate("the", chars=30, seed=4) != gen.generate("the", chars=30, temperature=0)
    with pytest.raises(textgen.SamplingError, match="no sampling setting 'colour'"):
        gen.generate("the", colour="red")
    with pytest.raises(textgen.SamplingError, match="no sampling setting 'colour'"):
        next(gen.stream("the", colour="red"))


def test_evaluate_takes_one_training_corpus_as_a_path(trained_run, tiny_corpus):
    """A string was split into its characters ('training corpus a is gone')."""
    import textgen

    run = textgen.open_run(trained_run)
    one = run.evaluate(samples=2, sample_chars=50, train_corpus=str(tiny_corpus))
    listed = run.evaluate(samples=2, sample_chars=50, train_corpus=[tiny_corpus])
    assert one.text() == listed.text()


@pytest.mark.parametrize("setting, value", [("samples", -1), ("order", "x"), ("order", 13),
                                            ("passages", 0)])
def test_evaluate_names_the_setting_it_refuses(trained_run, setting, value):
    """samples=-1 was reported as 'n must be ...'; order='x' was a TypeError in baselines.py."""
    import textgen

    with pytest.raises(textgen.ConfigError, match=f"evaluate: {setting} must be a whole number"):
        textgen.open_run(trained_run).evaluate(**{setting: value})
