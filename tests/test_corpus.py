import pytest

from textgen.config import CleanConfig
from textgen.corpus import read_corpus
from textgen.errors import CorpusError

from .conftest import TINY_FLAGS, invoke


def test_reads_files_and_directories_recursively(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    (tmp_path / "a" / "one.txt").write_text("one")
    (tmp_path / "a" / "b" / "two.txt").write_text("two")
    (tmp_path / "a" / "skip.md").write_text("markdown")
    (tmp_path / "three.txt").write_text("three")
    text, report = read_corpus([tmp_path / "a", tmp_path / "three.txt"], CleanConfig())
    assert text == "two\none\nthree"  # files sorted by path within a directory
    assert report.documents == 3 and len(report.files) == 3
    text, _ = read_corpus([tmp_path / "a"], CleanConfig(glob="*.md"))
    assert text == "markdown"


def test_normalises_bom_line_endings_and_nfc(tmp_path):
    path = tmp_path / "win.txt"
    path.write_bytes("\ufeffline one\r\nline two\rcafe\u0301\n".encode("utf-8"))
    text, report = read_corpus([path], CleanConfig())
    assert text == "line one\nline two\ncaf\u00e9\n"
    assert report.char_counts["\n"] == 3


def test_non_utf8_byte_names_file_offset_and_fix(tmp_path):
    path = tmp_path / "cp1252.txt"
    path.write_bytes(b"It\x92s fine")
    with pytest.raises(CorpusError, match=r"cp1252.txt: byte 0x92 at offset 2 .*as cp1252") as e:
        read_corpus([path], CleanConfig())
    assert e.value.cli_hint == "--encoding cp1252"  # what the CLI adds to the message
    text, _ = read_corpus([path], CleanConfig(encoding="cp1252"))
    assert text == "It\u2019s fine"


@pytest.mark.parametrize("content, message", [
    (b"", "empty or only whitespace"),
    (b"  \n\t\n", "empty or only whitespace"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
])
def test_unusable_files(tmp_path, content, message):
    path = tmp_path / "f.txt"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=message):
        read_corpus([path], CleanConfig())


def test_missing_file_and_empty_directory(tmp_path):
    with pytest.raises(CorpusError, match="no such file or directory"):
        read_corpus([tmp_path / "nope.txt"], CleanConfig())
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no files matching"):
        read_corpus([tmp_path / "empty"], CleanConfig())


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok \xff no")
    out = tmp_path / "run"
    result = invoke(["train", bad, "--out", out, *TINY_FLAGS])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1
    assert "offset 3" in result.output
    assert not out.exists()


def test_cli_too_short_corpus(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("just a few words here")
    result = invoke(["train", short, "--out", tmp_path / "run", "--window", "40"])
    assert result.exit_code == 1
    assert "too short for a window of 40" in result.output


def test_unknown_encoding_is_a_config_error(tiny_corpus, tmp_path):
    result = invoke(["train", tiny_corpus, "--encoding", "klingon-8", "--out", tmp_path / "r"])
    assert result.exit_code == 2 and "unknown encoding 'klingon-8'" in result.output  # a flag
