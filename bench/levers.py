"""Training recipes at equal steps: configs/best-cpu.toml on tinyshakespeare with one change
each, the same seed and the same number of steps, two runs at a time.

    python bench/levers.py                    # every lever, 12 epochs of 100 steps (~60 min)
    python bench/levers.py --only none lr-0.006 --epochs 3
    python bench/levers.py --train-flags "--units 256 --dropout 0.25"   # the older table

A recipe that does not change the cost of a step (the learning rate, its schedule, a weight
average) is compared fairly by the loss it reaches in the same steps, whatever else the machine
runs, so two runs share the 2 cores. Each run trains in a process of its own through textgen's
training seams (textgen.Recipe: an optimizer, a learning-rate schedule, extra callbacks;
nothing of textgen is patched); the table gives each run's best validation loss in log.csv
(windows scored from a zero state, so higher than ``textgen evaluate``'s figure). Levers that
change the cost of a step (width, batch) belong in bench/quality.py, at equal wall-clock.
Writes a record to bench/results/levers/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import records

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "best-cpu.toml"
CORPUS = ROOT / "corpora" / "tinyshakespeare.txt"

# name -> (settings over best-cpu.toml, recipe); best-cpu is Adam lr 0.006, so "none" pins 0.003
LEVERS = {
    "none": ({"lr": 0.003}, None),
    "lr-0.006": ({"lr": 0.006}, None),
    "lr-0.01": ({"lr": 0.01}, None),
    "ema-0.99": ({"lr": 0.003}, "ema"),
    "cosine-per-step": ({"lr": 0.003}, "cosine"),
    "linear-per-step": ({"lr": 0.003}, "linear"),
    "lr-0.006-cosine-per-epoch": ({"lr": 0.006}, "cosine-epoch"),
    "lr-0.01-cosine-per-epoch": ({"lr": 0.01}, "cosine-epoch"),
}
FINAL = 0.05  # every decay ends at lr / 20


def recipe(kind: str | None):
    """The textgen.Recipe of a lever (None: textgen's own optimizer and plateau)."""
    import keras

    from textgen.trainer import Recipe

    def adam(cfg, lr, **ema):
        return keras.optimizers.Adam(learning_rate=lr, clipnorm=cfg.clipnorm, **ema)

    class CosineByEpoch(keras.optimizers.schedules.LearningRateSchedule):
        """Half a cosine from lr to lr * FINAL over the epochs, constant within an epoch."""

        def __init__(self, lr, spe, epochs):
            self.lr, self.spe, self.epochs = lr, spe, epochs

        def __call__(self, step):
            done = (keras.ops.floor_divide(step, self.spe) + 1) / self.epochs
            return self.lr * (FINAL + (1 - FINAL) * (1 + keras.ops.cos(math.pi * done)) / 2)

    if kind is None:
        return Recipe()
    if kind == "ema":  # validate (and keep the best of) the averaged weights
        return Recipe(optimizer=lambda cfg, lr: adam(cfg, lr, use_ema=True, ema_momentum=0.99),
                      callbacks=(keras.callbacks.SwapEMAWeights(),))
    schedules = {
        "cosine": lambda cfg, spe, total: keras.optimizers.schedules.CosineDecay(
            cfg.lr, total, FINAL),
        "linear": lambda cfg, spe, total: keras.optimizers.schedules.PolynomialDecay(
            cfg.lr, total, cfg.lr * FINAL),
        "cosine-epoch": lambda cfg, spe, total: CosineByEpoch(cfg.lr, spe, total // spe),
    }
    return Recipe(optimizer=adam, schedule=schedules[kind])


def parse_flags(text: str) -> dict:
    """ "--units 256 --dropout 0.25" -> {"units": 256, "dropout": 0.25} (textgen train's
    settings, named like its flags)."""
    words, settings = shlex.split(text), {}
    for flag, value in zip(words[::2], words[1::2]):
        for kind in (int, float, str):
            try:
                settings[flag.removeprefix("--").replace("-", "_")] = kind(value)
                break
            except ValueError:
                continue
    return settings


def child(name: str, out: str, epochs: int, steps: int, extra: dict) -> None:
    """Train one lever's run into ``out`` (in this process)."""
    from textgen.config import by_section, resolve
    from textgen.trainer import train

    settings, kind = LEVERS[name]
    config = resolve(CONFIG, by_section({**extra, **settings, "epochs": epochs,
                                         "steps_per_epoch": steps, "seed": 0,
                                         "sample_every": 0}))
    train([str(CORPUS)], config, Path(out), recipe=recipe(kind), verbose=0,
          root=Path(out).parent)


def start(name: str, tmp: Path, epochs: int, steps: int, extra: dict):
    out = tmp / name
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    args = [sys.executable, __file__, "--child", json.dumps([name, str(out), epochs, steps,
                                                            extra])]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL), out


def best_val_loss(out: Path) -> float:
    from textgen import runs

    return min(float(row["val_loss"]) for row in runs.read_csv(out / runs.LOG_FILE))


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(*json.loads(sys.argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(LEVERS), default=list(LEVERS))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=100, help="steps per epoch")
    parser.add_argument("--train-flags", default="",
                        help="textgen train flags for every run, e.g. \"--units 256\"")
    args = parser.parse_args()
    extra = parse_flags(args.train_flags)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(0, len(args.only), 2):
            pair = [start(name, Path(tmp), args.epochs, args.steps, extra)
                    for name in args.only[i:i + 2]]
            for name, (proc, out) in zip(args.only[i:i + 2], pair):
                if proc.wait():
                    sys.exit(f"levers.py: {name} failed (exit {proc.returncode})")
                rows.append({"lever": name, "val_log_best": round(best_val_loss(out), 4)})
                print(f"done {name}: {rows[-1]['val_log_best']:.4f}", file=sys.stderr,
                      flush=True)
    config = " ".join(["best-cpu.toml", args.train_flags]).strip()
    print(f"{config} on tinyshakespeare, {args.epochs} x {args.steps} steps, seed 0\n")
    print("| lever | best val loss (log.csv) |\n|---|---|")
    for row in rows:
        print(f"| {row['lever']} | {row['val_log_best']:.4f} |")
    records.write_record("levers", {"base": config, "steps": args.epochs * args.steps,
                                    "epochs": args.epochs, "steps_per_epoch": args.steps,
                                    "seed": 0, "corpus": "corpora/tinyshakespeare.txt"},
                         {"rows": rows})


if __name__ == "__main__":
    main()
