"""Write corpora/pymanual.txt: a multi-MB corpus of modern technical English with code, unlike
Shakespeare, from the Python 3.11 documentation (PSF licence) as Debian ships it.

    apt-get download python3.11-doc && dpkg-deb -x python3.11-doc_*.deb doc
    python scripts/make_pymanual_corpus.py doc/usr/share/doc/python3.11/html   # about 4 MB

The text of each page's main part (the tutorial, the language reference, the library reference,
the HOWTOs, the FAQ, "using" and "extending", in that order and in path order within each):
paragraphs, list items, definitions and headings as lines of text, code examples as they are;
navigation, indexes, tables of contents and the pilcrow links are left out. Pages are separated
by a blank line. The same package version gives the same file (the committed one came from
python3.11-doc 3.11.2-6+deb12u9). bench/quality.py --corpus pymanual uses it.
"""

from __future__ import annotations

import argparse
import re
from html.parser import HTMLParser
from pathlib import Path

PARTS = ["tutorial", "reference", "library", "howto", "faq", "using", "extending"]
BLOCKS = {"p", "div", "pre", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "tr",
          "br", "table", "ul", "ol", "dl", "blockquote"}
SKIP_CLASSES = {"headerlink", "toctree-wrapper", "contents", "related", "sphinxsidebar",
                "footer"}
VOID = {"br", "img", "hr", "meta", "link", "input", "wbr", "col", "area", "source"}


class PageText(HTMLParser):
    """Text inside <div role="main">, block elements on lines of their own."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, in main, skipped)
        self.pre = 0
        self.out: list[str] = []

    def _state(self) -> tuple[bool, bool]:
        return (self.stack[-1][1], self.stack[-1][2]) if self.stack else (False, False)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        main, skipped = self._state()
        main = main or attrs.get("role") == "main"
        skipped = skipped or bool(SKIP_CLASSES & set((attrs.get("class") or "").split()))
        if tag in BLOCKS and main and not skipped:
            self.out.append("\n")
        if tag in VOID:
            return
        self.stack.append((tag, main, skipped))
        if tag == "pre" and main and not skipped:
            self.pre += 1

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        while self.stack:
            open_tag, main, skipped = self.stack.pop()
            if open_tag == "pre" and main and not skipped:
                self.pre -= 1
            if open_tag == tag:
                break
        if tag in BLOCKS:
            self.out.append("\n")

    def handle_data(self, data):
        main, skipped = self._state()
        if main and not skipped:
            self.out.append(data if self.pre else re.sub(r"\s+", " ", data))


def page_text(path: Path) -> str:
    parser = PageText()
    parser.feed(path.read_text(encoding="utf-8"))
    lines = [line.rstrip() for line in "".join(parser.out).split("\n")]
    text = "\n".join(line if line.startswith(" ") and line.strip() else line.strip()
                     for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the html folder of python3.11-doc")
    parser.add_argument("--mb", type=float, default=4.0, help="stop after this many MB")
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).resolve().parents[1] / "corpora" / "pymanual.txt")
    args = parser.parse_args()
    pages, size = [], 0
    for part in PARTS:
        for path in sorted((args.html / part).rglob("*.html")):
            text = page_text(path)
            if len(text) < 500:
                continue
            pages.append(text)
            size += len(text) + 2
            if size >= args.mb * 1e6:
                break
        if size >= args.mb * 1e6:
            break
    args.output.write_text("\n\n".join(pages) + "\n", encoding="utf-8")
    print(f"{args.output}: {size:,} characters from {len(pages)} pages")


if __name__ == "__main__":
    main()
