"""Sampling rules compared on one trained model: how plausible and how varied their text is.

    python bench/sampling_rules.py --run checkpoints/shakespeare       # a trained run
    python bench/sampling_rules.py                                      # trains configs/quick.toml first (~3 min)

For each rule (temperature alone, top-p, top-k, min-p; at temperatures 1.0 and 1.3), N samples of
C characters from the same primes and seeds:
* plausibility: the samples' mean cross-entropy (nats/char) under a 6-gram Kneser-Ney model
  fitted on the run's training text: a judge that knows the corpus's spelling and short
  phrases but not the network (lower: text more like the corpus);
* variety: the share of distinct character 5-grams among all 5-grams of the samples (higher:
  less repetition), and the mean longest span copied verbatim from the training text.
A rule earns its place if it makes text more plausible than the others at a similar variety.
Writes a record to bench/results/sampling-rules/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import records

ROOT = Path(__file__).resolve().parents[1]
RULES = [("T only", {}), ("top-p 0.9", {"top_p": 0.9}), ("top-k 10", {"top_k": 10}),
         ("min-p 0.05", {"min_p": 0.05}), ("min-p 0.1", {"min_p": 0.1})]
TEMPERATURES = (1.0, 1.3)


def train_quick(out: Path) -> None:
    subprocess.run([sys.executable, "-m", "textgen", "train",
                    str(ROOT / "corpora" / "tinyshakespeare.txt"), "--config",
                    str(ROOT / "configs" / "quick.toml"), "--out", str(out), "--seed", "0",
                    "--sample-every", "0"], check=True, stdout=subprocess.DEVNULL)


def five_gram_variety(texts: list[str]) -> float:
    grams = [t[i:i + 5] for t in texts for i in range(len(t) - 4)]
    return len(set(grams)) / max(len(grams), 1)


def measure(gen, judge, train_text: str, primes: list[str], chars: int, seeds: int) -> list:
    from textgen import SampleRequest
    from textgen.evaluate import longest_copied_span

    rows = []
    for t in TEMPERATURES:
        for name, settings in RULES:
            texts, losses, copies = [], [], []
            for k, prime in enumerate(primes):
                for seed in range(seeds):
                    [s] = gen.sample(SampleRequest(prime=prime, chars=chars, temperature=t,
                                                   seed=1000 * k + seed, **settings))
                    texts.append(s.text)
                    losses.append(judge.loss(s.text, context=prime))
                    copies.append(longest_copied_span(s.text, train_text))
            rows.append({"temperature": t, "rule": name, "settings": settings,
                         "kn_nats_per_char": round(sum(losses) / len(losses), 4),
                         "distinct_5grams": round(five_gram_variety(texts), 4),
                         "mean_longest_copy": round(sum(copies) / len(copies), 1)})
            print(f"T {t}, {name}: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained run (default: train quick.toml)")
    parser.add_argument("--chars", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=8, help="samples per prime and rule")
    args = parser.parse_args()
    import textgen
    from textgen.baselines import KneserNey
    from textgen.evaluate import training_data

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or Path(tmp) / "run"
        if args.run is None:
            train_quick(run)
        gen = textgen.load(run)
        split = training_data(gen.run)
        train_text = gen.vocab.decode(split.train)
        judge = KneserNey(train_text, order=6, vocab_size=len(gen.vocab))
        primes = ["ROMEO:\n", "First Citizen:\nWe ", "KING HENRY VI:\nO, ", "\n"]
        rows = measure(gen, judge, train_text, primes, args.chars, args.seeds)
        state = gen.run.state
    print(f"\n{len(primes)} primes x {args.seeds} seeds x {args.chars} characters per rule; "
          f"model best val loss {state.get('best_loss')}\n")
    print("| T | rule | 6-gram KN nats/char (lower: more plausible) | distinct 5-grams | "
          "longest copy |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['temperature']} | {r['rule']} | {r['kn_nats_per_char']:.4f} | "
              f"{r['distinct_5grams']:.4f} | {r['mean_longest_copy']:.1f} |")
    records.write_record("sampling-rules", {"run": str(args.run) if args.run else
                                            "configs/quick.toml on tinyshakespeare, seed 0",
                                            "model_best_val_loss": state.get("best_loss"),
                                            "primes": primes, "seeds": args.seeds,
                                            "chars": args.chars}, {"rows": rows})


if __name__ == "__main__":
    main()
