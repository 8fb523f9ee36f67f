"""Benchmark figures are data: every record is valid, and every table in the README and the docs
is exactly what bench/report.py renders from the committed records (so a figure typed by hand,
or a record changed without re-rendering, fails here)."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench(monkeypatch):
    """bench/records.py and bench/report.py, imported as the bench scripts import them."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import records
    import report

    return records, report


def test_committed_tables_are_what_the_records_render(bench):
    _, report = bench
    stale = report.run(check_only=True)
    assert not stale, f"run `python bench/report.py`: {stale}"


def test_every_table_is_rendered_somewhere_and_every_marker_is_known(bench):
    _, report = bench
    used = {m.group(2) for p in report.documents() for m in
            report.MARKER.finditer(p.read_text(encoding="utf-8"))}
    assert used == set(report.TABLES), used ^ set(report.TABLES)


def test_a_typed_figure_is_caught(bench):
    records, report = bench
    recs = records.load_all()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- table:headline -->\n.*?<!-- /table -->", text, re.S)
    assert block and re.search(r"\d\.\d{4}", block.group(0))
    typed = text.replace(block.group(0), re.sub(r"(\d\.\d{3})\d", r"\g<1>0", block.group(0), 1))
    assert typed != text
    _, changed = report.render_text(typed, recs, "README.md")
    assert changed == ["headline"]
    _, unchanged = report.render_text(text, recs, "README.md")
    assert unchanged == []


def test_an_unknown_table_is_an_error(bench):
    records, report = bench
    with pytest.raises(ValueError, match="unknown table 'nosuch'"):
        report.render_text("<!-- table:nosuch -->\n<!-- /table -->\n", [], "page.md")


def test_every_record_is_valid_and_says_where_it_came_from(bench):
    records, _ = bench
    recs = records.load_all()
    assert recs
    for r in recs:
        if r["status"] in ("carried", "cited"):
            assert r["source"], r["_path"]
        if r["status"] == "carried":
            assert r["source"] == "README.md at 789af99", r["_path"]
            assert re.fullmatch(r"\d{4}-\d\d-\d\d", r["date"]), r["_path"]
        assert r["host"].get("gpu") or r["host"].get("cores"), r["_path"]
    assert {r["status"] for r in recs} >= {"carried", "cited"}


def test_a_written_record_loads_back_and_renders(bench, tmp_path):
    records, report = bench
    figures = {"sample_500_wall_s": 0.25, "sample_500_script_wall_s": None,
               "chars_per_s_batch1": 12345.6, "chars_per_s_batch32": 98765.4,
               "seed_style_sample_500_s": 25.0, "seed_style_chars_per_s": 20.0}
    path = records.write_record("speed", {"chars": 500}, figures, command="python bench/speed.py",
                                results=tmp_path)
    assert path.parent == tmp_path / "speed"
    (loaded,) = records.load_all(tmp_path)
    assert loaded["status"] == "measured" and loaded["figures"] == figures
    assert loaded["host"]["cores"] and loaded["versions"]["python"]
    table = report.render_sampling_speed([loaded])
    assert "12,346" in table and "98,765" in table and "measured" in table


def test_a_record_without_its_fields_is_refused(bench, tmp_path):
    records, _ = bench
    good = records.make_record("speed", {}, {"x": 1})
    for broken in ({**good, "status": "guessed"}, {**good, "status": "carried"},
                   {**good, "date": "yesterday"}, {k: v for k, v in good.items() if k != "host"}):
        with pytest.raises(ValueError):
            records.check(broken)
    (tmp_path / "speed").mkdir()
    (tmp_path / "speed" / "bad.json").write_text(json.dumps({**good, "status": "guessed"}))
    with pytest.raises(ValueError, match="bad.json"):
        records.load_all(tmp_path)
