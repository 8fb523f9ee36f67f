"""The NumPy sampler: exactness against Keras, the sampling maths, and every CLI control."""

import json
import subprocess
import sys

import numpy as np
import pytest

import textgen
from textgen.sampling import choose, probabilities

from .conftest import invoke


def test_temperature_is_p_to_the_one_over_t():
    p = np.array([[0.5, 0.3, 0.15, 0.05]])
    for t in (0.2, 0.5, 1.0, 1.2):
        expected = p ** (1 / t) / (p ** (1 / t)).sum()
        np.testing.assert_allclose(probabilities(np.log(p), t), expected, rtol=1e-12)
    np.testing.assert_array_equal(probabilities(np.log(p), 0), [[1, 0, 0, 0]])


def test_top_k_and_top_p():
    p = np.array([[0.5, 0.3, 0.15, 0.05]])
    np.testing.assert_allclose(probabilities(np.log(p), 1.0, top_k=2), [[0.625, 0.375, 0, 0]])
    np.testing.assert_allclose(probabilities(np.log(p), 1.0, top_p=0.75), [[0.625, 0.375, 0, 0]])
    np.testing.assert_allclose(probabilities(np.log(p), 1.0, top_p=0.81),
                               [[0.5, 0.3, 0.15, 0]] / np.float64(0.95))
    np.testing.assert_array_equal(probabilities(np.log(p), 1.0, top_p=0.1), [[1, 0, 0, 0]])


def test_choose_follows_scaled_fake_logits_deterministically():
    rng = np.random.default_rng(0)
    logits = np.eye(5)[[3, 0, 4]] * 1e9  # each row certain of one id
    assert choose(probabilities(logits, 1.0), rng.random(3)).tolist() == [3, 0, 4]
    counts = np.bincount(choose(probabilities(np.log([[0.2, 0.8]] * 20000), 1.0),
                                rng.random(20000)))
    assert abs(counts[1] / 20000 - 0.8) < 0.02


