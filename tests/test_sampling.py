"""The one declaration of the sampling settings, its checks on every surface, and generation in
a shared batch (a request's text does not depend on what is generated beside it)."""

import dataclasses
import json

import click
import numpy as np
import pytest

from textgen.cli import cli
from textgen.sample import Batch, load
from textgen.sampling import (N_MAX, SETTINGS, SampleRequest, SamplingError, cli_fields,
                              page_fields, parse_record, probabilities, record, request_of,
                              server_fields)

from .conftest import invoke


def test_every_field_is_declared_once_with_its_surfaces():
    names = [f.name for f in dataclasses.fields(SampleRequest)]
    assert list(SETTINGS) == names
    options = {o for p in cli.commands["sample"].params if isinstance(p, click.Option)
               for o in p.opts}
    assert {s.cli for s in cli_fields().values()} <= options
    assert {f["name"] for f in page_fields()} == {n for n, s in SETTINGS.items() if s.page}
    assert server_fields()["max_tokens"] == "tokens" and server_fields()["prompt"] == "prime"


@pytest.mark.parametrize("values,field", [
    ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"temperature": float("nan")}, "temperature"), ({"temperature": -1}, "temperature"),
    ({"temperature": "hot"}, "temperature"), ({"n": 0}, "n"), ({"n": N_MAX + 1}, "n"),
    ({"n": 1e11}, "n"), ({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"),
    ({"seed": True}, "seed"), ({"chars": 10, "lines": 2}, "lines"), ({"stop": ""}, "stop"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"n": 1000, "chars": 10**6}, "n"),
])
def test_a_request_is_checked_when_it_is_made(values, field):
    with pytest.raises(SamplingError) as caught:
        SampleRequest(**values)
    assert caught.value.field == field


def test_a_request_without_a_length_is_500_characters():
    assert SampleRequest().chars == 500 and SampleRequest(lines=3).chars is None
    assert SampleRequest(stop="x").stop == ("x",)


def test_records_round_trip_through_the_declaration():
    req = SampleRequest(prime="ab", chars=30, temperature=0.5, top_k=3, top_p=0.9, n=2,
                        seed=4, stop=("x", "yz"), style="s")
    rec = record(req, "text", "ab", 4, 1, "hash", "run")
    again = parse_record(json.dumps(rec))
    assert request_of(again) == req
    old = {"prime": "a", "seed": 1, "stop": "x", "temperature": 1, "chars": 5}  # textgen 0.1
    assert request_of(parse_record(json.dumps(old))).stop == ("x",)
    for bad in ({"prime": "a", "seed": -1}, {"prime": "a", "seed": 1, "n": 1e11}):
        with pytest.raises(ValueError, match="seed|n"):
            parse_record(json.dumps(bad))


@pytest.mark.parametrize("args,flag", [
    (["--top-k", "0"], "'--top-k'"), (["--n", "1000000000000"], "'--n'"),
    (["--temperature", "nan"], "'--temperature'"), (["--chars", "5", "--lines", "2"], "'--lines'"),
    (["--replay", '{"prime": "t", "seed": -1}'], "'--replay'"),
    (["--replay", '{"prime": "t", "seed": 1, "n": 1e11}'], "'--replay'"),
])
def test_the_command_line_reports_a_bad_value_as_a_usage_error(trained_run, args, flag):
    result = invoke(["sample", "--run", trained_run, *args])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {flag}" in result.stderr and "Traceback" not in result.output


def test_lines_need_a_newline_in_the_vocabulary(tmp_path):
    corpus = tmp_path / "flat.txt"
    corpus.write_text("the cat sat on the mat and the dog sat on the log. " * 40)
    out = tmp_path / "run"
    trained = invoke(["train", corpus, "--out", out, "--units", "4", "--embedding-dim", "3",
                      "--window", "8", "--batch-size", "8", "--epochs", "1",
                      "--steps-per-epoch", "1", "--sample-every", "0", "--seed", "1"])
    assert trained.exit_code == 0, trained.output
    result = invoke(["sample", "--run", out, "--lines", "3"])
    assert result.exit_code == 2 and "never writes a newline" in result.stderr
    assert invoke(["sample", "--run", out, "--chars", "20"]).exit_code == 0


