"""Write corpora/pydocs.txt: English prose unlike Shakespeare, from the docstrings of this
Python's standard library (PSF licence), for benchmarks that need a second kind of text.

    python scripts/make_pydocs_corpus.py              # about 300 KB
    python scripts/make_pydocs_corpus.py --kb 1200 -o /tmp/pydocs-big.txt

Module, class and function docstrings of at least 200 characters, in path order, each followed
by a blank line; test suites and IDLE are left out. The same Python version gives the same file
(the committed one came from CPython 3.11.7).
"""

from __future__ import annotations

import argparse
import ast
import os
from pathlib import Path

SKIP = {"site-packages", "test", "tests", "idlelib", "lib2to3"}


def docstrings(root: Path):
    for path in sorted(root.rglob("*.py")):
        if SKIP & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 200 and doc.isascii():
                    yield doc.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kb", type=int, default=300, help="stop after this many KB")
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).resolve().parents[1] / "corpora" / "pydocs.txt")
    args = parser.parse_args()
    parts, size = [], 0
    for doc in docstrings(Path(os.__file__).parent):
        parts.append(doc + "\n\n")
        size += len(doc) + 2
        if size >= args.kb * 1000:
            break
    args.output.write_text("".join(parts), encoding="utf-8")
    print(f"{args.output}: {size:,} characters from {len(parts):,} docstrings")


if __name__ == "__main__":
    main()
