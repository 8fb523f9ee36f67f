"""Cleaning rules, input formats and the report (issue: corpus ingestion and cleaning)."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textgen.config import CleanConfig
from textgen.corpus import apply_char_rules, normalise, read_corpus
from textgen.errors import CorpusError
from textgen.vocab import Vocab

from .conftest import TINY_FLAGS, invoke


def clean(tmp_path, content, name="in.txt", **rules):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return read_corpus([path], CleanConfig(**rules))


@pytest.mark.parametrize("rules, given_text, expected", [
    ({"remove_urls": True}, "see http://x.co/a?b=1 and www.y.org now", "see  and  now"),
    ({"unescape_html": True}, "a &gt; b &amp;&amp; c &#8217;", "a > b && c \u2019"),
    ({"ascii_fold": True}, "café naïve Ångström", "cafe naive Angstrom"),
    ({"charset": "ascii"}, "hi 🙂 café", "hi  caf"),
    ({"charset": "latin-1"}, "hi 🙂 café", "hi  café"),
    ({"lowercase": True}, "ROMEO: Hi", "romeo: hi"),
    ({"collapse_spaces": True}, "a    b\t\t c", "a b c"),
    ({"unescape_html": True, "remove_urls": True}, "go &lt;http://x.co&gt; ok", "go < ok"),
])
def test_character_rules(tmp_path, rules, given_text, expected):
    text, _ = clean(tmp_path, given_text, **rules)
    assert text == expected


def test_gutenberg_header_and_footer(tmp_path):
    book = ("The Project Gutenberg eBook of Sonnets\nLicence blah\n"
            "*** START OF THE PROJECT GUTENBERG EBOOK SONNETS ***\n\nFrom fairest creatures\n"
            "We desire increase\n*** END OF THE PROJECT GUTENBERG EBOOK SONNETS ***\nMore licence\n")
    text, report = clean(tmp_path, book, strip_gutenberg=True)
    assert text == "From fairest creatures\nWe desire increase\n"
    assert report.rules["strip_gutenberg"].chars_removed == len(book) - len(text)


def test_drop_if_split_on_and_lengths(tmp_path):
    content = "keep me\n\nhttp://spam here\n\nok\n\nalso fine here"
    text, report = clean(tmp_path, content, split_on=r"\n\n", drop_if="http", min_doc_chars=3)
    assert text == "keep me\nalso fine here"
    assert report.rules["drop_if"].docs_dropped == 1
    assert report.rules["drop_if"].examples == ["http://spam here"]
    assert report.rules["doc_length"].docs_dropped == 1  # "ok"
    assert report.documents_read == 1 and report.documents == 2


def test_pad_to_and_separator(tmp_path):
    text, _ = clean(tmp_path, "abc\n\nabcdefgh", split_on=r"\n\n", pad_to=5, pad_char="_",
                    doc_separator="|")
    assert text == "abc__|abcde"


@pytest.mark.parametrize("replacement, expected", [(None, "aaaa bbbb  aaaa"),
                                                   ("?", "aaaa bbbb ?? aaaa")])
def test_min_char_count_drop_or_replace(tmp_path, replacement, expected):
    text, report = clean(tmp_path, "aaaa bbbb xz aaaa", min_char_count=2,
                         rare_replacement=replacement)
    assert text == expected
    assert report.rare_chars == ["x", "z"]


def test_json_array_jsonl_nested_field_and_stdin(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text(json.dumps([{"text": "one"}, {"text": "two"}]))
    (tmp_path / "b.jsonl").write_text('{"t": {"full": "three"}}\n\n{"t": {"full": "four"}}\n')
    text, report = read_corpus([tmp_path / "a.json"], CleanConfig())
    assert text == "one\ntwo" and report.documents == 2
    text, _ = read_corpus([tmp_path / "b.jsonl"], CleanConfig(field="t.full"))
    assert text == "three\nfour"
    with pytest.raises(CorpusError, match=r"b.jsonl: line 1: no field 'text' \(fields: t\)"):
        read_corpus([tmp_path / "b.jsonl"], CleanConfig())
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin\r\n")))
    text, report = read_corpus(["-"], CleanConfig())
    assert text == "from stdin\n" and report.files == ["<stdin>"]


def test_bad_json_is_a_clear_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(CorpusError, match="bad.jsonl: line 2 is not JSON"):
        read_corpus([tmp_path / "bad.jsonl"], CleanConfig())


def test_no_cross_docs_windows_stay_inside_documents(tmp_path):
    docs = ["abcdefghij" * 3, "klmnopqrst" * 3, "uvwxyzabcd" * 3, "ABCDEFGHIJ" * 3]
    corpus = tmp_path / "docs.txt"
    corpus.write_text("\n\n".join(docs))
    out = tmp_path / "run"
    args = ["train", corpus, "--out", out, "--split-on", r"\n\n", "--no-cross-docs",
            "--window", "8", "--step", "1", "--val-split", "0.25", *TINY_FLAGS[:4],
            "--epochs", "1", "--seed", "1"]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "corpus.json").read_text())
    # 3 training documents of 30 chars: 22 windows of 8 (+1 target) each; none span "\n".
    assert report["windows"] == {"train": 3 * 22, "val": 3}


def test_done_when_messy_inputs(tmp_path):
    """The issue's three inputs: a Gutenberg file, a tweet archive, a CRLF cp1252 file."""
    book = tmp_path / "book.txt"
    book.write_text("Header\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nBody text.\n"
                    "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nFooter\n")
    tweets = tmp_path / "tweets.json"
    tweets.write_text(json.dumps([
        {"text": "Loving this &amp; that https://t.co/abc 🙂"},
        {"text": "RT check http://spam.example"},
        {"text": "Fish &gt; chips"}]))
    lyrics = tmp_path / "lyrics.txt"
    lyrics.write_bytes("Caf\u00e9 song\r\nIt\u2019s late\r\n".encode("cp1252"))

    r = invoke(["clean", book, "--strip-gutenberg", "-o", tmp_path / "book.out", "--report"])
    assert r.exit_code == 0 and (tmp_path / "book.out").read_text() == "Body text.\n"
    assert "strip_gutenberg: removed" in r.stderr

    r = invoke(["clean", tweets, "--field", "text", "--drop-if", "^RT ", "--remove-urls",
                "--unescape-html", "--charset", "ascii", "--collapse-spaces", "--report",
                "--report-json", tmp_path / "tweets.report.json"])
    assert r.exit_code == 0
    assert r.stdout == "Loving this & that \nFish > chips"
    report = json.loads((tmp_path / "tweets.report.json").read_text())
    assert report["rules"]["drop_if"]["docs_dropped"] == 1
    assert report["rules"]["remove_urls"]["examples"] == ["https://t.co/abc"]
    assert report["rules"]["charset"]["examples"] == ["🙂"]
    assert report["documents_read"] == 3 and report["documents"] == 2
    assert "estimated_training_memory_mb" in report and "windows" in report

    r = invoke(["clean", lyrics])
    assert r.exit_code == 1 and "byte 0xe9 at offset 3" in r.output and "cp1252" in r.output
    r = invoke(["clean", lyrics, "--encoding", "cp1252", "--ascii-fold"])
    assert r.exit_code == 0 and r.stdout == "Cafe song\nIt\u2019s late\n"


