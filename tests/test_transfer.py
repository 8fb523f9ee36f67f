"""Starting a run from a trained one (--init-from): rows carried over token by token, the
base's shape kept, and a fine-tuned run that samples, evaluates and resumes like any other."""

import json

import numpy as np
import pytest

from textgen import runs
from textgen.config import Config, ModelConfig
from textgen.transfer import Base, merge_weights
from textgen.vocab import Vocab, WordVocab

from .conftest import TINY_FLAGS, TINY_TEXT, invoke


def _named(cfg: ModelConfig, vocab_size: int, n_styles: int, fill: float):
    shapes = runs.weight_shapes(cfg, vocab_size, n_styles)
    rng = np.random.default_rng(int(fill))
    return {k: (fill + rng.random(s)).astype(np.float32) for k, s in shapes.items()}


def _base(cfg, vocab, styles=()):
    config = Config(model=cfg)
    run = runs.Run(path=runs.Path("base"), config=config, vocab=vocab,
                   meta={"styles": {s: [] for s in styles}} if styles else {})
    named = _named(cfg, len(vocab), len(styles), 100.0)
    return Base(run=run, weights=runs.Path("base/weights.h5"), named=named)


def test_shared_tokens_keep_rows_new_ones_stay_fresh_absent_ones_keep_theirs():
    cfg = ModelConfig(layers=2, units=3, embedding_dim=2)
    base = _base(cfg, Vocab(tuple("abcd")))
    new_vocab = Vocab(tuple("abcdxz"))  # the union: 'x', 'z' new; say 'a' absent from corpus
    fresh = _named(cfg, len(new_vocab), 0, 0.0)
    merged = merge_weights(base, fresh, new_vocab, [], cfg)
    old, emb = base.named, merged["embedding/embeddings"]
    for new_id, token in enumerate(new_vocab.tokens):
        if token in "abcd":
            old_id = "abcd".index(token)
            assert np.array_equal(emb[new_id], old["embedding/embeddings"][old_id])
            assert np.array_equal(merged["logits/kernel"][:, new_id], old["logits/kernel"][:, old_id])
            assert merged["logits/bias"][new_id] == old["logits/bias"][old_id]
        else:
            assert np.array_equal(emb[new_id], fresh["embedding/embeddings"][new_id])
            assert merged["logits/bias"][new_id] == fresh["logits/bias"][new_id]
    for name in ("rnn_0/kernel", "rnn_0/recurrent_kernel", "rnn_1/kernel", "rnn_1/bias"):
        assert np.array_equal(merged[name], old[name])


def test_word_tokens_and_styles_are_matched_by_name():
    cfg = ModelConfig(cell="gru", layers=1, units=2, embedding_dim=2, style_dim=3)
    base_vocab = WordVocab(("<unk>", "the", "cat", "\n"))
    base = _base(cfg, base_vocab, styles=("sat", "ran"))
    new_vocab = WordVocab(("<unk>", "the", "cat", "\n", "dog"))
    fresh = _named(cfg, len(new_vocab), 3, 0.0)
    merged = merge_weights(base, fresh, new_vocab, ["ran", "new", "sat"], cfg)
    styles = merged["style/embeddings"]
    assert np.array_equal(styles[0], base.named["style/embeddings"][1])  # ran
    assert np.array_equal(styles[2], base.named["style/embeddings"][0])  # sat
    assert np.array_equal(styles[1], fresh["style/embeddings"][1])  # new: fresh
    assert np.array_equal(merged["embedding/embeddings"][4], fresh["embedding/embeddings"][4])
    assert np.array_equal(merged["rnn_0/kernel"], base.named["rnn_0/kernel"])