REQUESTS = [  # prompts, temperatures, filters, stops and lengths of every kind
    dict(prime="the cat", chars=60, temperature=0.7, seed=1),
    dict(prime="a dog", chars=40, temperature=0, seed=2),
    dict(prime="the", chars=80, temperature=1.3, top_k=3, seed=3, n=2),
    dict(prime="on the mat", chars=50, top_p=0.8, seed=4, stop=("og",)),
    dict(prime="sat", lines=2, temperature=0.9, seed=5),
    dict(prime="t", tokens=25, temperature=0.5, top_k=5, top_p=0.95, seed=6),
]


def _texts(job):
    return [s.text for s in job.samples()]


def test_a_request_gives_the_same_text_alone_and_beside_31_others(trained_run):
    gen = load(trained_run)
    alone = {}
    for i, values in enumerate(REQUESTS):
        alone[i] = gen.sample(SampleRequest(**values))
    batch = Batch(gen.network, gen.vocab)
    jobs = [gen.job(SampleRequest(**REQUESTS[i % len(REQUESTS)])) for i in range(32)]
    for job in jobs[:20]:
        batch.add(job)
    for _ in range(7):  # the others join a batch already running
        batch.step()
    for job in jobs[20:]:
        batch.add(job)
    while batch.jobs:
        batch.step()
    for i, job in enumerate(jobs):
        assert job.samples() == alone[i % len(REQUESTS)], i


def test_a_cancelled_request_leaves_the_batch_at_the_next_step(trained_run):
    gen = load(trained_run)
    batch = Batch(gen.network, gen.vocab)
    keep, drop = (gen.job(SampleRequest(prime="the", chars=100, seed=s)) for s in (1, 2))
    batch.add(keep)
    batch.add(drop)
    batch.step()
    assert batch.rows == 2
    drop.cancel()
    batch.step()
    assert batch.rows == 1 and batch.jobs == [keep]
    while batch.jobs:
        batch.step()
    assert _texts(keep) == [gen.generate("the", 100, seed=1)]


def test_greedy_rows_beside_sampled_rows():
    logits = np.log([[0.1, 0.6, 0.3], [0.1, 0.6, 0.3]])
    probs = probabilities(logits, [0.0, 1.0], top_k=[None, 2])
    assert probs[0].tolist() == [0, 1, 0]
    np.testing.assert_allclose(probs[1], [0, 2 / 3, 1 / 3])


def test_a_refused_prime_prints_nothing(trained_run):
    result = invoke(["sample", "--run", trained_run, "--prime", "the €", "--chars", "20"])
    assert result.exit_code == 2 and "'€' (U+20AC)" in result.stderr
    assert result.stdout == ""  # the prime was once printed before the refusal


@pytest.mark.parametrize("content", [b"caf\xe9 au lait " * 10, b"a " * 300_000])
def test_a_damaged_prime_text_is_one_line(run_copy, content):
    (run_copy / "prime-text.txt").write_bytes(content)
    result = invoke(["sample", "--run", run_copy, "--prime", "random", "--chars", "20"])
    assert result.exit_code == 1, result.output
    assert result.stderr.count("\n") == 1 and "prime-text.txt" in result.stderr


def test_training_samples_are_capped(tiny_corpus, tmp_path):
    result = invoke(["train", tiny_corpus, "--out", tmp_path / "run", "--sample-chars",
                     "100001"])
    assert result.exit_code == 2 and "sample_chars must be at most 100000" in result.stderr
    assert not (tmp_path / "run").exists()


def test_an_output_that_is_a_folder_is_named_as_one(trained_run, tmp_path):
    result = invoke(["sample", "--run", trained_run, "--chars", "5", "-o", tmp_path])
    assert result.exit_code == 2 and "is a folder; give a file name" in result.stderr
