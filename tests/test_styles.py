"""Style-conditioned models: windows that never mix styles, the style input, sampling in a
style, and classifying passages by style."""

import json

import numpy as np
import pytest

from textgen import cells
from textgen.config import ModelConfig, WindowConfig
from textgen.sample import Network
from textgen.sampling import probabilities
from textgen.backends.tensorflow import train_dataset
from textgen.windows import combine_splits, split_ids

from .conftest import invoke

# Two toy styles with one vocabulary: after the same words, each style goes its own way.
STYLE_A = "the cat sat on a mat.\n" * 80
STYLE_B = "the cat ran to a dog.\n" * 16 # five times smaller: balancing must draw it as often


@pytest.mark.parametrize("cell", cells.names())
def test_numpy_styled_network_matches_keras(cell):
    import keras

    from textgen.model import build_model, get_named_weights

    keras.utils.set_random_seed(4)
    cfg = ModelConfig(cell=cell, layers=2, units=12, embedding_dim=6, style_dim=3, dropout=0.1)
    model = build_model(cfg, vocab_size=9, n_styles=3)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 9, size=(3, 200))
    styles = np.repeat(np.arange(3)[:, None], 200, axis=1)
    keras_probs = probabilities(
        model([ids.astype("int32"), styles.astype("int32")], training=False).numpy()
        .reshape(-1, 9), 1.0).reshape(3, 200, 9)
    named = get_named_weights(model, cfg)
    assert named["style/embeddings"].shape == (3, 3)
    assert named["rnn_0/kernel"].shape[0] == 6 + 3
    net = Network(cfg, named)
    state = net.initial_state(3)
    ours = []
    for t in range(200):
        logits, state = net.step(ids[:, t], state, np.arange(3))
        ours.append(probabilities(logits, 1.0))
    diff = np.abs(np.stack(ours, axis=1) - keras_probs).max()
    assert diff < 1e-5, f"{cell}: max abs diff {diff}"


def test_combined_windows_stay_in_one_style_and_are_balanced():
    cfg = WindowConfig(window=5, step=1, val_split=0.2, batch_size=4, style_balance=1.0)
    a = np.zeros(500, np.uint8)  # style 0 is all zeros
    b = np.ones(100, np.uint8)  # style 1 all ones, five times shorter
    split, repeats = combine_splits([split_ids(a, cfg), split_ids(b, cfg)], cfg)
    assert repeats == [1, 5]
    styles = split.style_of(split.train_starts)
    assert 0.9 < (styles == 0).sum() / (styles == 1).sum() < 1.1  # drawn about equally often
    for start, style in zip(split.train_starts, styles):
        window = split.train[start : start + cfg.window + 1]
        assert (window == style).all()  # never crosses into the other style
    val_styles = split.style_of(split.val_starts, "val")
    for start, style in zip(split.val_starts, val_styles):
        assert (split.val[start : start + cfg.window + 1] == style).all()
    for balance, expected in ((0.0, [1, 1]), (0.5, [1, 2])):  # sqrt(396 / 76) = 2.3
        other, r = combine_splits([split_ids(a, cfg), split_ids(b, cfg)],
                                  WindowConfig(window=5, step=1, val_split=0.2,
                                               style_balance=balance))
        assert r == expected and other.n_train_windows < split.n_train_windows


def test_pipeline_feeds_each_window_its_style():
    cfg = WindowConfig(window=5, step=1, val_split=0.2, batch_size=8)
    split, _ = combine_splits([split_ids(np.zeros(300, np.uint8), cfg),
                               split_ids(np.full(200, 7, np.uint8), cfg)], cfg)
    ds = train_dataset(split.train, cfg, seed=1, epochs=1, steps=20, starts=split.train_starts,
                       segments=split.train_segments)
    seen = set()
    for (x, style), y in ds:
        x, style, y = x.numpy(), style.numpy(), y.numpy()
        assert style.shape == x.shape
        for row in range(len(x)):
            expected = 0 if x[row, 0] == 0 else 1
            assert (style[row] == expected).all()
            seen.add(expected)
    assert seen == {0, 1}


@pytest.fixture(scope="module")
def styled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("styles")
    (root / "a.txt").write_text(STYLE_A, encoding="utf-8")
    (root / "b.txt").write_text(STYLE_B, encoding="utf-8")
    out = root / "run"
    result = invoke(["train", "--style", f"sat={root / 'a.txt'}", "--style", f"ran={root / 'b.txt'}",
                     "--out", out, "--units", "32", "--embedding-dim", "8", "--style-dim", "4",
                     "--window", "16", "--step", "2", "--val-split", "0.2", "--batch-size", "16",
                     "--epochs", "6",
                     "--steps-per-epoch", "25", "--lr", "0.01", "--dropout", "0",
                     "--seed", "1", "--sample-every", "3", "--sample-chars", "30"])
    assert result.exit_code == 0, result.output
    return out


