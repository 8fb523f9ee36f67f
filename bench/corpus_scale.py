"""Corpus scale benchmark: read, clean and encode a generated ~100 MB corpus.

    python bench/corpus_scale.py            # 100 MB
    python bench/corpus_scale.py --mb 20

Each measurement runs in a fresh process that reports its own peak RSS (VmHWM; getrusage's
ru_maxrss would include what a forked child inherits from its parent):
cold ``prepare`` (read, clean, encode, windows; then stored in the cache), warm ``prepare``
(ids memory-mapped from the cache), and ``textgen clean`` with cleaning rules on, which also
holds the cleaned text to write it out. The corpus is the bundled plays and sonnets repeated,
with every 7th copy given CRLF line endings, so the normalisation rules have work to do.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import records
from common import CLI_CHILD, CORPORA, PEAK_MB, ROOT, env

CHILD = PEAK_MB + """
import json, sys, time
from textgen.config import Config
from textgen.data import prepare
t = time.perf_counter()
p = prepare([sys.argv[1]], Config())
print(json.dumps({"seconds": time.perf_counter() - t, "cached": p.cached,
                  "ids": int(len(p.ids)), "windows": p.split.n_train_windows,
                  "rss_mb": peak_mb()}))
"""


def make_corpus(path: Path, mb: int) -> int:
    plays = (CORPORA / "tinyshakespeare.txt").read_text()
    sonnets = (CORPORA / "sonnets.txt").read_text()
    n, i = 0, 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        while n < mb * 1_000_000:
            piece = plays if i % 2 == 0 else sonnets
            if i % 7 == 3:
                piece = piece.replace("\n", "\r\n")
            f.write(piece)
            n += len(piece)
            i += 1
    return path.stat().st_size


def child(corpus: Path, child_env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(corpus)], env=child_env, check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "big.txt"
        size = make_corpus(corpus, args.mb)
        child_env = env(TEXTGEN_CACHE_DIR=str(tmp / "cache"))
        cold = child(corpus, child_env)
        warm = child(corpus, child_env)
        t = time.perf_counter()
        clean = subprocess.run(
            [sys.executable, "-c", CLI_CHILD, "clean", str(corpus), "--collapse-spaces",
             "--unescape-html", "--remove-urls", "-o", str(tmp / "clean.txt")],
            env=child_env, check=True, capture_output=True, text=True, cwd=ROOT)
        clean_secs = time.perf_counter() - t
        clean_rss = float(clean.stderr.strip().splitlines()[-1])
    print(f"Corpus: {size / 1e6:.0f} MB ({cold['ids']:,} characters, {cold['windows']:,} "
          f"training windows of the default config), {time.strftime('%Y-%m-%d')}\n")
    print("| step | seconds | peak RSS (MB) |")
    print("|---|---|---|")
    print(f"| read + clean + encode + windows (cold) | {cold['seconds']:.1f} | "
          f"{cold['rss_mb']:.0f} |")
    print(f"| same, ids from the cache (warm) | {warm['seconds']:.1f} | {warm['rss_mb']:.0f} |")
    print(f"| `textgen clean` with 3 rules, whole process | {clean_secs:.1f} | {clean_rss:.0f} |")
    assert warm["cached"] and not cold["cached"]
    records.write_record(
        "corpus_scale",
        {"mb": args.mb, "clean_rules": "--collapse-spaces --unescape-html --remove-urls"},
        {"corpus_mb": size / 1e6, "characters": cold["ids"], "windows": cold["windows"],
         "cold_s": cold["seconds"], "cold_rss_mb": cold["rss_mb"], "warm_s": warm["seconds"],
         "warm_rss_mb": warm["rss_mb"], "clean_s": clean_secs, "clean_rss_mb": clean_rss})


if __name__ == "__main__":
    main()
