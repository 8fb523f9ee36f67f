"""Side-by-side sampling benchmark, one run, one machine: prints a Markdown table.

    python bench/speed.py                 # full run (about 2 minutes on 2 cores)
    python bench/speed.py --quick         # fewer repeats

Whole-process wall time of ``textgen sample --chars 500`` (median of several runs), NumPy
chars/s at batch 1 and 32, against the seed-style sampler (Keras ``predict`` on the last 40
characters for every generated character, as the Keras example does) for 500 characters.
Training speed is bench/train_speed.py's; ``seed_style_model`` here serves both.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import records
from common import CORPUS, make_run

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def seed_style_model(cfg, vocab_size: int, as_written: bool = False):
    """The seeds' model: one-hot input, LSTM-Dropout-LSTM(last step)-Dropout-softmax, trained
    on the last character of each window only (also used by bench/train_speed.py).

    It takes int ids and makes the one-hot input in the graph, so that it can train from
    textgen's pipeline; ``as_written=True`` gives it as the seed code has it instead: one-hot
    float input and one-hot targets (``categorical_crossentropy``), for NumPy one-hot arrays.
    """
    import keras

    w, units = cfg.window.window, cfg.model.units
    if as_written:
        inputs = x = keras.Input((w, vocab_size))
    else:
        inputs = keras.Input((w,), dtype="int32")
        x = keras.ops.one_hot(inputs, vocab_size)
    x = keras.layers.LSTM(units, return_sequences=True)(x)
    x = keras.layers.Dropout(cfg.model.dropout)(x)
    x = keras.layers.LSTM(units)(x)
    x = keras.layers.Dropout(cfg.model.dropout)(x)
    out = keras.layers.Dense(vocab_size, activation="softmax")(x)
    model = keras.Model(inputs, out)
    model.compile(optimizer=keras.optimizers.RMSprop(0.01),
                  loss="categorical_crossentropy" if as_written
                  else "sparse_categorical_crossentropy")
    return model


def bench_sampling(run: Path, repeats: int) -> dict:
    import textgen
    from textgen.sampling import SampleRequest

    cmd = [sys.executable, "-m", "textgen", "sample", "--run", str(run), "--chars", "500",
           "--seed", "1"]
    walls = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - t)
    entry = Path(sys.executable).parent / "textgen"
    walls_script = []
    if entry.exists():
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run([str(entry), *cmd[3:]], check=True, capture_output=True)
            walls_script.append(time.perf_counter() - t)
    gen = textgen.load(run)
    rates = {}
    for batch in (1, 32):
        t = time.perf_counter()
        gen.sample(SampleRequest(chars=2000, n=batch, seed=1))
        rates[batch] = 2000 * batch / (time.perf_counter() - t)
    return {"wall": statistics.median(walls),
            "wall_script": statistics.median(walls_script) if walls_script else None,
            "rates": rates}


def bench_seed_sampler(seed_model, vocab, chars: int) -> float:
    """Seconds for the Keras-example sampler: predict on the last 40 chars per new char."""
    import numpy as np

    text = CORPUS.read_text()[:40]
    window = list(vocab.encode(text))
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for _ in range(chars):
        probs = seed_model.predict(np.array([window[-40:]], dtype="int32"), verbose=0)[0]
        probs = np.nan_to_num(probs.astype("float64")) + 1e-12  # a barely trained model
        window.append(int(rng.choice(len(probs), p=probs / probs.sum())))
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    seed_chars = 100 if args.quick else 500

    from textgen.config import Config
    from textgen.data import prepare

    cfg = Config()
    vocab = prepare([str(CORPUS)], cfg).vocab
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp))
        sampling = bench_sampling(run, repeats)
    seed_secs = bench_seed_sampler(seed_style_model(cfg, len(vocab)), vocab, seed_chars)
    seed_500 = seed_secs * 500 / seed_chars

    import tensorflow as tf

    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"TensorFlow {tf.__version__}, {time.strftime('%Y-%m-%d')}\n")
    print("| measure | textgen | seed-style | ratio |")
    print("|---|---|---|---|")
    print(f"| `sample --chars 500`, whole process (s) | {sampling['wall']:.2f} | "
          f"{seed_500:.1f} | {seed_500 / sampling['wall']:.0f}x |")
    if sampling["wall_script"] is not None:
        print(f"| same, via the `textgen` console script (s) | {sampling['wall_script']:.2f} | | |")
    print(f"| sampling chars/s, batch 1 | {sampling['rates'][1]:,.0f} | "
          f"{seed_chars / seed_secs:,.1f} | {sampling['rates'][1] * seed_secs / seed_chars:,.0f}x |")
    print(f"| sampling chars/s, batch 32 | {sampling['rates'][32]:,.0f} | | |")
    note = "" if seed_chars == 500 else f" (seed-style timed on {seed_chars} chars, scaled)"
    print(f"\nWall time is the median of {repeats} runs{note}; the seed-style sampler runs an "
          "untrained seed-style model (its speed does not depend on the weights).")
    records.write_record(
        "speed",
        {"model": "default (2 x LSTM 128), 20 steps trained", "chars": 500,
         "repeats": repeats, "seed_style_chars": seed_chars, "backend": "tensorflow"},
        {"sample_500_wall_s": sampling["wall"],
         "sample_500_script_wall_s": sampling["wall_script"],
         "chars_per_s_batch1": sampling["rates"][1], "chars_per_s_batch32": sampling["rates"][32],
         "seed_style_sample_500_s": seed_500, "seed_style_chars_per_s": seed_chars / seed_secs})


if __name__ == "__main__":
    main()
