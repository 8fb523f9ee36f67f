"""`textgen export`: the self-contained web page (run in real headless Chromium) and the .keras
file. The page must write exactly what `textgen sample --temperature 0` prints, and its
next-token probabilities must match the NumPy sampler to 1e-4, for every kind of model."""

import json
import os
import re
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from textgen.export import dump_dom, page_url, read_element
from textgen.sample import load
from textgen.sampling import PAGE_CHARS_MAX, probabilities

from .conftest import invoke

# Varied enough that a small model's greedy text is not one repeated character.
CHAR_TEXT = (
    "the cat sat on the mat.\nthe dog sat on the log!\n"
    "a cat and a dog ran to the big red barn, and then sat.\n"
    "why did the dog run? the cat was on the log.\n"
) * 14
WORD_TEXT = (
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n"
    "It is the east, and Juliet is the sun.\n\n"
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n"
) * 30
STYLE_A = "the cat sat on a mat.\n" * 80
STYLE_B = "the cat ran to a dog.\n" * 16
COMMON = ["--window", "16", "--step", "2", "--batch-size", "16", "--lr", "0.01",
          "--dropout", "0.1", "--sample-every", "0", "--seed", "5"]
CHARS = 300


def _train(root: Path, name: str, corpus_text: str | None, *flags) -> Path:
    out = root / name
    args = ["train"]
    if corpus_text is not None:
        corpus = root / f"{name}.txt"
        corpus.write_text(corpus_text, encoding="utf-8")
        args.append(corpus)
    result = invoke([*args, *flags, "--out", out, *COMMON])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def export_runs(tmp_path_factory):
    """Tiny runs of every kind, trained once per session: {kind: run folder}."""
    root = tmp_path_factory.mktemp("export-runs")
    cwd = os.getcwd()
    os.chdir(root)  # checkpoints/latest lands here
    try:
        (root / "a.txt").write_text(STYLE_A, encoding="utf-8")
        (root / "b.txt").write_text(STYLE_B, encoding="utf-8")
        return {
            "lstm": _train(root, "lstm", CHAR_TEXT, "--cell", "lstm", "--layers", "2",
                           "--units", "24", "--embedding-dim", "8", "--epochs", "2",
                           "--steps-per-epoch", "80"),
            "gru": _train(root, "gru", CHAR_TEXT, "--cell", "gru", "--layers", "1",
                          "--units", "24", "--embedding-dim", "8", "--epochs", "2",
                          "--steps-per-epoch", "80"),
            "rnn": _train(root, "rnn", CHAR_TEXT, "--cell", "rnn", "--layers", "3",
                          "--units", "16", "--embedding-dim", "8", "--epochs", "1",
                          "--steps-per-epoch", "40"),
            "word": _train(root, "word", WORD_TEXT, "--level", "word", "--max-words", "20",
                           "--layers", "2", "--units", "16", "--embedding-dim", "8",
                           "--epochs", "2", "--steps-per-epoch", "40"),
            "styled": _train(root, "styled", None, "--style", f"sat={root / 'a.txt'}",
                             "--style", f"ran={root / 'b.txt'}", "--units", "24",
                             "--layers", "1", "--embedding-dim", "8", "--style-dim", "4",
                             "--epochs", "2", "--steps-per-epoch", "50"),
        }
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def pages(export_runs, tmp_path_factory):
    """Each run exported once: {kind: page.html}."""
    root = tmp_path_factory.mktemp("pages")
    out = {}
    for kind, run in export_runs.items():
        page = root / f"{kind}.html"
        result = invoke(["export", run, "-o", page])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == str(page)
        out[kind] = page
    return out


def run_page(browser, page, budget_ms=60_000, **params):
    """Load the page with query parameters; (#output text, its attributes, #error text)."""
    dom = dump_dom(page_url(page, **params), browser, budget_ms=budget_ms)
    text, attrs = read_element(dom, "output")
    error, _ = read_element(dom, "error")
    return text, attrs, error