def _jsonl(run, *args):
    result = invoke(["sample", "--run", run, "--format", "jsonl", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_same_seed_same_text_and_chars_count(trained_run):
    a = _jsonl(trained_run, "--chars", "60", "--seed", "3")
    b = _jsonl(trained_run, "--chars", "60", "--seed", "3")
    c = _jsonl(trained_run, "--chars", "60", "--seed", "4")
    assert a == b
    assert len(a[0]["text"]) == 60
    assert a[0]["text"] != c[0]["text"]


def test_greedy_ignores_the_seed_and_equals_top_k_1(trained_run):
    g1 = _jsonl(trained_run, "--chars", "40", "--temperature", "0", "--seed", "1")[0]["text"]
    g2 = _jsonl(trained_run, "--chars", "40", "--temperature", "0", "--seed", "2")[0]["text"]
    k1 = _jsonl(trained_run, "--chars", "40", "--top-k", "1", "--seed", "5")[0]["text"]
    assert g1 == g2 == k1


def test_lines_counts_generated_lines(trained_run):
    for record in _jsonl(trained_run, "--lines", "3", "--n", "4", "--seed", "1"):
        assert record["text"].count("\n") == 3 and record["text"].endswith("\n")


def test_batch_of_n_and_multiple_temperatures(trained_run):
    records = _jsonl(trained_run, "--chars", "30", "--n", "3", "--seed", "2",
                     "--temperature", "0.5", "--diversity", "1.2")
    assert [(r["temperature"], r["index"]) for r in records] == [
        (0.5, 0), (0.5, 1), (0.5, 2), (1.2, 0), (1.2, 1), (1.2, 2)]
    result = invoke(["sample", "--run", trained_run, "--chars", "30", "--seed", "2",
                     "--temperature", "0.5", "--temperature", "1.2"])
    assert result.stdout.count("----- temperature") == 2


def test_prime_is_fed_and_printed(trained_run):
    result = invoke(["sample", "--run", trained_run, "--prime", "the cat", "--chars", "20",
                     "--seed", "1"])
    assert result.exit_code == 0
    assert result.stdout.startswith("the cat") and len(result.stdout) == len("the cat") + 21


def test_prime_file_and_random_prime(trained_run, tmp_path):
    f = tmp_path / "prime.txt"
    f.write_text("a dog")
    r = _jsonl(trained_run, "--prime-file", f, "--chars", "5", "--seed", "1")
    assert r[0]["prime"] == "a dog"
    r1 = _jsonl(trained_run, "--prime", "random", "--chars", "5", "--seed", "1")
    r2 = _jsonl(trained_run, "--prime", "random", "--chars", "5", "--seed", "1")
    assert r1 == r2 and len(r1[0]["prime"]) == 16  # the run's window
    corpus = (trained_run / "prime-text.txt").read_text()
    assert r1[0]["prime"] in corpus


def test_stop_string_ends_the_sample(trained_run):
    for record in _jsonl(trained_run, "--chars", "400", "--stop", "t", "--n", "5", "--seed", "1"):
        text = record["text"]
        assert text.endswith("t") and text.count("t") == 1


def test_stream_prints_the_same_text(trained_run):
    plain = invoke(["sample", "--run", trained_run, "--chars", "50", "--seed", "9"]).stdout
    streamed = invoke(["sample", "--run", trained_run, "--chars", "50", "--seed", "9",
                       "--stream"]).stdout
    assert plain == streamed


def test_output_file_and_no_overwrite(trained_run, tmp_path):
    out = tmp_path / "out.txt"
    result = invoke(["sample", "--run", trained_run, "--chars", "25", "--seed", "1", "-o", out])
    assert result.exit_code == 0 and result.stdout == ""
    first = out.read_text()
    assert len(first) == 26
    again = invoke(["sample", "--run", trained_run, "--chars", "25", "-o", out])
    assert again.exit_code == 2 and "already exists" in again.output
    assert out.read_text() == first


def test_replay_regenerates_a_record(trained_run):
    records = _jsonl(trained_run, "--chars", "35", "--n", "3", "--temperature", "0.9",
                     "--top-p", "0.95", "--seed", "11")
    replayed = _jsonl(trained_run, "--replay", json.dumps(records[2]))
    assert replayed == [records[2]]


@pytest.mark.parametrize("args, message", [
    (["--temperature", "-1"], "temperature"),
    (["--temperature", "nan"], "temperature"),
    (["--top-p", "0"], "top-p"),
    (["--top-p", "1.5"], "top-p"),
    (["--chars", "5", "--lines", "2"], "not both"),
    (["--prime", "the ZEBRA"], "'B' (U+0042)"),
    (["--stream", "--n", "2"], "--stream"),
])
def test_bad_values_are_usage_errors(trained_run, args, message):
    result = invoke(["sample", "--run", trained_run, *args])
    assert result.exit_code == 2
    assert message in result.output


def test_missing_run_is_a_clear_error(tmp_path):
    result = invoke(["sample", "--run", tmp_path / "nope", "--chars", "5"])
    assert result.exit_code == 1 and "no such run folder" in result.output


def test_python_api(trained_run):
    gen = textgen.load(trained_run)
    a = gen.generate(prime="the ", chars=30, temperature=0.5, seed=1)
    assert len(a) == 30 and a == gen.generate(prime="the ", chars=30, temperature=0.5, seed=1)


def test_sample_never_imports_tensorflow(trained_run):
    code = (
        "import sys\n"
        "from textgen.cli import cli\n"
        f"cli(['sample', '--run', {str(trained_run)!r}, '--chars', '20', '--seed', '1'],"
        " standalone_mode=False)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "assert not bad, bad[:5]\n"
        "print('NO_TF')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("NO_TF")


@pytest.mark.parametrize("prime", ["\ufeff"])
def test_a_prime_that_cleaning_empties_is_refused_on_one_line(trained_run, prime):
    """A prime of only a byte-order mark (dropped by cleaning) once reached the batch with no
    token: IndexError in the CLI, the API and the server."""
    result = invoke(["sample", "--run", trained_run, "--prime", prime, "--chars", "5"])
    assert result.exit_code == 2, result.output
    assert "empty once cleaned" in result.output
    with pytest.raises(textgen.PrimeError, match="empty once cleaned"):
        textgen.load(trained_run).generate(prime, 5)
