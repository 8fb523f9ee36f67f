"""Is TensorFlow's speed bimodal across process starts? Train the default config in N fresh
processes and report each one's steady training speed.

    python bench/fast_mode.py                # 10 starts, about 10 minutes
    python bench/fast_mode.py --starts 4 --steps 100
    python bench/fast_mode.py --plain        # the plain Keras model instead, about 2 minutes

Each start is a fresh ``textgen train corpora/tinyshakespeare.txt`` (default config: 2 x LSTM
128, batch 128 x 40, textgen's CPU layout) of epochs of ``--steps`` steps with validation off,
enough of them to plan the 500 steps that get the CPU layout's chains; the second epoch's time
(log.csv's ``seconds``, minus the first epoch's, so graph building is left out) gives the
targets/s of that process. Prints every start and the sorted list.

``--plain`` starts the model the field notes found bimodal instead: plain Keras (Embedding 64,
2 x LSTM 128 returning sequences, Dense), ``fit`` on random int arrays of 128 x 40 batches,
TensorFlow's own threads, nothing of textgen; the steps after the first 20 are timed.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import records
from common import CORPUS, env, textgen

from textgen.backends.tensorflow import CHAINS_MIN_STEPS  # imports no framework


def one_start(tmp: Path, i: int, steps: int) -> float:
    out = tmp / f"run-{i}"
    epochs = max(2, -(-CHAINS_MIN_STEPS // steps))
    textgen("train", CORPUS, "--out", out, "--epochs", epochs, "--steps-per-epoch", steps,
            "--val-split", 0, "--sample-every", 0, "--seed", i, cwd=tmp, quiet=True)
    with (out / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    seconds = float(rows[1]["seconds"]) - float(rows[0]["seconds"])
    return steps * 128 * 40 / seconds


PLAIN = """
import sys, time
import keras, numpy as np
steps = int(sys.argv[1])
rng = np.random.default_rng(0)
x, y = (rng.integers(0, 65, (128 * (steps + 20), 40)) for _ in range(2))
model = keras.Sequential([keras.Input((40,), dtype="int32"), keras.layers.Embedding(65, 64),
                          keras.layers.LSTM(128, return_sequences=True),
                          keras.layers.LSTM(128, return_sequences=True), keras.layers.Dense(65)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
class Clock(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        if batch == 20:
            self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.seconds = time.perf_counter() - self.start
clock = Clock()
model.fit(x, y, batch_size=128, epochs=1, verbose=0, callbacks=[clock])
print(steps * 128 * 40 / clock.seconds)
"""


def plain_start(steps: int) -> float:
    out = subprocess.run([sys.executable, "-c", PLAIN, str(steps)], check=True,
                         env=env(quiet=True, KERAS_BACKEND="tensorflow"),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--plain", action="store_true",
                        help="a plain Keras model on TensorFlow's threads, not textgen")
    args = parser.parse_args()
    speeds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.starts):
            speeds.append(plain_start(args.steps) if args.plain
                          else one_start(Path(tmp), i, args.steps))
            print(f"start {i + 1}: {speeds[-1]:,.0f} targets/s", file=sys.stderr, flush=True)
    what = "plain Keras model" if args.plain else "default config"
    print(f"{args.starts} process starts, {what}, {args.steps} timed steps each: "
          f"median {statistics.median(speeds):,.0f} targets/s, "
          f"min {min(speeds):,.0f}, max {max(speeds):,.0f}")
    print("sorted: " + ", ".join(f"{s:,.0f}" for s in sorted(speeds)))
    records.write_record("fast_mode", {"model": "plain" if args.plain else "textgen",
                                       "starts": args.starts, "steps": args.steps},
                         {"median": statistics.median(speeds), "min": min(speeds),
                          "max": max(speeds), "targets_s": sorted(speeds)})


if __name__ == "__main__":
    main()