def _greedy_gap(run, prime, style=None) -> float:
    """The smallest gap between the two largest logits along NumPy's greedy path (a near tie
    could flip an argmax between float32 NumPy and float64 JavaScript)."""
    gen = load(run)
    net, vocab = gen.network, gen.vocab
    ids = gen.check_prime(prime if prime is not None else gen.default_prime())
    sid = gen.style_id(style)
    state = net.initial_state(1)
    for i in ids:
        logits, state = net.step(np.array([i]), state, sid)
    gap, length = np.inf, 0
    while length < CHARS:
        z = logits[0].astype(np.float64).copy()
        if vocab.unk_id is not None:
            z[vocab.unk_id] = -np.inf
        top = np.sort(z)[-2:]
        gap = min(gap, top[1] - top[0])
        nxt = int(z.argmax())
        length += 1 if vocab.level == "char" else len(vocab.tokens[nxt]) + 1
        logits, state = net.step(np.array([nxt]), state, sid)
    return gap


PARITY = {
    "lstm": [("the ", None), ("a dog ran", None), (None, None)],
    "gru": [("the cat", None), ("why", None), ("\n", None)],
    "word": [("Romeo", None), ("what light", None), (None, None)],
    "styled": [("the cat ", "sat"), ("the cat ", "ran"), ("a", "ran")],
}


@pytest.mark.parametrize("kind", list(PARITY))
def test_page_at_temperature_0_prints_what_the_cli_prints(kind, export_runs, pages, browser):
    run = export_runs[kind]
    for prime, style in PARITY[kind]:
        args = ["sample", "--run", run, "--chars", CHARS, "--temperature", "0"]
        args += ["--prime", prime] if prime is not None else []
        args += ["--style", style] if style else []
        cli = invoke(args)
        assert cli.exit_code == 0, cli.output
        text, attrs, error = run_page(browser, pages[kind], prime=prime, chars=CHARS,
                                      temperature=0, style=style, autorun=1)
        assert error == "" and attrs.get("data-done") == "1", (error, attrs)
        assert attrs.get("data-engine") == "wasm"  # the WebAssembly SIMD kernel ran
        assert len(cli.stdout) > CHARS  # prime + at least 300 generated characters + "\n"
        gap = _greedy_gap(run, prime, style)
        assert text + "\n" == cli.stdout, f"{kind} prime {prime!r}: differs (min logit gap {gap})"
        generated = text[len(prime or ""):]
        assert len(set(generated)) > 1  # not a degenerate run of one character


def test_javascript_fallback_prints_the_same(export_runs, pages, browser):
    """Without WebAssembly SIMD the page runs the same loop in plain JavaScript."""
    cli = invoke(["sample", "--run", export_runs["gru"], "--prime", "a dog", "--chars", CHARS,
                  "--temperature", "0"])
    text, attrs, error = run_page(browser, pages["gru"], prime="a dog", chars=CHARS,
                                  temperature=0, engine="js", autorun=1)
    assert attrs.get("data-engine") == "js" and error == ""
    assert text + "\n" == cli.stdout


PROB_CASES = [("lstm", "the cat sat", {}), ("lstm", "a dog ran", {"temperature": 0.7, "top_k": 5,
                                                                   "top_p": 0.9}),
              ("lstm", "the cat sat", {"engine": "js"}),
              ("word", "O Romeo, what light", {"engine": "js", "temperature": 0.5}),
              ("gru", "why did the", {"temperature": 1.3}), ("rnn", "the log!", {}),
              ("word", "O Romeo, what light", {"temperature": 0.8, "top_p": 0.95}),
              ("styled", "the cat", {"style": "ran", "top_k": 3})]


