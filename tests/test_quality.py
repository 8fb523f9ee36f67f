"""Evaluation, baselines, novelty, training-time samples/logs, early stopping, plots, gradients."""

import json
import math

import numpy as np
import pytest

from textgen.evaluate import KneserNey, NoveltyIndex, heldout_loss, longest_copied_span, \
    unigram_loss

from .conftest import TINY_FLAGS, invoke


def test_kneser_ney_is_a_distribution_and_learns_patterns():
    text = "the cat sat on the mat. " * 40
    kn = KneserNey(text, order=4, vocab_size=len(set(text)) + 1)
    for context in ("the c", "zzz", "", "t. "):
        total = sum(kn.prob(context, ch) for ch in set(text) | {"#"})
        assert total == pytest.approx(1.0, abs=1e-9)
    assert kn.loss("the cat sat", context="mat. ") < 0.3
    assert kn.loss("the cat sat") < unigram_loss(
        np.frombuffer(text.encode(), np.uint8) % 64, np.frombuffer(b"the cat sat", np.uint8) % 64,
        64)


def test_unigram_loss_of_a_uniform_text():
    ids = np.array([0, 1, 2, 3] * 100)
    assert unigram_loss(ids, ids, 4) == pytest.approx(math.log(4), rel=1e-3)


def test_heldout_loss_matches_keras_on_one_stream():
    import keras

    from textgen.config import ModelConfig
    from textgen.model import build_model, get_named_weights
    from textgen.sample import Network

    keras.utils.set_random_seed(0)
    cfg = ModelConfig(units=8, embedding_dim=4)
    model = build_model(cfg, 6)
    ids = np.random.default_rng(0).integers(0, 6, 120)
    logits = model(ids[None, :-1].astype("int32"), training=False).numpy()[0]
    expected = float(np.mean(keras.losses.sparse_categorical_crossentropy(
        ids[1:], logits, from_logits=True)))
    got = heldout_loss(Network(cfg, get_named_weights(model, cfg)), ids, streams=1)
    assert got == pytest.approx(expected, rel=1e-5)


def test_novelty_measures():
    corpus = "to be or not to be that is the question " * 20
    assert longest_copied_span("xx not to be yy", corpus) == len(" not to be ")
    assert longest_copied_span("zzz", corpus) == 0
    index = NoveltyIndex(corpus, 40)
    same = index.measure(corpus[:40])
    other = index.measure("zebras quietly graze upon distant hills")
    assert same.tfidf_distance < 0.05 and other.tfidf_distance > 0.95
    assert same.longest_copy == 40


def test_evaluate_command(trained_run):
    result = invoke(["evaluate", trained_run, "--json", "--samples", "2", "--sample-chars", "40"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    names = [m["model"] for m in data["models"]]
    assert names == ["textgen model (weights.h5)", "untrained model", "unigram",
                     "6-gram Kneser-Ney"]
    losses = {m["model"]: m for m in data["models"]}
    for m in data["models"]:
        assert m["bits_per_char"] == pytest.approx(m["nats_per_char"] / math.log(2))
        assert m["perplexity"] == pytest.approx(math.exp(m["nats_per_char"]))
    assert losses["6-gram Kneser-Ney"]["nats_per_char"] < losses["unigram"]["nats_per_char"]
    assert losses["untrained model"]["nats_per_char"] == pytest.approx(math.log(15), abs=0.1)
    nov = data["novelty"]
    assert set(nov) >= {"generated", "heldout_real_text"}
    # The tiny corpus repeats its three lines 12 times: any held-out passage is copied whole
    # from the training text and close to a training window; a barely trained model's samples
    # (temperature 1) are neither.
    real, generated = nov["heldout_real_text"], nov["generated"]
    assert real["max_longest_copy"] == 40 and real["mean_tfidf_distance"] < 0.2
    assert generated["mean_longest_copy"] < 40
    assert generated["mean_tfidf_distance"] > real["mean_tfidf_distance"]
    table = invoke(["evaluate", trained_run, "--order", "3"]).stdout
    assert "3-gram Kneser-Ney" in table and "bits/char" in table


def test_evaluate_on_another_file_and_unknown_chars(trained_run, tmp_path):
    ok = tmp_path / "ok.txt"
    ok.write_text("the dog sat on the mat.\n" * 5)
    assert invoke(["evaluate", trained_run, "--corpus", ok]).exit_code == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("the ZEBRA sat\n")
    result = invoke(["evaluate", trained_run, "--corpus", bad])
    assert result.exit_code == 1 and "'Z' (U+005A)" in result.output


def test_training_writes_steps_samples_and_initial_weights(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    result = invoke(["train", tiny_corpus, "--out", out, *TINY_FLAGS, "--sample-chars", "30"])
    assert result.exit_code == 0
    steps = (out / "steps.csv").read_text().splitlines()
    assert steps[0] == "step,epoch,loss,smooth_loss" and len(steps) == 1 + 6
    assert all(math.isfinite(float(row.split(",")[3])) for row in steps[1:])
    samples = (out / "samples.txt").read_text()
    assert samples.count("===== epoch") == 2 and samples.count("----- temperature") == 6
    assert "----- temperature 0.2" in result.stderr
    assert (out / "weights.init.h5").exists()
    quiet = tmp_path / "quiet"
    assert invoke(["train", tiny_corpus, "--out", quiet, *TINY_FLAGS,
                   "--sample-every", "0"]).exit_code == 0
    assert not (quiet / "samples.txt").exists()


def test_patience_stops_early(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    flags = [*TINY_FLAGS, "--epochs", "6", "--patience", "1", "--optimizer", "sgd",
             "--lr", "1e-12"]  # nothing improves after the first epoch
    result = invoke(["train", tiny_corpus, "--out", out, *flags])
    assert result.exit_code == 0
    state = json.loads((out / "state.json").read_text())
    assert state["epochs_done"] == 2 and state["stopped"].startswith("early stopping")


def test_time_budget_stops_at_an_epoch_end(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    result = invoke(["train", tiny_corpus, "--out", out, *TINY_FLAGS, "--epochs", "6",
                     "--max-minutes", "0.00001"])
    assert result.exit_code == 0 and "time budget" in result.stderr
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 1


def test_tensorboard_logs(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    assert invoke(["train", tiny_corpus, "--out", out, *TINY_FLAGS, "--tensorboard"]).exit_code == 0
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))


def test_plot(trained_run, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "loss.png"
    result = invoke(["plot", trained_run, "-o", png])
    assert result.exit_code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = invoke(["plot", trained_run, "-o", png])
    assert again.exit_code == 2 and "already exists" in again.output
    assert invoke(["plot", trained_run, "-o", png, "--force"]).exit_code == 0


def test_check_gradients_passes_and_can_fail():
    result = invoke(["check-gradients", "--cell", "lstm", "--units", "3", "--layers", "1"])
    assert result.exit_code == 0, result.output
    errors = [float(line.split()[-2]) for line in result.stdout.splitlines()
              if line.startswith(("embedding", "rnn_", "logits"))]
    assert len(errors) == 6 and max(errors) < 1e-6
    strict = invoke(["check-gradients", "--cell", "rnn", "--units", "3", "--layers", "1",
                     "--tolerance", "1e-300"])
    assert strict.exit_code == 1 and " NO" in strict.stdout
