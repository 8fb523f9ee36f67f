"""Side-by-side speed benchmark, one run, one machine: prints a Markdown table.

    python bench/speed.py                 # full run (about 3 minutes on 2 cores)
    python bench/speed.py --quick         # fewer steps, fewer repeats

Training: targets/s (characters whose loss is trained per second) of textgen's default model
(2 x LSTM 128, every window position a target, batch 128 x 40) against the seed-style model
(one-hot 40 x V input, same layers, only the last character a target, batch 128), both fed by
tf.data from the bundled tinyshakespeare.txt, timed over steps after a warm-up. Everything here
runs with TensorFlow's own thread settings (the seed-style sampler's too); bench/train_speed.py
measures training with textgen's, beside the alternatives.

Sampling: whole-process wall time of ``textgen sample --chars 500`` (median of several runs),
NumPy chars/s at batch 1 and 32, against the seed-style sampler (Keras ``predict`` on the last
40 characters for every generated character, as the Keras example does) for 500 characters.
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "corpora" / "tinyshakespeare.txt"


def _timed_fit(model, ds, warmup: int, steps: int) -> float:
    """Seconds for ``steps`` training steps after ``warmup`` steps (tracing excluded)."""
    import keras

    marks = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch + 1 in (warmup, warmup + steps):
                marks[batch + 1] = time.perf_counter()

    model.fit(ds, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[Clock()])
    return marks[warmup + steps] - marks[warmup]


def seed_style_model(cfg, vocab_size: int):
    """The seeds' model: one-hot input, LSTM-Dropout-LSTM(last step)-Dropout-softmax, trained
    on the last character of each window only (also used by bench/train_speed.py)."""
    import keras

    inputs = keras.Input((cfg.window.window,), dtype="int32")
    x = keras.ops.one_hot(inputs, vocab_size)  # the seeds fed one-hot arrays; here in-graph
    x = keras.layers.LSTM(cfg.model.units, return_sequences=True)(x)
    x = keras.layers.Dropout(cfg.model.dropout)(x)
    x = keras.layers.LSTM(cfg.model.units)(x)
    x = keras.layers.Dropout(cfg.model.dropout)(x)
    out = keras.layers.Dense(vocab_size, activation="softmax")(x)
    model = keras.Model(inputs, out)
    model.compile(optimizer=keras.optimizers.RMSprop(0.01),
                  loss="sparse_categorical_crossentropy")
    return model


def bench_training(steps: int) -> dict:
    import keras

    from textgen.config import Config
    from textgen.model import build_model, compile_model
    from textgen.data import prepare
    from textgen.windows import train_dataset

    cfg = Config()
    data = prepare([str(CORPUS)], cfg)
    vocab_size = len(data.vocab)
    keras.utils.set_random_seed(0)
    warmup = 10
    ds = train_dataset(data.ids, cfg.window, seed=0, epochs=1, steps=warmup + steps)
    model = build_model(cfg.model, vocab_size)
    compile_model(model, cfg.train)
    secs = _timed_fit(model, ds, warmup, steps)
    ours = steps * cfg.window.batch_size * cfg.window.window / secs

    seed_model = seed_style_model(cfg, vocab_size)
    seed_ds = ds.map(lambda x, y: (x, y[:, -1]))
    seed_steps = max(steps // 2, 10)
    secs_seed = _timed_fit(seed_model, seed_ds, warmup, seed_steps)
    seed = seed_steps * cfg.window.batch_size / secs_seed
    return {"ours": ours, "seed": seed, "steps": steps, "seed_steps": seed_steps,
            "seed_model": seed_model, "vocab": data.vocab}


def make_run(tmp: Path) -> Path:
    """A default-config (2 x LSTM 128) run folder; a few steps suffice for timing."""
    out = tmp / "run"
    subprocess.run([sys.executable, "-m", "textgen", "train", str(CORPUS), "--out", str(out),
                    "--epochs", "1", "--steps-per-epoch", "20", "--seed", "0"],
                   check=True, cwd=tmp, capture_output=True)
    return out


def bench_sampling(run: Path, repeats: int) -> dict:
    import textgen
    from textgen.sample import SampleRequest

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
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    args = parser.parse_args()
    steps = 30 if args.quick else 100
    repeats = 3 if args.quick else 7
    seed_chars = 100 if args.quick else 500

    train = bench_training(steps)
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp))
        sampling = bench_sampling(run, repeats)
    seed_secs = bench_seed_sampler(train["seed_model"], train["vocab"], seed_chars)
    seed_500 = seed_secs * 500 / seed_chars

    import tensorflow as tf

    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"TensorFlow {tf.__version__}, {time.strftime('%Y-%m-%d')}\n")
    print("| measure | textgen | seed-style | ratio |")
    print("|---|---|---|---|")
    print(f"| training targets/s (2 x LSTM 128, window 40, batch 128) | {train['ours']:,.0f} | "
          f"{train['seed']:,.0f} | {train['ours'] / train['seed']:.0f}x |")
    print(f"| `sample --chars 500`, whole process (s) | {sampling['wall']:.2f} | "
          f"{seed_500:.1f} | {seed_500 / sampling['wall']:.0f}x |")
    if sampling["wall_script"] is not None:
        print(f"| same, via the `textgen` console script (s) | {sampling['wall_script']:.2f} | | |")
    print(f"| sampling chars/s, batch 1 | {sampling['rates'][1]:,.0f} | "
          f"{seed_chars / seed_secs:,.1f} | {sampling['rates'][1] * seed_secs / seed_chars:,.0f}x |")
    print(f"| sampling chars/s, batch 32 | {sampling['rates'][32]:,.0f} | | |")
    note = "" if seed_chars == 500 else f" (seed-style timed on {seed_chars} chars, scaled)"
    print(f"\nTraining timed over {train['steps']} steps (seed-style {train['seed_steps']}) after "
          f"10 warm-up steps; sampling wall time is the median of {repeats} runs{note}.")


if __name__ == "__main__":
    main()