@pytest.mark.parametrize("kind,prime,opts", PROB_CASES)
def test_page_probabilities_match_numpy(kind, prime, opts, export_runs, pages, browser):
    text, attrs, error = run_page(browser, pages[kind], prime=prime, debug="probs", **opts)
    assert error == "" and attrs.get("data-done") == "1", error
    assert attrs["data-engine"] == opts.get("engine", "wasm")
    page = np.array(json.loads(text)["probs"])
    gen = load(export_runs[kind])
    net, vocab = gen.network, gen.vocab
    ids = gen.check_prime(prime)
    state = net.initial_state(1)
    ours = []
    for i in ids:
        logits, state = net.step(np.array([i]), state, gen.style_id(opts.get("style")))
        if vocab.unk_id is not None:
            logits = logits.copy()
            logits[:, vocab.unk_id] = -np.inf
        settings = {k: v for k, v in opts.items() if k in PROCESSOR_FIELDS}
        ours.append(probabilities(logits, **{"temperature": 1.0, **settings})[0])
    ours = np.array(ours)
    assert page.shape == ours.shape == (len(ids), len(vocab)) and len(ids) >= 3
    assert np.allclose(page.sum(axis=1), 1.0)
    diff = np.abs(page - ours).max()
    assert diff < 1e-4, f"{kind}: max abs difference {diff}"
    if "top_k" in opts:  # the filter really cut the distribution
        assert ((page > 0).sum(axis=1) <= opts["top_k"]).all()


# A value for each sampling processor (sampling.PROCESSORS) that changes the distribution of
# the models below; a processor added without one here fails test_every_processor_is_tested.
PROCESSOR_VALUES = {"temperature": 0.6, "top_k": 4, "top_p": 0.8, "min_p": 0.05}
PROCESSOR_FIELDS = set(PROCESSOR_VALUES)


def test_every_processor_is_tested():
    from textgen.sampling import PROCESSORS

    assert {p.field for p in PROCESSORS} == PROCESSOR_FIELDS


@pytest.mark.parametrize("field", sorted(PROCESSOR_FIELDS))
@pytest.mark.parametrize("engine", ["wasm", "js"])
def test_each_processor_in_the_page_matches_numpy(field, engine, export_runs, pages, browser):
    """Parity processor by processor: the page's JavaScript mirror of each of sampling.py's
    processors, alone, against NumPy's (on both of the page's engines)."""
    opts = {field: PROCESSOR_VALUES[field], "engine": engine}
    test_page_probabilities_match_numpy("lstm", "a dog ran", opts, export_runs, pages, browser)


def test_a_subnormal_temperature_is_greedy_in_the_page_and_the_cli(export_runs, pages, browser):
    """T = 1e-310: 1/T overflows, so it means greedy (the likeliest token), whatever the
    logits' offset; the page once computed exp(Inf - Inf) = NaN and chose token 0."""
    prime = "the cat sat"
    text, attrs, error = run_page(browser, pages["lstm"], prime=prime, debug="probs",
                                  temperature="1e-310")
    assert error == ""
    page = np.array(json.loads(text)["probs"])
    gen = load(export_runs["lstm"])
    state, net = gen.network.initial_state(1), gen.network
    for row, i in zip(page, gen.check_prime(prime)):
        logits, state = net.step(np.array([i]), state)
        assert row.tolist() == np.eye(len(row))[logits[0].argmax()].tolist()
        for shifted in (logits - logits.max() - 50.0, logits + 1e6):  # all negative; all huge
            cli = probabilities(shifted, 1e-310)[0]
            assert cli.tolist() == np.eye(len(row))[logits[0].argmax()].tolist()


def test_page_seed_gives_the_same_text_on_every_load(pages, browser):
    params = dict(prime="the ", chars=200, temperature=1.0, top_p=0.95, autorun=1)
    first, attrs, _ = run_page(browser, pages["lstm"], seed=12345, **params)
    again, _, _ = run_page(browser, pages["lstm"], seed=12345, **params)
    other, _, _ = run_page(browser, pages["lstm"], seed=54321, **params)
    assert attrs["data-done"] == "1" and len(first) >= 4 + 200
    assert first == again
    assert first != other and other.startswith("the ")


def test_page_rejects_unknown_prime_characters_like_the_cli(export_runs, pages, browser):
    prime = "the Zé cat"
    from textgen.errors import PrimeError

    with pytest.raises(PrimeError) as err:
        load(export_runs["lstm"]).check_prime(prime)
    text, attrs, error = run_page(browser, pages["lstm"], prime=prime, chars=50, autorun=1)
    assert error == f"Error: {err.value}"
    assert "'Z' (U+005A), 'é' (U+00E9)" in error
    assert attrs.get("data-error") == "1" and attrs.get("data-done") == "1" and text == ""
    cli = invoke(["sample", "--run", export_runs["lstm"], "--prime", prime])
    assert cli.exit_code == 2 and str(err.value) in cli.stderr


