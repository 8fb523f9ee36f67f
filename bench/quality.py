"""Quality benchmark: train a bundled config on tinyshakespeare for fixed time budgets.

    python bench/quality.py                   # 5 and 60 minutes (about 70 minutes in all)
    python bench/quality.py --minutes 5
    python bench/quality.py --minutes 5 --seed 0 1 2     # three runs and their mean
    python bench/quality.py --corpus pymanual --minutes 15   # 4 MB of the Python manual
    python bench/quality.py --corpus pymanual --minutes 15 --config configs/best-cpu-large.toml
    python bench/quality.py --minutes 3 --config configs/gpu.toml --backend torch   # on a GPU

For each budget: ``textgen train corpora/tinyshakespeare.txt --config C --max-minutes M``, C
being configs/best-cpu.toml below an hour and configs/best-cpu-hour.toml from an hour on unless
``--config`` names one (training stops at the last epoch end that fits in M minutes of training
time), then ``textgen evaluate`` on the run's validation split, the last 10% of the file,
beside the 6-gram Kneser-Ney baseline fitted on the other 90%. ``--corpus`` takes a bundled
corpus's name (corpora/NAME.txt) or a path; ``--config`` another config file. Prints a
Markdown table and saves each run's loss plot as bench/results/quality-<M>min.png
(quality-<corpus>-<M>min.png for another corpus, quality-<config>-<M>min.png for another
config) when matplotlib is installed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import records
from common import CONFIGS, CORPORA, describe, load_config, textgen

TARGETS = {"tinyshakespeare": {5: "<= 1.50", 60: "<= 1.45"},
           "pymanual": {15: ">= 5% below KN"}}
HOUR_CONFIG = CONFIGS / "best-cpu-hour.toml"  # the model that keeps learning for an hour
SHORT_CONFIG = CONFIGS / "best-cpu.toml"


def budget_config(minutes: float) -> Path:
    """The config the README's figures use for a budget of ``minutes``."""
    return HOUR_CONFIG if minutes >= 60 else SHORT_CONFIG


MODEL = "textgen model (weights.h5)"
KN = "6-gram Kneser-Ney"


def train_and_score(corpus: Path, run: Path, minutes: float, seed: int, config: Path,
                    backend: str | None, plot: Path | None, tmp: str) -> dict:
    """One budget and seed: train, evaluate on the validation split, plot; the record's row."""
    t = time.perf_counter()
    textgen("train", corpus, "--config", config.resolve(), "--max-minutes", minutes,
            "--out", run, "--seed", seed, "--sample-every", 0,
            *(["--backend", backend] if backend else []), cwd=tmp)
    wall = time.perf_counter() - t
    state = json.loads((run / "state.json").read_text())
    result = json.loads(textgen("evaluate", run, "--json", cwd=tmp))
    models = {m["model"]: m["nats_per_char"] for m in result["models"]}
    if plot is not None:
        try:
            textgen("plot", run, "-o", plot, "--force", cwd=tmp)
        except subprocess.CalledProcessError:
            pass  # matplotlib missing: the table still stands
    return {"minutes": minutes, "seed": seed, "config": config.name,
            "model": describe(load_config(config)), "train_minutes": state["seconds"] / 60,
            "wall_minutes": wall / 60, "epochs": state["epochs_done"],
            "steps": state["steps_done"], "val_nats_per_char": models[MODEL],
            "kn_6gram": models[KN], "untrained": models.get("untrained model"),
            "unigram": next((v for k, v in models.items() if "unigram" in k.lower()), None)}


def print_table(name: str, backend: str, rows: list[dict], seeds: list[int]) -> None:
    print(f"{name}, validation = last 10% of the file; {backend}; "
          f"{os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d')}\n")
    print("| budget | config | seed | training time | epochs (steps) | val nats/char | 6-gram KN "
          "| vs KN | untrained | target |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        kn, loss, minutes = r["kn_6gram"], r["val_nats_per_char"], r["minutes"]
        untrained = r["untrained"] if r["untrained"] is not None else float("nan")
        print(f"| {minutes:g} min | {r['config']} | {r['seed']} | {r['train_minutes']:.1f} min "
              f"({r['wall_minutes']:.1f} min wall) | {r['epochs']} ({r['steps']:,}) | "
              f"{loss:.4f} | {kn:.4f} | {100 * (loss / kn - 1):+.1f}% | {untrained:.4f} | "
              f"{TARGETS.get(name, {}).get(int(minutes), '')} |")
        if len(seeds) > 1 and r["seed"] == seeds[-1]:
            losses = [q["val_nats_per_char"] for q in rows if q["minutes"] == minutes]
            mean = sum(losses) / len(losses)
            print(f"| {minutes:g} min | {r['config']} | mean of {len(losses)} | | | {mean:.4f} "
                  f"({min(losses):.4f}-{max(losses):.4f}) | {kn:.4f} | "
                  f"{100 * (mean / kn - 1):+.1f}% | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[5, 60])
    parser.add_argument("--seed", type=int, nargs="+", default=[0],
                        help="one run per seed and budget (the 5-minute figure moves by about "
                             "0.03 between seeds: compare settings over several)")
    parser.add_argument("--corpus", default="tinyshakespeare",
                        help="a bundled corpus's name (corpora/NAME.txt) or a text file")
    parser.add_argument("--config", type=Path,
                        help="default: configs/best-cpu.toml below 60 minutes, "
                             "configs/best-cpu-hour.toml from 60 on")
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                        help="textgen train's --backend (default: KERAS_BACKEND, else tensorflow)")
    args = parser.parse_args()
    bundled = CORPORA / f"{args.corpus}.txt"
    corpus = bundled if bundled.is_file() else Path(args.corpus).resolve()
    name = corpus.stem
    plots = records.results_dir()  # bench/results, beside the records
    plots.mkdir(parents=True, exist_ok=True)
    suffix = "" if name == "tinyshakespeare" else f"{name}-"
    if args.config:  # another config's plots never replace the docs'
        suffix += f"{args.config.stem}-"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes, seed in itertools.product(args.minutes, args.seed):
            plot = (plots / f"quality-{suffix}{minutes:g}min.png"
                    if seed == args.seed[0] else None)  # one plot per budget: the first seed's
            rows.append(train_and_score(corpus, Path(tmp) / f"run-{minutes:g}-{seed}", minutes,
                                        seed, args.config or budget_config(minutes),
                                        args.backend, plot, tmp))
            print(f"done {minutes:g} min, seed {seed}: {rows[-1]['val_nats_per_char']:.4f}",
                  file=sys.stderr, flush=True)
    from textgen.devices import default_backend  # what textgen train chose without --backend

    backend = args.backend or default_backend()
    print_table(name, backend, rows, args.seed)
    records.write_record("quality", {"corpus": name, "minutes": args.minutes, "seeds": args.seed,
                                     "config": args.config.name if args.config else None,
                                     "backend": backend}, {"rows": rows})


if __name__ == "__main__":
    main()
