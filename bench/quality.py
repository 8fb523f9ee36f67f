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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGETS = {"tinyshakespeare": {5: "<= 1.50", 60: "<= 1.45"},
           "pymanual": {15: ">= 5% below KN"}}
HOUR_CONFIG = ROOT / "configs" / "best-cpu-hour.toml"  # the model that keeps learning for an hour
SHORT_CONFIG = ROOT / "configs" / "best-cpu.toml"


def budget_config(minutes: float) -> Path:
    """The config the README's figures use for a budget of ``minutes``."""
    return HOUR_CONFIG if minutes >= 60 else SHORT_CONFIG


def textgen(*args, cwd) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-m", "textgen", *map(str, args)], cwd=cwd, env=env,
                         check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout


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
    bundled = ROOT / "corpora" / f"{args.corpus}.txt"
    corpus = bundled if bundled.is_file() else Path(args.corpus).resolve()
    name = corpus.stem
    rows = []
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    suffix = "" if name == "tinyshakespeare" else f"{name}-"
    if args.config:  # another config's plots never replace the README's
        suffix += f"{args.config.stem}-"
    with tempfile.TemporaryDirectory() as tmp:
        for minutes, seed in itertools.product(args.minutes, args.seed):
            run = Path(tmp) / f"run-{minutes:g}-{seed}"
            config = args.config or budget_config(minutes)
            t = time.perf_counter()
            textgen("train", corpus, "--config", config.resolve(), "--max-minutes", minutes,
                    "--out", run, "--seed", seed, "--sample-every", 0,
                    *(["--backend", args.backend] if args.backend else []), cwd=tmp)
            wall = time.perf_counter() - t
            state = json.loads((run / "state.json").read_text())
            result = json.loads(textgen("evaluate", run, "--json", cwd=tmp))
            models = {m["model"]: m["nats_per_char"] for m in result["models"]}
            try:
                if seed == args.seed[0]:  # one plot per budget: the first seed's
                    textgen("plot", run, "-o", results / f"quality-{suffix}{minutes:g}min.png",
                            "--force", cwd=tmp)
            except subprocess.CalledProcessError:
                pass  # matplotlib missing: the table still stands
            rows.append((minutes, seed, config, state, wall, models))
            print(f"done {minutes:g} min, seed {seed}: {models}", file=sys.stderr, flush=True)
    from textgen.devices import default_backend  # what textgen train chose without --backend

    backend = args.backend or default_backend()
    print(f"{name}, validation = last 10% of the file; {backend}; "
          f"{os.cpu_count()} CPU cores; {time.strftime('%Y-%m-%d')}\n")
    print("| budget | config | seed | training time | epochs (steps) | val nats/char | 6-gram KN "
          "| vs KN | untrained | target |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for minutes, seed, config, state, wall, models in rows:
        kn, loss = models["6-gram Kneser-Ney"], models["textgen model (weights.h5)"]
        print(f"| {minutes:g} min | {config.name} | {seed} | {state['seconds'] / 60:.1f} min "
              f"({wall / 60:.1f} min wall) | {state['epochs_done']} ({state['steps_done']:,}) | "
              f"{loss:.4f} | {kn:.4f} | {100 * (loss / kn - 1):+.1f}% | "
              f"{models.get('untrained model', float('nan')):.4f} | "
              f"{TARGETS.get(name, {}).get(int(minutes), '')} |")
        if len(args.seed) > 1 and seed == args.seed[-1]:
            losses = [r[5]["textgen model (weights.h5)"] for r in rows if r[0] == minutes]
            mean = sum(losses) / len(losses)
            print(f"| {minutes:g} min | {config.name} | mean of {len(losses)} | | | {mean:.4f} "
                  f"({min(losses):.4f}-{max(losses):.4f}) | {kn:.4f} | "
                  f"{100 * (mean / kn - 1):+.1f}% | | |")


if __name__ == "__main__":
    main()