def test_page_cleans_a_prime_by_the_runs_rules(export_runs, tmp_path, browser):
    """The run's character rules (HTML entities, links, accents, case, charset, spaces, rare
    characters) apply to the prime in the page exactly as in `textgen sample`."""
    import shutil

    run = tmp_path / "cleaning-run"
    shutil.copytree(export_runs["lstm"], run)
    doc = json.loads((run / "config.json").read_text(encoding="utf-8"))
    doc["config"]["clean"].update(unescape_html=True, remove_urls=True, ascii_fold=True,
                                  lowercase=True, charset="ascii", collapse_spaces=True,
                                  rare_replacement=" ")
    (run / "config.json").write_text(json.dumps(doc), encoding="utf-8")
    page = tmp_path / "cleaning.html"
    assert invoke(["export", run, "-o", page]).exit_code == 0
    prime = "THE  C\u00c4T &amp; https://x.org/a?b=1 d\u00f6g \u201cran\u201d\t\t#7 \U0001F600 sat"
    gen = load(run)
    ids = gen.check_prime(prime)
    assert gen.vocab.decode(ids) == "the cat   dog ran    sat"
    text, attrs, error = run_page(browser, page, prime=prime, debug="probs")
    assert error == "" and len(json.loads(text)["probs"]) == len(ids)
    cli = invoke(["sample", "--run", run, "--prime", prime, "--chars", 100, "--temperature", "0"])
    text, attrs, error = run_page(browser, page, prime=prime, chars=100, temperature=0,
                                  autorun=1)
    assert error == "" and text + "\n" == cli.stdout


def test_page_styles_are_checked(pages, browser):
    _, attrs, error = run_page(browser, pages["styled"], prime="the", style="poems", autorun=1)
    assert error == "Error: unknown style 'poems'; this run has sat, ran"
    text, attrs, error = run_page(browser, pages["styled"], prime="the", chars=30,
                                  temperature=0, style="ran", autorun=1)
    assert error == "" and text.startswith("the") and len(text) == 33


def test_page_generates_in_chunks_and_stays_responsive(pages, browser):
    """Without virtual time the DOM is dumped at load: a long generation must have yielded to
    the browser by then (text so far shown, not finished)."""
    text, attrs, _ = run_page(browser, pages["lstm"], budget_ms=0, prime="the ",
                              chars=PAGE_CHARS_MAX, temperature=1, seed=1, autorun=1)
    assert "data-done" not in attrs
    assert 0 < int(attrs["data-tokens"]) < PAGE_CHARS_MAX
    assert len(text) == 4 + int(attrs["data-tokens"])


@pytest.mark.parametrize("chars", ["1e300", str(PAGE_CHARS_MAX + 1), "2.5", "-3"])
def test_page_refuses_lengths_beyond_its_maximum(pages, browser, chars):
    """The page caps a sample's length at sampling.PAGE_CHARS_MAX (the form and the query):
    chars=1e300 once kept a headless browser busy for ever."""
    text, attrs, error = run_page(browser, pages["lstm"], prime="the ", chars=chars,
                                  temperature=1, seed=1, autorun=1)
    assert attrs.get("data-done") == "1" and attrs.get("data-error") == "1"
    assert error == (f"Error: chars must be an integer >= 1 and <= {PAGE_CHARS_MAX}, "
                     f"got \"{chars}\"")


def test_page_header_describes_the_model(export_runs, pages, browser):
    dom = dump_dom(page_url(pages["lstm"]), browser, budget_ms=0)
    facts, _ = read_element(dom, "facts")
    state = json.loads((export_runs["lstm"] / "state.json").read_text())
    assert "lstm.txt" in facts and f"{len(CHAR_TEXT):,} characters" in facts
    assert f"{state['best_loss']:.4f} nats/char" in facts
    assert "2 \u00d7 24 LSTM" in facts and "2 epochs" in facts
    summary = json.loads(invoke(["info", export_runs["lstm"], "--json"]).stdout)
    assert f"{summary['parameters']:,}" in facts
    title, _ = read_element(dom, "title")
    assert title.startswith("lstm.txt")