def test_styled_run_records_its_styles(styled_run):
    config = json.loads((styled_run / "config.json").read_text())
    assert list(config["styles"]) == ["sat", "ran"]
    report = json.loads((styled_run / "corpus.json").read_text())
    # Default --style-balance 0.5: round(sqrt(696 / 133 windows)) = 2.
    assert report["styles"]["ran"]["repeat"] == 2 and report["styles"]["sat"]["repeat"] == 1
    samples = (styled_run / "samples.txt").read_text()
    assert "style sat" in samples and "style ran" in samples


def test_sample_writes_in_the_chosen_style(styled_run):
    def greedy(style):
        result = invoke(["sample", "--run", styled_run, "--style", style, "--prime", "the cat ",
                         "--temperature", "0", "--chars", "3"])
        assert result.exit_code == 0, result.output
        return result.stdout

    assert greedy("sat") == "the cat sat\n"
    assert greedy("ran") == "the cat ran\n"


def test_sample_style_errors(styled_run, trained_run):
    result = invoke(["sample", "--run", styled_run, "--chars", "5"])
    assert result.exit_code == 2 and "choose one (--style NAME)" in result.stderr
    assert "sat, ran" in result.stderr
    result = invoke(["sample", "--run", styled_run, "--chars", "5", "--style", "poems"])
    assert result.exit_code == 2 and "unknown style 'poems'" in result.stderr
    result = invoke(["sample", "--run", trained_run, "--chars", "5", "--style", "sat"])
    assert result.exit_code == 2 and "without styles" in result.stderr


def test_classify_picks_the_style_that_fits(styled_run, trained_run):
    result = invoke(["classify", styled_run, "the cat ran to a dog.\nthe cat ran", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["style"] == "ran"
    assert data["logliks"]["ran"] > data["logliks"]["sat"]
    text = invoke(["classify", styled_run, "the cat sat on a mat.\nthe cat sat"]).stdout
    assert text.splitlines()[0] == "sat"
    bad = invoke(["classify", trained_run, "the cat"])
    assert bad.exit_code == 1 and "trained without styles" in bad.stderr
    assert invoke(["classify", styled_run]).exit_code == 2  # no passage given


def test_evaluate_classify_reports_accuracy_beside_naive_bayes(styled_run):
    result = invoke(["evaluate", styled_run, "--classify", "--passage-chars", "12", "--json"])
    assert result.exit_code == 0, result.output
    cls = json.loads(result.stdout)["classify"]
    assert set(cls["passages"]) == {"sat", "ran"} and all(cls["passages"].values())
    assert cls["model"]["accuracy"] == 1.0  # the toy styles differ in every passage
    nb = cls["naive_bayes_3gram"]  # the toy styles' own words (sat, ran) give them away
    assert nb["accuracy"] == 1.0 and nb["per_style"] == {"sat": 1.0, "ran": 1.0}
    text = invoke(["evaluate", styled_run, "--classify", "--passage-chars", "12"]).stdout
    assert "naive Bayes char 3-grams" in text and "textgen model (likelihood)" in text


def test_style_field_reads_styles_from_records(tmp_path):
    records = [{"text": line, "work": "sat"} for line in STYLE_A.splitlines()]
    records += [{"text": line, "work": "ran"} for line in STYLE_B.splitlines()]
    corpus = tmp_path / "lines.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    out = tmp_path / "run"
    result = invoke(["train", corpus, "--style-field", "work", "--out", out, "--units", "8",
                     "--embedding-dim", "4", "--window", "8", "--epochs", "1",
                     "--steps-per-epoch", "2", "--seed", "0", "--sample-every", "0"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert list(config["styles"]) == ["ran", "sat"]
    assert config["config"]["clean"]["style_field"] == "work"


@pytest.mark.parametrize("args, message", [
    (["--style", "one=x.txt"], "two or more styles"),
    (["--style", "noequals"], "NAME=CORPUS"),
    (["x.txt", "--style", "a=x.txt", "--style", "b=x.txt"], "not both"),
    ([], "give a CORPUS"),
])
def test_style_usage_errors(args, message):
    result = invoke(["train", *args])
    assert result.exit_code == 2 and message in result.stderr


def test_styled_run_resumes_and_refuses_other_styles(tmp_path):
    (tmp_path / "a.txt").write_text(STYLE_A, encoding="utf-8")
    (tmp_path / "b.txt").write_text(STYLE_B, encoding="utf-8")
    styles = ["--style", f"sat={tmp_path / 'a.txt'}", "--style", f"ran={tmp_path / 'b.txt'}"]
    out = tmp_path / "run"
    small = ["--units", "8", "--embedding-dim", "4", "--window", "8", "--steps-per-epoch", "2",
             "--seed", "0", "--sample-every", "0"]
    assert invoke(["train", *styles, "--out", out, "--epochs", "1", *small]).exit_code == 0
    result = invoke(["train", *styles, "--out", out, "--resume", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 2
    swapped = ["--style", f"sat={tmp_path / 'a.txt'}", "--style", f"other={tmp_path / 'b.txt'}"]
    result = invoke(["train", *swapped, "--out", out, "--resume", "--epochs", "3"])
    assert result.exit_code == 1 and "styles ['sat', 'ran'] -> ['sat', 'other']" in result.stderr