@pytest.fixture(scope="module")
def fine_tuned(trained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("fine")
    corpus = root / "new.txt"
    text = TINY_TEXT.replace("dog", "fox").replace("log", "box").replace(" and ", " or ")
    corpus.write_text(text * 2, encoding="utf-8")  # adds 'b', 'f', 'r', 'x'; lacks 'd', 'g', 'l'
    out = root / "run"
    result = invoke(["train", corpus, "--out", out, "--init-from", trained_run, *TINY_FLAGS,
                     "--lr", "0.002"])
    assert result.exit_code == 0, result.output
    return corpus, out


def test_fine_tuned_run_records_where_it_started_and_merges_vocabularies(fine_tuned,
                                                                         trained_run):
    corpus, out = fine_tuned
    doc = json.loads((out / "config.json").read_text())
    origin = doc["init_from"]
    assert origin["run"] == str(trained_run.resolve()) and origin["weights"] == "weights.h5"
    assert origin["tokens_added"] == ["b", "f", "r", "x"]
    assert origin["tokens_absent_from_corpus"] == 3  # 'd', 'g', 'l' keep their rows
    assert doc["config"]["train"]["lr"] == 0.002  # the usual config chain for the rest
    base_tokens = set(runs.open_run(trained_run).vocab.tokens)
    assert set(runs.open_run(out).vocab.tokens) == base_tokens | set("bfrx")
    assert {"d", "g", "l"} <= base_tokens
    init = runs.open_run(out).read_weights(runs.INIT_WEIGHTS)  # the starting weights
    base = runs.open_run(trained_run).read_weights()
    assert np.array_equal(init["rnn_1/recurrent_kernel"], base["rnn_1/recurrent_kernel"])
    info = invoke(["info", out, "--json"])
    assert json.loads(info.stdout)["init_from"]["tokens_added"] == ["b", "f", "r", "x"]


def test_fine_tuned_run_samples_evaluates_and_resumes_like_any_other(fine_tuned, tmp_path):
    corpus, out = fine_tuned
    sample = invoke(["sample", "--run", out, "--prime", "the fox", "--chars", "30",
                     "--seed", "1"])
    assert sample.exit_code == 0 and sample.stdout.startswith("the fox")
    result = invoke(["evaluate", out, "--json"])
    assert result.exit_code == 0, result.output
    rows = {m["model"]: m["nats_per_char"] for m in json.loads(result.stdout)["models"]}
    assert set(rows) == {"textgen model (weights.h5)", "untrained model", "unigram",
                         "6-gram Kneser-Ney"}
    assert all(np.isfinite(v) for v in rows.values())
    # "untrained" is the run's starting point here: the base's weights, merged
    assert rows["textgen model (weights.h5)"] != rows["untrained model"]
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(out, copy)
    again = invoke(["train", corpus, "--out", copy, "--resume", "--epochs", "3"])
    assert again.exit_code == 0, again.output
    assert json.loads((copy / "state.json").read_text())["epochs_done"] == 3


@pytest.mark.parametrize("flags, message", [
    (["--units", "9"], "model.units 8 -> 9"),
    (["--cell", "gru"], "model.cell 'lstm' -> 'gru'"),
    (["--level", "word"], "a char-level model cannot start a word-level run"),
])
def test_shape_changing_settings_are_refused(trained_run, tiny_corpus, tmp_path, flags, message):
    out = tmp_path / "run"
    result = invoke(["train", tiny_corpus, "--out", out, "--init-from", trained_run, *flags])
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert not out.exists()


def test_init_from_needs_a_run(tiny_corpus, tmp_path, trained_run):
    result = invoke(["train", tiny_corpus, "--init-from", tmp_path / "nothing"])
    assert result.exit_code == 1 and "no such run folder or weights file" in result.stderr
    stray = tmp_path / "w.h5"
    stray.write_bytes(b"x")
    result = invoke(["train", tiny_corpus, "--init-from", stray])
    assert result.exit_code == 1 and "no config.json beside" in result.stderr
    result = invoke(["train", tiny_corpus, "--init-from", trained_run / "last.h5"])
    assert result.exit_code == 1 and "unexpected dataset" in result.stderr
    both = invoke(["train", tiny_corpus, "--out", trained_run, "--resume", "--init-from",
                   trained_run])
    assert both.exit_code == 2