def test_clean_refuses_to_overwrite(tmp_path, tiny_corpus):
    out = tmp_path / "out.txt"
    out.write_text("precious")
    r = invoke(["clean", tiny_corpus, "-o", out])
    assert r.exit_code == 2 and out.read_text() == "precious"


def test_emptied_by_cleaning(tmp_path):
    path = tmp_path / "emoji.txt"
    path.write_text("🙂🙂 🙂\n")
    r = invoke(["train", path, "--charset", "ascii", "--out", tmp_path / "run"])
    assert r.exit_code == 1 and "after cleaning" in r.output
    assert not (tmp_path / "run").exists()


def test_sample_applies_the_runs_cleaning_to_the_prime(tmp_path):
    from .conftest import TINY_TEXT

    corpus = tmp_path / "upper.txt"
    corpus.write_text(TINY_TEXT.upper())
    out = tmp_path / "run"
    assert invoke(["train", corpus, "--out", out, "--lowercase", *TINY_FLAGS]).exit_code == 0
    r = invoke(["sample", "--run", out, "--prime", "THE CAT", "--chars", "5", "--seed", "1",
                "--format", "jsonl"])
    assert r.exit_code == 0, r.output
    r = invoke(["sample", "--run", out, "--prime", "the q", "--chars", "5"])
    assert r.exit_code == 2 and "'q'" in r.output and "do not map" in r.output


RULES = dict(remove_urls=True, lowercase=True, ascii_fold=True, collapse_spaces=True)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.sampled_from([None, "ascii", "latin-1"]))
def test_cleaning_is_idempotent(text, charset):
    cfg = CleanConfig(charset=charset, **RULES)
    once = apply_char_rules(normalise(text), cfg)
    assert apply_char_rules(normalise(once), cfg) == once


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1))
def test_encode_decode_round_trips_cleaned_text(text):
    cleaned = apply_char_rules(normalise(text), CleanConfig(**RULES))
    vocab = Vocab.from_text(cleaned)
    assert vocab.decode(vocab.encode(cleaned)) == cleaned
