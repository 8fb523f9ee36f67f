"""Training speed and memory against the machine's own roofline, side by side in one run.

    python bench/train_speed.py            # about 4 minutes on 2 cores
    python bench/train_speed.py --quick

Measures, in one process where it can:
* the roofline: NumPy float32 2048^3 matrix product, GFLOP/s (best of 3);
* targets/s (characters whose loss is trained per second) of the default config, of
  configs/best-cpu.toml and of the seed-style model (bench/speed.py describes it), each with the
  implied GFLOP/s (training ~ 3x the forward pass's matrix products) as a share of the roofline;
* the per-step time split: pulling a batch from the tf.data pipeline alone, one training step on
  a batch already in memory, and a real step (pipeline + model) - a starved pipeline shows as a
  real step slower than the model step;
* peak RSS of `textgen train` (default config, 50 steps) on a generated ~100 MB corpus, and of a
  50-step run on tinyshakespeare for comparison, each in a fresh process;
* wall time of `textgen --help` (median of 5).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "corpora" / "tinyshakespeare.txt"


def roofline() -> float:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048**3 / (time.perf_counter() - t) / 1e9)
    return best


def flops_per_target(cfg, vocab_size: int, last_only_window: int | None = None) -> float:
    """Training FLOPs per trained character: 3 x the forward matrix products."""
    m = cfg.model
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[m.cell]
    per_step, inp = 0, m.embedding_dim if last_only_window is None else vocab_size
    for _ in range(m.layers):
        per_step += 2 * (inp + m.units) * gates * m.units
        inp = m.units
    if last_only_window is None:  # every position is a target: one timestep per target
        return 3 * (per_step + 2 * m.units * vocab_size)
    # seed-style: a whole window of recurrent steps per (last-character) target
    return 3 * (per_step * last_only_window + 2 * m.units * vocab_size)


def step_split(model, ds, steps: int) -> dict:
    """Seconds per step: pipeline alone, model alone (batch in memory), and both together."""
    import tensorflow as tf

    it = iter(ds)
    next(it)
    t = time.perf_counter()
    for _ in range(steps):
        next(it)
    pipeline = (time.perf_counter() - t) / steps
    x, y = next(iter(ds))
    cached = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(cached, steps_per_epoch=5, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(cached, steps_per_epoch=steps, epochs=1, verbose=0)
    compute = (time.perf_counter() - t) / steps
    model.fit(ds, steps_per_epoch=5, epochs=1, verbose=0)
    t = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    real = (time.perf_counter() - t) / steps
    return {"pipeline": pipeline, "model": compute, "real": real}


def bench_config(name: str, cfg, data, steps: int) -> dict:
    import keras

    from textgen.model import build_model, compile_model
    from textgen.windows import train_dataset

    keras.utils.set_random_seed(0)
    ds = train_dataset(data.ids, cfg.window, seed=0, epochs=1, steps=10**6)
    model = build_model(cfg.model, len(data.vocab))
    compile_model(model, cfg.train)
    split = step_split(model, ds, steps)
    targets = cfg.window.batch_size * cfg.window.window / split["real"]
    return {"name": name, "targets_s": targets, "split": split,
            "gflops": targets * flops_per_target(cfg, len(data.vocab)) / 1e9}


def bench_seed(cfg, data, steps: int) -> dict:
    from speed import seed_style_model  # bench/speed.py, beside this script

    from textgen.windows import train_dataset

    w, v = cfg.window.window, len(data.vocab)
    model = seed_style_model(cfg, v)
    ds = train_dataset(data.ids, cfg.window, seed=0, epochs=1, steps=10**6)
    ds = ds.map(lambda x, y: (x, y[:, -1]))
    split = step_split(model, ds, steps)
    targets = cfg.window.batch_size / split["real"]
    seed_cfg = cfg
    return {"name": "seed-style (one-hot, last char only)", "targets_s": targets,
            "split": split,
            "gflops": targets * flops_per_target(seed_cfg, v, last_only_window=w) / 1e9}


RSS_CHILD = """
import resource, sys
from textgen.cli import cli
try:
    cli(sys.argv[1:])
except SystemExit as e:
    assert not e.code, e.code
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, file=sys.stderr)
"""


def train_rss(corpus: Path, tmp: Path, name: str) -> float:
    env = dict(os.environ, TEXTGEN_CACHE_DIR="", TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(
        [sys.executable, "-c", RSS_CHILD, "train", str(corpus), "--out", str(tmp / name),
         "--epochs", "1", "--steps-per-epoch", "50", "--seed", "0", "--sample-every", "0"],
        env=env, capture_output=True, text=True, check=True, cwd=tmp)
    return float(out.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--mb", type=int, default=100, help="size of the generated corpus")
    args = parser.parse_args()
    steps = 15 if args.quick else 40

    from textgen.config import Config, load_toml, merge
    from textgen.data import prepare

    peak = roofline()
    default = Config()
    best = merge(Config(), load_toml(ROOT / "configs" / "best-cpu.toml"), "best-cpu.toml")
    data = prepare([str(CORPUS)], default, use_cache=False)
    rows = [bench_config("default (2 x LSTM 128, batch 128 x 40)", default, data, steps),
            bench_config("best-cpu (2 x LSTM 256, batch 64 x 100)", best, data, steps),
            bench_seed(default, data, max(steps // 2, 10))]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        big = tmp / "big.txt"
        text = CORPUS.read_text()
        with open(big, "w") as f:
            for _ in range(args.mb * 1_000_000 // len(text) + 1):
                f.write(text)
        rss_big = train_rss(big, tmp, "big")
        rss_small = train_rss(CORPUS, tmp, "small")
        big_mb = big.stat().st_size / 1e6

    helps = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "textgen", "--help"], check=True,
                       capture_output=True)
        helps.append(time.perf_counter() - t)

    seed = rows[-1]["targets_s"]
    print(f"{os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}; roofline (NumPy float32 "
          f"2048^3 matmul): {peak:.0f} GFLOP/s\n")
    print("| model | targets/s | x seed-style | GFLOP/s | % of roofline | pipeline ms/step "
          "| model ms/step | real ms/step |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["split"]
        print(f"| {r['name']} | {r['targets_s']:,.0f} | {r['targets_s'] / seed:.1f} | "
              f"{r['gflops']:.1f} | {100 * r['gflops'] / peak:.0f}% | {1000 * s['pipeline']:.2f} "
              f"| {1000 * s['model']:.1f} | {1000 * s['real']:.1f} |")
    print(f"\nPeak RSS of `textgen train` (default config, 50 steps): {rss_big:,.0f} MB on a "
          f"{big_mb:.0f} MB corpus, {rss_small:,.0f} MB on tinyshakespeare (1.1 MB).")
    print(f"`textgen --help`: {statistics.median(helps) * 1000:.0f} ms (median of 5, "
          f"python -m textgen).")


if __name__ == "__main__":
    main()
