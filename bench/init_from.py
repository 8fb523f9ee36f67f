"""Does starting from a trained model help a small corpus? ``--init-from`` against from-scratch
training at equal wall-clock budgets.

    python bench/init_from.py                          # base 10 min; budgets 1, 3, 10 min
    python bench/init_from.py --base-minutes 5 --minutes 1 3

A base run trains on tinyshakespeare (default config) for ``--base-minutes``. Then, for each
target corpus (the bundled sonnets, 98 KB, like the base; corpora/pydocs.txt, 300 KB of Python
docstrings, unlike it) and each budget, two runs train with ``--max-minutes M``: one from
scratch, one ``--init-from`` the base (both with the default config and epochs of 100 steps,
so that the budget and the best weights are checked often); ``textgen evaluate`` scores each on its corpus's
validation split (the last 10%, held out). Prints a Markdown table (nats/char) and a 200-char
sample of each run at temperature 0.5. Runs are sequential; the machine should be quiet.
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
from common import CORPORA as BUNDLED
from common import CORPUS, textgen

CORPORA = {"sonnets": BUNDLED / "sonnets.txt", "pydocs": BUNDLED / "pydocs.txt"}


def run_and_score(corpus: Path, out: Path, minutes: float, seed: int, tmp: str,
                  base: Path | None) -> dict:
    extra = ["--init-from", base] if base else []
    # Short epochs (100 steps), so the time budget and the best weights are checked often.
    textgen("train", corpus, "--out", out, "--max-minutes", minutes, "--epochs", 1000,
            "--steps-per-epoch", 100, "--seed", seed, "--sample-every", 0, *extra, cwd=tmp,
            quiet=True)
    state = json.loads((out / "state.json").read_text())
    models = {m["model"]: m["nats_per_char"]
              for m in json.loads(textgen("evaluate", out, "--json", cwd=tmp,
                                          quiet=True))["models"]}
    sample = textgen("sample", "--run", out, "--chars", 200, "--temperature", 0.5, "--seed", 1,
                     cwd=tmp, quiet=True)
    return {"loss": models["textgen model (weights.h5)"], "kn": models["6-gram Kneser-Ney"],
            "start": models.get("untrained model"), "steps": state["steps_done"],
            "seconds": state["seconds"], "sample": sample}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-minutes", type=float, default=10)
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    parser.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=list(CORPORA))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        textgen("train", CORPUS, "--out", base, "--epochs", 1000,
                "--max-minutes", args.base_minutes, "--seed", args.seed, "--sample-every", 0,
                cwd=tmp, quiet=True)
        base_state = json.loads((base / "state.json").read_text())
        print(f"base: {base_state['steps_done']} steps, best {base_state['best_loss']:.4f}",
              file=sys.stderr, flush=True)
        for name in args.corpora:
            for minutes in args.minutes:
                scores = {}
                for arm, start in (("scratch", None), ("init", base)):
                    out = Path(tmp) / f"{name}-{minutes:g}-{arm}"
                    scores[arm] = run_and_score(CORPORA[name], out, minutes, args.seed, tmp, start)
                    print(f"{name} {minutes:g} min {arm}: {scores[arm]['loss']:.4f}",
                          file=sys.stderr, flush=True)
                rows.append((name, minutes, scores))
    print(f"Base: tinyshakespeare, default config (2 x LSTM 128), {args.base_minutes:g} min "
          f"({base_state['steps_done']:,} steps, val {base_state['best_loss']:.4f} nats/char); "
          f"{os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d')}\n")
    print("| corpus | budget | from scratch (steps) | --init-from (steps) | gain | starting "
          "point | 6-gram KN |")
    print("|---|---|---|---|---|---|---|")
    for name, minutes, s in rows:
        a, b = s["scratch"], s["init"]
        print(f"| {name} | {minutes:g} min | {a['loss']:.4f} ({a['steps']:,}) | "
              f"{b['loss']:.4f} ({b['steps']:,}) | {a['loss'] - b['loss']:+.4f} | "
              f"{b['start']:.4f} | {a['kn']:.4f} |")
    for name, minutes, s in rows:
        for arm in ("scratch", "init"):
            print(f"\n{name}, {minutes:g} min, {arm}:\n```\n{s[arm]['sample'].rstrip()}\n```")
    records.write_record(
        "init_from", {"base_corpus": "tinyshakespeare", "base_config": "default",
                      "base_minutes": args.base_minutes, "minutes": args.minutes,
                      "corpora": args.corpora, "seed": args.seed, "steps_per_epoch": 100},
        {"base_steps": base_state["steps_done"], "base_val": base_state["best_loss"],
         "rows": [{"corpus": name, "minutes": minutes, "scratch": s["scratch"]["loss"],
                   "scratch_steps": s["scratch"]["steps"], "init": s["init"]["loss"],
                   "init_steps": s["init"]["steps"], "start": s["init"]["start"],
                   "kn_6gram": s["scratch"]["kn"],
                   "samples": {arm: s[arm]["sample"] for arm in ("scratch", "init")}}
                  for name, minutes, s in rows]})


if __name__ == "__main__":
    main()
