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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def textgen(*args, cwd) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "textgen", *map(str, args)], cwd=cwd, env=env,
                          check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 30])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            for level in ("char", "word"):
                out = Path(tmp) / f"{level}-{minutes:g}"
                textgen("train", ROOT / "corpora" / "tinyshakespeare.txt", "--out", out,
                        "--level", level, "--max-minutes", minutes, "--epochs", 1000,
                        "--steps-per-epoch", 100, "--seed", 0, "--sample-every", 0, cwd=tmp)
                result = json.loads(textgen("evaluate", out, "--json", cwd=tmp))
                models = {m["model"]: m for m in result["models"]}
                report = json.loads((out / "corpus.json").read_text())
                state = json.loads((out / "state.json").read_text())
                sample = textgen("sample", "--run", out, "--chars", 300, "--temperature", 0.5,
                                 "--seed", 1, cwd=tmp)
                rows.append((minutes, level, models, report, state, sample))
                print(f"{level} {minutes:g} min: "
                      f"{models['textgen model (weights.h5)']['nats_per_char']:.4f}",
                      file=sys.stderr, flush=True)
    print(f"tinyshakespeare, validation = last 10% of the file; default config; "
          f"{os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d')}\n")
    print("| budget | level | steps | val nats/char | 6-gram KN nats/char | vocabulary | "
          "tokens as <unk> |")
    print("|---|---|---|---|---|---|---|")
    for minutes, level, models, report, state, _ in rows:
        tokens = report.get("tokens") or {}
        unk = f"{tokens['unknown_rate']:.2%}" if tokens else "-"
        vocab = tokens.get("vocab", report.get("chars_distinct", "?")) if tokens else \
            len(report.get("char_counts", {})) or "?"
        print(f"| {minutes:g} min | {level} | {state['steps_done']:,} | "
              f"{models['textgen model (weights.h5)']['nats_per_char']:.4f} | "
              f"{next(m for k, m in models.items() if 'Kneser' in k)['nats_per_char']:.4f} | "
              f"{vocab} | {unk} |")
    for minutes, level, _, _, _, sample in rows:
        print(f"\n{level}, {minutes:g} min:\n```\n{sample.rstrip()}\n```")


if __name__ == "__main__":
    main()
