"""Word-level models: tokens, vocabulary, and the same run folder / sampler / evaluate path."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textgen.vocab import UNK, Vocab, WordVocab, count_tokens, detokenize, tokenize

from .conftest import invoke

WORD_TEXT = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n"
    "It is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n"
) * 30


def test_tokens_keep_punctuation_and_newlines():
    assert tokenize("Hello, world!\nIt's (well-known) here.") == [
        "Hello", ",", "world", "!", "\n", "It's", "(", "well", "-", "known", ")", "here", "."]


@pytest.mark.parametrize("text", [
    "ROMEO:\nBut, soft! what light through yonder window breaks?",
    "It is the east, and Juliet is the sun.\n\nJULIET:\nO Romeo!",
    "a (parenthesised) well-known phrase; another: done.",
])
def test_detokenize_restores_naturally_spaced_text(text):
    assert detokenize(tokenize(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["the", "cat", "It's", ",", ".", "!", "?", ":", ";", "\n",
                                 "(", ")", "-", "x1"]), max_size=30))
def test_tokenize_detokenize_is_stable(tokens):
    # Whatever the tokens, joining them and tokenizing again gives them back.
    assert tokenize(detokenize(tokens)) == tokens


def test_word_vocab_keeps_the_most_frequent_and_maps_the_rest_to_unk():
    counts = count_tokens(["a a a b b c\nd", "a b"], sep="\n")
    vocab = WordVocab.from_counts(counts, max_words=3)
    assert vocab.tokens == (UNK, "a", "b", "\n")  # newline always kept (documents' separator)
    ids = vocab.encode("a c b zzz")
    assert ids.tolist() == [1, 0, 2, 0]
    assert vocab.decode(ids) == f"a {UNK} b {UNK}"
    assert Vocab.from_json(vocab.to_json()) == vocab
    assert vocab.missing("anything at all") == []


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    corpus = root / "play.txt"
    corpus.write_text(WORD_TEXT, encoding="utf-8")
    out = root / "run"
    result = invoke(["train", corpus, "--out", out, "--level", "word", "--max-words", "20",
                     "--units", "16", "--embedding-dim", "8", "--window", "12", "--step", "2",
                     "--batch-size", "16", "--epochs", "3", "--steps-per-epoch", "20",
                     "--seed", "3", "--sample-every", "0"])
    assert result.exit_code == 0, result.output
    return out


def test_word_run_folder_and_report(word_run):
    vocab = json.loads((word_run / "vocab.json").read_text())
    assert vocab["level"] == "word" and vocab["tokens"][0] == UNK
    assert len(vocab["tokens"]) == 21  # --max-words 20, plus <unk>
    report = json.loads((word_run / "corpus.json").read_text())
    assert report["tokens"]["vocab"] == 21
    assert 0 < report["tokens"]["unknown"] < report["tokens"]["count"]
    info = invoke(["info", word_run, "--json"])
    assert json.loads(info.stdout)["level"] == "word"


def test_word_samples_are_joined_words_without_unk(word_run):
    result = invoke(["sample", "--run", word_run, "--chars", "200", "--seed", "1",
                     "--prime", "ROMEO:", "--format", "jsonl", "--n", "3"])
    assert result.exit_code == 0, result.output
    known = set(json.loads((word_run / "vocab.json").read_text())["tokens"])
    for record in map(json.loads, result.stdout.splitlines()):
        text = record["text"]
        assert len(text) >= 200
        assert UNK not in text
        assert set(tokenize(text)) <= known
        assert " ," not in text and " ." not in text and " \n" not in text and "\n " not in text


def test_word_stop_and_lines(word_run):
    result = invoke(["sample", "--run", word_run, "--lines", "2", "--seed", "2",
                     "--format", "jsonl"])
    assert json.loads(result.stdout)["text"].count("\n") == 2
    result = invoke(["sample", "--run", word_run, "--chars", "500", "--stop", "Romeo",
                     "--seed", "2", "--format", "jsonl", "--n", "4"])
    for record in map(json.loads, result.stdout.splitlines()):
        text = record["text"]
        assert text.endswith("Romeo") or len(text) >= 500
        assert "Romeo" not in text[:-5]


def test_word_evaluate_reports_per_token_and_per_char(word_run):
    result = invoke(["evaluate", word_run, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["level"] == "word" and data["chars_per_token"] > 1
    rows = {r["model"]: r for r in data["models"]}
    assert set(rows) == {"textgen model (weights.h5)", "untrained model", "unigram",
                         "6-gram Kneser-Ney (words)"}
    for r in rows.values():
        assert r["nats_per_char"] * data["chars_per_token"] == pytest.approx(r["nats_per_token"])
        assert r["perplexity"] == pytest.approx(np.exp(r["nats_per_token"]))
    # The trained model beats the untrained one on this repetitive text.
    assert rows["textgen model (weights.h5)"]["nats_per_token"] < \
        rows["untrained model"]["nats_per_token"]
    text = invoke(["evaluate", word_run]).stdout
    assert "nats/token" in text and "characters per token" in text


def test_numpy_sampler_matches_keras_on_a_trained_word_run(word_run):
    from textgen import runs
    from textgen.model import build_model, set_named_weights
    from textgen.sample import Network
    from textgen.sampling import probabilities

    run = runs.open_run(word_run)
    named, _, _ = runs.read_weights(word_run / "weights.h5")
    model = build_model(run.config.model, len(run.vocab))
    set_named_weights(model, run.config.model, named)
    ids = run.vocab.encode(WORD_TEXT[:600])
    keras_probs = probabilities(model(ids[None, :].astype("int32"), training=False).numpy()[0], 1.0)
    net = Network(run.config.model, named)
    state = net.initial_state(1)
    ours = []
    for i in ids:
        logits, state = net.step(np.array([i]), state)
        ours.append(probabilities(logits, 1.0)[0])
    assert np.abs(np.array(ours) - keras_probs).max() < 1e-5