class _LoggingHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        self.server.requests.append(self.path)
        super().do_GET()


def test_page_makes_no_network_requests_from_a_static_host(pages, browser):
    html = pages["word"].read_text(encoding="utf-8")
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp and "default-src 'none'" in csp.group(1) and "connect-src" not in csp.group(1)
    assert html.index("Content-Security-Policy") < html.index("<script")
    assert not re.search(r'\b(?:src|href|action)="(?!data:)', html)  # nothing to fetch
    assert not re.search(r"\b(?:fetch|XMLHttpRequest|WebSocket|EventSource|import)\s*\(", html)
    assert "http://" not in html and "https://" not in html.replace("https?://", "")

    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 partial(_LoggingHandler, directory=str(pages["word"].parent)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        query = "/word.html?prime=Romeo&chars=80&seed=3&autorun=1"
        dom = dump_dom(f"http://127.0.0.1:{server.server_port}{query}", browser)
    finally:
        server.shutdown()
        server.server_close()
    text, attrs = read_element(dom, "output")
    assert attrs.get("data-done") == "1" and text.startswith("Romeo") and len(text) >= 85
    assert server.requests == [query]  # the page only: no favicon, nothing else


def test_export_refuses_to_overwrite_and_names_bad_outputs(export_runs, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("mine", encoding="utf-8")
    result = invoke(["export", export_runs["lstm"], "-o", page])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {page} already exists; choose another -o or remove it\n"
    assert page.read_text(encoding="utf-8") == "mine"
    result = invoke(["export", export_runs["lstm"], "-o", tmp_path / "page.txt"])
    assert result.exit_code == 2 and "name the output .html" in result.stderr
    result = invoke(["export", tmp_path / "nothing", "-o", tmp_path / "p.html"])
    assert result.exit_code == 1 and "no such run folder" in result.stderr
    result = invoke(["export", export_runs["lstm"], "-o", tmp_path / "no" / "p.html"])
    assert result.exit_code == 1 and "no such folder" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]  # no temp files left


def test_html_export_does_not_import_tensorflow(export_runs, tmp_path):
    out = tmp_path / "p.html"
    code = ("import sys; from textgen.cli import main; sys.argv = ['textgen', 'export', "
            f"{str(export_runs['gru'])!r}, '-o', {str(out)!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > (export_runs["gru"] / "weights.h5").stat().st_size


def test_export_help_documents_the_page():
    text = invoke(["export", "--help"]).stdout
    for word in ("autorun=1", "debug=probs", "top_k", "top_p", "seed", "style", ".keras",
                 "different random streams", "Content-Security-Policy", "data-done"):
        assert word in text, word


@pytest.mark.parametrize("kind", ["lstm", "styled", "word"])
def test_keras_export_loads_without_custom_objects_and_matches_numpy(kind, export_runs,
                                                                      tmp_path):
    import keras

    out = tmp_path / "model.keras"
    result = invoke(["export", export_runs[kind], "-o", out])
    assert result.exit_code == 0, result.output
    model = keras.saving.load_model(out)  # safe_mode, no custom objects
    assert {type(layer).__name__ for layer in model.layers} <= {
        "InputLayer", "Embedding", "Concatenate", "LSTM", "GRU", "SimpleRNN", "Dropout", "Dense"}
    gen = load(export_runs[kind])
    prime = {"word": "O Romeo, what light"}.get(kind, "the cat sat")
    ids = gen.check_prime(prime)
    style = 1 if kind == "styled" else None
    inputs = ids[None].astype("int32")
    if style is not None:
        inputs = [inputs, np.full_like(inputs, style)]
    logits = np.asarray(model.predict(inputs, verbose=0))[0]
    state = gen.network.initial_state(1)
    for t, i in enumerate(ids):
        ours, state = gen.network.step(np.array([i]), state, style)
        diff = np.abs(probabilities(ours, 1.0) - probabilities(logits[t : t + 1], 1.0)).max()
        assert diff < 1e-4, f"{kind} position {t}: {diff}"
    result = invoke(["export", export_runs[kind], "-o", out])
    assert result.exit_code == 1 and "already exists" in result.stderr
