"""Character level against word level on tinyshakespeare, at equal wall-clock budgets.

    python bench/char_vs_word.py --minutes 5          # about 12 minutes
    python bench/char_vs_word.py --minutes 5 30

For each budget, `textgen train corpora/tinyshakespeare.txt` twice with the default config
(2 x LSTM 128, window 40 tokens, epochs of 100 steps, `--max-minutes M`): `--level char` and
`--level word` (10,000 words + <unk>). `textgen evaluate` scores both on the last 10% of the
file in nats per character (word level: the text's total nats over its characters). Prints a
Markdown table, what word level gives up (vocabulary size, tokens replaced by <unk>) and a
300-character sample of each at temperature 0.5.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import records
from common import CORPUS, textgen


MODEL = "textgen model (weights.h5)"


def train_and_score(level: str, minutes: float, tmp: str) -> dict:
    out = Path(tmp) / f"{level}-{minutes:g}"
    textgen("train", CORPUS, "--out", out, "--level", level, "--max-minutes", minutes,
            "--epochs", 1000, "--steps-per-epoch", 100, "--seed", 0, "--sample-every", 0,
            cwd=tmp, quiet=True)
    models = {m["model"]: m["nats_per_char"]
              for m in json.loads(textgen("evaluate", out, "--json", cwd=tmp,
                                          quiet=True))["models"]}
    report = json.loads((out / "corpus.json").read_text())
    state = json.loads((out / "state.json").read_text())
    tokens = report.get("tokens") or {}
    vocab = tokens.get("vocab", report.get("chars_distinct")) if tokens else \
        len(report.get("char_counts", {})) or None
    return {"minutes": minutes, "level": level, "steps": state["steps_done"],
            "val_nats_per_char": models[MODEL],
            "kn_6gram": next(v for k, v in models.items() if "Kneser" in k),
            "vocabulary": vocab, "unk_rate": tokens["unknown_rate"] if tokens else None,
            "sample": textgen("sample", "--run", out, "--chars", 300, "--temperature", 0.5,
                              "--seed", 1, cwd=tmp, quiet=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 30])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            for level in ("char", "word"):
                rows.append(train_and_score(level, minutes, tmp))
                print(f"{level} {minutes:g} min: {rows[-1]['val_nats_per_char']:.4f}",
                      file=sys.stderr, flush=True)
    print(f"tinyshakespeare, validation = last 10% of the file; default config; "
          f"{os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d')}\n")
    print("| budget | level | steps | val nats/char | 6-gram KN nats/char | vocabulary | "
          "tokens as <unk> |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        unk = "-" if r["unk_rate"] is None else f"{r['unk_rate']:.2%}"
        vocab = "?" if r["vocabulary"] is None else f"{r['vocabulary']:,}"
        print(f"| {r['minutes']:g} min | {r['level']} | {r['steps']:,} | "
              f"{r['val_nats_per_char']:.4f} | {r['kn_6gram']:.4f} | {vocab} | {unk} |")
    for r in rows:
        print(f"\n{r['level']}, {r['minutes']:g} min:\n```\n{r['sample'].rstrip()}\n```")
    records.write_record("char_vs_word", {"corpus": "tinyshakespeare", "config": "default",
                                          "minutes": args.minutes, "seed": 0,
                                          "steps_per_epoch": 100}, {"rows": rows})


if __name__ == "__main__":
    main()
